//! `turumba-bench accepts`: what one accepted send costs, and which part of the machine it costs. The
//! application on a fresh database — on PostgreSQL with role `api` (the API alone, as `BENCH_ROLE=api
//! benches/messages.sh`: nothing is delivered), on SQLite with role `all` (as `benches/messages.sh`:
//! the dispatcher delivers every accepted send in the same process) — a sandbox channel, and the same
//! send made two ways in one run:
//!
//! 1. **in-process**: `--concurrency` tasks call `Messaging::send_message` — the accept path without
//!    HTTP: the checks, the row, its audit entry and doorbell, the intake's shared commit and the
//!    database server's work. Its rate is the ceiling of everything but HTTP on this machine.
//! 2. **over HTTP**: `wrk`, 64 connections, `POST /v1/messages` (the body of `benches/messages.sh`) to
//!    the same application, when `wrk` is on the PATH.
//!
//! For each: accepts/s and the CPU time one accept costs in this process and in the database server
//! (PostgreSQL's processes; SQLite runs inside this process). The machine's cores divided by the CPU
//! time of one accept is the most the machine can accept, whatever waits on what.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};
use turumba::modules::accounts::CurrentUser;
use turumba::modules::events::EventMeta;
use turumba::modules::messaging::NewMessage;

use crate::scenario::stack::{cpu_secs_of, pids_named, stat_secs};
use crate::{BenchApp, ms, pct};

#[derive(clap::Args, Debug)]
pub(crate) struct AcceptsArgs {
    /// `sqlite` (a temp file) or a postgres:// URL (a fresh database is created and dropped).
    #[arg(long, default_value = "sqlite")]
    database: String,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Sends in flight at once on the in-process path (wrk always uses 64 connections).
    #[arg(long, default_value_t = 64)]
    concurrency: u64,
    /// The broker role `api` needs (PostgreSQL only; nothing is published by this role).
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp: String,
}

/// CPU seconds of this process (without children: wrk is counted apart) and of the database server.
fn cpu_now(postgres: bool) -> (f64, f64) {
    let own = stat_secs("self", &[11, 12]);
    let db = if postgres { pids_named("postgres").into_iter().map(cpu_secs_of).sum() } else { 0.0 };
    (own, db)
}

/// CPU seconds of the children this process waited for (wrk).
fn children_cpu() -> f64 {
    stat_secs("self", &[13, 14])
}

/// One way of accepting: its rate and what each accept cost.
struct Measured {
    accepts: u64,
    secs: f64,
    own_cpu: f64,
    db_cpu: f64,
}

impl Measured {
    fn print(&self, label: &str, cores: f64, extra: &str) {
        let n = self.accepts.max(1) as f64;
        let (own_us, db_us) = (self.own_cpu / n * 1e6, self.db_cpu / n * 1e6);
        println!(
            "  {label:<28} {:>7.0} accepts/s{extra}   CPU per accept: turumba {own_us:>4.0} µs + database {db_us:>4.0} µs \
             = {:>4.0} µs → the {cores} cores allow {:.0}/s ({:.0} % of the cores used)",
            n / self.secs,
            own_us + db_us,
            cores * 1e6 / (own_us + db_us),
            (self.own_cpu + self.db_cpu) / self.secs / cores * 100.0,
        );
    }
}

pub(crate) async fn run(args: AcceptsArgs) {
    let postgres = args.database != "sqlite";
    let (role, amqp) = match postgres {
        true => (turumba::app::Role::Api, Some(args.amqp.as_str())),
        false => (turumba::app::Role::All, None),
    };
    let bench = BenchApp::start_as(&args.database, role, amqp).await;
    let (api, state) = (bench.api.clone(), bench.state.clone());
    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str, token: Option<&str>, body: Option<Value>| {
        let mut req = http.request(method, format!("{api}{path}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move {
            let v: Value = req.send().await.expect("request").json().await.expect("JSON answer");
            v["data"].clone()
        }
    };
    let login = call(
        reqwest::Method::POST,
        "/v1/auth/login",
        None,
        Some(json!({"email": "bench@example.com", "password": "bench password 1"})),
    )
    .await;
    let token = login["access_token"].as_str().expect("token").to_string();
    let channel = call(
        reqwest::Method::POST,
        "/v1/channels",
        Some(&token),
        Some(json!({"name": "bench", "channel_type": "sandbox", "credentials": {}})),
    )
    .await;
    let channel_id: uuid::Uuid = channel["id"].as_str().expect("channel id").parse().expect("uuid");
    let context = call(reqwest::Method::GET, "/v1/context", Some(&token), None).await;
    let account_id: uuid::Uuid = context["active_account_id"].as_str().expect("active account").parse().expect("uuid");
    let user_id: uuid::Uuid = context["user"]["id"].as_str().expect("user").parse().expect("uuid");
    let scope = state.accounts.operator_scope(account_id).await.expect("scope");
    let (_, user, _) = state.accounts.member_user(scope, user_id).await.expect("member");
    let sender = Arc::new(CurrentUser::from(user));
    let send = NewMessage {
        channel_id,
        delivery_address: Some("+251911000001".into()),
        message_body: Some("Selam! Your appointment is tomorrow at 10:00.".into()),
        ..NewMessage::default()
    };
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
    println!(
        "accepts ({}, {} s each; in-process: {} tasks; HTTP: wrk -t2 -c64)",
        if postgres { "PostgreSQL, role api" } else { "SQLite, role all" },
        args.seconds,
        args.concurrency
    );

    // 1. In-process: the accept path without HTTP. The request's metadata as a request has it, so the
    // audit entry is written as it is for an HTTP send.
    let in_process = |secs: u64| {
        let (state, sender, send) = (state.clone(), sender.clone(), send.clone());
        async move {
            let stop = Arc::new(AtomicBool::new(false));
            let count = Arc::new(AtomicU64::new(0));
            let before = cpu_now(postgres);
            let start = Instant::now();
            let mut tasks = tokio::task::JoinSet::new();
            for t in 0..args.concurrency {
                let (state, sender, send, stop, count) =
                    (state.clone(), sender.clone(), send.clone(), stop.clone(), count.clone());
                tasks.spawn(async move {
                    let mut latencies = Vec::new();
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let meta = EventMeta {
                            user_id: Some(sender.id),
                            request_id: Some(format!("bench-{t}-{i}")),
                            ip: Some("127.0.0.1".into()),
                        };
                        let sent = Instant::now();
                        state
                            .messaging
                            .send_message(scope, &sender, send.clone(), None, &meta, |m| json!({ "id": m.id }))
                            .await
                            .expect("the send is accepted");
                        latencies.push(sent.elapsed());
                        count.fetch_add(1, Ordering::Relaxed);
                        i += 1;
                    }
                    latencies
                });
            }
            tokio::time::sleep(Duration::from_secs(secs)).await;
            stop.store(true, Ordering::Relaxed);
            let secs = start.elapsed().as_secs_f64();
            let after = cpu_now(postgres);
            let mut latencies = Vec::new();
            while let Some(l) = tasks.join_next().await {
                latencies.extend(l.expect("task"));
            }
            latencies.sort();
            let m = Measured {
                accepts: count.load(Ordering::Relaxed),
                secs,
                own_cpu: after.0 - before.0,
                db_cpu: after.1 - before.1,
            };
            (m, latencies)
        }
    };
    in_process(2).await; // warm-up: connections, statement caches
    let (m, latencies) = in_process(args.seconds).await;
    let extra = format!("  p50 {:>5.1} ms  p99 {:>5.1} ms", ms(pct(&latencies, 0.5)), ms(pct(&latencies, 0.99)));
    m.print("in-process (no HTTP)", cores, &extra);

    // 2. Over HTTP, with wrk.
    let wrk = std::process::Command::new("wrk").arg("--version").output().is_ok();
    if !wrk {
        println!("  over HTTP: skipped (wrk is not on the PATH)");
    } else {
        let dir = tempfile::tempdir().expect("temp dir");
        let script = dir.path().join("post.lua");
        let body = json!({"channel_id": channel_id, "delivery_address": "+251911000001",
            "message_body": "Selam! Your appointment is tomorrow at 10:00."});
        std::fs::write(
            &script,
            format!(
                "wrk.method = \"POST\"\nwrk.headers[\"content-type\"] = \"application/json\"\n\
                 wrk.headers[\"authorization\"] = \"Bearer {token}\"\nwrk.body = '{body}'\n"
            ),
        )
        .expect("script");
        let wrk_run = |secs: u64| {
            std::process::Command::new("wrk")
                .args(["-t2", "-c64", &format!("-d{secs}s"), "--latency", "-s"])
                .arg(&script)
                .arg(format!("{api}/v1/messages"))
                .output()
                .expect("wrk runs")
        };
        let db = &state.db;
        let count_where = |condition: &'static str| async move {
            let row = db
                .query_one_raw(Statement::from_string(
                    db.get_database_backend(),
                    format!("SELECT COUNT(*) AS n FROM messages WHERE {condition}"),
                ))
                .await
                .expect("count")
                .expect("a row");
            row.try_get::<i64>("", "n").expect("n") as u64
        };
        let count = || count_where("TRUE");
        let count_where = &count_where;
        tokio::task::block_in_place(|| wrk_run(2)); // warm-up
        let waits_before = Waits::now();
        let (first, before, client_before) = (count().await, cpu_now(postgres), children_cpu());
        let start = Instant::now();
        let out = tokio::task::block_in_place(|| wrk_run(args.seconds));
        let secs = start.elapsed().as_secs_f64();
        let (after, client) = (cpu_now(postgres), children_cpu() - client_before);
        let accepts = count().await - first;
        // Role `all` delivers in the same process: what it had not yet taken when the load stopped.
        let waiting = count_where("status = 'queued'").await;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let p = |label: &str| {
            text.lines()
                .find(|l| l.split_whitespace().next() == Some(label))
                .and_then(|l| l.split_whitespace().nth(1))
                .unwrap_or("?")
                .to_string()
        };
        let m = Measured { accepts, secs, own_cpu: after.0 - before.0, db_cpu: after.1 - before.1 };
        m.print("over HTTP (wrk)", cores, &format!("  p50 {:>7}  p99 {:>7}", p("50%"), p("99%")));
        println!(
            "  (the client, wrk, spent {:.0} µs of CPU per accept on the same cores: {:.0} % of them)",
            client / accepts.max(1) as f64 * 1e6,
            client / secs / cores * 100.0
        );
        if !postgres {
            println!("  accepted but not yet taken by the dispatcher when the load stopped: {waiting}");
        }
        Waits::now().print_since(&waits_before);
    }
    if !postgres {
        // The log's file never shrinks: its size is the longest the log grew over both runs (a log
        // that never starts again grows by every page written).
        let wal = bench.dir.path().join("bench.db-wal");
        let bytes = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        println!("  SQLite's write-ahead log file after both runs: {:.0} MB", bytes as f64 / 1e6);
    }
    bench.stop().await;
}

/// The write-path histograms of this process's metrics: how long opening a write transaction took (on
/// SQLite, the wait for the writer) and how long the intake's batches took, to tell a slow accept that
/// waited for the database from one that waited for a core.
struct Waits(String, u64);

impl Waits {
    const NAMES: [(&'static str, &'static str); 2] = [
        ("db_write_begin_seconds", "opening a write transaction"),
        ("message_accept_write_seconds", "an intake batch, begin to commit"),
    ];

    fn now() -> Self {
        Waits(turumba::http::metrics_handle().render(), sqlite_busy::retries())
    }

    /// `(upper bound, cumulative count)` of each bucket of `name`.
    fn buckets(&self, name: &str) -> Vec<(f64, f64)> {
        let prefix = format!("{name}_bucket{{le=\"");
        self.0
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .filter_map(|rest| {
                let (le, count) = rest.split_once("\"}")?;
                let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
                Some((le, count.trim().parse().ok()?))
            })
            .collect()
    }

    fn print_since(&self, before: &Waits) {
        println!("  SQLite connections that found the database locked retried {} times", self.1 - before.1);
        for (name, label) in Self::NAMES {
            let (now, then) = (self.buckets(name), before.buckets(name));
            let diff: Vec<(f64, f64)> = now
                .iter()
                .map(|(le, n)| (*le, n - then.iter().find(|(l, _)| l == le).map_or(0.0, |(_, m)| *m)))
                .collect();
            let total = diff.last().map_or(0.0, |(_, n)| *n);
            if total == 0.0 {
                continue;
            }
            let at = |q: f64| diff.iter().find(|(_, n)| *n >= q * total).map_or(f64::INFINITY, |(le, _)| *le);
            let over = |s: f64| total - diff.iter().find(|(le, _)| *le >= s).map_or(total, |(_, n)| *n);
            println!(
                "  {label:<34} {total:>6.0} times   p50 ≤ {:>5.1} ms  p99 ≤ {:>5.1} ms  over 25 ms: {:.0}",
                at(0.5) * 1e3,
                at(0.99) * 1e3,
                over(0.025)
            );
        }
    }
}
