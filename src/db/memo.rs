//! What a process remembers of rarely changed rows that every request reads — who the caller is and
//! what they may do (accounts), the channel a send names (channels) — until the next change to any of
//! them, in any process. One [`Memo`] per process; each owner keeps its own caches beside it.
//!
//! How a change reaches every process:
//! - The writer of a change calls [`Memo::announce`] inside its transaction and [`Memo::forget`] after
//!   the commit: this process forgets at once (a generation number moves on; entries of an older
//!   generation are misses).
//! - On PostgreSQL [`Memo::announce`] sends `NOTIFY turumba_access`, which PostgreSQL delivers at
//!   commit; every serving process LISTENs ([`Memo::watch`]) and forgets on receipt. While a
//!   process's LISTEN connection is down (at start, after a database restart) it remembers nothing
//!   and reads the database every time; when the connection is back it forgets what it had and
//!   remembers again. A missed notification therefore never becomes a stale answer.
//! - On SQLite the database has one serving process (the single-container deployment); its own
//!   writes are the only ones, apart from `turumba admin …` commands that create what no process has
//!   remembered.
//! - Whatever happens, nothing is remembered longer than `TURUMBA_ACCOUNTS__ACCESS_CACHE_SECONDS`
//!   (default 30; 0 turns remembering off).
//!
//! A load that started before a change and ends after it is stored under the generation read before
//! it started, which the change has made old: it is never served.

use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moka::sync::Cache;
use sea_orm::{ConnectionTrait, DbErr};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::AppResult;

/// PostgreSQL channel that carries "something remembered changed" between processes.
pub const NOTIFY_CHANNEL: &str = "turumba_access";

/// A cache of remembered loads: each value with the generation it was loaded in.
pub type Remembered<K, V> = Cache<K, (u64, V)>;

type Hook = Box<dyn Fn() + Send + Sync>;

/// The remembering of one process (see the module doc).
pub struct Memo {
    generation: AtomicU64,
    /// Whether changes made by other processes reach this one: always on SQLite; on PostgreSQL while
    /// the LISTEN connection is up. Nothing is remembered or served while false.
    live: AtomicBool,
    ttl: Duration,
    /// Changes from other processes arrive by LISTEN (PostgreSQL).
    listens: bool,
    /// Run on every forget: owners drop their entries (memory) and what they keep beside them.
    hooks: Mutex<Vec<Hook>>,
}

impl Memo {
    /// `ttl` zero: nothing is remembered. `listens`: changes from other processes arrive by LISTEN
    /// (PostgreSQL), so remembering starts only once [`Memo::watch`] is connected.
    pub fn new(ttl: Duration, listens: bool) -> Arc<Self> {
        Arc::new(Memo {
            generation: AtomicU64::new(0),
            live: AtomicBool::new(!ttl.is_zero() && !listens),
            ttl,
            listens,
            hooks: Mutex::new(Vec::new()),
        })
    }

    /// A cache for one kind of load, holding at most `capacity` entries for at most the memo's time.
    pub fn cache<K, V>(&self, capacity: u64) -> Remembered<K, V>
    where
        K: Hash + Eq + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
    {
        Cache::builder().max_capacity(capacity).time_to_live(self.ttl.max(Duration::from_millis(1))).build()
    }

    /// `hook` runs whenever this process forgets.
    pub fn on_forget(&self, hook: impl Fn() + Send + Sync + 'static) {
        self.hooks.lock().unwrap_or_else(|e| e.into_inner()).push(Box::new(hook));
    }

    /// Whether this process answers from memory (false while it cannot hear other processes'
    /// changes, or with remembering turned off).
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    /// Everything remembered so far is old.
    pub fn forget(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        for hook in self.hooks.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            hook();
        }
    }

    /// Tells every other process, when `conn`'s transaction commits, to forget (PostgreSQL; nothing
    /// to do on SQLite). The writer calls [`Memo::forget`] itself after its commit.
    pub async fn announce<C: ConnectionTrait>(conn: &C) -> Result<(), DbErr> {
        super::notify(conn, NOTIFY_CHANNEL).await
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
    pub async fn remembered<K, V>(
        &self,
        cache: &Remembered<K, V>,
        key: K,
        load: impl Future<Output = AppResult<V>>,
    ) -> AppResult<V>
    where
        K: Hash + Eq + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
    {
        if !self.is_live() {
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

    /// PostgreSQL: LISTENs for other processes' changes until `shutdown`. `url`: the database URL
    /// (the LISTEN connection is its own, never one of the pool's). Nothing to do on SQLite or with
    /// remembering turned off.
    pub fn watch(self: &Arc<Self>, url: &str, shutdown: &CancellationToken, tasks: &TaskTracker) {
        if !self.listens || self.ttl.is_zero() {
            return;
        }
        let (memo, url, shutdown) = (self.clone(), url.to_string(), shutdown.clone());
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
                        tracing::warn!(error = %e, "remembered reads: no LISTEN connection; reading the database every time");
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                };
                backoff = Duration::from_millis(200);
                memo.set_live(true);
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        n = listener.try_recv() => match n {
                            Ok(Some(_)) => memo.forget(),
                            // `Ok(None)`: the connection was lost (notifications may have been missed).
                            Ok(None) | Err(_) => {
                                tracing::warn!("remembered reads: LISTEN connection lost; reading the database until it is back");
                                break;
                            }
                        },
                    }
                }
                memo.set_live(false);
            }
        });
    }
}
