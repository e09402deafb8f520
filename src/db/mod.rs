//! Database connection setup for both backends, chosen from the `DATABASE_URL` scheme.
//!
//! SQLite gets the pragmas a server needs on every connection (WAL, `busy_timeout`,
//! `synchronous=NORMAL`, `foreign_keys=ON`, case-sensitive `LIKE` so filters behave as on PostgreSQL).
//! Also holds the small helpers every store uses (unique-violation detection, migrations).

use std::path::Path;
use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr, SqlErr};

pub mod chunks;
pub mod limits;
pub mod list;
pub mod memo;
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
                    .busy_timeout(Duration::from_secs(10))
                    .pragma("case_sensitive_like", "ON")
            });
        }
        Backend::Postgres => {
            opts.max_connections(max_connections);
        }
    }
    Database::connect(opts).await
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
pub async fn begin_write(db: &DatabaseConnection) -> Result<sea_orm::DatabaseTransaction, DbErr> {
    use sea_orm::{SqliteTransactionMode, TransactionOptions, TransactionTrait};
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..Default::default()
    })
    .await
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
