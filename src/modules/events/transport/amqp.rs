//! RabbitMQ transport (lapin 4 on tokio).
//!
//! Publishing: persistent messages to the topic exchange `messaging` with routing key = event type,
//! `message_id` = event id, JSON content type, `mandatory` (an unroutable event is an error) and
//! publisher confirms. `send` writes a batch's messages on the one publishing channel (so batches
//! reach the broker in the order they were sent) and returns a future of their confirms; the relay
//! may send the next batch before the previous one is confirmed. A lost connection, or confirms that
//! fail or time out, make the transport [`Unavailable`]; it reconnects on the next call.
//!
//! Consuming: one task per consumer with its own connection, `basic_qos(prefetch)`, ack only after the
//! handler's transaction committed; deliveries already waiting are handled together up to the
//! consumer's batch size (one transaction, one `multiple` ack). A failed handling is republished to the same queue with
//! `x-attempts` + 1 (then acked); after the last attempt the event goes to `messaging.dlx` →
//! `messaging.dlq` with `x-last-error`, `x-attempts` and `x-original-queue` headers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind};
use sea_orm::DatabaseConnection;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Confirms, Transport, Unavailable};
use crate::modules::events::consumer::{self, Outcome, Settlement, SharedConsumer};
use crate::modules::events::envelope::EventEnvelope;
use crate::modules::events::topology::{AUDIT_MAX_LENGTH, AUDIT_QUEUE, AUDIT_TTL_MS, Names};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Amqp {
    url: String,
    names: Names,
    prefetch: u16,
    max_attempts: i32,
    publisher: Mutex<Option<(Connection, Channel)>>,
    /// Which publishing connection is the current one (bumped on every connect).
    generation: AtomicU64,
    /// The generation whose confirms failed: the publisher reconnects before the next batch.
    broken: Arc<AtomicU64>,
    /// Queues of this process's consumers: declared with the topology, before anything is published,
    /// so no event can be routed while a consumer's queue does not exist yet.
    consumer_queues: std::sync::Mutex<Vec<(String, Vec<String>)>>,
    /// Bumped on every registration; the publisher re-declares when it has declared an older version.
    topology_version: AtomicU64,
    declared_version: AtomicU64,
    /// Whether the topology includes the transient `messaging_audit` queue (`events.audit_queue`).
    audit_queue: bool,
}

/// One message of the dead-letter queue, as shown by `turumba dlq list`.
#[derive(Debug, Clone)]
pub struct DeadLetterView {
    pub queue: String,
    pub error: String,
    pub attempts: i64,
    pub event: Result<EventEnvelope, String>,
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

fn header_text(props: &BasicProperties, key: &str) -> Option<String> {
    match props.headers().as_ref()?.inner().get(key)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

fn header_int(props: &BasicProperties, key: &str) -> Option<i64> {
    match props.headers().as_ref()?.inner().get(key)? {
        AMQPValue::LongInt(i) => Some(i64::from(*i)),
        AMQPValue::LongLongInt(i) => Some(*i),
        AMQPValue::ShortInt(i) => Some(i64::from(*i)),
        AMQPValue::LongUInt(i) => Some(i64::from(*i)),
        _ => None,
    }
}

/// Arguments every queue of ours is declared with: classic queues of version 2 (RabbitMQ ≥ 3.10; the
/// only version from 4.0), whose store and index persist and confirm faster than version 1's. A
/// queue's arguments are fixed when it is created: a queue declared with others fails the
/// declaration (PRECONDITION_FAILED) until it is deleted.
fn queue_args() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-version".into(), AMQPValue::LongLongInt(2));
    args
}

fn persistent_json(message_id: &str) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type(ShortString::from("application/json"))
        .with_message_id(ShortString::from(message_id))
}

/// The frame size asked of the broker unless `AMQP_URL` names one (`?frame_max=`): 16 KiB.
const FRAME_MAX: u32 = 16 * 1024;

impl Amqp {
    /// `audit_queue`: whether the topology includes the bounded `messaging_audit` queue (a copy of every
    /// event). Leaving it out does not delete one declared earlier: delete it on the broker.
    pub fn new(url: &str, prefix: &str, prefetch: u16, max_attempts: i32, audit_queue: bool) -> Arc<Self> {
        Arc::new(Amqp {
            url: url.to_string(),
            names: Names::new(prefix),
            prefetch,
            max_attempts,
            publisher: Mutex::new(None),
            generation: AtomicU64::new(0),
            broken: Arc::new(AtomicU64::new(0)),
            consumer_queues: std::sync::Mutex::new(Vec::new()),
            topology_version: AtomicU64::new(1),
            declared_version: AtomicU64::new(0),
            audit_queue,
        })
    }

    pub fn names(&self) -> &Names {
        &self.names
    }

    async fn connect(&self) -> Result<Connection, String> {
        let mut uri: lapin::uri::AMQPUri = self.url.parse().map_err(|e| format!("AMQP_URL is not an AMQP URL: {e}"))?;
        // lapin keeps two buffers of 32 frames per connection, filled with zeros when the frame size is
        // agreed: at RabbitMQ's 128 KiB that is 8 MiB resident per connection, over half of an idle
        // worker's memory. Events are a few KiB; a larger one is sent as several frames.
        uri.query.frame_max.get_or_insert(FRAME_MAX);
        tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect_uri(uri, ConnectionProperties::default()))
            .await
            .map_err(|_| "timed out connecting to the broker".to_string())?
            .map_err(|e| format!("cannot connect to the broker: {e}"))
    }

    /// Declares the whole topology (idempotent): the exchanges, the DLQ, the audit queue and the queues of
    /// this process's consumers. A durable queue exists only where a consumer reads it: a queue nobody
    /// reads keeps every event routed to it for ever (earlier builds declared such queues).
    pub async fn declare_topology(&self, ch: &Channel) -> Result<(), lapin::Error> {
        let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
        ch.exchange_declare(self.names.exchange().into(), ExchangeKind::Topic, durable, FieldTable::default()).await?;
        ch.exchange_declare(self.names.dlx().into(), ExchangeKind::Topic, durable, FieldTable::default()).await?;
        let q = QueueDeclareOptions { durable: true, ..Default::default() };
        ch.queue_declare(self.names.dlq().into(), q, queue_args()).await?;
        ch.queue_bind(
            self.names.dlq().into(),
            self.names.dlx().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
        if self.audit_queue {
            let mut audit_args = queue_args();
            audit_args.insert("x-max-length".into(), AMQPValue::LongLongInt(AUDIT_MAX_LENGTH));
            audit_args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(AUDIT_TTL_MS));
            audit_args.insert("x-overflow".into(), text("drop-head"));
            // A tap, not a record: transient, so the broker confirms an event without writing its copy
            // to disk (the persistent copies are in the work queues); it is emptied by a broker restart.
            let transient = QueueDeclareOptions { durable: false, ..Default::default() };
            ch.queue_declare(self.names.queue(AUDIT_QUEUE).into(), transient, audit_args).await?;
            ch.queue_bind(
                self.names.queue(AUDIT_QUEUE).into(),
                self.names.exchange().into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        }
        let extra = self.consumer_queues.lock().expect("not poisoned").clone();
        for (name, bindings) in extra {
            self.declare_queue(ch, &name, &bindings).await?;
        }
        Ok(())
    }

    /// A durable work queue that dead-letters into `messaging.dlx`, bound to the exchange.
    async fn declare_queue(&self, ch: &Channel, name: &str, bindings: &[String]) -> Result<(), lapin::Error> {
        let mut args = queue_args();
        args.insert("x-dead-letter-exchange".into(), text(&self.names.dlx()));
        let q = QueueDeclareOptions { durable: true, ..Default::default() };
        ch.queue_declare(self.names.queue(name).into(), q, args).await?;
        for b in bindings {
            ch.queue_bind(
                self.names.queue(name).into(),
                self.names.exchange().into(),
                b.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        }
        Ok(())
    }

    /// Removes everything [`Amqp::declare_topology`] declared under this prefix: the exchanges, the DLQ,
    /// the audit queue, the queues of the consumers this process started, and `extra_queues` (those of
    /// consumers in other processes: the composition root's `consumer_queues()` names the built-in ones).
    /// For tests and for tearing down a staging broker; never called by the server.
    pub async fn delete_topology(&self, extra_queues: &[&str]) -> Result<(), String> {
        let conn = self.connect().await?;
        let ch = conn.create_channel().await.map_err(|e| e.to_string())?;
        let mut queues: Vec<String> =
            self.consumer_queues.lock().expect("not poisoned").iter().map(|(n, _)| n.clone()).collect();
        queues.push(AUDIT_QUEUE.into());
        queues.extend(extra_queues.iter().map(|s| s.to_string()));
        for q in queues {
            let _ = ch.queue_delete(self.names.queue(&q).into(), QueueDeleteOptions::default()).await;
        }
        let _ = ch.queue_delete(self.names.dlq().into(), QueueDeleteOptions::default()).await;
        for x in [self.names.exchange(), self.names.dlx()] {
            let _ = ch.exchange_delete(x.into(), ExchangeDeleteOptions::default()).await;
        }
        let _ = conn.close(200, "bye".into()).await;
        Ok(())
    }

    async fn publisher(&self) -> Result<tokio::sync::MappedMutexGuard<'_, Channel>, String> {
        let mut guard = self.publisher.lock().await;
        let generation = self.generation.load(Ordering::SeqCst);
        let healthy = guard.as_ref().is_some_and(|(c, ch)| c.status().connected() && ch.status().connected())
            && self.broken.load(Ordering::SeqCst) != generation;
        let wanted = self.topology_version.load(Ordering::SeqCst);
        if healthy && self.declared_version.load(Ordering::SeqCst) != wanted {
            let (_, ch) = guard.as_ref().expect("healthy");
            self.declare_topology(ch).await.map_err(|e| format!("cannot declare the topology: {e}"))?;
            self.declared_version.store(wanted, Ordering::SeqCst);
        }
        if !healthy {
            if let Some((conn, _)) = guard.take()
                && conn.status().connected()
            {
                let _ = tokio::time::timeout(CONNECT_TIMEOUT, conn.close(200, "reconnecting".into())).await;
            }
            let conn = self.connect().await?;
            let ch = conn.create_channel().await.map_err(|e| e.to_string())?;
            self.declare_topology(&ch).await.map_err(|e| format!("cannot declare the topology: {e}"))?;
            ch.confirm_select(ConfirmSelectOptions::default()).await.map_err(|e| e.to_string())?;
            self.declared_version.store(wanted, Ordering::SeqCst);
            self.generation.fetch_add(1, Ordering::SeqCst);
            *guard = Some((conn, ch));
        }
        Ok(tokio::sync::MutexGuard::map(guard, |g| &mut g.as_mut().expect("connected above").1))
    }

    async fn drop_publisher(&self) {
        if let Some((conn, _)) = self.publisher.lock().await.take() {
            let _ = conn.close(200, "reconnecting".into()).await;
        }
    }

    /// Starts a consumer task (reconnecting with backoff) under `tracker`, stopping at `shutdown`.
    pub fn start_consumer(
        self: &Arc<Self>,
        db: DatabaseConnection,
        consumer: SharedConsumer,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) {
        self.consumer_queues.lock().expect("not poisoned").push((consumer.name().to_string(), consumer.bindings()));
        self.topology_version.fetch_add(1, Ordering::SeqCst);
        let this = self.clone();
        tracker.spawn(async move {
            const FIRST_WAIT: Duration = Duration::from_millis(200);
            let mut backoff = FIRST_WAIT;
            while !shutdown.is_cancelled() {
                let mut consumed = false;
                match this.consume(&db, consumer.clone(), &shutdown, &mut consumed).await {
                    Ok(()) => break,
                    Err(e) => {
                        // A consumer that was reading when it lost the broker starts its waits afresh: a
                        // later drop is not paid for with the last outage's longest wait.
                        if consumed {
                            backoff = FIRST_WAIT;
                        }
                        tracing::warn!(queue = consumer.name(), error = %e, "consumer lost the broker; reconnecting in {backoff:?}");
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                }
            }
        });
    }

    /// Consumes until shutdown (`Ok`) or until the connection fails (`Err`); `consumed` tells whether it
    /// got as far as reading its queue.
    async fn consume(
        &self,
        db: &DatabaseConnection,
        c: SharedConsumer,
        shutdown: &CancellationToken,
        consumed: &mut bool,
    ) -> Result<(), String> {
        let conn = self.connect().await?;
        let ch = conn.create_channel().await.map_err(|e| e.to_string())?;
        self.declare_topology(&ch).await.map_err(|e| e.to_string())?;
        self.declare_queue(&ch, c.name(), &c.bindings()).await.map_err(|e| e.to_string())?;
        ch.basic_qos(self.prefetch, BasicQosOptions::default()).await.map_err(|e| e.to_string())?;
        // A second channel, with confirms, for retries and dead letters.
        let out = conn.create_channel().await.map_err(|e| e.to_string())?;
        out.confirm_select(ConfirmSelectOptions::default()).await.map_err(|e| e.to_string())?;
        let queue = self.names.queue(c.name());
        let stream = ch
            .basic_consume(
                queue.as_str().into(),
                format!("turumba-{}", uuid::Uuid::now_v7()).into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(queue, "consuming");
        *consumed = true;
        // Deliveries already waiting are taken together, up to the consumer's batch size (one by default).
        let mut stream = stream.ready_chunks(consumer::batch_size(c.as_ref(), usize::from(self.prefetch)));
        loop {
            let chunk = tokio::select! {
                _ = shutdown.cancelled() => {
                    let _ = conn.close(200, "shutdown".into()).await;
                    return Ok(());
                }
                d = stream.next() => d,
            };
            let Some(chunk) = chunk else { return Err("the broker closed the consumer".into()) };
            let deliveries = chunk.into_iter().collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
            // The decodable events are handled together; an undecodable one goes straight to the DLQ.
            let mut events = Vec::with_capacity(deliveries.len());
            let mut decode_errors = Vec::with_capacity(deliveries.len());
            for d in &deliveries {
                match serde_json::from_slice::<EventEnvelope>(&d.data) {
                    Ok(event) => {
                        events.push(event);
                        decode_errors.push(None);
                    }
                    Err(e) => decode_errors.push(Some(format!("undecodable event: {e}"))),
                }
            }
            let mut handled = consumer::process_batch(db, c.as_ref(), &events).await.into_iter();
            let mut failed = Vec::new();
            let mut done = Vec::new();
            for (d, decode_error) in deliveries.into_iter().zip(decode_errors) {
                let outcome = match decode_error {
                    None => handled.next().expect("one outcome per event"),
                    // An event that cannot be read never will be.
                    Some(e) => Outcome::Rejected(e),
                };
                consumer::count(c.name(), &outcome);
                if outcome.is_failure() { failed.push((d, outcome)) } else { done.push(d) }
            }
            // Handled deliveries are acknowledged first (all at once when the whole chunk was handled),
            // so a failure's retry does not hold them up.
            if failed.is_empty() {
                if let Some(last) = done.last() {
                    last.ack(BasicAckOptions { multiple: true }).await.map_err(|e| e.to_string())?;
                }
            } else {
                for d in &done {
                    d.ack(BasicAckOptions::default()).await.map_err(|e| e.to_string())?;
                }
            }
            for (d, outcome) in failed {
                if !self.retry_or_dead_letter(&conn, &out, c.name(), d, &outcome, shutdown).await? {
                    return Ok(());
                }
            }
        }
    }

    /// Settles a delivery whose handling failed (already counted): republished to its queue with
    /// `x-attempts` + 1 after its wait (the backoff, or the handler's own), or, after the last attempt
    /// (at once when it was refused for good or cannot be decoded), dead-lettered with its last error;
    /// then acknowledged. A republish the broker does not confirm hands the delivery back (nack,
    /// requeue) instead of losing it. `Ok(false)`: shutdown came during the wait (the delivery stays
    /// unacknowledged and the broker redelivers it).
    async fn retry_or_dead_letter(
        &self,
        conn: &Connection,
        out: &Channel,
        consumer: &str,
        delivery: lapin::message::Delivery,
        outcome: &Outcome,
        shutdown: &CancellationToken,
    ) -> Result<bool, String> {
        let queue = self.names.queue(consumer);
        let attempts = header_int(&delivery.properties, "x-attempts").unwrap_or(0) + 1;
        let Some(settlement) = outcome.settlement(attempts, i64::from(self.max_attempts)) else { return Ok(true) };
        let (exchange, routing_key, err) = match settlement {
            Settlement::DeadLetter { error } => {
                tracing::error!(queue, attempts, error, "dead-lettering event");
                metrics::counter!("consumer_dead_lettered_total", "queue" => consumer.to_string()).increment(1);
                (self.names.dlx(), consumer.to_string(), error)
            }
            Settlement::Retry { error, wait } => {
                tracing::warn!(queue, attempts, error, "handler failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => {
                        // Unacked: the broker redelivers it to the next consumer.
                        let _ = conn.close(200, "shutdown".into()).await;
                        return Ok(false);
                    }
                    _ = tokio::time::sleep(wait) => {}
                }
                (String::new(), queue.clone(), error)
            }
        };
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        headers.insert("x-attempts".into(), AMQPValue::LongLongInt(attempts));
        headers.insert("x-last-error".into(), text(&err.chars().take(1000).collect::<String>()));
        headers.insert("x-original-queue".into(), text(consumer));
        let props = delivery.properties.clone().with_headers(headers).with_delivery_mode(2);
        let confirm = out
            .basic_publish(
                exchange.as_str().into(),
                routing_key.as_str().into(),
                BasicPublishOptions::default(),
                &delivery.data,
                props,
            )
            .await
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        if matches!(confirm, Confirmation::Ack(None)) {
            delivery.ack(BasicAckOptions::default()).await.map_err(|e| e.to_string())?;
        } else {
            // Could not re-queue it: hand it back to the broker instead of losing it.
            delivery.nack(BasicNackOptions { requeue: true, ..Default::default() }).await.map_err(|e| e.to_string())?;
        }
        Ok(true)
    }

    /// How many messages wait in a consumer's queue, and how many consumers it has (a passive
    /// declaration: nothing is created).
    pub async fn queue_stats(&self, consumer: &str) -> Result<(u32, u32), String> {
        let conn = self.connect().await?;
        let ch = conn.create_channel().await.map_err(|e| e.to_string())?;
        let q = ch
            .queue_declare(
                self.names.queue(consumer).as_str().into(),
                QueueDeclareOptions { passive: true, ..Default::default() },
                FieldTable::default(),
            )
            .await
            .map_err(|e| e.to_string());
        let _ = conn.close(200, "counted".into()).await;
        let q = q?;
        Ok((q.message_count(), q.consumer_count()))
    }

    /// Up to `limit` dead letters, left in the queue.
    pub async fn dlq_list(&self, limit: usize) -> Result<Vec<DeadLetterView>, String> {
        let conn = self.connect().await?;
        let ch = conn.create_channel().await.map_err(|e| e.to_string())?;
        self.declare_topology(&ch).await.map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(msg) =
                ch.basic_get(self.names.dlq().into(), BasicGetOptions::default()).await.map_err(|e| e.to_string())?
            else {
                break;
            };
            let d = msg.delivery;
            out.push(DeadLetterView {
                queue: header_text(&d.properties, "x-original-queue")
                    .unwrap_or_else(|| d.routing_key.as_str().to_string()),
                error: header_text(&d.properties, "x-last-error").unwrap_or_default(),
                attempts: header_int(&d.properties, "x-attempts").unwrap_or(0),
                event: serde_json::from_slice(&d.data).map_err(|e| e.to_string()),
            });
        }
        // Closing without acking returns every message to the queue.
        let _ = conn.close(200, "listed".into()).await;
        Ok(out)
    }

    /// Takes up to `limit` decodable dead letters off the queue, handing each to `replay` (which
    /// writes it back to the outbox) before acknowledging it. Returns how many were replayed.
    pub async fn dlq_take<F, Fut>(&self, limit: usize, mut replay: F) -> Result<usize, String>
    where
        F: FnMut(EventEnvelope) -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let conn = self.connect().await?;
        let ch = conn.create_channel().await.map_err(|e| e.to_string())?;
        self.declare_topology(&ch).await.map_err(|e| e.to_string())?;
        let mut n = 0;
        while n < limit {
            let Some(msg) =
                ch.basic_get(self.names.dlq().into(), BasicGetOptions::default()).await.map_err(|e| e.to_string())?
            else {
                break;
            };
            let d = msg.delivery;
            match serde_json::from_slice::<EventEnvelope>(&d.data) {
                Ok(event) => {
                    replay(event).await?;
                    d.ack(BasicAckOptions::default()).await.map_err(|e| e.to_string())?;
                    n += 1;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "skipping an undecodable dead letter");
                    d.nack(BasicNackOptions { requeue: true, ..Default::default() })
                        .await
                        .map_err(|e| e.to_string())?;
                    break;
                }
            }
        }
        let _ = conn.close(200, "replayed".into()).await;
        Ok(n)
    }
}

#[async_trait]
impl Transport for Amqp {
    async fn send(&self, events: &[EventEnvelope]) -> Result<Confirms, Unavailable> {
        let sent = async {
            let ch = self.publisher().await?;
            let generation = self.generation.load(Ordering::SeqCst);
            let mut confirms = Vec::with_capacity(events.len());
            for e in events {
                let payload = serde_json::to_vec(e).map_err(|err| err.to_string())?;
                let confirm = ch
                    .basic_publish(
                        self.names.exchange().into(),
                        e.event_type.as_str().into(),
                        BasicPublishOptions { mandatory: true, ..Default::default() },
                        &payload,
                        persistent_json(&e.event_id.to_string()),
                    )
                    .await
                    .map_err(|err| err.to_string())?;
                confirms.push(confirm);
            }
            Ok::<_, String>((generation, confirms))
        }
        .await;
        let (generation, confirms) = match sent {
            Ok(sent) => sent,
            Err(e) => {
                self.drop_publisher().await;
                return Err(Unavailable(e));
            }
        };
        // The deadline runs from the hand-over, however late the relay comes to await the confirms.
        let deadline = tokio::time::Instant::now() + CONFIRM_TIMEOUT;
        let broken = self.broken.clone();
        Ok(Box::pin(async move {
            let mut outcomes = Vec::with_capacity(confirms.len());
            for confirm in confirms {
                let c = match tokio::time::timeout_at(deadline, confirm).await {
                    Ok(Ok(c)) => c,
                    Ok(Err(err)) => {
                        broken.store(generation, Ordering::SeqCst);
                        return Err(Unavailable(err.to_string()));
                    }
                    Err(_) => {
                        broken.store(generation, Ordering::SeqCst);
                        return Err(Unavailable("timed out waiting for publisher confirms".to_string()));
                    }
                };
                outcomes.push(match c {
                    Confirmation::Ack(None) => Ok(()),
                    Confirmation::Ack(Some(returned)) => Err(format!("unroutable: {}", returned.reply_text)),
                    Confirmation::Nack(_) => Err("the broker refused the event (nack)".to_string()),
                    Confirmation::NotRequested => Err("publisher confirms are off".to_string()),
                });
            }
            Ok(outcomes)
        }))
    }

    async fn check(&self) -> Result<(), String> {
        self.publisher().await.map(|_| ())
    }

    fn name(&self) -> &'static str {
        "amqp"
    }
}
