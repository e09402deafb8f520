//! What authenticating a request reads — the caller's user row, their role in the active account, the
//! accounts they reach — remembered per process and forgotten on every change, so that an
//! authenticated read costs no query in the common case and a change still shows up at once (SPEC §3:
//! "membership changes show up at once (no stale cache)"). How a change reaches every process is the
//! process's [`Memo`]'s (`crate::db::memo`): every write to users, memberships, roles or accounts goes
//! through [`Accounts::commit_access_change`] (or [`Accounts::commit_plain_access_change`]), which
//! announces it to every process and forgets it in this one.

use std::sync::Arc;

use sea_orm::DatabaseTransaction;
use uuid::Uuid;

use super::entity::{role, user};
use super::service::Accounts;
use super::sub_accounts::Reach;
use super::tenancy::{Access, CurrentUser};
use crate::db::memo::{Memo, Remembered};
use crate::error::AppResult;
use crate::modules::events::EventBus;

/// A user row as authentication needs it (without the password hash).
#[derive(Debug, Clone)]
pub(super) struct Caller {
    pub user: CurrentUser,
    pub tokens_valid_after: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<user::Model> for Caller {
    fn from(u: user::Model) -> Self {
        let tokens_valid_after = u.tokens_valid_after;
        Caller { user: u.into(), tokens_valid_after }
    }
}

/// The caller with their role in the selected (or default) account, as `store::user_with_role` finds it.
type CallerWithRole = Option<(Caller, Option<role::Model>)>;

/// The remembered lookups of one process (see the module doc).
pub struct AccessCache {
    pub(super) memo: Arc<Memo>,
    pub(super) callers: Remembered<Uuid, Option<Caller>>,
    pub(super) roles: Remembered<(Uuid, Option<Uuid>), CallerWithRole>,
    pub(super) access: Remembered<(Uuid, Uuid), Option<Access>>,
    pub(super) reach: Remembered<Uuid, Arc<Vec<Reach>>>,
}

impl AccessCache {
    /// Entries per lookup kind (each a few hundred bytes).
    const CAPACITY: u64 = 50_000;

    /// The caches, emptied whenever `memo` forgets; `also` runs then too.
    pub fn new(memo: Arc<Memo>, also: impl Fn() + Send + Sync + 'static) -> Arc<Self> {
        let cache = AccessCache {
            callers: memo.cache(Self::CAPACITY),
            roles: memo.cache(Self::CAPACITY),
            access: memo.cache(Self::CAPACITY),
            reach: memo.cache(Self::CAPACITY),
            memo: memo.clone(),
        };
        let (callers, roles, access, reach) =
            (cache.callers.clone(), cache.roles.clone(), cache.access.clone(), cache.reach.clone());
        memo.on_forget(move || {
            callers.invalidate_all();
            roles.invalidate_all();
            access.invalidate_all();
            reach.invalidate_all();
            also();
        });
        Arc::new(cache)
    }
}

impl Accounts {
    /// Whether this process answers authentication from what it remembers (false while it cannot
    /// hear other processes' changes, or with remembering turned off).
    pub fn remembers_access(&self) -> bool {
        self.access_cache.memo.is_live()
    }

    /// Commits a change to users, memberships, roles or accounts together with its events; every
    /// process forgets what it remembered.
    pub(super) async fn commit_access_change(&self, txn: DatabaseTransaction, bus: EventBus) -> AppResult<()> {
        Memo::announce(&txn).await?;
        self.events.commit(txn, bus).await?;
        self.access_cache.memo.forget();
        Ok(())
    }

    /// [`Self::commit_access_change`] for a change without events.
    pub(super) async fn commit_plain_access_change(&self, txn: DatabaseTransaction) -> AppResult<()> {
        Memo::announce(&txn).await?;
        txn.commit().await?;
        self.access_cache.memo.forget();
        Ok(())
    }
}
