//! Database connection setup for both backends, chosen from the `DATABASE_URL` scheme.
//!
//! SQLite gets the pragmas a server needs on every connection (WAL, `busy_timeout`,
//! `synchronous=NORMAL`, `foreign_keys=ON`, case-sensitive `LIKE` so filters behave as on PostgreSQL);
//! the SQLite compiled into the binary is built with [`SQLITE_BUILD_OPTIONS`] (`.cargo/config.toml`).
//! Also holds the small helpers every store uses (unique-violation detection, migrations).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr, SqlErr};
use tokio::sync::Notify;

pub mod chunks;
pub mod limits;
pub mod list;
pub mod memo;
pub mod script;
mod text_enum;

pub(crate) use text_enum::text_enum;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn from_url(url: &str) -> Result<Self, DbErr> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(DbErr::Custom(format!(
                "unsupported DATABASE_URL scheme in `{}`: use sqlite://PATH or postgres://…",
                url.split("://").next().unwrap_or(url)
            )))
        }
    }
}

/// Upper bound of the SQLite pool (see [`connect`]).
pub const SQLITE_MAX_CONNECTIONS: u32 = 4;
/// Longest an SQLite statement waits for a locked database before it fails with "database is locked".
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens the pool. For SQLite the file (and its directory) is created when missing.
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    let backend = Backend::from_url(url)?;
    let mut opts = ConnectOptions::new(url.to_string());
    // No ping before every checkout: a broken connection surfaces as an error on use and is replaced,
    // and the ping would double the round trips of every short query.
    opts.sqlx_logging(false)
        .test_before_acquire(false)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(10));
    let mut checkpoints = None;
    match backend {
        Backend::Sqlite => {
            if let Some(path) = sqlite_path(url)
                && let Some(dir) = Path::new(&path).parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir)
                    .map_err(|e| DbErr::Custom(format!("cannot create {}: {e}", dir.display())))?;
            }
            // SQLite has one writer. Beyond a few connections, writers only queue on the database lock
            // through SQLite's busy handler, whose sleeps (up to 100 ms each) wreck latency: measured
            // with 8 concurrent writers, p50 commit→publish went from ~1.2 s with 16 connections to ~2 ms
            // with 4 (BENCHMARKS.md). Reads lose nothing measurable.
            opts.max_connections(max_connections.clamp(2, SQLITE_MAX_CONNECTIONS)).min_connections(1);
            opts.map_sqlx_sqlite_opts(|o| {
                o.create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .foreign_keys(true)
                    .busy_timeout(SQLITE_BUSY_TIMEOUT)
                    .pragma("case_sensitive_like", "ON")
            });
            // A connection waiting for the writer wakes when a commit of this process releases it,
            // instead of sleeping SQLite's growing steps (up to 100 ms) past that moment. A commit that
            // finds the log long wakes the pool's checkpointer instead of checkpointing before its
            // COMMIT returns (see `checkpointer`). The signal is leaked once per pool (a few bytes): the
            // hook may be called for as long as a connection of the pool lives.
            let wanted = Arc::new(Notify::new());
            let signal = wanted.clone();
            let checkpoint: &'static sqlite_busy::Checkpoint =
                Box::leak(Box::new(sqlite_busy::Checkpoint::Signal(Box::new(move || signal.notify_one()))));
            opts.map_sqlx_sqlite_pool_opts(move |o| {
                o.after_connect(move |conn, _| {
                    Box::pin(async move {
                        let mut handle = conn.lock_handle().await?;
                        sqlite_busy::install(&mut handle, SQLITE_BUSY_TIMEOUT, checkpoint).map_err(|rc| {
                            sea_orm::sqlx::Error::Configuration(format!("sqlite3_busy_handler failed: {rc}").into())
                        })
                    })
                })
            });
            checkpoints = Some(wanted);
        }
        Backend::Postgres => {
            opts.max_connections(max_connections);
            // Every statement here is short. PostgreSQL compiles a plan whose estimated cost passes
            // `jit_above_cost` (a plan estimated from stale statistics, or one with a step priced out
            // by `prefer_index_walks`) to machine code first: measured 76–124 ms for one statement
            // that then ran in under a millisecond.
            opts.map_sqlx_postgres_opts(|o| o.options([("jit", "off")]));
        }
    }
    let db = Database::connect(opts).await?;
    // SQLite only: its pool gets a checkpointer, and its library is the one compiled into the binary.
    if let Some(wanted) = checkpoints {
        tokio::spawn(checkpointer(db.clone(), wanted));
        let missing = sqlite_build_options_missing(&db).await?;
        if !missing.is_empty() {
            tracing::warn!(
                missing = ?missing,
                "this binary's SQLite was built without options the project sets in .cargo/config.toml \
                 (build from the checkout, or set LIBSQLITE3_FLAGS): reads and writes are slower"
            );
        }
    }
    Ok(db)
}

/// Checkpoints the SQLite write-ahead log when a commit found it longer than
/// [`sqlite_busy::CHECKPOINT_FRAMES`] pages, on a pooled connection of its own, so that copying the log
/// back (and syncing the database file) never delays the commit that crossed the threshold: the
/// request batch waiting for that commit is answered first. Ends when the pool is closed.
///
/// At most one checkpoint every [`CHECKPOINT_SPACING`]: run back to back under sustained writes, each
/// copied the few pages committed since the one before and synced the log and the database file again
/// (a fifth of the process's CPU in the HTTP → SMPP benchmark); spaced, a page rewritten many times is
/// copied once. Each is first passive, like SQLite's own (it copies what no reader still needs and
/// never blocks a writer). A passive checkpoint never catches up with writers that never pause (the
/// frames committed while it runs are left), and SQLite starts the log again only when a writer begins
/// with all of it copied; so once the log is [`RESTART_FRAMES`] long a `RESTART` one follows: it holds
/// the writers back while it copies the few frames the passive one left, waits for the readers of the
/// log, and the next commit starts the log from its beginning. Without it the log file grew without
/// end under sustained writes (2.2 GB in 20 s of accepts) and every read searched an index of it that
/// grew as well.
async fn checkpointer(db: DatabaseConnection, wanted: Arc<Notify>) {
    loop {
        wanted.notified().await;
        let started = std::time::Instant::now();
        let done = match checkpoint(&db, "PASSIVE").await {
            Ok(log) if log >= RESTART_FRAMES => checkpoint(&db, "RESTART").await,
            other => other,
        };
        match done {
            Ok(_) => metrics::histogram!("sqlite_checkpoint_seconds").record(started.elapsed().as_secs_f64()),
            Err(DbErr::ConnectionAcquire(_)) if db.get_sqlite_connection_pool().is_closed() => return,
            Err(e) => tracing::warn!(error = %e, "SQLite checkpoint failed; the next long log tries again"),
        }
        tokio::time::sleep_until((started + CHECKPOINT_SPACING).into()).await;
    }
}

/// Least time from the start of one checkpoint to the next (see [`checkpointer`]).
pub const CHECKPOINT_SPACING: Duration = Duration::from_millis(500);

/// Pages in the log (~40 MB) from which a passive checkpoint is followed by a `RESTART` one. That one
/// holds every writer while it waits for the log's readers (as long as the longest read statement
/// running), so it runs only when the log is this long, not every [`CHECKPOINT_SPACING`].
pub const RESTART_FRAMES: i64 = 10 * sqlite_busy::CHECKPOINT_FRAMES as i64;

/// One `PRAGMA wal_checkpoint(<mode>)`: the pages in the log as it began (-1 if it could not run).
async fn checkpoint(db: &DatabaseConnection, mode: &str) -> Result<i64, DbErr> {
    let sql = format!("PRAGMA wal_checkpoint({mode})");
    let row = db.query_one_raw(sea_orm::Statement::from_string(db.get_database_backend(), sql)).await?;
    row.map_or(Ok(-1), |r| r.try_get_by_index(1))
}

/// The compile-time options the project builds SQLite with (`LIBSQLITE3_FLAGS` in `.cargo/config.toml`),
/// as `PRAGMA compile_options` names them: no memory statistics (sqlite3_malloc takes no global mutex),
/// and plans that never read bound values (a bound `LIMIT ?` would otherwise make SQLite re-parse and
/// re-plan the statement on every execution).
pub const SQLITE_BUILD_OPTIONS: [&str; 2] = ["DEFAULT_MEMSTATUS=0", "ENABLE_QPSG"];

/// Which of [`SQLITE_BUILD_OPTIONS`] the SQLite behind `db` was compiled without.
pub async fn sqlite_build_options_missing<C: ConnectionTrait>(db: &C) -> Result<Vec<&'static str>, DbErr> {
    let rows =
        db.query_all_raw(sea_orm::Statement::from_string(db.get_database_backend(), "PRAGMA compile_options")).await?;
    let have: Vec<String> = rows.iter().filter_map(|r| r.try_get_by_index::<String>(0).ok()).collect();
    Ok(SQLITE_BUILD_OPTIONS.into_iter().filter(|o| !have.iter().any(|h| h == o)).collect())
}

/// The file path of a `sqlite://` URL, if it names a file.
pub fn sqlite_path(url: &str) -> Option<String> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    if path.is_empty() || path == ":memory:" { None } else { Some(path.to_string()) }
}

pub async fn migrate_up(db: &DatabaseConnection) -> Result<(), DbErr> {
    Migrator::up(db, None).await
}

/// PostgreSQL: `NOTIFY channel` through `conn` (in a transaction, delivered when it commits); nothing
/// on SQLite, whose one process hears its own writes directly.
pub async fn notify<C: sea_orm::ConnectionTrait>(conn: &C, channel: &str) -> Result<(), DbErr> {
    if conn.get_database_backend() == sea_orm::DbBackend::Postgres {
        conn.execute_unprepared(&format!("SELECT pg_notify('{channel}', '')")).await?;
    }
    Ok(())
}

pub async fn ping(db: &DatabaseConnection) -> Result<(), DbErr> {
    db.execute_unprepared("SELECT 1").await.map(|_| ())
}

/// What is wrong with the database's storage, empty when nothing is. SQLite: every problem
/// `PRAGMA integrity_check` and `PRAGMA foreign_key_check` find (after a full disk, a crash or a copy
/// taken mid-write). PostgreSQL checksums and repairs its own pages: there it only asks the server to
/// answer.
pub async fn check_integrity(db: &DatabaseConnection) -> Result<Vec<String>, DbErr> {
    let backend = db.get_database_backend();
    if backend != sea_orm::DbBackend::Sqlite {
        ping(db).await?;
        return Ok(Vec::new());
    }
    let mut problems = Vec::new();
    for row in db.query_all_raw(sea_orm::Statement::from_string(backend, "PRAGMA integrity_check")).await? {
        let line: String = row.try_get_by_index(0)?;
        if line != "ok" {
            problems.push(line);
        }
    }
    for row in db.query_all_raw(sea_orm::Statement::from_string(backend, "PRAGMA foreign_key_check")).await? {
        let table: String = row.try_get_by_index(0)?;
        let rowid: Option<i64> = row.try_get_by_index(1)?;
        let parent: String = row.try_get_by_index(2)?;
        problems.push(format!("{table} row {} names a missing {parent} row", rowid.unwrap_or_default()));
    }
    Ok(problems)
}

/// Begins a transaction that will write. On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`):
/// a deferred transaction that reads first and writes later fails with `SQLITE_BUSY_SNAPSHOT` ("database
/// is locked", which no busy timeout retries) when another connection committed in between. PostgreSQL
/// ignores the mode.
///
/// `db_write_begin_seconds` records how long opening it took: on SQLite, mostly the wait for the writer.
pub async fn begin_write(db: &DatabaseConnection) -> Result<sea_orm::DatabaseTransaction, DbErr> {
    use sea_orm::{SqliteTransactionMode, TransactionOptions, TransactionTrait};
    let started = std::time::Instant::now();
    let txn = db
        .begin_with_options(TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..Default::default()
        })
        .await?;
    metrics::histogram!("db_write_begin_seconds").record(started.elapsed().as_secs_f64());
    Ok(txn)
}

/// Makes the rest of this transaction read through indexes: a queue read (`… WHERE due <= now ORDER
/// BY due LIMIT n`) or a keyset page (`… WHERE id > last ORDER BY id LIMIT n`) walks its index in
/// order and stops at the limit, and rows named by id are fetched by their key — whatever the
/// table's statistics say. PostgreSQL plans from statistics that lag a burst of new rows (autovacuum
/// analyses a table only after it changed by a tenth, at most once a minute, and may be off) and
/// cannot estimate a segment's JSON filter at all: measured in the 100,000-recipient send, every
/// page of the audience read the whole contacts table and sorted it (31 ms a page on average, up to
/// 180 ms; 5 ms walking the index), and a claim of 200 messages by id scanned the whole messages
/// table (BENCHMARKS.md, eighteenth session). For these statements the index walk is
/// always the right plan (a keyset stream reads each row once over all its pages; a whole-table read
/// per page reads it once per page), so sorts and sequential scans are priced out until the
/// transaction ends (`set_config(…, true)`, PostgreSQL's `SET LOCAL`). SQLite's planner prefers the
/// index here by itself.
pub async fn prefer_index_walks<C: ConnectionTrait>(txn: &C) -> Result<(), DbErr> {
    plan_with(txn, "off").await
}

/// Ends [`prefer_index_walks`] before the transaction does (for statements after it that sort).
pub async fn plan_freely<C: ConnectionTrait>(txn: &C) -> Result<(), DbErr> {
    plan_with(txn, "on").await
}

async fn plan_with<C: ConnectionTrait>(txn: &C, sorts_and_scans: &str) -> Result<(), DbErr> {
    if txn.get_database_backend() == sea_orm::DbBackend::Postgres {
        let v = sorts_and_scans;
        txn.execute_unprepared(&format!(
            "SELECT set_config('enable_sort', '{v}', true), set_config('enable_seqscan', '{v}', true)"
        ))
        .await?;
    }
    Ok(())
}

/// True when the error is a unique-constraint violation (on either backend).
pub fn is_unique_violation(err: &DbErr) -> bool {
    matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

/// The rows of a `VALUES` list for a raw statement on either database, with its bound values: each
/// row gives one value per entry of `casts`, the PostgreSQL type its placeholder is cast to (SQLite
/// takes them untyped). Placeholders are numbered from `values.len() + 1` of what is already bound,
/// so further placeholders can follow. Used by the `UPDATE … FROM (VALUES …)` statements that move
/// a whole batch of rows in one round trip.
pub fn values_rows(
    backend: sea_orm::DbBackend,
    casts: &[&str],
    rows: impl IntoIterator<Item = Vec<sea_orm::Value>>,
    values: &mut Vec<sea_orm::Value>,
) -> String {
    let mut out = Vec::new();
    for row in rows {
        debug_assert_eq!(row.len(), casts.len(), "one value per cast");
        let first = values.len();
        values.extend(row);
        let params: Vec<String> = casts
            .iter()
            .enumerate()
            .map(|(i, cast)| match backend {
                sea_orm::DbBackend::Postgres => format!("${}::{cast}", first + i + 1),
                _ => "?".to_string(),
            })
            .collect();
        out.push(format!("({})", params.join(", ")));
    }
    out.join(", ")
}
