//! Benchmarks of the event pipeline (figures, not tests; results go in BENCHMARKS.md).
//!
//! ```text
//! cargo run --release --bin turumba-bench -- events --database sqlite
//! cargo run --release --bin turumba-bench -- events --database postgres://postgres@127.0.0.1:5432/test \
//!     --amqp amqp://guest:guest@127.0.0.1:5672/%2f
//! ```
//!
//! 1. Latency: events are committed one per transaction at `--rate` per second for `--seconds`; the
//!    relay publishes them; the time from commit to the transport's confirmation is recorded per event.
//! 2. Throughput: `--backlog` events are committed first, then one relay drains them; events/s.
//! 3. With `--amqp`: the raw RabbitMQ publish-with-confirms rate on the same machine, same batch size
//!    (the ceiling the relay works under).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use clap::Parser;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use turumba::modules::events::{
    Amqp, Consumer, EventBus, EventEnvelope, EventMeta, InProcess, Relay, RelaySettings, Transport, Unavailable,
};
use uuid::Uuid;

#[derive(Parser, Debug)]
#[command(name = "turumba-bench")]
enum Cli {
    /// Outbox → relay → transport latency and throughput.
    Events {
        /// `sqlite` (a temp file) or a postgres:// URL (a fresh database is created and dropped).
        #[arg(long, default_value = "sqlite")]
        database: String,
        /// RabbitMQ URL; without it the in-process transport is measured.
        #[arg(long)]
        amqp: Option<String>,
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 20000)]
        backlog: usize,
        #[arg(long, default_value_t = 200)]
        batch: u64,
        /// Concurrent writers sharing the offered rate (one commit per event each).
        #[arg(long, default_value_t = 8)]
        writers: u64,
    },
}

/// Wraps the real transport and notes when each event was confirmed.
struct Timed {
    inner: Arc<dyn Transport>,
    confirmed: Mutex<HashMap<Uuid, Instant>>,
}

#[async_trait]
impl Transport for Timed {
    async fn publish(&self, events: &[EventEnvelope]) -> Result<Vec<Result<(), String>>, Unavailable> {
        let out = self.inner.publish(events).await?;
        let now = Instant::now();
        let mut map = self.confirmed.lock().unwrap();
        for (e, r) in events.iter().zip(&out) {
            if r.is_ok() {
                map.entry(e.event_id).or_insert(now);
            }
        }
        Ok(out)
    }
    async fn check(&self) -> Result<(), String> {
        self.inner.check().await
    }
    fn name(&self) -> &'static str {
        self.inner.name()
    }
}

/// A consumer that does what every real one does (its transaction and processed-event record).
struct Sink;

#[async_trait]
impl Consumer for Sink {
    fn name(&self) -> &str {
        "bench_sink"
    }
    fn bindings(&self) -> Vec<String> {
        vec!["bench.#".into()]
    }
    async fn handle(&self, _txn: &DatabaseTransaction, _event: &EventEnvelope) -> Result<(), String> {
        Ok(())
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
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

#[tokio::main]
async fn main() {
    let Cli::Events { database, amqp, rate, seconds, backlog, batch, writers } = Cli::parse();
    let tmp = tempfile::tempdir().expect("temp dir");
    let (url, pg_cleanup) = if database == "sqlite" {
        (format!("sqlite://{}/bench.db", tmp.path().display()), None)
    } else {
        let name = format!("turumba_bench_{}", &Uuid::new_v4().simple().to_string()[..10]);
        let admin = sea_orm::Database::connect(database.clone()).await.expect("connect");
        admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("create db");
        let (prefix, _) = database.rsplit_once('/').expect("URL has a database");
        (format!("{prefix}/{name}"), Some((admin, name)))
    };
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
            let a = Amqp::new(u, &prefix, 256, 5);
            a.start_consumer(db.clone(), Arc::new(Sink), consumer_stop.clone(), &tracker);
            (a.clone(), Some(a))
        }
        None => (InProcess::start(db.clone(), vec![Arc::new(Sink)], 4096, 5, shutdown.clone(), &tracker), None),
    };
    let timed = Arc::new(Timed { inner, confirmed: Mutex::new(HashMap::new()) });
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
    println!("## {label} ({} cores)", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0));

    // 1. Latency at a steady rate.
    let relay = Relay::new(db.clone(), timed.clone(), settings.clone(), wake.clone());
    let stop = CancellationToken::new();
    let relay_task = tokio::spawn(relay.run(stop.clone()));
    let per_writer = (rate * seconds / writers) as usize;
    let total = per_writer * writers as usize;
    let interval = Duration::from_secs_f64(writers as f64 / rate as f64);
    let start = Instant::now();
    let mut handles = Vec::new();
    for w in 0..writers {
        let (db, wake) = (db.clone(), wake.clone());
        handles.push(tokio::spawn(async move {
            let mut out = Vec::with_capacity(per_writer);
            // Writers are staggered so the offered load is even.
            let offset = interval.mul_f64(w as f64 / writers as f64);
            for i in 0..per_writer {
                let due = start + offset + interval * i as u32;
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    tokio::time::sleep(wait).await;
                }
                out.push(commit_one(&db).await);
                wake.notify_one();
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
    while timed.confirmed.lock().unwrap().len() < total && Instant::now() < deadline {
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
        ch.queue_declare(
            q.as_str().into(),
            QueueDeclareOptions { durable: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .expect("queue");
        let payload = serde_json::to_vec(&EventEnvelope::new(
            &EventMeta::default(),
            "bench.raw",
            "bench",
            Uuid::now_v7(),
            None,
            serde_json::json!({"n": 3}),
        ))
        .expect("json");
        let n = backlog;
        let started = Instant::now();
        for chunk in (0..n).collect::<Vec<_>>().chunks(batch as usize) {
            let mut confirms = Vec::with_capacity(chunk.len());
            for _ in chunk {
                confirms.push(
                    ch.basic_publish(
                        "".into(),
                        q.as_str().into(),
                        BasicPublishOptions::default(),
                        &payload,
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
        let secs = started.elapsed().as_secs_f64();
        println!(
            "raw RabbitMQ publish+confirm (persistent, batch {batch}): {n} in {secs:.2} s = {:.0} msg/s",
            n as f64 / secs
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
    if let Some((admin, name)) = pg_cleanup {
        let _ = admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
    }
}
