//! What authenticating a request reads — the caller's user row, their role in the active account, the
//! accounts they reach — remembered per process and forgotten on every change, so that an
//! authenticated read costs no query in the common case and a change still shows up at once (SPEC §3:
//! "membership changes show up at once (no stale cache)").
//!
//! How a change reaches every process:
//! - Every write to users, memberships, roles or accounts goes through [`Accounts::commit_access_change`]
//!   (or [`Accounts::commit_plain_access_change`]): after the commit this process forgets everything
//!   it remembered (a generation number; entries of an older generation are misses).
//! - On PostgreSQL the writing transaction also sends `NOTIFY turumba_access`, which PostgreSQL
//!   delivers at commit; every serving process LISTENs ([`Accounts::watch_access_changes`]) and forgets
//!   on receipt. While a process's LISTEN connection is down (at start, after a database restart) it
//!   remembers nothing and reads the database on every request; when the connection is back it
//!   forgets what it had and remembers again. A missed notification therefore never becomes a stale
//!   grant.
//! - On SQLite the database has one serving process (the single-container deployment); its own
//!   writes are the only ones, apart from `turumba admin create-user` (a new user, whom no process has
//!   remembered).
//! - Whatever happens, nothing is remembered longer than `TURUMBA_ACCOUNTS__ACCESS_CACHE_SECONDS`
//!   (default 30; 0 turns remembering off).
//!
//! A load that started before a change and ends after it is stored under the generation read before
//! it started, which the change has made old: it is never served.

use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use moka::sync::Cache;
use sea_orm::{DatabaseTransaction, DbBackend};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use super::entity::{role, user};
use super::service::Accounts;
use super::sub_accounts::Reach;
use super::tenancy::{Access, CurrentUser};
use crate::error::AppResult;
use crate::modules::events::EventBus;

/// PostgreSQL channel that carries "access changed" between processes.
pub const NOTIFY_CHANNEL: &str = "turumba_access";

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

type Entry<V> = (u64, V);
/// The caller with their role in the selected (or default) account, as `store::user_with_role` finds it.
type CallerWithRole = Option<(Caller, Option<role::Model>)>;

/// The remembered lookups of one process (see the module doc).
pub struct AccessCache {
    generation: AtomicU64,
    /// Whether changes made by other processes reach this one: always on SQLite; on PostgreSQL while
    /// the LISTEN connection is up. Nothing is remembered or served while false.
    live: AtomicBool,
    ttl: Duration,
    pub(super) callers: Cache<Uuid, Entry<Option<Caller>>>,
    pub(super) roles: Cache<(Uuid, Option<Uuid>), Entry<CallerWithRole>>,
    pub(super) access: Cache<(Uuid, Uuid), Entry<Option<Access>>>,
    pub(super) reach: Cache<Uuid, Entry<Arc<Vec<Reach>>>>,
}

impl AccessCache {
    /// Entries per lookup kind (each a few hundred bytes).
    const CAPACITY: u64 = 50_000;

    /// `ttl` zero: nothing is remembered. `listens`: changes from other processes arrive by LISTEN
    /// (PostgreSQL), so remembering starts only once it is connected.
    pub fn new(ttl: Duration, listens: bool) -> Self {
        fn cache<K: Hash + Eq + Send + Sync + 'static, V: Clone + Send + Sync + 'static>(ttl: Duration) -> Cache<K, V> {
            Cache::builder().max_capacity(AccessCache::CAPACITY).time_to_live(ttl.max(Duration::from_millis(1))).build()
        }
        AccessCache {
            generation: AtomicU64::new(0),
            live: AtomicBool::new(!ttl.is_zero() && !listens),
            ttl,
            callers: cache(ttl),
            roles: cache(ttl),
            access: cache(ttl),
            reach: cache(ttl),
        }
    }

    /// Everything remembered so far is old.
    pub fn forget(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.callers.invalidate_all();
        self.roles.invalidate_all();
        self.access.invalidate_all();
        self.reach.invalidate_all();
    }

    /// Going live forgets first (what was loaded while deaf may be stale); going deaf stops serving
    /// first, then forgets.
    fn set_live(&self, live: bool) {
        if live {
            self.forget();
            self.live.store(!self.ttl.is_zero(), Ordering::Release);
        } else {
            self.live.store(false, Ordering::Release);
            self.forget();
        }
    }

    /// The remembered value for `key`, else `load`'s (remembered when it succeeds).
    pub(super) async fn remembered<K, V>(
        &self,
        cache: &Cache<K, Entry<V>>,
        key: K,
        load: impl Future<Output = AppResult<V>>,
    ) -> AppResult<V>
    where
        K: Hash + Eq + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
    {
        if !self.live.load(Ordering::Acquire) {
            return load.await;
        }
        let generation = self.generation.load(Ordering::Acquire);
        if let Some((g, value)) = cache.get(&key)
            && g == generation
        {
            return Ok(value);
        }
        let value = load.await?;
        cache.insert(key, (generation, value.clone()));
        Ok(value)
    }
}

impl Accounts {
    /// Whether this process answers authentication from what it remembers (false while it cannot
    /// hear other processes' changes, or with remembering turned off).
    pub fn remembers_access(&self) -> bool {
        self.access_cache.live.load(Ordering::Acquire)
    }

    /// Commits a change to users, memberships, roles or accounts together with its events; every
    /// process forgets what it remembered of anyone's access.
    pub(super) async fn commit_access_change(&self, txn: DatabaseTransaction, bus: EventBus) -> AppResult<()> {
        crate::db::notify(&txn, NOTIFY_CHANNEL).await?;
        self.events.commit(txn, bus).await?;
        self.access_cache.forget();
        Ok(())
    }

    /// [`Self::commit_access_change`] for a change without events.
    pub(super) async fn commit_plain_access_change(&self, txn: DatabaseTransaction) -> AppResult<()> {
        crate::db::notify(&txn, NOTIFY_CHANNEL).await?;
        txn.commit().await?;
        self.access_cache.forget();
        Ok(())
    }

    /// PostgreSQL: LISTENs for other processes' access changes until `shutdown` (on SQLite nothing to
    /// do); a change also makes the process read the suspended accounts again. `url`: the database URL (the LISTEN connection is its own, never one of the pool's).
    pub fn watch_access_changes(&self, url: &str, shutdown: &CancellationToken, tasks: &TaskTracker) {
        if self.db.get_database_backend() != DbBackend::Postgres || self.access_cache.ttl.is_zero() {
            return;
        }
        let (cache, url, shutdown) = (self.access_cache.clone(), url.to_string(), shutdown.clone());
        let suspensions = self.suspensions.clone();
        tasks.spawn(async move {
            let mut backoff = Duration::from_millis(200);
            while !shutdown.is_cancelled() {
                let listener = async {
                    let mut l = sea_orm::sqlx::postgres::PgListener::connect(&url).await?;
                    l.listen(NOTIFY_CHANNEL).await?;
                    Ok::<_, sea_orm::sqlx::Error>(l)
                };
                let mut listener = match listener.await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "access changes: no LISTEN connection; reading access from the database on every request");
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                };
                backoff = Duration::from_millis(200);
                cache.set_live(true);
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        n = listener.try_recv() => match n {
                            Ok(Some(_)) => {
                                cache.forget();
                                // A suspension is an account change too: read the set again now.
                                suspensions.forget();
                            }
                            // `Ok(None)`: the connection was lost (notifications may have been missed).
                            Ok(None) | Err(_) => {
                                tracing::warn!("access changes: LISTEN connection lost; reading access from the database until it is back");
                                break;
                            }
                        },
                    }
                }
                cache.set_live(false);
            }
        });
    }
}
