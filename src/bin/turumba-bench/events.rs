//! `turumba-bench events`: outbox → relay → transport latency at an offered rate, then relay throughput
//! on a backlog, and with RabbitMQ the raw publish-with-confirms ceiling on the same machine.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use sea_orm::{DatabaseConnection, DatabaseTransaction};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use turumba::modules::events::{
    Amqp, Confirms, Consumer, EventBus, EventEnvelope, EventMeta, HandlerError, InProcess, Relay, RelaySettings,
    Transport, Unavailable,
};
use uuid::Uuid;

use crate::{drop_db, fresh_db, ms, pct};

/// What the events benchmark runs against and how hard.
#[derive(clap::Args, Debug)]
pub struct EventsArgs {
    /// `sqlite` (a temp file) or a postgres:// URL (a fresh database is created and dropped).
    #[arg(long, default_value = "sqlite")]
    pub database: String,
    /// RabbitMQ URL; without it the in-process transport is measured.
    #[arg(long)]
    pub amqp: Option<String>,
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Seconds of the same load before the measured ones (connections opened, caches warm); their
    /// events are published but not counted.
    #[arg(long, default_value_t = 1)]
    pub warmup: u64,
    #[arg(long, default_value_t = 20000)]
    pub backlog: usize,
    /// Relay batch size (the product's default).
    #[arg(long, default_value_t = 500)]
    pub batch: u64,
    /// Concurrent writers sharing the offered rate (one commit per event each).
    #[arg(long, default_value_t = 8)]
    pub writers: u64,
    /// Deliveries the bench consumer handles in one transaction (1 = one commit per event).
    #[arg(long, default_value_t = 64)]
    pub consumer_batch: usize,
    /// Leave out the `messaging_audit` queue (`TURUMBA_EVENTS__AUDIT_QUEUE=false`).
    #[arg(long)]
    pub no_audit_queue: bool,
}

/// Wraps the real transport and notes when each event was confirmed.
struct Timed {
    inner: Arc<dyn Transport>,
    confirmed: Arc<Mutex<HashMap<Uuid, Instant>>>,
    /// When the relay handed each event to the transport (claim done, publish starting).
    handed: Mutex<HashMap<Uuid, Instant>>,
    /// Batches handed over (relay passes that published something).
    sends: AtomicU64,
}

#[async_trait]
impl Transport for Timed {
    async fn send(&self, events: &[EventEnvelope]) -> Result<Confirms, Unavailable> {
        let handed = Instant::now();
        self.sends.fetch_add(1, Ordering::Relaxed);
        {
            let mut map = self.handed.lock().unwrap();
            for e in events {
                map.entry(e.event_id).or_insert(handed);
            }
        }
        let confirms = self.inner.send(events).await?;
        // The confirms are watched by a task of their own, so the time noted is when the broker's
        // answer arrived, not when the relay came round to look at it.
        let (ids, confirmed): (Vec<Uuid>, _) = (events.iter().map(|e| e.event_id).collect(), self.confirmed.clone());
        let watcher = tokio::spawn(async move {
            let out = confirms.await?;
            let now = Instant::now();
            let mut map = confirmed.lock().unwrap();
            for (id, r) in ids.iter().zip(&out) {
                if r.is_ok() {
                    map.entry(*id).or_insert(now);
                }
            }
            Ok(out)
        });
        Ok(Box::pin(async move { watcher.await.map_err(|e| Unavailable(e.to_string()))? }))
    }
    async fn check(&self) -> Result<(), String> {
        self.inner.check().await
    }
    fn name(&self) -> &'static str {
        self.inner.name()
    }
}

/// A consumer that does what every real one does (its transaction and processed-event record), taking
/// up to `batch` waiting deliveries in one transaction.
struct Sink {
    batch: usize,
}

#[async_trait]
impl Consumer for Sink {
    fn name(&self) -> &str {
        "bench_sink"
    }
    fn bindings(&self) -> Vec<String> {
        vec!["bench.#".into()]
    }
    async fn handle(&self, _txn: &DatabaseTransaction, _event: &EventEnvelope) -> Result<(), HandlerError> {
        Ok(())
    }
    fn batch_size(&self) -> usize {
        self.batch
    }
}

async fn commit_one(db: &DatabaseConnection) -> (Uuid, Instant) {
    let txn = turumba::db::begin_write(db).await.expect("begin");
    let mut bus = EventBus::new(EventMeta::default());
    bus.emit("bench.event", "bench", Uuid::now_v7(), None, serde_json::json!({"n": 1}));
    let id = bus.events()[0].event_id;
    bus.flush(&txn).await.expect("flush");
    txn.commit().await.expect("commit");
    (id, Instant::now())
}

pub async fn run(args: EventsArgs) {
    let EventsArgs { database, amqp, rate, seconds, warmup, backlog, batch, writers, consumer_batch, no_audit_queue } =
        args;
    let tmp = tempfile::tempdir().expect("temp dir");
    let (url, pg_cleanup) = fresh_db(&database, tmp.path()).await;
    let pool: u32 = std::env::var("BENCH_POOL").ok().and_then(|v| v.parse().ok()).unwrap_or(16);
    let db = turumba::db::connect(&url, pool).await.expect("connect");
    turumba::db::migrate_up(&db).await.expect("migrate");
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    // RabbitMQ's consumer is stopped before the throughput phase, so that phase measures the relay, not
    // the relay racing a consumer for the same two cores (the raw ceiling runs without one too).
    let consumer_stop = shutdown.child_token();
    let prefix = format!("bench{}.", &Uuid::new_v4().simple().to_string()[..8]);
    let (inner, amqp_handle): (Arc<dyn Transport>, Option<Arc<Amqp>>) = match &amqp {
        Some(u) => {
            let a = Amqp::new(u, &prefix, 256, 5, !no_audit_queue);
            a.start_consumer(db.clone(), Arc::new(Sink { batch: consumer_batch }), consumer_stop.clone(), &tracker);
            (a.clone(), Some(a))
        }
        None => (
            InProcess::start(
                db.clone(),
                vec![Arc::new(Sink { batch: consumer_batch })],
                4096,
                5,
                shutdown.clone(),
                &tracker,
            ),
            None,
        ),
    };
    let timed = Arc::new(Timed {
        inner,
        confirmed: Arc::new(Mutex::new(HashMap::new())),
        handed: Mutex::new(HashMap::new()),
        sends: AtomicU64::new(0),
    });
    let settings = RelaySettings {
        batch_size: batch,
        poll_interval: Duration::from_millis(50),
        max_attempts: 10,
        retention: chrono::Duration::days(7),
        listen_url: url.starts_with("postgres").then(|| url.clone()),
    };
    let wake = Arc::new(Notify::new());
    let label = format!(
        "{} + {}",
        if url.starts_with("sqlite") { "SQLite" } else { "PostgreSQL" },
        if amqp.is_some() { "RabbitMQ" } else { "in-process" }
    );
    println!(
        "## {label} ({} cores, relay batch {batch}, consumer batch {consumer_batch}{})",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        if amqp.is_some() && no_audit_queue { ", no audit queue" } else { "" }
    );

    // 1. Latency at a steady rate.
    let relay = Relay::new(db.clone(), timed.clone(), settings.clone(), wake.clone());
    let stop = CancellationToken::new();
    let relay_task = tokio::spawn(relay.run(stop.clone()));
    let per_writer = (rate * seconds / writers) as usize;
    let warm_per_writer = (rate * warmup / writers) as usize;
    let total = per_writer * writers as usize;
    let interval = Duration::from_secs_f64(writers as f64 / rate as f64);
    let began = Instant::now();
    let start = began + interval * warm_per_writer as u32;
    let mut handles = Vec::new();
    for w in 0..writers {
        let (db, wake) = (db.clone(), wake.clone());
        handles.push(tokio::spawn(async move {
            let mut out = Vec::with_capacity(per_writer);
            // Writers are staggered so the offered load is even.
            let offset = interval.mul_f64(w as f64 / writers as f64);
            for i in 0..warm_per_writer + per_writer {
                let due = began + offset + interval * i as u32;
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    tokio::time::sleep(wait).await;
                }
                let event = commit_one(&db).await;
                wake.notify_one();
                if i >= warm_per_writer {
                    out.push(event);
                }
            }
            out
        }));
    }
    let mut committed = Vec::with_capacity(total);
    for h in handles {
        committed.extend(h.await.expect("writer"));
    }
    let offered = total as f64 / start.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(60);
    let warm = warm_per_writer * writers as usize;
    while timed.confirmed.lock().unwrap().len() < warm + total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    let _ = relay_task.await;
    let confirmed = timed.confirmed.lock().unwrap().clone();
    let mut lat: Vec<Duration> =
        committed.iter().filter_map(|(id, t)| confirmed.get(id).map(|c| c.saturating_duration_since(*t))).collect();
    lat.sort();
    println!(
        "latency commit→confirmed at {offered:.0} events/s offered ({} events, {} confirmed): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        total,
        lat.len(),
        pct(&lat, 0.50).as_secs_f64() * 1e3,
        pct(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    // Where the time goes: commit → handed to the transport (wake-up, claim, decode) and handed →
    // confirmed (the broker), each with its own distribution, and the stage the slowest 1 % spent most in.
    let handed = timed.handed.lock().unwrap().clone();
    let mut split: Vec<(Duration, Duration)> = committed
        .iter()
        .filter_map(|(id, t)| {
            let h = handed.get(id)?;
            let c = confirmed.get(id)?;
            Some((h.saturating_duration_since(*t), c.saturating_duration_since(*h)))
        })
        .collect();
    let mut before: Vec<Duration> = split.iter().map(|s| s.0).collect();
    let mut broker: Vec<Duration> = split.iter().map(|s| s.1).collect();
    before.sort();
    broker.sort();
    split.sort_by_key(|s| s.0 + s.1);
    let tail = &split[split.len() - (split.len() / 100).max(1)..];
    let tail_before = tail.iter().filter(|s| s.0 > s.1).count();
    println!(
        "  commit→handed to transport: p50 {:.2} ms, p99 {:.2} ms; handed→confirmed: p50 {:.2} ms, p99 {:.2} ms; of the slowest 1 %, {} of {} spent longer before the transport",
        pct(&before, 0.50).as_secs_f64() * 1e3,
        pct(&before, 0.99).as_secs_f64() * 1e3,
        pct(&broker, 0.50).as_secs_f64() * 1e3,
        pct(&broker, 0.99).as_secs_f64() * 1e3,
        tail_before,
        tail.len()
    );
    let sends = timed.sends.load(Ordering::Relaxed).max(1);
    println!(
        "  relay batches during the latency run: {sends} ({:.1} events each)",
        (warm + total) as f64 / sends as f64
    );

    // 2. Throughput: drain a backlog.
    consumer_stop.cancel();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for chunk in 0..backlog.div_ceil(500) {
        let txn = turumba::db::begin_write(&db).await.expect("begin");
        let mut bus = EventBus::new(EventMeta::default());
        for _ in 0..500.min(backlog - chunk * 500) {
            bus.emit("bench.event", "bench", Uuid::now_v7(), None, serde_json::json!({"n": 2}));
        }
        bus.flush(&txn).await.expect("flush");
        txn.commit().await.expect("commit");
    }
    timed.confirmed.lock().unwrap().clear();
    let relay = Relay::new(db.clone(), timed.clone(), settings.clone(), wake.clone());
    let started = Instant::now();
    loop {
        let o = relay.pass().await.expect("pass");
        if o.published == 0 && o.failed == 0 && !o.unavailable {
            break;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let n = timed.confirmed.lock().unwrap().len();
    let note = if amqp.is_some() { "consumer stopped" } else { "in-process consumer acknowledging each event" };
    println!("relay throughput: {n} events in {secs:.2} s = {:.0} events/s (batch {batch}, {note})", n as f64 / secs);

    // 3. The raw broker ceiling.
    if let Some(u) = &amqp {
        let conn = Connection::connect(u, ConnectionProperties::default()).await.expect("connect");
        let ch = conn.create_channel().await.expect("channel");
        ch.confirm_select(ConfirmSelectOptions::default()).await.expect("confirms");
        let q = format!("{prefix}raw");
        declare_raw_queue(&ch, &q).await;
        let payload = raw_payload();
        let n = backlog;
        let secs = publish_confirmed(&ch, &q, &payload, n as u64, batch).await;
        println!(
            "raw RabbitMQ publish+confirm (persistent, batch {batch}): {n} in {secs:.2} s = {:.0} msg/s",
            n as f64 / secs
        );
        // The broker's own latency floor: one persistent message at a time at the offered rate, each
        // timed from publish to its confirm (no database, no relay).
        let ch = Arc::new(ch);
        let latencies = Arc::new(Mutex::new(Vec::with_capacity((rate * seconds) as usize)));
        let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
        let mut pending = Vec::new();
        for _ in 0..rate * seconds {
            ticker.tick().await;
            let (ch, q, payload, latencies) = (ch.clone(), q.clone(), payload.clone(), latencies.clone());
            pending.push(tokio::spawn(async move {
                let t = Instant::now();
                let confirm = ch
                    .basic_publish(
                        "".into(),
                        q.as_str().into(),
                        BasicPublishOptions::default(),
                        &payload,
                        BasicProperties::default().with_delivery_mode(2),
                    )
                    .await
                    .expect("publish");
                confirm.await.expect("confirm");
                latencies.lock().unwrap().push(t.elapsed());
            }));
        }
        for p in pending {
            let _ = p.await;
        }
        let mut l = latencies.lock().unwrap().clone();
        l.sort();
        let pct = |p: f64| ms(l[((l.len() as f64 * p) as usize).min(l.len() - 1)]);
        println!(
            "raw RabbitMQ publish→confirm latency at {rate}/s, one message at a time ({} messages): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            l.len(),
            pct(0.50),
            pct(0.99),
            ms(*l.last().unwrap())
        );
        let _ = ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default()).await;
        let _ = conn.close(200, "bye".into()).await;
    }

    shutdown.cancel();
    tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await;
    if let Some(a) = amqp_handle {
        let _ = a.delete_topology(&["bench_sink"]).await;
    }
    db.close().await.ok();
    drop_db(pg_cleanup).await;
}

/// A queue of the same kind as the product's (durable, classic version 2), for the raw broker ceiling.
async fn declare_raw_queue(ch: &lapin::Channel, q: &str) {
    let mut args = FieldTable::default();
    args.insert("x-queue-version".into(), lapin::types::AMQPValue::LongLongInt(2));
    ch.queue_declare(q.into(), QueueDeclareOptions { durable: true, ..Default::default() }, args).await.expect("queue");
}

/// An event envelope as the relay publishes it.
fn raw_payload() -> Vec<u8> {
    serde_json::to_vec(&EventEnvelope::new(
        &EventMeta::default(),
        "bench.raw",
        "bench",
        Uuid::now_v7(),
        None,
        serde_json::json!({"n": 3}),
    ))
    .expect("json")
}

/// `n` persistent publishes to `q`, `batch` at a time, each batch waiting for its confirms: seconds taken.
async fn publish_confirmed(ch: &lapin::Channel, q: &str, payload: &[u8], n: u64, batch: u64) -> f64 {
    let started = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(batch.max(1) as usize) {
        let mut confirms = Vec::with_capacity(chunk.len());
        for _ in chunk {
            confirms.push(
                ch.basic_publish(
                    "".into(),
                    q.into(),
                    BasicPublishOptions::default(),
                    payload,
                    BasicProperties::default().with_delivery_mode(2),
                )
                .await
                .expect("publish"),
            );
        }
        for c in confirms {
            c.await.expect("confirm");
        }
    }
    started.elapsed().as_secs_f64()
}

/// The raw RabbitMQ ceiling on its own connection: `n` persistent publishes with confirms, `batch` at
/// a time, to a queue of its own (deleted after); messages per second.
pub(crate) async fn raw_rabbitmq_rate(url: &str, n: u64, batch: u64) -> f64 {
    let conn = Connection::connect(url, ConnectionProperties::default()).await.expect("connect to RabbitMQ");
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default()).await.expect("confirms");
    let q = format!("turumba_bench_raw_{}", &Uuid::new_v4().simple().to_string()[..8]);
    declare_raw_queue(&ch, &q).await;
    let secs = publish_confirmed(&ch, &q, &raw_payload(), n, batch).await;
    let _ = ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default()).await;
    let _ = conn.close(200, "bye".into()).await;
    n as f64 / secs
}
