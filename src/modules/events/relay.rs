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
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend};
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

impl PassOutcome {
    fn add(&mut self, other: PassOutcome) {
        self.published += other.published;
        self.failed += other.failed;
        self.unavailable |= other.unavailable;
    }
}

/// A batch whose publish was confirmed (or refused), with the transaction that holds its rows.
type Confirmed = (DatabaseTransaction, Prepared, Vec<Result<(), String>>);

/// A claimed batch, decoded.
struct Prepared {
    events: Vec<EventEnvelope>,
    rows: Vec<outbox_event::Model>,
    undecodable: usize,
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

    /// Claims a batch in its own transaction (PostgreSQL): the row locks keep other relays, and this
    /// relay's next claim, off it until it is recorded.
    async fn claim_locked(&self) -> Result<(DatabaseTransaction, Vec<outbox_event::Model>), sea_orm::DbErr> {
        let txn = crate::db::begin_write(&self.db).await?;
        // Losing this commit in a database crash only means publishing the batch again (consumers
        // dedupe), so the relay does not wait for its own WAL flush.
        txn.execute_unprepared("SET LOCAL synchronous_commit = off").await?;
        let rows = outbox::claim_due(&txn, self.settings.batch_size).await?;
        Ok((txn, rows))
    }

    /// One batch: claim, publish, record; on PostgreSQL, while the batches are full (a backlog), the
    /// next batch is claimed while the current one is published and confirmed, and the current one is
    /// recorded while the next one is published. Publishes stay in order (a batch is sent only after
    /// the one before it was confirmed); a row is marked published only after its confirm. Public so
    /// tests can drive the relay step by step.
    pub async fn pass(&self) -> Result<PassOutcome, sea_orm::DbErr> {
        let postgres = self.db.get_database_backend() == DbBackend::Postgres;
        if postgres {
            let mut total = PassOutcome::default();
            let (mut txn, mut rows) = self.claim_locked().await?;
            // The previous batch, confirmed and waiting to be recorded.
            let mut to_record: Option<Confirmed> = None;
            loop {
                let full = rows.len() as u64 >= self.settings.batch_size;
                let prepared = self.prepare(&txn, rows).await?;
                let record_previous = async {
                    match to_record.take() {
                        Some((t, p, results)) => {
                            let out = self.record(&t, p, results).await?;
                            t.commit().await?;
                            Ok::<_, sea_orm::DbErr>(out)
                        }
                        None => Ok(PassOutcome::default()),
                    }
                };
                let claim_next = async { if full { Some(self.claim_locked().await) } else { None } };
                let (published, recorded, next) =
                    tokio::join!(self.transport.publish(&prepared.events), record_previous, claim_next);
                total.add(recorded?);
                let results = match published {
                    Ok(r) => r,
                    Err(unavailable) => {
                        tracing::warn!(transport = self.transport.name(), error = %unavailable.0, "transport unavailable; events stay pending");
                        metrics::counter!("outbox_transport_unavailable_total").increment(1);
                        total.add(PassOutcome { failed: prepared.undecodable, ..Default::default() });
                        total.unavailable = true;
                        txn.commit().await?;
                        if let Some(Ok((t, _))) = next {
                            t.rollback().await?;
                        }
                        return Ok(total);
                    }
                };
                match next {
                    Some(claimed) => {
                        let (next_txn, next_rows) = claimed?;
                        to_record = Some((std::mem::replace(&mut txn, next_txn), prepared, results));
                        rows = next_rows;
                    }
                    None => {
                        let out = self.record(&txn, prepared, results).await?;
                        txn.commit().await?;
                        total.add(out);
                        return Ok(total);
                    }
                }
            }
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

    /// Decodes a claimed batch; rows that are not events are failed at once.
    async fn prepare<C: sea_orm::ConnectionTrait>(
        &self,
        db: &C,
        rows: Vec<outbox_event::Model>,
    ) -> Result<Prepared, sea_orm::DbErr> {
        let mut p =
            Prepared { events: Vec::with_capacity(rows.len()), rows: Vec::with_capacity(rows.len()), undecodable: 0 };
        for row in rows {
            match serde_json::from_value::<EventEnvelope>(row.payload.clone()) {
                Ok(e) => {
                    p.events.push(e);
                    p.rows.push(row);
                }
                Err(e) => {
                    outbox::record_failure(db, &row, &format!("undecodable payload: {e}"), 1).await?;
                    p.undecodable += 1;
                }
            }
        }
        Ok(p)
    }

    async fn publish_and_record<C: sea_orm::ConnectionTrait>(
        &self,
        db: &C,
        rows: Vec<outbox_event::Model>,
    ) -> Result<PassOutcome, sea_orm::DbErr> {
        if rows.is_empty() {
            return Ok(PassOutcome::default());
        }
        let prepared = self.prepare(db, rows).await?;
        let results = match self.transport.publish(&prepared.events).await {
            Ok(r) => r,
            Err(unavailable) => {
                tracing::warn!(transport = self.transport.name(), error = %unavailable.0, "transport unavailable; events stay pending");
                metrics::counter!("outbox_transport_unavailable_total").increment(1);
                return Ok(PassOutcome { failed: prepared.undecodable, unavailable: true, ..Default::default() });
            }
        };
        self.record(db, prepared, results).await
    }

    /// Marks the confirmed events published and records the failures.
    async fn record<C: sea_orm::ConnectionTrait>(
        &self,
        db: &C,
        prepared: Prepared,
        results: Vec<Result<(), String>>,
    ) -> Result<PassOutcome, sea_orm::DbErr> {
        let mut out = PassOutcome { failed: prepared.undecodable, ..Default::default() };
        let (valid_rows, events) = (prepared.rows, prepared.events);
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
        // The outbox gauges are read beside the loop, so a slow count never delays a publish.
        let gauges = {
            let db = self.db.clone();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    update_gauges(&db).await;
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            })
        };
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
        gauges.abort();
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
}

/// Outbox pending/failed counts and the oldest pending age, for `/metrics`.
async fn update_gauges(db: &DatabaseConnection) {
    if let Ok(s) = outbox::backlog(db).await {
        metrics::gauge!("outbox_pending").set(s.pending as f64);
        metrics::gauge!("outbox_failed").set(s.failed as f64);
        let age = s.oldest_pending_at.map(|t| (Utc::now() - t).num_milliseconds() as f64 / 1000.0).unwrap_or(0.0);
        metrics::gauge!("outbox_oldest_pending_age_seconds").set(age.max(0.0));
    }
}
