//! `turumba-bench schedules`: many one-time schedules due at the same instant. The real application
//! (role `all`: API, relay, scheduler and dispatcher in this process) on a fresh database, a sandbox
//! channel; `--count` schedules are created through `POST /v1/scheduled-messages` (32 in flight), all
//! for the same instant T a little after the last is created. Then: how long after T the last one
//! fired, and each one's lateness — its message's `created_at` (written when the scheduler fired it)
//! minus T.

use std::time::{Duration, Instant};

use crate::{BenchApp, ms, pct, peak_rss_mib};
use chrono::{SubsecRound, Utc};
use futures_util::StreamExt;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

#[derive(clap::Args, Debug)]
pub(crate) struct SchedulesArgs {
    /// `sqlite` (a temp file) or a postgres:// URL (a fresh database is created and dropped).
    #[arg(long, default_value = "sqlite")]
    database: String,
    #[arg(long, default_value_t = 10_000)]
    count: u64,
}

pub(crate) async fn run(args: SchedulesArgs) {
    let bench = BenchApp::start(&args.database).await;
    let (api, state) = (bench.api.clone(), bench.state.clone());
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build().expect("client");
    let post = |path: String, token: Option<String>, body: Value| {
        let mut req = http.post(format!("{api}{path}")).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move {
            let r = req.send().await.expect("request");
            let ok = r.status().is_success();
            let v: Value = r.json().await.expect("JSON answer");
            (ok, v)
        }
    };
    let (_, login) =
        post("/v1/auth/login".into(), None, json!({"email": "bench@example.com", "password": "bench password 1"}))
            .await;
    let token = login["data"]["access_token"].as_str().expect("token").to_string();
    let (_, channel) = post(
        "/v1/channels".into(),
        Some(token.clone()),
        json!({"name": "bench", "channel_type": "sandbox", "credentials": {}}),
    )
    .await;
    let channel_id = channel["data"]["id"].as_str().expect("channel id").to_string();

    // T: far enough ahead for every schedule to be created first.
    let due = (Utc::now() + chrono::Duration::seconds(5 + args.count as i64 / 400)).trunc_subsecs(0);
    let creating = Instant::now();
    let created = futures_util::stream::iter(0..args.count)
        .map(|i| {
            let body = json!({"name": format!("s{i}"), "channel_id": channel_id,
                "delivery_address": format!("+2519{:08}", 11_000_000 + i), "message_body": "Your reminder",
                "scheduled_at": due.to_rfc3339(), "timezone": "UTC"});
            post("/v1/scheduled-messages".into(), Some(token.clone()), body)
        })
        .buffer_unordered(32)
        .filter(|(ok, _)| std::future::ready(*ok))
        .count()
        .await;
    let creation = creating.elapsed();
    let left = (due - Utc::now()).to_std().unwrap_or_default();
    println!(
        "schedules ({}): {created} of {} created in {:.1} s ({:.0}/s), all due at {due} ({:.1} s later)",
        if args.database == "sqlite" { "sqlite" } else { "postgres" },
        args.count,
        creation.as_secs_f64(),
        created as f64 / creation.as_secs_f64(),
        left.as_secs_f64()
    );
    assert!(!left.is_zero(), "the schedules were not all created before they were due; try fewer");

    let db = &state.db;
    let backend = db.get_database_backend();
    let fired = || async {
        let sql = "SELECT COUNT(*) FROM messages WHERE scheduled_message_id IS NOT NULL";
        let row = db.query_one_raw(Statement::from_string(backend, sql)).await.expect("count").expect("row");
        row.try_get_by_index::<i64>(0).expect("count") as usize
    };
    let deadline = Instant::now() + left + Duration::from_secs(120);
    while fired().await < created && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lateness = lateness_after(db, due).await;
    let all_fired = lateness.last().copied().unwrap_or_default();
    println!(
        "  fired {} of {created}; the last {:.2} s after T; lateness p50 {:.0} ms  p99 {:.0} ms  max {:.0} ms",
        lateness.len(),
        all_fired.as_secs_f64(),
        ms(pct(&lateness, 0.5)),
        ms(pct(&lateness, 0.99)),
        ms(all_fired)
    );
    println!("  peak RSS (API, scheduler, dispatcher and client in one process): {:.0} MiB", peak_rss_mib());
    bench.stop().await;
}

/// How late each scheduled message fired after `due` (its message's `created_at`, written when the
/// scheduler fired it), sorted.
pub(crate) async fn lateness_after(db: &sea_orm::DatabaseConnection, due: chrono::DateTime<Utc>) -> Vec<Duration> {
    let sql = "SELECT created_at FROM messages WHERE scheduled_message_id IS NOT NULL";
    let rows = db.query_all_raw(Statement::from_string(db.get_database_backend(), sql)).await.expect("fire times");
    let mut lateness: Vec<Duration> = rows
        .iter()
        .filter_map(|r| r.try_get::<chrono::DateTime<Utc>>("", "created_at").ok())
        .map(|at| (at - due).to_std().unwrap_or_default())
        .collect();
    lateness.sort();
    lateness
}
