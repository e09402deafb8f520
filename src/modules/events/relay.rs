//! The outbox relay: moves committed outbox rows to the transport and marks them published only once
//! the transport confirmed them.
//!
//! PostgreSQL: each batch is claimed with `FOR UPDATE SKIP LOCKED` inside a transaction that also
//! records the outcome, so any number of relays run side by side and never publish a row twice in the
//! same state; relays sleep until a `NOTIFY` from a committing writer (or the poll interval).
//! SQLite: one relay in the process, woken by the in-process notifier.
//!
//! A relay that dies between publishing and marking leaves the rows pending: they are published again
//! (at least once) and consumers drop the duplicate by event id.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::entity::outbox_event;
use super::envelope::EventEnvelope;
use super::outbox;
use super::transport::Transport;

#[derive(Debug, Clone)]
pub struct RelaySettings {
    pub batch_size: u64,
    pub poll_interval: Duration,
    pub max_attempts: i32,
    pub retention: chrono::Duration,
    /// PostgreSQL URL for the LISTEN connection (its own connection, so the pool is never pinned).
    pub listen_url: Option<String>,
}

/// What one pass of the relay did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PassOutcome {
    pub published: usize,
    pub failed: usize,
    /// The transport could not take the batch (broker down); nothing was counted against the rows.
    pub unavailable: bool,
}

pub struct Relay {
    db: DatabaseConnection,
    transport: Arc<dyn Transport>,
    settings: RelaySettings,
    wake: Arc<Notify>,
}

impl Relay {
    pub fn new(
        db: DatabaseConnection,
        transport: Arc<dyn Transport>,
        settings: RelaySettings,
        wake: Arc<Notify>,
    ) -> Self {
        Relay { db, transport, settings, wake }
    }

    /// One batch: claim, publish, record. Public so tests can drive the relay step by step.
    pub async fn pass(&self) -> Result<PassOutcome, sea_orm::DbErr> {
        let postgres = self.db.get_database_backend() == DbBackend::Postgres;
        if postgres {
            // Claim and record in one transaction: the row locks keep other relays off this batch.
            let txn = crate::db::begin_write(&self.db).await?;
            // Losing this commit in a database crash only means publishing the batch again (consumers
            // dedupe), so the relay does not wait for its own WAL flush.
            txn.execute_unprepared("SET LOCAL synchronous_commit = off").await?;
            let rows = outbox::claim_due(&txn, self.settings.batch_size).await?;
            let outcome = self.publish_and_record(&txn, rows).await?;
            txn.commit().await?;
            Ok(outcome)
        } else {
            // SQLite has one relay; no transaction may stay open across the publish (in-process consumers
            // write to the same database while we wait for their acknowledgements).
            let rows = outbox::claim_due(&self.db, self.settings.batch_size).await?;
            self.publish_and_record(&self.db, rows).await
        }
    }

    /// Fault injection for tests and drills: does what a relay that dies right after the transport
    /// confirmed would have done (publish the due rows, record nothing). Returns how many it published.
    pub async fn publish_without_recording(&self) -> Result<usize, sea_orm::DbErr> {
        let rows = outbox::claim_due(&self.db, self.settings.batch_size).await?;
        let events: Vec<EventEnvelope> =
            rows.iter().filter_map(|r| serde_json::from_value(r.payload.clone()).ok()).collect();
        match self.transport.publish(&events).await {
            Ok(results) => Ok(results.iter().filter(|r| r.is_ok()).count()),
            Err(_) => Ok(0),
        }
    }

    async fn publish_and_record<C: sea_orm::ConnectionTrait>(
        &self,
        db: &C,
        rows: Vec<outbox_event::Model>,
    ) -> Result<PassOutcome, sea_orm::DbErr> {
        if rows.is_empty() {
            return Ok(PassOutcome::default());
        }
        let mut events = Vec::with_capacity(rows.len());
        let mut valid_rows = Vec::with_capacity(rows.len());
        let mut out = PassOutcome::default();
        for row in rows {
            match serde_json::from_value::<EventEnvelope>(row.payload.clone()) {
                Ok(e) => {
                    events.push(e);
                    valid_rows.push(row);
                }
                Err(e) => {
                    outbox::record_failure(db, &row, &format!("undecodable payload: {e}"), 1).await?;
                    out.failed += 1;
                }
            }
        }
        let results = match self.transport.publish(&events).await {
            Ok(r) => r,
            Err(unavailable) => {
                tracing::warn!(transport = self.transport.name(), error = %unavailable.0, "transport unavailable; events stay pending");
                metrics::counter!("outbox_transport_unavailable_total").increment(1);
                out.unavailable = true;
                return Ok(out);
            }
        };
        let now = Utc::now();
        let mut published = Vec::new();
        for ((row, event), result) in valid_rows.iter().zip(&events).zip(results) {
            match result {
                Ok(()) => {
                    published.push(row.id);
                    let latency = (now - event.occurred_at).num_microseconds().unwrap_or(0) as f64 / 1e6;
                    metrics::histogram!("outbox_publish_latency_seconds").record(latency.max(0.0));
                }
                Err(e) => {
                    tracing::warn!(event_id = %event.event_id, event_type = event.event_type, error = %e, "publish failed");
                    outbox::record_failure(db, row, &e, self.settings.max_attempts).await?;
                    out.failed += 1;
                }
            }
        }
        outbox::mark_published(db, &published).await?;
        out.published = published.len();
        metrics::counter!("outbox_published_total").increment(out.published as u64);
        Ok(out)
    }

    /// Runs until `shutdown`: batches back to back while there is work, otherwise sleeps until woken or
    /// the poll interval passes. Purges published rows past the retention every few minutes.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(transport = self.transport.name(), "outbox relay started");
        let mut listener = self.pg_listener().await;
        let mut last_purge = std::time::Instant::now() - Duration::from_secs(3600);
        let mut unavailable_backoff = Duration::from_millis(200);
        let mut last_gauges = std::time::Instant::now() - Duration::from_secs(3600);
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let outcome = match self.pass().await {
                Ok(o) => o,
                Err(e) => {
                    tracing::error!(error = %e, "relay pass failed");
                    PassOutcome { unavailable: true, ..Default::default() }
                }
            };
            if last_gauges.elapsed() > Duration::from_secs(1) {
                last_gauges = std::time::Instant::now();
                self.update_gauges().await;
            }
            if last_purge.elapsed() > Duration::from_secs(300) {
                last_purge = std::time::Instant::now();
                match outbox::purge_published(&self.db, Utc::now() - self.settings.retention).await {
                    Ok(n) if n > 0 => tracing::info!(rows = n, "purged published outbox rows"),
                    Err(e) => tracing::warn!(error = %e, "outbox purge failed"),
                    _ => {}
                }
            }
            let wait = if outcome.unavailable {
                let w = unavailable_backoff;
                unavailable_backoff = (unavailable_backoff * 2).min(Duration::from_secs(10));
                w
            } else {
                unavailable_backoff = Duration::from_millis(200);
                if outcome.published + outcome.failed >= self.settings.batch_size as usize {
                    continue;
                }
                self.settings.poll_interval
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = async {
                    match listener.as_mut() {
                        Some(l) => { let _ = l.recv().await; }
                        None => std::future::pending::<()>().await,
                    }
                }, if !outcome.unavailable => {}
            }
        }
        tracing::info!("outbox relay stopped");
    }

    async fn pg_listener(&self) -> Option<sea_orm::sqlx::postgres::PgListener> {
        let url = self.settings.listen_url.as_deref()?;
        if self.db.get_database_backend() != DbBackend::Postgres {
            return None;
        }
        match sea_orm::sqlx::postgres::PgListener::connect(url).await {
            Ok(mut l) => match l.listen(outbox::NOTIFY_CHANNEL).await {
                Ok(()) => Some(l),
                Err(e) => {
                    tracing::warn!(error = %e, "LISTEN failed; polling only");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "no LISTEN connection; polling only");
                None
            }
        }
    }

    async fn update_gauges(&self) {
        if let Ok(s) = outbox::backlog(&self.db).await {
            metrics::gauge!("outbox_pending").set(s.pending as f64);
            metrics::gauge!("outbox_failed").set(s.failed as f64);
            let age = s.oldest_pending_at.map(|t| (Utc::now() - t).num_milliseconds() as f64 / 1000.0).unwrap_or(0.0);
            metrics::gauge!("outbox_oldest_pending_age_seconds").set(age.max(0.0));
        }
    }
}
