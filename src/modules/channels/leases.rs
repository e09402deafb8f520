//! Bind leases: when several dispatcher processes run, only the holder of a channel's lease binds it
//! (SMPP allows a limited number of binds per account, and receipts must reach one place). A lease is
//! taken or renewed with one upsert that succeeds only when the row is free, expired or already ours;
//! the holder renews it while its bind lives and releases it when the bind closes.
//!
//! A process that sends nothing (the `api` role) must not keep a lease: a bind made there to verify a
//! channel would otherwise hold the channel, renewed as long as the bind lives, and no dispatcher in
//! any other process could ever send on it. Such a process says so with
//! [`BindLeases::set_dispatching`]; its SMPP adapter then closes a verify's bind at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, Value};
use uuid::Uuid;

/// How long a lease lasts without renewal (the holder renews every third of it).
pub const LEASE_TTL: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct BindLeases {
    db: DatabaseConnection,
    /// This process (a fresh id per start).
    owner: String,
    /// Whether this process dispatches messages (and so may keep the binds it makes).
    dispatching: Arc<AtomicBool>,
}

impl std::fmt::Debug for BindLeases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BindLeases({})", self.owner)
    }
}

impl BindLeases {
    pub fn new(db: DatabaseConnection) -> Self {
        BindLeases {
            db,
            owner: format!("{}@{}", Uuid::now_v7(), std::process::id()),
            dispatching: Arc::new(AtomicBool::new(true)),
        }
    }

    /// For tests: a second "process" on the same database.
    pub fn with_owner(db: DatabaseConnection, owner: &str) -> Self {
        BindLeases { db, owner: owner.to_string(), dispatching: Arc::new(AtomicBool::new(true)) }
    }

    /// Whether this process dispatches messages (true unless told otherwise); every clone sees it.
    pub fn set_dispatching(&self, on: bool) {
        self.dispatching.store(on, Ordering::Relaxed);
    }

    pub fn dispatching(&self) -> bool {
        self.dispatching.load(Ordering::Relaxed)
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Takes or renews the lease on `channel_id`; false when another live process holds it.
    pub async fn acquire(&self, channel_id: Uuid) -> Result<bool, sea_orm::DbErr> {
        let now = Utc::now();
        let until = now + chrono::Duration::from_std(LEASE_TTL).expect("a small duration");
        let backend = self.db.get_database_backend();
        let sql = match backend {
            DbBackend::Postgres => {
                "INSERT INTO channel_bind_leases (channel_id, owner, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (channel_id) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at \
                 WHERE channel_bind_leases.owner = excluded.owner OR channel_bind_leases.expires_at < $4"
            }
            _ => {
                "INSERT INTO channel_bind_leases (channel_id, owner, expires_at) VALUES (?, ?, ?) \
                 ON CONFLICT (channel_id) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at \
                 WHERE channel_bind_leases.owner = excluded.owner OR channel_bind_leases.expires_at < ?"
            }
        };
        let values: [Value; 4] = [channel_id.into(), self.owner.clone().into(), until.into(), now.into()];
        let res = self.db.execute_raw(Statement::from_sql_and_values(backend, sql, values)).await?;
        Ok(res.rows_affected() == 1)
    }

    /// The channels whose bind another live process holds: their sends belong to that process.
    pub async fn held_elsewhere(&self) -> Result<Vec<Uuid>, sea_orm::DbErr> {
        let backend = self.db.get_database_backend();
        let sql = match backend {
            DbBackend::Postgres => "SELECT channel_id FROM channel_bind_leases WHERE owner <> $1 AND expires_at >= $2",
            _ => "SELECT channel_id FROM channel_bind_leases WHERE owner <> ? AND expires_at >= ?",
        };
        let values: [Value; 2] = [self.owner.clone().into(), Utc::now().into()];
        let rows = self.db.query_all_raw(Statement::from_sql_and_values(backend, sql, values)).await?;
        rows.iter().map(|r| r.try_get::<Uuid>("", "channel_id")).collect()
    }

    /// Gives the lease up (the bind closed), so another process can take it at once.
    pub async fn release(&self, channel_id: Uuid) -> Result<(), sea_orm::DbErr> {
        let backend = self.db.get_database_backend();
        let sql = match backend {
            DbBackend::Postgres => "DELETE FROM channel_bind_leases WHERE channel_id = $1 AND owner = $2",
            _ => "DELETE FROM channel_bind_leases WHERE channel_id = ? AND owner = ?",
        };
        let values: [Value; 2] = [channel_id.into(), self.owner.clone().into()];
        self.db.execute_raw(Statement::from_sql_and_values(backend, sql, values)).await?;
        Ok(())
    }
}
