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
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::entity::outbox_event;
use super::envelope::EventEnvelope;
use super::outbox;
use super::transport::{Confirms, Transport, Unavailable};

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

/// A claimed batch, decoded.
struct Prepared {
    events: Vec<EventEnvelope>,
    rows: Vec<outbox_event::Model>,
    undecodable: usize,
}

/// A batch handed to the transport, with the transaction that holds its rows until it is recorded and
/// its place among the transport's [`Transport::max_in_flight`].
struct InFlight {
    txn: DatabaseTransaction,
    prepared: Prepared,
    confirms: Confirms,
    _permit: OwnedSemaphorePermit,
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

    /// Publishes what is due and returns when nothing is left in flight. Public so tests can drive the
    /// relay step by step.
    ///
    /// PostgreSQL: a pipeline of two halves running side by side. The sender claims a batch in its own
    /// transaction and hands it to the transport, then claims the next one without waiting for the
    /// confirms: at once while batches are full (a backlog), otherwise as soon as a writer's commit
    /// wakes it; at most [`Transport::max_in_flight`] batches are unconfirmed at a time. The recorder awaits each
    /// batch's confirms in the order the batches were sent, marks its confirmed rows published and
    /// commits. Batches go out in claim order on one transport, so one relay publishes in commit order.
    /// If the transport loses a batch, its rows stay pending (no attempt counted), the sender stops and
    /// the batches already handed over are recorded for whatever was confirmed.
    /// SQLite: one batch at a time (one relay per process; no transaction stays open across a publish,
    /// since in-process consumers write to the same database while the relay waits for them).
    pub async fn pass(&self) -> Result<PassOutcome, sea_orm::DbErr> {
        if self.db.get_database_backend() != DbBackend::Postgres {
            let rows = outbox::claim_due(&self.db, self.settings.batch_size).await?;
            return self.publish_and_record(&self.db, rows).await;
        }
        let max_in_flight = self.transport.max_in_flight().max(1);
        let permits = Arc::new(Semaphore::new(max_in_flight));
        let (to_record, mut handed) = mpsc::unbounded_channel::<InFlight>();
        // Set when the transport lost a batch: the sender stops, the recorder settles what is in flight.
        let lost = AtomicBool::new(false);
        // Pinged by the recorder after each batch, so an idle sender sees the pipeline empty out.
        let settled = Notify::new();

        let sender = async {
            let to_record = to_record;
            let mut out = PassOutcome::default();
            let mut claim = true;
            loop {
                if lost.load(Ordering::SeqCst) {
                    return Ok(out);
                }
                if !claim {
                    // Nothing known to be due: wait for a commit, or end the pass once nothing is in flight.
                    if permits.available_permits() == max_in_flight {
                        return Ok(out);
                    }
                    tokio::select! {
                        _ = self.wake.notified() => claim = true,
                        _ = settled.notified() => {}
                    }
                    continue;
                }
                let permit = permits.clone().acquire_owned().await.expect("the semaphore is never closed");
                let (txn, rows) = self.claim_locked().await?;
                if rows.is_empty() {
                    txn.rollback().await?;
                    claim = false;
                    continue;
                }
                claim = rows.len() as u64 >= self.settings.batch_size;
                let prepared = self.prepare(&txn, rows).await?;
                match self.transport.send(&prepared.events).await {
                    Ok(confirms) => {
                        let _ = to_record.send(InFlight { txn, prepared, confirms, _permit: permit });
                    }
                    Err(unavailable) => {
                        self.unavailable(&unavailable, &mut out, txn, prepared).await?;
                        return Ok(out);
                    }
                }
            }
        };

        let recorder = async {
            let mut out = PassOutcome::default();
            while let Some(batch) = handed.recv().await {
                let InFlight { txn, prepared, confirms, _permit: permit } = batch;
                match confirms.await {
                    Ok(results) => {
                        out.add(self.record(&txn, prepared, results).await?);
                        txn.commit().await?;
                    }
                    Err(unavailable) if !lost.swap(true, Ordering::SeqCst) => {
                        self.unavailable(&unavailable, &mut out, txn, prepared).await?;
                    }
                    Err(_) => {
                        out.add(PassOutcome { failed: prepared.undecodable, ..Default::default() });
                        txn.commit().await?;
                    }
                }
                drop(permit);
                settled.notify_one();
            }
            Ok::<_, sea_orm::DbErr>(out)
        };

        let (mut total, recorded) = tokio::try_join!(sender, recorder)?;
        total.add(recorded);
        Ok(total)
    }

    /// The transport lost a batch: its rows stay pending (no attempt counted) and the transaction that
    /// held them commits only the undecodable rows' failures.
    async fn unavailable(
        &self,
        unavailable: &Unavailable,
        total: &mut PassOutcome,
        txn: DatabaseTransaction,
        prepared: Prepared,
    ) -> Result<(), sea_orm::DbErr> {
        tracing::warn!(transport = self.transport.name(), error = %unavailable.0, "transport unavailable; events stay pending");
        metrics::counter!("outbox_transport_unavailable_total").increment(1);
        total.add(PassOutcome { failed: prepared.undecodable, unavailable: true, ..Default::default() });
        txn.commit().await
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
        // Connect (and declare the topology) now, not when the first events are waiting for it.
        if let Err(e) = self.transport.check().await {
            tracing::warn!(transport = self.transport.name(), error = %e, "transport not reachable yet; events wait in the outbox");
        }
        // PostgreSQL writers NOTIFY at commit; the notifications wake the relay the way in-process
        // writers do, also while it awaits confirms in the middle of a pass.
        let listener = self.pg_listener().await.map(|mut l| {
            let (wake, stop) = (self.wake.clone(), shutdown.clone());
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        n = l.recv() => match n {
                            Ok(_) => wake.notify_one(),
                            Err(e) => {
                                tracing::warn!(error = %e, "LISTEN connection lost; polling until it is back");
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                        },
                    }
                }
            })
        });
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
            // While the transport is down, commits do not cut the backoff short.
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified(), if !outcome.unavailable => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        gauges.abort();
        if let Some(l) = listener {
            l.abort();
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
