//! `turumba-bench dispatch`: accept → sent latency. The real application (role `all`: API, relay and
//! dispatcher in this process) on a fresh database, a Telegram channel pointed at a local
//! Telegram-format server, and an open-loop client posting `POST /v1/messages` at a fixed rate over
//! keep-alive connections. A message's latency is `sent_at - created_at` as stored: the row is created
//! when the API accepts it, `sent_at` is written when the provider's answer is recorded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{BenchApp, ms, pct, peak_rss_mib};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

#[derive(clap::Args, Debug)]
pub(crate) struct DispatchArgs {
    /// `sqlite` (a temp file) or a postgres:// URL (a fresh database is created and dropped).
    #[arg(long, default_value = "sqlite")]
    database: String,
    /// Messages posted per second (open loop: the schedule does not wait for answers).
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

pub(crate) async fn run(args: DispatchArgs) {
    let bench = BenchApp::start(&args.database).await;
    let (api, state) = (bench.api.clone(), bench.state.clone());
    let (provider, provider_handle) = crate::adapters::telegram_format_server();

    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build().expect("client");
    // A JSON POST answered with the envelope: its `data`.
    let call = |path: &str, token: Option<&str>, body: Value| {
        let mut req = http.post(format!("{api}{path}")).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move {
            let v: Value = req.send().await.expect("request").json().await.expect("JSON answer");
            v["data"].clone()
        }
    };
    let login =
        call("/v1/auth/login", None, json!({"email": "bench@example.com", "password": "bench password 1"})).await;
    let token = login["access_token"].as_str().expect("token").to_string();
    let channel = call(
        "/v1/channels",
        Some(&token),
        json!({"name": "bot", "channel_type": "telegram", "credentials": {"bot_token": "123456:bench-token", "base_url": provider}}),
    )
    .await;
    let channel_id = channel["id"].as_str().expect("channel id").to_string();
    let body = Arc::new(
        json!({"channel_id": channel_id, "delivery_address": "5550001", "message_body": "Selam! Your appointment is tomorrow at 10:00."}),
    );

    let post = |http: reqwest::Client, token: String, body: Arc<Value>, api: String| async move {
        let t = Instant::now();
        let ok = http
            .post(format!("{api}/v1/messages"))
            .bearer_auth(&token)
            .json(&*body)
            .send()
            .await
            .is_ok_and(|r| r.status().as_u16() == 201);
        (ok, t.elapsed())
    };
    // Warm-up: connections, caches, the provider's pool.
    for _ in 0..200 {
        post(http.clone(), token.clone(), body.clone(), api.clone()).await;
    }
    let total = args.rate * args.seconds;
    let started_at = chrono::Utc::now();
    let start = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate as f64));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut posts = tokio::task::JoinSet::new();
    for _ in 0..total {
        ticks.tick().await;
        posts.spawn(post(http.clone(), token.clone(), body.clone(), api.clone()));
    }
    let mut accepts = Vec::with_capacity(total as usize);
    let mut refused = 0;
    while let Some(r) = posts.join_next().await {
        match r {
            Ok((true, d)) => accepts.push(d),
            _ => refused += 1,
        }
    }
    let posting = start.elapsed();
    // Wait for the dispatcher to send them all.
    let db = &state.db;
    let backend = db.get_database_backend();
    let count_sent = || async {
        let sql = "SELECT COUNT(*) FROM messages WHERE status = 'sent'";
        let row = db.query_one_raw(Statement::from_string(backend, sql)).await.expect("count").expect("row");
        row.try_get_by_index::<i64>(0).expect("count") as u64
    };
    let want = accepts.len() as u64 + 200;
    let deadline = Instant::now() + Duration::from_secs(120);
    while count_sent().await < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            match backend {
                sea_orm::DbBackend::Postgres => {
                    "SELECT created_at, sent_at FROM messages WHERE status = 'sent' AND created_at >= $1"
                }
                _ => "SELECT created_at, sent_at FROM messages WHERE status = 'sent' AND created_at >= ?",
            },
            [started_at.into()],
        ))
        .await
        .expect("latencies");
    let mut latencies: Vec<Duration> = rows
        .iter()
        .filter_map(|r| {
            let created: chrono::DateTime<chrono::Utc> = r.try_get("", "created_at").ok()?;
            let sent: chrono::DateTime<chrono::Utc> = r.try_get("", "sent_at").ok()?;
            (sent - created).to_std().ok()
        })
        .collect();
    latencies.sort();
    accepts.sort();
    println!(
        "dispatch ({}): {} messages posted at {}/s for {} s (open loop; {:.0}/s achieved), {} refused",
        if args.database == "sqlite" { "sqlite" } else { "postgres" },
        total,
        args.rate,
        args.seconds,
        accepts.len() as f64 / posting.as_secs_f64(),
        refused
    );
    println!(
        "  accept (client):  p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
        ms(pct(&accepts, 0.5)),
        ms(pct(&accepts, 0.99)),
        ms(accepts.last().copied().unwrap_or_default())
    );
    println!(
        "  accept → sent:    p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms  ({} of {} sent)",
        ms(pct(&latencies, 0.5)),
        ms(pct(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default()),
        latencies.len(),
        accepts.len()
    );
    println!("  peak RSS (API, relay, dispatcher, provider and client in one process): {:.0} MiB", peak_rss_mib());
    bench.stop().await;
    provider_handle.stop(false).await;
}
