//! How an SQLite connection waits for the one writer. SQLite's own busy timeout (`sqlite3_busy_timeout`,
//! what sqlx sets) retries a locked database after sleeps of 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50
//! and then 100 ms, so a waiting connection sleeps on after the writer is done — up to 25 ms once it
//! has waited 50 ms — while the database sits unlocked. Measured in Turumba's accept benchmark: half
//! the write transactions waited 2.5 ms or more to begin, the process used 57 % of the cores it could,
//! and the slowest accepts waited 50–90 ms. Retrying every 100–250 µs instead halved that tail but
//! spent the cores on retries (7,000 a second; a fifth fewer accepts).
//!
//! [`install`] makes a waiting connection sleep until a write transaction commits and then try again:
//! a WAL hook (which SQLite calls after a commit, with the write lock released) wakes every waiter of
//! the process; a waiter also tries again every [`NAP`] (a rollback, another process's writer, or a
//! commit between its failed try and its sleep wakes nobody). It gives up after the same timeout a
//! busy timeout would. The hook also stands in for SQLite's default one once the log holds
//! [`CHECKPOINT_FRAMES`] pages (`PRAGMA wal_autocheckpoint` would replace the hook): it either
//! checkpoints there, as SQLite's does ([`Checkpoint::Inline`]), or tells the caller, who checkpoints on
//! another connection ([`Checkpoint::Signal`]). Inline, the checkpoint — copying the log back into the
//! database and syncing it — runs before the committing `COMMIT` returns, so whoever waits for that
//! commit waits for the checkpoint too (measured in Turumba's accepts: 12 % of the process's CPU, on the
//! path of every request whose batch happened to cross the threshold).
//!
//! One of the application's two `unsafe` crates (the other is `malloc-tune`): `sqlite3_busy_handler` and `sqlite3_wal_hook`
//! on the handle sqlx lends out while it is locked ([`LockedSqliteHandle`]), so no other thread uses
//! the connection meanwhile.

use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use libsqlite3_sys::sqlite3;
use sqlx_sqlite::LockedSqliteHandle;

/// Longest a waiting connection sleeps before it tries again without having been woken.
pub const NAP: Duration = Duration::from_millis(2);
/// Pages in the write-ahead log after which a commit checkpoints it (SQLite's default).
pub const CHECKPOINT_FRAMES: c_int = 1000;

/// Commits made by the connections of this process, and the waiters sleeping until the next one.
static COMMITS: Mutex<u64> = Mutex::new(0);
static COMMITTED: Condvar = Condvar::new();
static RETRIES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// When the current wait of this thread's connection began (sqlx runs each connection on a thread
    /// of its own, and SQLite calls the busy handler on it).
    static WAITING_SINCE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Times a connection of this process found the database locked and tried again.
pub fn retries() -> u64 {
    RETRIES.load(Ordering::Relaxed)
}

/// What a commit does once the write-ahead log holds [`CHECKPOINT_FRAMES`] pages.
pub enum Checkpoint {
    /// A passive checkpoint on the committing connection, before its `COMMIT` returns (what SQLite's
    /// default hook does).
    Inline,
    /// Calls this on the committing connection's thread (it must return at once, e.g. wake a task),
    /// after each such commit, and leaves the checkpoint to the caller.
    Signal(Box<dyn Fn() + Send + Sync>),
}

/// [`Checkpoint::Inline`], to pass to [`install`].
pub static INLINE: Checkpoint = Checkpoint::Inline;

/// Makes `handle`'s connection wait for a locked database until a commit (at most `timeout` in all)
/// and wake the connections waiting when it commits; replaces any busy timeout set before. Its commits
/// checkpoint a long log as `checkpoint` says.
pub fn install(
    handle: &mut LockedSqliteHandle<'_>,
    timeout: Duration,
    checkpoint: &'static Checkpoint,
) -> Result<(), c_int> {
    let micros = usize::try_from(timeout.as_micros()).unwrap_or(usize::MAX);
    let db = handle.as_raw_handle().as_ptr();
    // SAFETY: `db` is an open connection that the locked handle keeps to this thread for the calls; the
    // callbacks read only their arguments (an integer carried in the pointer; the handle and database
    // name SQLite passes) and never unwind.
    let rc = unsafe { libsqlite3_sys::sqlite3_busy_handler(db, Some(wait_for_a_commit), micros as *mut c_void) };
    if rc != libsqlite3_sys::SQLITE_OK {
        return Err(rc);
    }
    // SAFETY: as above; the hook's argument is a `&'static Checkpoint`, valid for as long as SQLite may call
    // the hook, and only read.
    let arg = checkpoint as *const Checkpoint as *mut c_void;
    unsafe { libsqlite3_sys::sqlite3_wal_hook(db, Some(committed), arg) };
    Ok(())
}

/// SQLite's busy callback: nonzero to try again, zero to give up with `SQLITE_BUSY`.
extern "C" fn wait_for_a_commit(timeout_micros: *mut c_void, count: c_int) -> c_int {
    let timeout = Duration::from_micros(timeout_micros as usize as u64);
    let now = Instant::now();
    let since = WAITING_SINCE.with(|w| match (count, w.get()) {
        (1.., Some(since)) => since,
        _ => {
            w.set(Some(now));
            now
        }
    });
    let left = timeout.saturating_sub(now - since);
    if left.is_zero() {
        return 0;
    }
    let commits = COMMITS.lock().unwrap_or_else(|e| e.into_inner());
    let seen = *commits;
    let _ = COMMITTED.wait_timeout_while(commits, left.min(NAP), |c| *c == seen);
    RETRIES.fetch_add(1, Ordering::Relaxed);
    1
}

/// SQLite's WAL hook, called after each commit of the connection with the write lock released.
extern "C" fn committed(checkpoint: *mut c_void, db: *mut sqlite3, name: *const c_char, frames: c_int) -> c_int {
    {
        let mut commits = COMMITS.lock().unwrap_or_else(|e| e.into_inner());
        *commits = commits.wrapping_add(1);
    }
    COMMITTED.notify_all();
    if frames >= CHECKPOINT_FRAMES {
        // SAFETY: `install` passed a `&'static Checkpoint` as the hook's argument.
        match unsafe { &*(checkpoint as *const Checkpoint) } {
            // SAFETY: SQLite passes its own open handle and the name of the database that committed.
            Checkpoint::Inline => unsafe {
                libsqlite3_sys::sqlite3_wal_checkpoint(db, name);
            },
            Checkpoint::Signal(wake) => wake(),
        }
    }
    libsqlite3_sys::SQLITE_OK
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::{Connection, Executor, SqliteConnection};

    async fn open(url: &str, timeout: Duration) -> SqliteConnection {
        open_with(url, timeout, &INLINE).await
    }

    async fn open_with(url: &str, timeout: Duration, checkpoint: &'static Checkpoint) -> SqliteConnection {
        let mut c = SqliteConnection::connect(url).await.expect("open");
        c.execute("PRAGMA journal_mode = WAL").await.expect("wal");
        install(&mut c.lock_handle().await.expect("handle"), timeout, checkpoint).expect("handler");
        c
    }

    /// A second writer waits for the first (its tries are counted: SQLite's own busy timeout never calls
    /// this crate) and gets in once the first commits; a writer with a short timeout gives up after it;
    /// the log is still checkpointed.
    #[tokio::test]
    async fn a_waiting_writer_gets_in_after_the_commit_or_gives_up_at_its_timeout() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let mut first = open(&url, Duration::from_secs(10)).await;
        let mut second = open(&url, Duration::from_secs(10)).await;
        first.execute("CREATE TABLE t (n INTEGER)").await.expect("table");

        first.execute("BEGIN IMMEDIATE").await.expect("first writer");
        let before = retries();
        let waiting = tokio::spawn(async move {
            second.execute("BEGIN IMMEDIATE").await.expect("the second writer gets in");
            second.execute("INSERT INTO t VALUES (2)").await.expect("insert");
            second.execute("COMMIT").await.expect("commit");
            second
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        first.execute("INSERT INTO t VALUES (1)").await.expect("insert");
        first.execute("COMMIT").await.expect("commit");
        let mut second = waiting.await.expect("second writer");
        assert!(retries() > before, "the second writer waited in this crate's handler");
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t").fetch_one(&mut first).await.expect("count");
        assert_eq!(n, 2);

        let mut impatient = open(&url, Duration::from_millis(50)).await;
        first.execute("BEGIN IMMEDIATE").await.expect("first writer again");
        let started = Instant::now();
        let err = impatient.execute("BEGIN IMMEDIATE").await.expect_err("the lock is held");
        assert!(err.to_string().contains("database is locked"), "{err}");
        assert!(started.elapsed() >= Duration::from_millis(50), "gave up after {:?}", started.elapsed());
        first.execute("ROLLBACK").await.expect("rollback");

        // Enough pages for the hook's checkpoint: the log is copied back and starts again.
        second.execute("CREATE TABLE big (b BLOB)").await.expect("table");
        for _ in 0..6 {
            second.execute("INSERT INTO big VALUES (zeroblob(2000000))").await.expect("a large row");
        }
        let (busy, log, done): (i64, i64, i64) =
            sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&mut second).await.expect("checkpoint");
        assert_eq!(busy, 0);
        // Six rows of ~490 pages: checkpointed after the third, the log restarted and holds the last three.
        assert!(log < 2 * CHECKPOINT_FRAMES as i64, "the log holds {log} pages ({done} checkpointed)");
    }

    /// With [`Checkpoint::Signal`] a commit that finds the log long calls the signal and leaves the log
    /// as it is (nothing is copied back on the committing connection); a checkpoint elsewhere then
    /// empties it.
    #[tokio::test]
    async fn a_signalling_connection_leaves_the_checkpoint_to_the_caller() {
        static SIGNALS: AtomicU64 = AtomicU64::new(0);
        static SIGNAL: std::sync::LazyLock<Checkpoint> = std::sync::LazyLock::new(|| {
            Checkpoint::Signal(Box::new(|| {
                SIGNALS.fetch_add(1, Ordering::Relaxed);
            }))
        });
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let mut writer = open_with(&url, Duration::from_secs(10), &SIGNAL).await;
        let mut other = open(&url, Duration::from_secs(10)).await;
        writer.execute("CREATE TABLE big (b BLOB)").await.expect("table");
        for _ in 0..6 {
            writer.execute("INSERT INTO big VALUES (zeroblob(2000000))").await.expect("a large row");
        }
        // Six rows of ~490 pages: the four commits past 1,000 pages signalled, and nothing was copied back.
        assert_eq!(SIGNALS.load(Ordering::Relaxed), 4);
        let (busy, log, done): (i64, i64, i64) =
            sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&mut other).await.expect("checkpoint");
        assert_eq!(busy, 0);
        assert!(log >= 2_900, "the log holds {log} pages: the writer checkpointed it");
        assert_eq!(done, log, "the checkpoint on the other connection copied back all {log} pages");
    }
}
