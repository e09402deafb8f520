//! The in-process transport: every consumer gets a bounded queue and a worker task. `send` routes by
//! topic and waits for room (backpressure); its confirms wait for each consumer's acknowledgement, so
//! the relay marks a row published only after its consumers are done with it.

use std::sync::Arc;

use async_trait::async_trait;
use futures_util::future::join_all;
use sea_orm::DatabaseConnection;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Confirms, Transport, Unavailable};
use crate::modules::events::consumer::{self, Consumer, Outcome, Settlement, SharedConsumer};
use crate::modules::events::envelope::{EventEnvelope, topic_matches};

type Work = (EventEnvelope, oneshot::Sender<()>);

struct Route {
    name: String,
    bindings: Vec<String>,
    tx: mpsc::Sender<Work>,
}

pub struct InProcess {
    db: DatabaseConnection,
    queue_capacity: usize,
    max_attempts: i32,
    /// Consumers join after the services they call are built (see [`InProcess::add`]).
    routes: std::sync::RwLock<Vec<Route>>,
}

impl InProcess {
    /// A transport with no consumers yet: an event sent before any consumer joined reaches nobody, so
    /// the relay starts only after [`InProcess::add`].
    pub fn new(db: DatabaseConnection, queue_capacity: usize, max_attempts: i32) -> Arc<Self> {
        Arc::new(InProcess { db, queue_capacity, max_attempts, routes: std::sync::RwLock::new(Vec::new()) })
    }

    /// Starts one worker per consumer under `tracker`, stopping at `shutdown`.
    pub fn start(
        db: DatabaseConnection,
        consumers: Vec<SharedConsumer>,
        queue_capacity: usize,
        max_attempts: i32,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> Arc<Self> {
        let transport = InProcess::new(db, queue_capacity, max_attempts);
        transport.add(consumers, &shutdown, tracker);
        transport
    }

    /// Adds consumers, each with its bounded queue and worker task.
    pub fn add(&self, consumers: Vec<SharedConsumer>, shutdown: &CancellationToken, tracker: &TaskTracker) {
        let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
        for c in consumers {
            let (tx, rx) = mpsc::channel::<Work>(self.queue_capacity.max(1));
            routes.push(Route { name: c.name().to_string(), bindings: c.bindings(), tx });
            tracker.spawn(worker(self.db.clone(), c, rx, self.max_attempts, shutdown.clone()));
        }
    }

    /// The queues of the consumers bound to `topic`.
    fn routes_for(&self, topic: &str) -> Vec<(String, mpsc::Sender<Work>)> {
        let routes = self.routes.read().unwrap_or_else(|e| e.into_inner());
        routes
            .iter()
            .filter(|r| r.bindings.iter().any(|b| topic_matches(b, topic)))
            .map(|r| (r.name.clone(), r.tx.clone()))
            .collect()
    }
}

async fn worker(
    db: DatabaseConnection,
    c: SharedConsumer,
    mut rx: mpsc::Receiver<Work>,
    max_attempts: i32,
    shutdown: CancellationToken,
) {
    let batch = consumer::batch_size(c.as_ref(), consumer::MAX_BATCH);
    let mut works: Vec<Work> = Vec::with_capacity(batch);
    loop {
        // Whatever is queued, up to the consumer's batch size (one at a time by default).
        let n = tokio::select! {
            _ = shutdown.cancelled() => break,
            n = rx.recv_many(&mut works, batch) => n,
        };
        if n == 0 {
            break;
        }
        let (events, acks): (Vec<EventEnvelope>, Vec<oneshot::Sender<()>>) = works.drain(..).unzip();
        let outcomes = consumer::process_batch(&db, c.as_ref(), &events).await;
        // The handled ones are acknowledged first: a failure's retries do not hold up its neighbours.
        let (failed, done): (Vec<_>, Vec<_>) =
            events.iter().zip(acks).zip(outcomes).partition(|(_, first)| first.is_failure());
        for ((event, ack), first) in done.into_iter().chain(failed) {
            if let Some(ack) = settle(&db, c.as_ref(), event, ack, first, max_attempts, &shutdown).await {
                let _ = ack.send(());
            }
        }
    }
}

/// Settles one event given the outcome of its first handling: retries a failure (after its backoff or
/// its handler's wait) until it is handled, or dead-letters it after `max_attempts` attempts (at once
/// when the handler refused it for good). Returns the acknowledgement
/// to send, or `None` when it must not be acknowledged (shutdown mid-retry, or the dead letter could
/// not be stored): the relay then keeps the outbox row pending and publishes it again.
async fn settle(
    db: &DatabaseConnection,
    c: &dyn Consumer,
    event: &EventEnvelope,
    ack: oneshot::Sender<()>,
    first: Outcome,
    max_attempts: i32,
    shutdown: &CancellationToken,
) -> Option<oneshot::Sender<()>> {
    let queue = c.name();
    let mut attempt = 1;
    let mut outcome = first;
    loop {
        consumer::count(queue, &outcome);
        match outcome.settlement(i64::from(attempt), i64::from(max_attempts)) {
            None => return Some(ack),
            Some(Settlement::DeadLetter { error }) => {
                tracing::error!(queue, event_id = %event.event_id, error, "dead-lettering event after {attempt} attempts");
                if let Err(e) = consumer::insert_dead_letter(db, queue, event, error, attempt).await {
                    tracing::error!(error = %e, "cannot store dead letter");
                    return None;
                }
                metrics::counter!("consumer_dead_lettered_total", "queue" => queue.to_string()).increment(1);
                return Some(ack);
            }
            Some(Settlement::Retry { error, wait }) => {
                tracing::warn!(queue, event_id = %event.event_id, attempt, error, "handler failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
        attempt += 1;
        outcome = consumer::process(db, c, event).await;
    }
}

#[async_trait]
impl Transport for InProcess {
    /// Queues each event for every consumer whose bindings match (waiting for room: backpressure); the
    /// confirms resolve when those consumers acknowledged.
    async fn send(&self, events: &[EventEnvelope]) -> Result<Confirms, Unavailable> {
        let mut waits: Vec<Vec<(String, oneshot::Receiver<()>)>> = Vec::with_capacity(events.len());
        for event in events {
            let mut acks = Vec::new();
            for (name, queue) in self.routes_for(&event.event_type) {
                let (tx, rx) = oneshot::channel();
                if queue.send((event.clone(), tx)).await.is_err() {
                    return Err(Unavailable(format!("consumer `{name}` has stopped")));
                }
                acks.push((name, rx));
            }
            waits.push(acks);
        }
        Ok(Box::pin(async move {
            let outcomes = join_all(waits.into_iter().map(|acks| async move {
                for (name, rx) in acks {
                    if rx.await.is_err() {
                        return Err(format!("consumer `{name}` did not acknowledge"));
                    }
                }
                Ok(())
            }))
            .await;
            Ok(outcomes)
        }))
    }

    async fn check(&self) -> Result<(), String> {
        Ok(())
    }

    fn name(&self) -> &'static str {
        "in-process"
    }

    /// In-process consumers confirm by committing to the same database: a batch's open transaction
    /// competes with them for the pool, so one batch at a time (with four, a pool of five left one
    /// connection to consumers that needed two, and every side waited on the other until the pool timed out).
    fn max_in_flight(&self) -> usize {
        1
    }
}
