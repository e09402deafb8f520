//! Benchmarks of the event pipeline and of contacts (figures, not tests; results go in BENCHMARKS.md).
//!
//! ```text
//! cargo run --release --bin turumba-bench -- contacts --database sqlite --rows 100000
//! cargo run --release --bin turumba-bench -- gen-contacts --rows 100000 --out contacts.csv
//! ```
//!
//! ```text
//! cargo run --release --bin turumba-bench -- adapters --sends 20000 --concurrency 32
//! cargo run --release --bin turumba-bench -- smpp --sends 20000 --concurrency 64
//! ```
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
use std::sync::atomic::{AtomicU64, Ordering};
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
    Amqp, Confirms, Consumer, EventBus, EventEnvelope, EventMeta, InProcess, Relay, RelaySettings, Transport,
    Unavailable,
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
        /// Seconds of the same load before the measured ones (connections opened, caches warm); their
        /// events are published but not counted.
        #[arg(long, default_value_t = 1)]
        warmup: u64,
        #[arg(long, default_value_t = 20000)]
        backlog: usize,
        /// Relay batch size (the product's default).
        #[arg(long, default_value_t = 500)]
        batch: u64,
        /// Concurrent writers sharing the offered rate (one commit per event each).
        #[arg(long, default_value_t = 8)]
        writers: u64,
        /// Deliveries the bench consumer handles in one transaction (1 = one commit per event).
        #[arg(long, default_value_t = 64)]
        consumer_batch: usize,
        /// Leave out the `messaging_audit` queue (`TURUMBA_EVENTS__AUDIT_QUEUE=false`).
        #[arg(long)]
        no_audit_queue: bool,
    },
    /// Contacts: import of a generated CSV, a segment count with attribute filters, Directory streaming.
    Contacts {
        /// `sqlite` (a temp file) or a postgres:// URL (a fresh database is created and dropped).
        #[arg(long, default_value = "sqlite")]
        database: String,
        #[arg(long, default_value_t = 100_000)]
        rows: u64,
    },
    /// Provider adapter send throughput over HTTP keep-alive against a local server answering in the
    /// Telegram Bot API format (the server runs on the same cores).
    Adapters {
        #[arg(long, default_value_t = 20_000)]
        sends: u64,
        /// Sends in flight at once.
        #[arg(long, default_value_t = 32)]
        concurrency: u64,
    },
    /// SMPP `submit_sm` throughput on one windowed bind against a minimal local SMSC (same cores).
    Smpp {
        #[arg(long, default_value_t = 20_000)]
        sends: u64,
        #[arg(long, default_value_t = 64)]
        concurrency: u64,
    },
    /// Writes the generated contacts CSV the contacts benchmark imports (phone, email, names, attributes, tags).
    GenContacts {
        #[arg(long, default_value_t = 100_000)]
        rows: u64,
        #[arg(long, short)]
        out: std::path::PathBuf,
    },
}

/// A deterministic contacts CSV: valid Ethiopian mobile numbers, e-mails, names, a program (10 values),
/// a score (0–99), an enrolment date and one or two tags.
fn generate_contacts_csv(rows: u64, out: &std::path::Path) {
    use std::io::Write;
    let mut w = std::io::BufWriter::new(std::fs::File::create(out).expect("create CSV"));
    writeln!(w, "phone,email,first_name,last_name,attributes.program,attributes.score,attributes.enrolled,tags")
        .unwrap();
    for i in 0..rows {
        let day = 1 + (i % 28);
        let month = 1 + (i / 28) % 12;
        let tags = if i % 3 == 0 { "reminded;vip" } else { "reminded" };
        writeln!(
            w,
            "+25191{i:07},person{i}@example.org,First{i},Last{},cohort-{},{},2026-{month:02}-{day:02},{tags}",
            i % 977,
            i % 10,
            (i * 37) % 100
        )
        .unwrap();
    }
    w.flush().unwrap();
}

/// Peak resident memory of this process so far (VmHWM), in MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// A fresh database: a temp SQLite file or a new PostgreSQL database (dropped by `drop_db`).
async fn fresh_db(database: &str, tmp: &std::path::Path) -> (String, Option<(DatabaseConnection, String)>) {
    if database == "sqlite" {
        (format!("sqlite://{}/bench.db", tmp.display()), None)
    } else {
        let name = format!("turumba_bench_{}", &Uuid::new_v4().simple().to_string()[..10]);
        let admin = sea_orm::Database::connect(database.to_string()).await.expect("connect");
        admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("create db");
        let (prefix, _) = database.rsplit_once('/').expect("URL has a database");
        (format!("{prefix}/{name}"), Some((admin, name)))
    }
}

async fn drop_db(cleanup: Option<(DatabaseConnection, String)>) {
    if let Some((admin, name)) = cleanup {
        let _ = admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
    }
}

async fn bench_contacts(database: String, rows: u64) {
    if let Ok(filter) = std::env::var("BENCH_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    }
    use turumba::modules::contacts::{Audience, ImportOptions, OnDuplicate};
    let tmp = tempfile::tempdir().expect("temp dir");
    let (url, cleanup) = fresh_db(&database, tmp.path()).await;
    let csv = tmp.path().join("contacts.csv");
    let t = Instant::now();
    generate_contacts_csv(rows, &csv);
    let size = std::fs::metadata(&csv).map(|m| m.len()).unwrap_or(0);
    println!("generated {rows} rows ({:.1} MiB) in {:.2} s", size as f64 / 1048576.0, t.elapsed().as_secs_f64());
    // The CPU part of an import row: E.164 parsing and validation (libphonenumber rules).
    let t = Instant::now();
    let region = turumba::modules::contacts::normalise::default_region(Some("ET"));
    for i in 0..10_000u64 {
        let _ = turumba::modules::contacts::normalise::normalise_phone(&format!("+25191{i:07}"), region);
    }
    println!("phone normalisation: {:.1} µs per number", t.elapsed().as_secs_f64() * 1e6 / 10_000.0);
    let settings = turumba::config::Settings::for_test(tmp.path(), &url);
    let state = turumba::app::build_state(settings, true, Vec::new()).await.expect("state");
    let (_, account) = state
        .accounts
        .create_verified_user("bench@example.org", "bench password 1", "Bench", "Bench")
        .await
        .expect("user");
    let scope = state.accounts.operator_scope(account).await.expect("scope");
    let rss_before = peak_rss_mib();
    let options = ImportOptions { mapping: None, on_duplicate: OnDuplicate::Skip, group_id: None, tag_ids: vec![] };
    let job = state.contacts.create_import(scope, None, Some("contacts.csv".into()), &options).await.expect("job");
    let t = Instant::now();
    let p = state.contacts.run_import(scope, job.id, csv.clone(), EventMeta::default(), |_| {}).await.expect("import");
    let secs = t.elapsed().as_secs_f64();
    println!(
        "import: {} rows, {} created, {} errors in {secs:.2} s ({:.0} rows/s); peak RSS {:.0} MiB (before the import {:.0} MiB)",
        p.total_rows,
        p.created,
        p.error_count,
        p.total_rows as f64 / secs,
        peak_rss_mib(),
        rss_before
    );
    let seg = state
        .contacts
        .create_segment(
            scope,
            "bench",
            None,
            &serde_json::json!([
                "attributes.score:ge:50",
                "attributes.program:in:cohort-1,cohort-2,cohort-3",
                "attributes.enrolled:ge:2026-06-01"
            ]),
        )
        .await
        .expect("segment");
    let mut times = Vec::new();
    let mut count = 0;
    for _ in 0..7 {
        let t = Instant::now();
        count = state.contacts.count_segment(scope, seg.id).await.expect("count");
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "segment count (3 attribute filters) over {rows} contacts: {count} matches; median {:.1} ms, best {:.1} ms",
        ms(times[3]),
        ms(times[0])
    );
    let all = state
        .contacts
        .create_segment(scope, "everyone", None, &serde_json::json!("phone:is_not_null"))
        .await
        .expect("segment");
    let audience = Audience { segment_ids: vec![all.id], ..Default::default() };
    for batch in [1000u64, 5000] {
        let t = Instant::now();
        let mut stream = state.directory.stream(scope, &audience, "sms", batch, None).await.expect("stream");
        let mut n = 0u64;
        while let Some(b) = stream.next_batch().await.expect("batch") {
            n += b.len() as u64;
        }
        let secs = t.elapsed().as_secs_f64();
        println!("directory stream (batch {batch}): {n} recipients in {secs:.2} s = {:.0} contacts/s", n as f64 / secs);
    }
    state.db.clone().close().await.ok();
    drop_db(cleanup).await;
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
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
    async fn handle(&self, _txn: &DatabaseTransaction, _event: &EventEnvelope) -> Result<(), String> {
        Ok(())
    }
    fn batch_size(&self) -> usize {
        self.batch
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
    let (database, amqp, rate, seconds, warmup, backlog, batch, writers, consumer_batch, no_audit_queue) =
        match Cli::parse() {
            Cli::Events {
                database,
                amqp,
                rate,
                seconds,
                warmup,
                backlog,
                batch,
                writers,
                consumer_batch,
                no_audit_queue,
            } => (database, amqp, rate, seconds, warmup, backlog, batch, writers, consumer_batch, no_audit_queue),
            Cli::Contacts { database, rows } => return bench_contacts(database, rows).await,
            Cli::GenContacts { rows, out } => return generate_contacts_csv(rows, &out),
            Cli::Adapters { sends, concurrency } => return bench_adapters(sends, concurrency).await,
            Cli::Smpp { sends, concurrency } => return bench_smpp(sends, concurrency).await,
        };
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
            let a = Amqp::new(u, &prefix, 256, 5).with_audit_queue(!no_audit_queue);
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
        // The same kind of queue as the product's (classic, version 2).
        let mut args = FieldTable::default();
        args.insert("x-queue-version".into(), lapin::types::AMQPValue::LongLongInt(2));
        ch.queue_declare(q.as_str().into(), QueueDeclareOptions { durable: true, ..Default::default() }, args)
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

/// A local server in the Telegram Bot API format, one worker (it shares the two cores with the client).
fn telegram_format_server() -> (String, actix_web::dev::ServerHandle) {
    use actix_web::{App, HttpResponse, HttpServer, web};
    let server = HttpServer::new(|| {
        App::new().default_service(web::to(|body: web::Bytes| async move {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            HttpResponse::Ok().json(serde_json::json!({"ok": true, "result": {
                "message_id": 1, "date": 1_763_800_000, "chat": {"id": 1, "type": "private"}, "text": v["text"]}}))
        }))
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .expect("bind")
    .disable_signals();
    let port = server.addrs()[0].port();
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    (format!("http://127.0.0.1:{port}"), handle)
}

async fn bench_adapters(sends: u64, concurrency: u64) {
    use turumba::modules::channels::adapter::ChannelContext;
    use turumba::modules::channels::credentials::{Credentials, TelegramCredentials};
    use turumba::modules::channels::providers::{http_client, telegram::Telegram};
    let (base, handle) = telegram_format_server();
    let adapter = Arc::new(Telegram::new(http_client()));
    let ctx = Arc::new(ChannelContext::standalone(Credentials::Telegram(TelegramCredentials {
        bot_token: "123456:bench-token".into(),
        base_url: Some(base),
    })));
    let run = |n: u64| send_many(adapter.clone(), ctx.clone(), n, concurrency, |i| format!("{}", 100_000 + i));
    run(1000).await; // warm the connection pool
    let (ok, elapsed) = run(sends).await;
    println!(
        "telegram-format HTTP adapter: {ok}/{sends} sends in {:.2} s = {:.0} sends/s ({concurrency} in flight, keep-alive pool)",
        elapsed.as_secs_f64(),
        ok as f64 / elapsed.as_secs_f64()
    );
    handle.stop(false).await;
}

/// The least an SMSC must do for the benchmark: accept any bind, answer every submit_sm.
async fn bench_smsc() -> u16 {
    use futures_util::{SinkExt, StreamExt};
    use rusmpp::pdus::{BindTransceiverResp, SubmitSmResp};
    use rusmpp::types::COctetString;
    use rusmpp::{Command, CommandStatus, Pdu};
    use std::str::FromStr;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut framed = tokio_util::codec::Framed::new(stream, rusmpp::tokio_codec::CommandCodec::new());
                let mut n = 0u64;
                while let Some(Ok(cmd)) = framed.next().await {
                    let pdu: Pdu = match cmd.pdu() {
                        Some(Pdu::BindTransceiver(_)) => Pdu::BindTransceiverResp(BindTransceiverResp::new(
                            COctetString::from_str("smsc").unwrap(),
                            None,
                        )),
                        Some(Pdu::SubmitSm(_)) => {
                            n += 1;
                            let id = COctetString::from_str(&format!("m{n}")).unwrap();
                            Pdu::SubmitSmResp(SubmitSmResp::builder().message_id(id).build())
                        }
                        Some(Pdu::EnquireLink) => Pdu::EnquireLinkResp,
                        _ => continue,
                    };
                    let resp = Command::builder()
                        .status(CommandStatus::EsmeRok)
                        .sequence_number(cmd.sequence_number())
                        .pdu(pdu);
                    if framed.send(resp).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

async fn bench_smpp(sends: u64, concurrency: u64) {
    use turumba::modules::channels::adapter::{ChannelContext, ProviderAdapter};
    use turumba::modules::channels::credentials::{Credentials, SmppCredentials};
    use turumba::modules::channels::providers::smpp::{Smpp, WINDOW};
    let port = bench_smsc().await;
    let adapter = Arc::new(Smpp::new(None, None));
    let ctx = Arc::new(ChannelContext::standalone(Credentials::Smpp(SmppCredentials {
        host: "127.0.0.1".into(),
        port,
        system_id: "bench".into(),
        password: "bench".into(),
        system_type: None,
        source_addr: "Turumba".into(),
        source_addr_ton: None,
        source_addr_npi: None,
        bind_type: "transceiver".into(),
    })));
    adapter.verify(&ctx).await.expect("bind");
    let run = |n: u64| send_many(adapter.clone(), ctx.clone(), n, concurrency, |i| format!("+2519{i:08}"));
    run(1000).await;
    let (ok, elapsed) = run(sends).await;
    println!(
        "smpp submit_sm on one bind: {ok}/{sends} in {:.2} s = {:.0} submit_sm/s (window {WINDOW}, {concurrency} sends queued)",
        elapsed.as_secs_f64(),
        ok as f64 / elapsed.as_secs_f64()
    );
}

/// Sends `n` messages through `adapter` with `concurrency` in flight; (how many succeeded, how long).
async fn send_many(
    adapter: Arc<dyn turumba::modules::channels::adapter::ProviderAdapter>,
    ctx: Arc<turumba::modules::channels::adapter::ChannelContext>,
    n: u64,
    concurrency: u64,
    to: impl Fn(u64) -> String,
) -> (usize, Duration) {
    use futures_util::StreamExt;
    use turumba::modules::channels::adapter::OutboundMessage;
    let t = Instant::now();
    let ok = futures_util::stream::iter(0..n)
        .map(|i| {
            let (adapter, ctx) = (adapter.clone(), ctx.clone());
            let m = OutboundMessage {
                message_id: Uuid::now_v7(),
                to: to(i),
                text: "Benchmark message from Turumba".into(),
                ..Default::default()
            };
            async move { adapter.send(&ctx, &m).await.is_ok() }
        })
        .buffer_unordered(concurrency as usize)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await;
    (ok, t.elapsed())
}
