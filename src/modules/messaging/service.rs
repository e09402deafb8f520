//! [`Messaging`]: the facade of the messaging module (templates now; messages, dispatch, group and
//! scheduled sends as they land). It reaches contacts only through `Directory`, channels only through
//! `ChannelRegistry`, accounts through `Accounts`, events through `Events`.

use sea_orm::DatabaseConnection;

use super::intake::Intake;
use super::messages::Cursors;
use crate::modules::accounts::Accounts;
use crate::modules::channels::Channels;
use crate::modules::contacts::Directory;
use crate::modules::events::Events;

#[derive(Clone)]
pub struct Messaging {
    pub(super) db: DatabaseConnection,
    pub(super) accounts: Accounts,
    pub(super) directory: Directory,
    pub(super) channels: Channels,
    pub(super) events: Events,
    pub(super) cursors: Cursors,
    /// Wakes this process's dispatcher when a send committed.
    pub(super) dispatch_wake: std::sync::Arc<tokio::sync::Notify>,
    /// Wakes this process's scheduler when a schedule was created or edited.
    pub(super) schedule_wake: std::sync::Arc<tokio::sync::Notify>,
    /// Wakes this process's group fan-out when a group message was queued.
    pub(super) fanout_wake: std::sync::Arc<tokio::sync::Notify>,
    /// Writes accepted sends, many per transaction.
    pub(super) intake: Intake,
    /// How long a fan-out claim holds a group message between two batches.
    pub(super) fanout_lease: chrono::Duration,
}

/// What [`Messaging`] is built from.
pub struct MessagingParts {
    pub db: DatabaseConnection,
    pub accounts: Accounts,
    pub directory: Directory,
    pub channels: Channels,
    pub events: Events,
    /// Signs history cursors (derived from the secret key).
    pub cursor_key: [u8; 32],
    /// How long a fan-out claim holds a group message between two batches (seconds): after a worker
    /// dies mid-fan-out, another one takes the send over this long after its last batch.
    pub fanout_lease_secs: i64,
}

impl Messaging {
    /// Builds the facade and starts its intake writer (so it must be called within the runtime).
    pub fn new(p: MessagingParts) -> Self {
        let dispatch_wake = std::sync::Arc::new(tokio::sync::Notify::new());
        Messaging {
            intake: Intake::start(p.db.clone(), p.events.clone(), dispatch_wake.clone()),
            db: p.db,
            accounts: p.accounts,
            directory: p.directory,
            channels: p.channels,
            events: p.events,
            cursors: Cursors::new(p.cursor_key),
            dispatch_wake,
            schedule_wake: std::sync::Arc::new(tokio::sync::Notify::new()),
            fanout_wake: std::sync::Arc::new(tokio::sync::Notify::new()),
            fanout_lease: chrono::Duration::seconds(p.fanout_lease_secs),
        }
    }
}
