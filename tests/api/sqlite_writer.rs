//! How the application's SQLite connections wait for the one writer (`sqlite-busy`): every pooled
//! connection has the application's busy handler instead of SQLite's busy timeout, and a writer that
//! finds another's transaction open waits for it and then commits.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement, TransactionTrait};

async fn busy_timeout<C: ConnectionTrait>(c: &C) -> i64 {
    let row = c.query_one_raw(Statement::from_string(c.get_database_backend(), "PRAGMA busy_timeout")).await.unwrap();
    row.unwrap().try_get_by_index(0).unwrap()
}

/// The application's pool on a fresh SQLite file: the directory (removed when dropped), the file, the pool.
async fn open_pool() -> (tempfile::TempDir, std::path::PathBuf, DatabaseConnection) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.db");
    let url = format!("sqlite://{}", file.display());
    let db = turumba::db::connect(&url, turumba::db::SQLITE_MAX_CONNECTIONS).await.unwrap();
    (dir, file, db)
}

#[tokio::test]
async fn sqlite_connections_wait_for_the_writer_with_the_applications_handler() {
    let (_dir, _, db) = open_pool().await;
    db.execute_unprepared("CREATE TABLE t (n INTEGER)").await.unwrap();

    // Every connection of the pool (all of them open at once): installing the handler cleared the busy
    // timeout sqlx sets (10,000 ms without it).
    let mut open = Vec::new();
    for _ in 0..turumba::db::SQLITE_MAX_CONNECTIONS {
        open.push(db.begin().await.unwrap());
    }
    for txn in &open {
        assert_eq!(busy_timeout(txn).await, 0, "a pooled connection kept SQLite's busy timeout");
    }
    drop(open);

    // A second writer waits for the first's commit, then writes.
    let first = turumba::db::begin_write(&db).await.unwrap();
    first.execute_unprepared("INSERT INTO t VALUES (1)").await.unwrap();
    let before = sqlite_busy::retries();
    let second = tokio::spawn({
        let db = db.clone();
        async move {
            let txn = turumba::db::begin_write(&db).await.expect("the second writer gets in");
            txn.execute_unprepared("INSERT INTO t VALUES (2)").await.unwrap();
            txn.commit().await.unwrap();
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!second.is_finished(), "the second writer waits while the first is open");
    first.commit().await.unwrap();
    second.await.unwrap();
    assert!(sqlite_busy::retries() > before);
    let n = db.query_one_raw(Statement::from_string(db.get_database_backend(), "SELECT COUNT(*) FROM t")).await;
    assert_eq!(n.unwrap().unwrap().try_get_by_index::<i64>(0).unwrap(), 2);
}

/// The SQLite compiled into the binary carries the options `.cargo/config.toml` passes to its build
/// (`LIBSQLITE3_FLAGS`): without them every statement with a bound `LIMIT` is re-parsed and re-planned
/// at each execution and every SQLite allocation takes a process-wide mutex. Fails when the build
/// lost them (and `connect` then warns).
#[tokio::test]
async fn the_bundled_sqlite_is_built_with_the_projects_options() {
    let (_dir, _, db) = open_pool().await;
    let missing = turumba::db::sqlite_build_options_missing(&db).await.unwrap();
    assert!(missing.is_empty(), "SQLite was compiled without {missing:?}");
}

/// A commit that finds the write-ahead log long leaves the checkpoint to the pool's checkpointer (the
/// crate's own test shows such a commit copies nothing back), and the checkpointer copies the log into
/// the database file. Fails when nothing checkpoints: the file then holds only the schema.
#[tokio::test]
async fn a_long_log_is_checkpointed_by_the_pools_checkpointer() {
    let (_dir, file, db) = open_pool().await;
    db.execute_unprepared("CREATE TABLE big (b BLOB)").await.unwrap();
    for _ in 0..3 {
        // ~490 pages each: the third commit finds more than 1,000 pages in the log.
        db.execute_unprepared("INSERT INTO big VALUES (zeroblob(2000000))").await.unwrap();
    }
    let size = || std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while size() < 5_000_000 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(size() >= 5_000_000, "the database file holds {} bytes: the log was never copied back", size());
}

/// The log starts again while writers never pause: the checkpointer copies it all back (the last
/// frames with the writers held), so the next commit writes the log from its beginning under a new
/// checkpoint sequence number (bytes 12–15 of the log's header). A passive checkpoint alone never
/// catches up with writers that never pause, and the log then grew without end (gigabytes in seconds
/// of accepts). Fails when the sequence number stays: the log was never restarted.
#[tokio::test]
async fn the_log_starts_again_under_writers_that_never_pause() {
    let (dir, _, db) = open_pool().await;
    db.execute_unprepared("CREATE TABLE t (b BLOB)").await.unwrap();
    let wal = dir.path().join("t.db-wal");
    let sequence = || {
        let header = std::fs::read(&wal).unwrap_or_default();
        header.get(12..16).map(|b| u32::from_be_bytes(b.try_into().unwrap()))
    };
    let first = sequence().expect("the log has a header");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for _ in 0..2 {
        let (db, stop) = (db.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut commits = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // ~6 pages a commit: the log passes 1,000 pages within a few hundred commits.
                db.execute_unprepared("INSERT INTO t VALUES (randomblob(20000))").await.unwrap();
                commits += 1;
            }
            commits
        }));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while sequence() == Some(first) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let restarted = sequence();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut commits = 0;
    for w in writers {
        commits += w.await.unwrap();
    }
    assert_ne!(restarted, Some(first), "the log never started again during {commits} commits");
}
