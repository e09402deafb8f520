//! Events: the durable pipeline every asynchronous part of Turumba rides on (SPEC §7).
//!
//! Owns the `outbox_events`, `processed_events` and `dead_letters` tables. Public facade:
//! - [`EventBus`] / [`EventMeta`] / [`EventEnvelope`]: services collect domain events and flush them
//!   into the outbox inside their own transaction; then call [`Events::committed`].
//! - [`Consumer`]: a queue name, bindings and an idempotent handler run inside a transaction.
//! - [`Events`]: the running pipeline of this process: transport, relay, consumers, readiness.
//! - [`ops`]: what the operator CLI shows and does (`turumba outbox …`, `turumba dlq …`).

mod audit;
mod bus;
mod consumer;
mod entity;
mod envelope;
mod outbox;
mod relay;
pub mod topology;
mod transport;

use std::sync::Arc;
use std::time::Duration;

use sea_orm::DatabaseConnection;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use audit::{AuditEntry, AuditLog, redact};
pub use bus::EventBus;
pub use consumer::{
    Consumer, HandlerError, MAX_BATCH, Outcome, Settlement, SharedConsumer, process, process_batch, was_processed,
};
pub use envelope::{EventEnvelope, EventMeta, topic_matches};
pub use outbox::OutboxStatus;
pub use relay::{PassOutcome, Relay, RelaySettings};
pub use transport::{Amqp, Confirms, InProcess, Outcomes, Transport, Unavailable};

use crate::config::EventSettings;

/// The pipeline of this process.
#[derive(Clone)]
pub struct Events {
    db: DatabaseConnection,
    wake: Arc<Notify>,
    transport: Arc<dyn Transport>,
    amqp: Option<Arc<Amqp>>,
    in_process: Option<Arc<InProcess>>,
    settings: EventSettings,
    database_url: String,
    /// Where the audit entries of requests' writes go, and for how many days they are kept (0:
    /// forever); set once at start by the module that owns the audit log.
    audit: Arc<std::sync::OnceLock<(Arc<dyn AuditLog>, i64)>>,
}

impl Events {
    /// Chooses the transport: RabbitMQ when `amqp_url` is set, else in-process. Consumers start with
    /// [`Events::start_consumers`] on either transport, once the services their handlers call exist
    /// (and, in-process, before the relay starts).
    pub fn new(db: DatabaseConnection, database_url: &str, amqp_url: Option<&str>, settings: EventSettings) -> Self {
        let (transport, amqp, in_process): (Arc<dyn Transport>, Option<Arc<Amqp>>, _) = match amqp_url {
            Some(url) => {
                let a = Amqp::new(
                    url,
                    &settings.amqp_prefix,
                    settings.prefetch,
                    settings.consumer_max_attempts,
                    settings.audit_queue,
                );
                (a.clone(), Some(a), None)
            }
            None => {
                let t = InProcess::new(db.clone(), settings.queue_capacity, settings.consumer_max_attempts);
                (t.clone(), None, Some(t))
            }
        };
        Events {
            db,
            wake: Arc::new(Notify::new()),
            transport,
            amqp,
            in_process,
            settings,
            database_url: database_url.to_string(),
            audit: Default::default(),
        }
    }

    /// Plugs in the audit log (once, at start).
    pub fn set_audit_log(&self, log: Arc<dyn AuditLog>, retention_days: i64) {
        let _ = self.audit.set((log, retention_days));
    }

    /// Writes audit entries inside `txn` (for writes that batch many requests' changes in one
    /// transaction, such as the message intake; [`Events::commit`] does it for the others).
    pub async fn audit(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        entries: Vec<AuditEntry>,
    ) -> Result<(), sea_orm::DbErr> {
        use sea_orm::ConnectionTrait;
        for statement in self.audit_statements(txn.get_database_backend(), entries) {
            txn.execute_raw(statement).await?;
        }
        Ok(())
    }

    /// The statements that write audit entries (none without an audit log).
    pub fn audit_statements(&self, backend: sea_orm::DbBackend, entries: Vec<AuditEntry>) -> Vec<sea_orm::Statement> {
        match (self.audit.get(), entries.is_empty()) {
            (Some((log, _)), false) => log.statements(backend, entries),
            _ => Vec::new(),
        }
    }

    /// Writes the events collected in `bus` into the outbox inside `txn`, commits, and wakes the relay:
    /// the one way a service finishes a write that emits events.
    /// A request's write also gets its audit entry here, in the same transaction.
    pub async fn commit(&self, txn: sea_orm::DatabaseTransaction, mut bus: EventBus) -> Result<(), sea_orm::DbErr> {
        if let Some(entry) = bus.audit_entry() {
            self.audit(&txn, vec![entry]).await?;
        }
        bus.flush(&txn).await?;
        txn.commit().await?;
        self.committed();
        Ok(())
    }

    /// [`Events::commit`] for a write sent as one statement list: appends the bus's audit entry and
    /// outbox rows to `script`, runs it, and wakes the relay. Returns the rows of the script's
    /// `RETURNING` statements.
    pub async fn commit_script(
        &self,
        db: &sea_orm::DatabaseConnection,
        mut script: crate::db::script::Script,
        bus: EventBus,
    ) -> Result<Vec<sea_orm::QueryResult>, sea_orm::DbErr> {
        let backend = script.backend();
        if let Some(entry) = bus.audit_entry() {
            script.extend(self.audit_statements(backend, vec![entry]));
        }
        script.extend(outbox::insert_statement(backend, bus.events()));
        let rows = script.run(db).await?;
        self.committed();
        Ok(rows)
    }

    /// Wakes this process's relay after a transaction with events committed (PostgreSQL relays
    /// elsewhere are woken by the NOTIFY sent inside that transaction).
    pub fn committed(&self) {
        self.wake.notify_one();
    }

    pub fn transport_name(&self) -> &'static str {
        self.transport.name()
    }

    pub fn amqp(&self) -> Option<&Arc<Amqp>> {
        self.amqp.as_ref()
    }

    /// Readiness of the broker (always ready in-process).
    pub async fn check(&self) -> Result<(), String> {
        self.transport.check().await
    }

    pub fn relay(&self) -> Relay {
        Relay::new(
            self.db.clone(),
            self.transport.clone(),
            RelaySettings {
                batch_size: self.settings.relay_batch_size,
                poll_interval: Duration::from_millis(self.settings.relay_poll_interval_ms),
                max_attempts: self.settings.publish_max_attempts,
                retention: chrono::Duration::days(self.settings.retention_days),
                listen_url: Some(self.database_url.clone()),
            },
            self.wake.clone(),
        )
    }

    /// Starts the relay and its housekeeping beside it: the purge of audit entries past their
    /// retention, every few minutes.
    pub fn start_relay(&self, shutdown: &CancellationToken, tracker: &TaskTracker) {
        tracker.spawn(self.relay().run(shutdown.clone()));
        if let Some((log, days)) = self.audit.get().cloned()
            && days > 0
        {
            let (db, stop) = (self.db.clone(), shutdown.clone());
            tracker.spawn(async move {
                loop {
                    match log.purge(&db, chrono::Utc::now() - chrono::Duration::days(days)).await {
                        Ok(n) if n > 0 => tracing::info!(rows = n, "purged audit entries past their retention"),
                        Err(e) => tracing::warn!(error = %e, "audit purge failed"),
                        _ => {}
                    }
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(300)) => {}
                    }
                }
            });
        }
    }

    /// Starts consumers: a RabbitMQ queue each, or an in-process queue and worker each.
    pub fn start_consumers(&self, consumers: Vec<SharedConsumer>, shutdown: &CancellationToken, tracker: &TaskTracker) {
        if let Some(amqp) = &self.amqp {
            for c in consumers {
                amqp.start_consumer(self.db.clone(), c, shutdown.clone(), tracker);
            }
        } else if let Some(in_process) = &self.in_process {
            in_process.add(consumers, shutdown, tracker);
        }
    }
}

/// Operator views and actions behind `turumba outbox …` and `turumba dlq …`.
pub mod ops {
    use sea_orm::sea_query::Expr;
    use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};

    use super::entity::dead_letter;
    use super::{Amqp, EventEnvelope, OutboxStatus, consumer, outbox};

    pub async fn outbox_status(db: &DatabaseConnection) -> Result<OutboxStatus, DbErr> {
        outbox::status(db).await
    }

    /// One outbox row that gave up, as the operator sees it.
    #[derive(Debug, Clone)]
    pub struct FailedEvent {
        pub id: uuid::Uuid,
        pub event_type: String,
        pub attempts: i32,
        pub last_error: Option<String>,
    }

    pub async fn outbox_failed(db: &DatabaseConnection, limit: u64) -> Result<Vec<FailedEvent>, DbErr> {
        Ok(outbox::list_failed(db, limit)
            .await?
            .into_iter()
            .map(|r| FailedEvent { id: r.id, event_type: r.event_type, attempts: r.attempts, last_error: r.last_error })
            .collect())
    }

    /// Deletes published rows older than `older_than` (the relay does this on its own every few minutes).
    pub async fn outbox_purge_published(
        db: &DatabaseConnection,
        older_than: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, DbErr> {
        outbox::purge_published(db, older_than).await
    }

    pub async fn outbox_retry_failed(db: &DatabaseConnection, id: Option<uuid::Uuid>) -> Result<u64, DbErr> {
        outbox::retry_failed(db, id).await
    }

    /// One dead letter, from the RabbitMQ DLQ or the in-process table.
    #[derive(Debug, Clone)]
    pub struct DeadLetter {
        pub queue: String,
        pub event_id: Option<uuid::Uuid>,
        pub event_type: String,
        pub attempts: i64,
        pub error: String,
    }

    pub async fn dlq_list(
        db: &DatabaseConnection,
        amqp: Option<&Amqp>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, String> {
        match amqp {
            Some(a) => Ok(a
                .dlq_list(limit)
                .await?
                .into_iter()
                .map(|d| DeadLetter {
                    queue: d.queue,
                    event_id: d.event.as_ref().ok().map(|e| e.event_id),
                    event_type: d
                        .event
                        .as_ref()
                        .map(|e| e.event_type.clone())
                        .unwrap_or_else(|e| format!("(undecodable: {e})")),
                    attempts: d.attempts,
                    error: d.error,
                })
                .collect()),
            None => Ok(consumer::list_dead_letters(db, limit as u64)
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|d| DeadLetter {
                    queue: d.queue,
                    event_id: Some(d.event_id),
                    event_type: d.event_type,
                    attempts: i64::from(d.attempts),
                    error: d.error,
                })
                .collect()),
        }
    }

    /// Replays dead letters by writing each event back to the outbox: the relay publishes it again and
    /// consumers that already handled it drop it by event id, so only the failed consumer runs again.
    pub async fn dlq_replay(db: &DatabaseConnection, amqp: Option<&Amqp>, limit: usize) -> Result<usize, String> {
        match amqp {
            Some(a) => {
                a.dlq_take(limit, |event: EventEnvelope| async move {
                    outbox::insert_one(db, &event).await.map_err(|e| e.to_string())
                })
                .await
            }
            None => {
                let rows = consumer::list_dead_letters(db, limit as u64).await.map_err(|e| e.to_string())?;
                let mut n = 0;
                for row in rows {
                    let event: EventEnvelope =
                        serde_json::from_value(row.payload.clone()).map_err(|e| e.to_string())?;
                    let txn = sea_orm::TransactionTrait::begin(db).await.map_err(|e| e.to_string())?;
                    outbox::insert_one(&txn, &event).await.map_err(|e| e.to_string())?;
                    dead_letter::Entity::update_many()
                        .col_expr(dead_letter::Column::ReplayedAt, Expr::value(chrono::Utc::now()))
                        .filter(dead_letter::Column::Id.eq(row.id))
                        .exec(&txn)
                        .await
                        .map_err(|e| e.to_string())?;
                    txn.commit().await.map_err(|e| e.to_string())?;
                    n += 1;
                }
                Ok(n)
            }
        }
    }
}
