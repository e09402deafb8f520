//! `turumba-bench group-send`: one group message to N recipients against a running Turumba (any roles,
//! any database: see `benches/groups.sh`), to a Telegram channel pointed at a Telegram-format server
//! (`turumba-bench telegram-server`). Imports N contacts through the API, then times the send from the
//! API's accept until every message is `sent`, with the fan-out's own time beside it, and reads the
//! peak RSS of the server processes it is given.
//!
//! `turumba-bench telegram-server`: that provider server on its own (one worker).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[derive(clap::Args, Debug)]
pub(crate) struct GroupSendArgs {
    /// The running API (`http://127.0.0.1:8080`).
    #[arg(long)]
    api: String,
    /// The Telegram-format server the channel sends to.
    #[arg(long)]
    provider: String,
    #[arg(long, default_value_t = 100_000)]
    recipients: u64,
    /// A verified user of the server (created with `turumba admin create-user`).
    #[arg(long, default_value = "bench@example.com")]
    email: String,
    #[arg(long, default_value = "bench password")]
    password: String,
    /// Server process ids whose peak RSS to report (`api=123,worker=456`).
    #[arg(long, default_value = "")]
    pids: String,
}

/// Peak resident memory of a process (VmHWM), in MiB.
fn peak_rss_of(pid: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

pub(crate) async fn run(args: GroupSendArgs) {
    let http = reqwest::Client::new();
    let api = args.api.trim_end_matches('/').to_string();
    let send = |method: reqwest::Method, path: &str, token: Option<&str>| {
        let mut req = http.request(method, format!("{api}{path}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req
    };
    let data = |r: reqwest::Response| async move {
        let v: Value = r.json().await.expect("a JSON answer");
        assert!(v["success"] == true, "the API refused: {v}");
        v["data"].clone()
    };
    let login = send(reqwest::Method::POST, "/v1/auth/login", None)
        .json(&json!({"email": args.email, "password": args.password}))
        .send()
        .await
        .expect("login");
    let token = data(login).await["access_token"].as_str().expect("token").to_string();
    let t = Some(token.as_str());
    let channel = send(reqwest::Method::POST, "/v1/channels", t)
        .json(&json!({"name": "bench bot", "channel_type": "telegram", "retry_count": 0,
            "credentials": {"bot_token": "123456:bench-token", "base_url": args.provider}}))
        .send()
        .await
        .expect("channel");
    let channel_id = data(channel).await["id"].as_str().expect("channel id").to_string();

    // The recipients: N contacts with a first name and a Telegram chat id, imported through the API.
    let mut csv = String::from("first_name,channel_identities.telegram,attributes.batch\n");
    for i in 0..args.recipients {
        csv.push_str(&format!("Person{i},{},bench\n", 10_000_000 + i));
    }
    let started = Instant::now();
    let job = send(reqwest::Method::POST, "/v1/contacts/import", t)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .expect("import");
    let job = data(job).await["id"].as_str().expect("job id").to_string();
    loop {
        let j = data(send(reqwest::Method::GET, &format!("/v1/contacts/imports/{job}"), t).send().await.expect("job"))
            .await;
        match j["status"].as_str() {
            Some("completed") => {
                assert_eq!(j["created"].as_u64(), Some(args.recipients), "the import created every contact: {j}");
                break;
            }
            Some("failed") => panic!("the import failed: {j}"),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let import = started.elapsed();
    let segment = send(reqwest::Method::POST, "/v1/segments", t)
        .json(&json!({"name": "bench", "filter": "attributes.batch:eq:bench"}))
        .send()
        .await
        .expect("segment");
    let segment_id = data(segment).await["id"].as_str().expect("segment id").to_string();

    // Peak RSS of the import, then the peak is reset (`clear_refs` 5) so the send's own is read after.
    let pids: Vec<(String, String)> = args
        .pids
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((name, pid)) => (name.to_string(), pid.to_string()),
            None => ("server".to_string(), pair.to_string()),
        })
        .collect();
    let import_peaks: Vec<f64> = pids.iter().map(|(_, pid)| peak_rss_of(pid)).collect();
    for (_, pid) in &pids {
        let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
    }

    // The send, timed from the request until every message is sent.
    let started = Instant::now();
    let g = send(reqwest::Method::POST, "/v1/group-messages", t)
        .json(&json!({"name": "bench", "channel_id": channel_id, "segment_ids": [segment_id], "status": "queued",
            "message_body": "Hi {FIRST_NAME}, your results are ready. Reply STOP to opt out."}))
        .send()
        .await
        .expect("group message");
    let accept = started.elapsed();
    let id = data(g).await["id"].as_str().expect("group id").to_string();
    let mut fanned_out: Option<Duration> = None;
    let mut last = Value::Null;
    let deadline = Instant::now() + Duration::from_secs(900);
    while Instant::now() < deadline {
        last =
            data(send(reqwest::Method::GET, &format!("/v1/group-messages/{id}"), t).send().await.expect("get")).await;
        if fanned_out.is_none() && last["fanout_done"] == true {
            fanned_out = Some(started.elapsed());
        }
        if last["fanout_done"] == true && last["counters"]["pending_count"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all = started.elapsed();
    let c = &last["counters"];
    let sent = c["sent_count"].as_u64().unwrap_or(0);
    println!(
        "group send: {} recipients imported in {:.1} s; accepted in {:.0} ms",
        args.recipients,
        import.as_secs_f64(),
        accept.as_secs_f64() * 1000.0
    );
    let fan = fanned_out.unwrap_or(all);
    println!(
        "  fan-out (every message row written): {:.2} s ({:.0} rows/s)",
        fan.as_secs_f64(),
        c["total_recipients"].as_f64().unwrap_or(0.0) / fan.as_secs_f64()
    );
    println!(
        "  accept → every message sent: {:.2} s ({:.0} messages/s); status {}, sent {}, failed {}, skipped {}",
        all.as_secs_f64(),
        sent as f64 / all.as_secs_f64(),
        last["status"],
        sent,
        c["failed_count"],
        c["skipped_count"]
    );
    for ((name, pid), import_peak) in pids.iter().zip(import_peaks) {
        println!(
            "  peak RSS {name} (pid {pid}) during the send: {:.0} MiB ({:.0} MB); during the import: {import_peak:.0} MiB",
            peak_rss_of(pid),
            peak_rss_of(pid) * 1.048_576
        );
    }
}

/// Serves the Telegram-format provider until interrupted.
pub(crate) async fn serve_telegram(port: u16) {
    let (url, handle) = crate::adapters::telegram_format_server_on(port);
    println!("telegram-format server on {url}");
    tokio::signal::ctrl_c().await.ok();
    handle.stop(false).await;
}
