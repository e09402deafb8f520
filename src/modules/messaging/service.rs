//! [`Messaging`]: the facade of the messaging module (templates now; messages, dispatch, group and
//! scheduled sends as they land). It reaches contacts only through `Directory`, channels only through
//! `ChannelRegistry`, accounts through `Accounts`, events through `Events`.

use sea_orm::DatabaseConnection;

use crate::modules::accounts::Accounts;
use crate::modules::contacts::Directory;

#[derive(Clone)]
pub struct Messaging {
    pub(super) db: DatabaseConnection,
    pub(super) accounts: Accounts,
    pub(super) directory: Directory,
}

impl Messaging {
    pub fn new(db: DatabaseConnection, accounts: Accounts, directory: Directory) -> Self {
        Messaging { db, accounts, directory }
    }
}
