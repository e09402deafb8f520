//! The scenarios, each a row (or a few) of the table.

use std::time::{Duration, Instant};

use chrono::{SubsecRound, Utc};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

use crate::{ms, pct};

use super::loads::*;
use super::stack::*;
use super::*;

pub(super) async fn import(s: &mut Stack) -> Vec<Row> {
    let n = s.n(100_000);
    // Every contact has a phone number (SMPP), a Telegram chat id, and one of 20 cohorts (`smpp-group`
    // sends to one: 5,000 of 100,000).
    let mut csv = String::from(
        "first_name,last_name,phone,email,channel_identities.telegram,attributes.batch,attributes.cohort,tags\n",
    );
    for i in 0..n {
        csv.push_str(&format!(
            "Person{i},Family{},+25191{i:07},person{i}@example.org,{},bench,c{},{}\n",
            i % 977,
            10_000_000 + i,
            i % 20,
            if i % 3 == 0 { "reminded;vip" } else { "reminded" }
        ));
    }
    let m = s.meter.begin();
    let started = Instant::now();
    let r = s.request("POST", "/v1/contacts/import").header("content-type", "text/csv").body(csv);
    let job: Value = r.send().await.expect("import").json().await.expect("JSON");
    let job = job["data"]["id"].as_str().unwrap_or_else(|| panic!("no import job: {job}")).to_string();
    let done = loop {
        let j = s.call("GET", &format!("/v1/contacts/imports/{job}"), Value::Null).await;
        match j["status"].as_str() {
            Some("completed") | Some("failed") => break j,
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let secs = started.elapsed().as_secs_f64();
    let created = done["created"].as_u64().unwrap_or(0);
    s.figures.push(("import rows/s", created as f64 / secs));
    if created != n {
        s.problems.push(format!("import: {created} of {n} contacts created: {done}"));
    }
    let mut row = s.row(
        "CSV import",
        format!("{n} rows → {created} contacts"),
        secs,
        format!("{:.0} rows/s", created as f64 / secs),
        s.meter.end(m),
    );
    row.note = format!("job {}", done["status"].as_str().unwrap_or("?"));
    vec![row]
}

pub(super) async fn group_send(s: &mut Stack) -> Vec<Row> {
    let segment = s.call("POST", "/v1/segments", json!({"name": "bench", "filter": "attributes.batch:eq:bench"})).await;
    let m = s.meter.begin();
    let started = Instant::now();
    let body = "Hi {FIRST_NAME}, your results are ready. Reply STOP to opt out.";
    let id = s.queue_group(&s.telegram, &segment["id"], body).await;
    let accepted = started.elapsed();
    let (last, fanned_out) = s.until_group_done(&id, started).await;
    let secs = started.elapsed().as_secs_f64();
    let c = &last["counters"];
    let (total, sent) = (c["total_recipients"].as_u64().unwrap_or(0), c["sent_count"].as_u64().unwrap_or(0));
    let fan = fanned_out.map(|d| d.as_secs_f64()).unwrap_or(secs);
    s.figures.push(("group messages/s", sent as f64 / secs));
    if sent == 0 || sent != total || last["status"] != "completed" {
        s.problems.push(format!("group send: {sent} of {total} sent: {last}"));
    }
    s.figures.push(("fan-out rows/s", total as f64 / fan));
    let mut row = s.row(
        "group send, accept → all sent",
        format!("{total} recipients, {sent} sent"),
        secs,
        format!("{:.0} msg/s", sent as f64 / secs),
        s.meter.end(m),
    );
    row.note = format!(
        "accepted in {:.0} ms; fan-out {fan:.1} s ({:.0} rows/s); status {}, failed {}, skipped {}",
        ms(accepted),
        total as f64 / fan,
        last["status"].as_str().unwrap_or("?"),
        c["failed_count"],
        c["skipped_count"]
    );
    vec![row]
}

pub(super) async fn single_sends(s: &mut Stack) -> Vec<Row> {
    let n = s.n(10_000);
    let sent_sql = "SELECT COUNT(*) FROM messages WHERE group_message_id IS NULL AND scheduled_message_id IS NULL \
         AND status = 'sent' AND channel_type = 'telegram'";
    let before = s.count(sent_sql).await;
    let m = s.meter.begin();
    let t = drive(n, CLIENTS, 201, |i| {
        s.request("POST", "/v1/messages").json(&json!({"channel_id": s.telegram,
            "delivery_address": format!("{}", 20_000_000 + i),
            "message_body": "Selam! Your appointment is tomorrow at 10:00."}))
    })
    .await;
    let accepted = s.meter.end(m);
    s.figures.push(("single accepts/s", t.rate()));
    if t.failed > 0 {
        s.problems.push(format!("single sends: {}", t.failures()));
    }
    let mut accept = s.row(
        "single sends, accept (POST /v1/messages)",
        format!("{n} requests, {} clients", CLIENTS),
        t.secs,
        format!("{:.0} req/s", t.rate()),
        accepted,
    );
    accept.p50 = t.p(0.5);
    accept.p99 = t.p(0.99);
    accept.note = t.failures();
    // Then until the dispatcher has sent every one (time counted from the first request).
    let m = s.meter.begin();
    let drained = Instant::now();
    let got = s.until_count(sent_sql, before + t.ok as u64, Duration::from_secs(300)).await - before;
    let total = t.secs + drained.elapsed().as_secs_f64();
    let mut sent = s.row(
        "single sends, first accept → all sent",
        format!("{got} of {} sent", t.ok),
        total,
        format!("{:.0} msg/s", got as f64 / total),
        s.meter.end(m),
    );
    sent.note = format!("usage: after the accepts only ({:.1} s)", drained.elapsed().as_secs_f64());
    if got < t.ok as u64 {
        s.problems.push(format!("single sends: {got} of {} sent", t.ok));
    }
    vec![accept, sent]
}

pub(super) async fn smpp(s: &mut Stack) -> Vec<Row> {
    let n = s.n(5_000);
    let body = |i: u64| {
        json!({"channel_id": s.smpp, "delivery_address": format!("+2519{:08}", 11_000_000 + i),
            "message_body": "Selam! Your appointment is tomorrow at 10:00."})
    };
    // Warm up (the bind), as Jasmin gets its warm-up.
    drive(100, 4, 201, |i| s.request("POST", "/v1/messages").json(&body(i))).await;
    let (before, _) = s.smsc_submits();
    let deadline = Instant::now() + Duration::from_secs(60);
    while s.smsc_submits().0 < 100 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = before.max(s.smsc_submits().0);
    let m = s.meter.begin();
    let start_ms = Utc::now().timestamp_millis();
    let t = drive(n, SMPP_CLIENTS, 201, |i| s.request("POST", "/v1/messages").json(&body(100 + i))).await;
    let deadline = Instant::now() + Duration::from_secs(300);
    while s.smsc_submits().0 < before + t.ok as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (got, last_ms) = s.smsc_submits();
    let secs = (last_ms - start_ms) as f64 / 1000.0;
    let rate = (got - before) as f64 / secs;
    s.figures.push(("smpp msg/s", rate));
    if t.failed > 0 || got - before < n {
        s.problems.push(format!("smpp: {} of {n} at the SMSC {}", got - before, t.failures()));
    }
    let mut row = s.row(
        "HTTP intake → SMPP, until the SMSC has all",
        format!("{n} messages, {SMPP_CLIENTS} clients; {} at the SMSC", got - before),
        secs,
        format!("{rate:.0} msg/s"),
        s.meter.end(m),
    );
    row.p50 = t.p(0.5);
    row.p99 = t.p(0.99);
    row.note = format!("accepts {:.0} req/s {}", t.rate(), t.failures());
    vec![row]
}

/// A group message to the SMPP channel (one cohort of the imported contacts), until the SMSC has all.
pub(super) async fn smpp_group(s: &mut Stack) -> Vec<Row> {
    let segment =
        s.call("POST", "/v1/segments", json!({"name": "cohort 0", "filter": "attributes.cohort:eq:c0"})).await;
    let (before, _) = s.smsc_submits();
    let m = s.meter.begin();
    let start_ms = Utc::now().timestamp_millis();
    let id = s.queue_group(&s.smpp, &segment["id"], "Selam {FIRST_NAME}! Your appointment is tomorrow at 10:00.").await;
    let (last, _) = s.until_group_done(&id, Instant::now()).await;
    let total = last["counters"]["total_recipients"].as_u64().unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(60);
    while s.smsc_submits().0 < before + total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (got, last_ms) = s.smsc_submits();
    let secs = (last_ms - start_ms) as f64 / 1000.0;
    let rate = (got - before) as f64 / secs;
    s.figures.push(("smpp group msg/s", rate));
    if total == 0 || got - before < total {
        s.problems.push(format!("smpp group: {} of {total} at the SMSC: {last}", got - before));
    }
    let mut row = s.row(
        "group message → SMPP, until the SMSC has all",
        format!("{total} recipients; {} at the SMSC", got - before),
        secs,
        format!("{rate:.0} msg/s"),
        s.meter.end(m),
    );
    row.note = format!("status {}", last["status"].as_str().unwrap_or("?"));
    vec![row]
}

pub(super) async fn schedules(s: &mut Stack) -> Vec<Row> {
    let n = s.n(10_000);
    // T: far enough ahead for every schedule to be created first.
    let due = (Utc::now() + chrono::Duration::seconds(5 + n as i64 / 300)).trunc_subsecs(0);
    let created = drive(n, 32, 201, |i| {
        s.request("POST", "/v1/scheduled-messages").json(&json!({"name": format!("s{i}"),
            "channel_id": s.sandbox, "delivery_address": format!("+2519{:08}", 30_000_000 + i),
            "message_body": "Your reminder", "scheduled_at": due.to_rfc3339(), "timezone": "UTC"}))
    })
    .await;
    let left = (due - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(left.saturating_sub(Duration::from_millis(500))).await;
    let m = s.meter.begin();
    let fired_sql = "SELECT COUNT(*) FROM messages WHERE scheduled_message_id IS NOT NULL";
    s.until_count(fired_sql, created.ok as u64, Duration::from_secs(300)).await;
    let lateness = crate::schedules::lateness_after(&s.db, due).await;
    let last = lateness.last().copied().unwrap_or_default();
    if created.failed > 0 || lateness.len() < created.ok || left.is_zero() {
        s.problems.push(format!(
            "schedules: {} of {n} created ({}), {} fired, all created before T: {}",
            created.ok,
            created.failures(),
            lateness.len(),
            !left.is_zero()
        ));
    }
    let mut row = s.row(
        "schedules due at one instant, T → all fired",
        format!("{} of {} created; {} fired", created.ok, n, lateness.len()),
        last.as_secs_f64(),
        format!("{:.0} fired/s", lateness.len() as f64 / last.as_secs_f64().max(0.001)),
        s.meter.end(m),
    );
    row.p50 = Some(ms(pct(&lateness, 0.5)));
    row.p99 = Some(ms(pct(&lateness, 0.99)));
    row.note = format!(
        "p50/p99 = lateness after T; created at {:.0}/s beforehand {}",
        created.rate(),
        if left.is_zero() { "(NOT all before T: raise the lead time)" } else { "" }
    );
    vec![row]
}

pub(super) async fn reads(s: &mut Stack) -> Vec<Row> {
    for i in 0..47 {
        s.call("POST", "/v1/roles", json!({"name": format!("role-{i}"), "permissions": {"contacts:read": true}})).await;
    }
    let mut rows = Vec::new();
    for (label, path) in [
        ("GET /healthz (the HTTP server's own ceiling)", "/healthz"),
        ("GET /v1/context", "/v1/context"),
        ("GET /v1/roles?limit=50 (50-row list)", "/v1/roles?limit=50"),
        ("GET /v1/contacts?limit=50 (50-row list)", "/v1/contacts?limit=50"),
    ] {
        let m = s.meter.begin();
        let url = format!("{}{path}", s.api);
        let (rps, p50, p99, note) = read_load(&s.http, &url, &s.token, CLIENTS as u64, s.args.read_seconds).await;
        if path == "/v1/context" {
            s.figures.push(("context req/s", rps));
        }
        if path == "/v1/roles?limit=50" {
            s.figures.push(("list req/s", rps));
        }
        if rps == 0.0 || note.contains("non-2xx") || note.contains("failed") {
            s.problems.push(format!("{label}: {rps} req/s, {note}"));
        }
        let mut row = s.row(
            label,
            format!("{}s", s.args.read_seconds),
            s.args.read_seconds as f64,
            format!("{rps:.0} req/s"),
            s.meter.end(m),
        );
        (row.p50, row.p99, row.note) = (Some(p50), Some(p99), note);
        rows.push(row);
    }
    rows
}

pub(super) async fn history(s: &mut Stack) -> Vec<Row> {
    let want = s.n(1_000_000);
    let have = s.count("SELECT COUNT(*) FROM messages").await;
    let backend = s.db.get_database_backend();
    let seeding = Instant::now();
    // The padding rows are 60 s + 1 s apart going back from now.
    let padded = want.saturating_sub(have);
    if padded > 0 {
        // Copies of one real single-send row, one second apart going back in time.
        let columns: Vec<String> = if s.sqlite() {
            let rows =
                s.db.query_all_raw(Statement::from_string(backend, "PRAGMA table_info(messages)"))
                    .await
                    .expect("columns");
            rows.iter().filter_map(|r| r.try_get::<String>("", "name").ok()).collect()
        } else {
            let rows =
                s.db.query_all_raw(Statement::from_string(
                    backend,
                    "SELECT column_name::text AS name FROM information_schema.columns WHERE table_name = 'messages'",
                ))
                .await
                .expect("columns");
            rows.iter().filter_map(|r| r.try_get::<String>("", "name").ok()).collect()
        };
        let cols = columns.into_iter().filter(|c| c != "id" && c != "created_at").collect::<Vec<_>>().join(", ");
        let need = padded;
        let sql = if s.sqlite() {
            format!(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {need}) \
                 INSERT INTO messages (id, created_at, {cols}) \
                 SELECT randomblob(16), strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now', '-' || (i + 60) || ' seconds'), {cols} \
                 FROM n, (SELECT * FROM messages WHERE group_message_id IS NULL AND scheduled_message_id IS NULL LIMIT 1)"
            )
        } else {
            format!(
                "INSERT INTO messages (id, created_at, {cols}) \
                 SELECT gen_random_uuid(), now() - make_interval(secs => g + 60), {cols} \
                 FROM generate_series(1, {need}) g, \
                 (SELECT * FROM messages WHERE group_message_id IS NULL AND scheduled_message_id IS NULL LIMIT 1) t"
            )
        };
        s.db.execute_unprepared(&sql).await.expect("seed the history");
        if !s.sqlite() {
            s.db.execute_unprepared("ANALYZE messages").await.expect("analyze");
        }
    }
    let rows_now = s.count("SELECT COUNT(*) FROM messages").await;
    let seeded = seeding.elapsed().as_secs_f64();
    let clients = s.args.history_clients;
    let mut rows = Vec::new();
    // The first page, then a deep page: near the oldest end by a created_at filter, continued by cursor.
    let deep = (Utc::now() - chrono::Duration::seconds((60 + padded * 9 / 10) as i64)).format("%Y-%m-%dT%H:%M:%SZ");
    let page = s.call_full(&format!("/v1/messages?limit=50&filter=created_at:lt:{deep}")).await;
    let cursor = page["meta"]["next_cursor"].as_str().unwrap_or_default().to_string();
    if cursor.is_empty() {
        s.problems.push(format!("history: no next_cursor below {deep}: {}", page["meta"]));
    }
    for (label, path) in [
        ("GET /v1/messages?limit=50, first page", "/v1/messages?limit=50".to_string()),
        ("GET /v1/messages?limit=50, deep cursor page", format!("/v1/messages?limit=50&cursor={cursor}")),
    ] {
        let m = s.meter.begin();
        let url = format!("{}{path}", s.api);
        let (rps, p50, p99, note) = read_load(&s.http, &url, &s.token, clients, s.args.read_seconds).await;
        if rps == 0.0 || note.contains("non-2xx") || note.contains("failed") {
            s.problems.push(format!("{label}: {rps} req/s, {note}"));
        }
        let mut row = s.row(
            label,
            format!("{rows_now} rows in the table"),
            s.args.read_seconds as f64,
            format!("{rps:.0} req/s"),
            s.meter.end(m),
        );
        (row.p50, row.p99) = (Some(p50), Some(p99));
        row.note = format!("{note}; table padded in {seeded:.0} s");
        rows.push(row);
    }
    rows
}
