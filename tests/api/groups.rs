//! Group messages (issue 16, items 1–4): validation with the field named and tenant isolation, the
//! fan-out (each contact once across overlapping groups and segments, exclusions, skips with their
//! reasons, resumable after a cut at any point without writing anyone twice), counters that satisfy
//! the SPEC's invariant through every outcome and late receipt, cancellation mid-fan-out and
//! mid-dispatch, previews, and live progress as Server-Sent Events.

use std::collections::{BTreeMap, HashMap, HashSet};

use actix_web::HttpResponse;
use chrono::{Duration, Utc};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};
use turumba::app::BuildOptions;

use crate::contacts::{contact, et_user};
use crate::fakes::{FakeServer, TELEGRAM_GOOD_TOKEN, TWILIO_SID};
use crate::helpers::*;
use crate::messages::sandbox;

async fn no_workers(b: Backend) -> TestApp {
    TestApp::spawn_full(b, |_| {}, BuildOptions { dispatch: false, ..Default::default() }).await
}

async fn group_with(app: &TestApp, u: &TestUser, name: &str, members: &[&str]) -> String {
    let g = app.post("/v1/groups").token(&u.token).json(json!({"name": name})).send().await.id();
    if !members.is_empty() {
        app.post(&format!("/v1/groups/{g}/contacts"))
            .token(&u.token)
            .json(json!({"contact_ids": members}))
            .send()
            .await
            .expect(200, None);
    }
    g
}

async fn get(app: &TestApp, u: &TestUser, id: &str) -> Value {
    let r = app.get(&format!("/v1/group-messages/{id}")).token(&u.token).send().await;
    r.expect(200, None);
    r.data().clone()
}

/// The SPEC's invariant once the fan-out is done (or stopped by a cancel).
#[track_caller]
fn assert_invariant(g: &Value) {
    let c = &g["counters"];
    let n = |k: &str| c[k].as_i64().unwrap();
    assert!(g["fanout_done"].as_bool().unwrap() || g["status"] == "cancelled", "{g}");
    assert_eq!(
        n("pending_count") + n("sent_count") + n("failed_count") + n("cancelled_count"),
        n("total_recipients"),
        "{g}"
    );
    assert!(n("delivered_count") <= n("sent_count"), "{g}");
}

async fn wait_final(app: &TestApp, u: &TestUser, id: &str, secs: u64) -> Value {
    eventually(secs, &format!("group message {id} is final"), || async move {
        let g = get(app, u, id).await;
        let stopped = g["fanout_done"] == true || g["status"] == "cancelled";
        stopped && g["counters"]["pending_count"] == 0 && g["status"] != "processing"
    })
    .await;
    get(app, u, id).await
}

/// The account's messages of a group send (every page).
async fn messages_of(app: &TestApp, u: &TestUser, id: &str) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let r = app
            .get("/v1/messages")
            .token(&u.token)
            .query(&[
                ("filter", format!("group_message_id:eq:{id}")),
                ("limit", "1000".into()),
                ("skip", out.len().to_string()),
                ("sort", "created_at:asc".into()),
            ])
            .send()
            .await;
        r.expect(200, None);
        let page = r.data().as_array().unwrap().clone();
        let n = page.len();
        out.extend(page);
        if n < 1000 {
            return out;
        }
    }
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    let db = &app.state.db;
    let row = db.query_one_raw(Statement::from_string(db.get_database_backend(), sql)).await.unwrap().unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

/// Imports `n` contacts (`first_name` P<i>, a Telegram chat id 7000000+i, `attributes.batch`) and
/// returns a segment of them.
async fn import_people(app: &TestApp, u: &TestUser, n: usize, batch: &str) -> String {
    let mut file = String::from("first_name,phone,channel_identities.telegram,attributes.batch\n");
    for i in 0..n {
        file.push_str(&format!("P{i},+2519{:08},{},{batch}\n", 20_000_000 + i, 7_000_000 + i));
    }
    let r = app.post("/v1/contacts/import").token(&u.token).raw("text/csv", file.into_bytes()).send().await;
    r.expect(202, None);
    let job = r.id();
    eventually(60, "the import finished", || {
        let job = job.clone();
        async move {
            let r = app.get(&format!("/v1/contacts/imports/{job}")).token(&u.token).send().await;
            r.data()["status"] == "completed"
        }
    })
    .await;
    let r = app.get(&format!("/v1/contacts/imports/{job}")).token(&u.token).send().await;
    assert_eq!(r.data()["created"], n as u64, "{}", r.body);
    let seg = app
        .post("/v1/segments")
        .token(&u.token)
        .json(json!({"name": format!("batch {batch}"), "filter": format!("attributes.batch:eq:{batch}")}))
        .send()
        .await;
    seg.expect(201, None);
    seg.id()
}

async fn group_messages_validate_edit_and_isolate_tenants(b: Backend) {
    let app = no_workers(b).await;
    let u = et_user(&app, "sender").await;
    let ch = sandbox(&app, &u, "s").await;
    let c1 = contact(&app, &u, json!({"phone": "0911000001", "first_name": "Abebe"})).await;
    let g = group_with(&app, &u, "Staff", &[&c1]).await;
    // Another tenant's channel, template, group, segment and contact.
    let v = et_user(&app, "other").await;
    let v_ch = sandbox(&app, &v, "theirs").await;
    let v_tpl = app.post("/v1/templates").token(&v.token).json(json!({"name": "t", "body": "x"})).send().await.id();
    let v_c = contact(&app, &v, json!({"phone": "0911000002"})).await;
    let v_g = group_with(&app, &v, "Theirs", &[&v_c]).await;
    let v_seg = app
        .post("/v1/segments")
        .token(&v.token)
        .json(json!({"name": "all", "filter": "phone:is_not_null"}))
        .send()
        .await
        .id();
    let base = json!({"name": "Launch", "channel_id": ch, "message_body": "Hi {FIRST_NAME}", "contact_group_ids": [g]});
    let with = |patch: Value| {
        let mut body = base.clone();
        for (k, val) in patch.as_object().unwrap() {
            match val {
                Value::Null => {
                    body.as_object_mut().unwrap().remove(k);
                }
                _ => body[k] = val.clone(),
            }
        }
        body
    };
    for (patch, field) in [
        (json!({"name": " "}), "name"),
        (json!({"channel_id": v_ch}), "channel_id"),
        (json!({"channel_id": null}), "channel_id"),
        (json!({"template_id": v_tpl}), "message_body"),
        (json!({"message_body": null}), "message_body"),
        (json!({"message_body": null, "template_id": v_tpl}), "template_id"),
        (json!({"message_body": "   "}), "message_body"),
        (json!({"contact_group_ids": []}), "contact_ids"),
        (json!({"contact_group_ids": [v_g]}), "contact_group_ids"),
        (json!({"segment_ids": [v_seg]}), "segment_ids"),
        (json!({"contact_ids": [v_c]}), "contact_ids"),
        (json!({"exclude_contact_ids": [v_c]}), "exclude_contact_ids"),
        (json!({"channel_strategy": "cheapest"}), "channel_strategy"),
        (json!({"channel_strategy": "preferred"}), "channel_id"),
        (json!({"status": "processing"}), "status"),
    ] {
        let r = app.post("/v1/group-messages").token(&u.token).json(with(patch.clone())).send().await;
        r.expect(422, Some("validation_error"));
        assert_eq!(r.error_fields(), vec![field], "{patch}: {}", r.body);
    }
    // Preview validates the same way.
    let r =
        app.post("/v1/group-messages/preview").token(&u.token).json(with(json!({"segment_ids": [v_seg]}))).send().await;
    assert_eq!(r.error_fields(), vec!["segment_ids"], "{}", r.body);

    // A draft from a body: the body becomes an auto-generated template.
    let r = app.post("/v1/group-messages").token(&u.token).json(base.clone()).send().await;
    r.expect(201, None);
    let d = r.data().clone();
    let id = r.id();
    assert_eq!(d["status"], "draft");
    assert_eq!(d["counters"]["total_recipients"], 0);
    let t = app.get(&format!("/v1/templates/{}", d["template_id"].as_str().unwrap())).token(&u.token).send().await;
    assert_eq!(
        (t.data()["category"].as_str(), t.data()["body"].as_str()),
        (Some("auto-generated"), Some("Hi {FIRST_NAME}"))
    );
    // Drafts are editable; a template replaces the body.
    let tpl =
        app.post("/v1/templates").token(&u.token).json(json!({"name": "hello", "body": "Hello"})).send().await.id();
    let r = app
        .patch(&format!("/v1/group-messages/{id}"))
        .token(&u.token)
        .json(json!({"name": "Launch 2", "template_id": tpl}))
        .send()
        .await;
    r.expect(200, None);
    assert_eq!(
        (r.data()["name"].as_str(), r.data()["template_id"].as_str(), &r.data()["message_body"]),
        (Some("Launch 2"), Some(tpl.as_str()), &Value::Null)
    );
    let r =
        app.patch(&format!("/v1/group-messages/{id}")).token(&u.token).json(json!({"contact_ids": [v_c]})).send().await;
    assert_eq!(r.error_fields(), vec!["contact_ids"], "{}", r.body);

    // Another account sees none of it.
    for (method, path) in [
        ("GET", format!("/v1/group-messages/{id}")),
        ("PATCH", format!("/v1/group-messages/{id}")),
        ("DELETE", format!("/v1/group-messages/{id}")),
        ("GET", format!("/v1/group-messages/{id}/skipped")),
        ("GET", format!("/v1/group-messages/{id}/progress")),
    ] {
        let r = app
            .req(method.parse().unwrap(), &path)
            .token(&v.token)
            .json(json!({"name": "mine now", "status": "cancelled"}))
            .send()
            .await;
        r.expect(404, Some("not_found"));
    }
    let r = app.get("/v1/group-messages").token(&v.token).send().await;
    assert_eq!(r.body["meta"]["total"], 0);
    let r = app.get("/v1/group-messages").token(&u.token).query(&[("filter", "status:eq:draft".into())]).send().await;
    assert_eq!(r.body["meta"]["total"], 1);
    app.get("/v1/group-messages?filter=colour:eq:red").token(&u.token).send().await.expect(400, Some("bad_request"));

    // Submitted, it is no longer editable; cancelled, it can be deleted.
    let r =
        app.patch(&format!("/v1/group-messages/{id}")).token(&u.token).json(json!({"status": "queued"})).send().await;
    assert_eq!(r.data()["status"], "queued", "{}", r.body);
    app.patch(&format!("/v1/group-messages/{id}"))
        .token(&u.token)
        .json(json!({"name": "late"}))
        .send()
        .await
        .expect(409, Some("conflict"));
    app.patch(&format!("/v1/group-messages/{id}"))
        .token(&u.token)
        .json(json!({"status": "queued"}))
        .send()
        .await
        .expect(409, Some("conflict"));
    app.delete(&format!("/v1/group-messages/{id}")).token(&u.token).send().await.expect(409, Some("conflict"));
    let r = app
        .patch(&format!("/v1/group-messages/{id}"))
        .token(&u.token)
        .json(json!({"status": "cancelled"}))
        .send()
        .await;
    assert_eq!(r.data()["status"], "cancelled", "{}", r.body);
    app.patch(&format!("/v1/group-messages/{id}"))
        .token(&u.token)
        .json(json!({"status": "cancelled"}))
        .send()
        .await
        .expect(409, Some("conflict"));
    app.delete(&format!("/v1/group-messages/{id}")).token(&u.token).send().await.expect(204, None);
    app.get(&format!("/v1/group-messages/{id}")).token(&u.token).send().await.expect(404, Some("not_found"));
}

async fn a_group_send_reaches_each_contact_once_and_reports_every_skip(b: Backend) {
    let app = TestApp::spawn(b).await;
    let u = et_user(&app, "sender").await;
    let ch = sandbox(&app, &u, "s").await;
    let p = |phone: &str, name: &str, extra: Value| {
        let mut body = json!({"phone": phone, "first_name": name});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    let a = contact(&app, &u, p("0911000011", "Abebe", json!({"attributes": {"code": "A1"}}))).await;
    let bb = contact(&app, &u, p("0911000012", "Bontu", json!({"attributes": {"code": "B1"}}))).await;
    let c = contact(&app, &u, p("0911000013", "Chaltu", json!({"attributes": {"code": "C1", "city": "adama"}}))).await;
    let d = contact(&app, &u, p("0911000014", "Dawit", json!({"attributes": {"city": "adama"}}))).await;
    let e = contact(
        &app,
        &u,
        p("0911000015", "Eden", json!({"attributes": {"code": "E1"}, "opted_out_channels": ["sandbox"]})),
    )
    .await;
    let f =
        contact(&app, &u, json!({"email": "fikre@example.org", "first_name": "Fikre", "attributes": {"code": "F1"}}))
            .await;
    let gg = contact(&app, &u, p("0911000017", "Genet", json!({"attributes": {"code": "G1"}}))).await;
    let h = contact(&app, &u, p("0911000018", "Hana", json!({"attributes": {"code": "H1"}}))).await;
    // Overlaps: b in both groups, c in a group and the segment.
    let g1 = group_with(&app, &u, "One", &[&a, &bb, &c, &e, &h]).await;
    let g2 = group_with(&app, &u, "Two", &[&bb, &f]).await;
    let seg = app
        .post("/v1/segments")
        .token(&u.token)
        .json(json!({"name": "Adama", "filter": "attributes.city:eq:adama"}))
        .send()
        .await
        .id();
    let tpl = app
        .post("/v1/templates")
        .token(&u.token)
        .json(json!({"name": "code", "body": "Hi {FIRST_NAME}, your code is {CODE}", "fallback_strategy": "skip_contact"}))
        .send()
        .await
        .id();
    let body = json!({"name": "Codes", "channel_id": ch, "template_id": tpl, "contact_group_ids": [g1, g2],
        "segment_ids": [seg], "contact_ids": [gg, a], "exclude_contact_ids": [h]});
    let skipped_want: BTreeMap<String, u64> =
        [("missing_variable:CODE".to_string(), 1), ("no_address".to_string(), 1), ("opted_out".to_string(), 1)].into();

    // The preview tells what the send will do, and writes nothing.
    let r = app.post("/v1/group-messages/preview").token(&u.token).json(body.clone()).send().await;
    r.expect(200, None);
    let pv = r.data().clone();
    assert_eq!(pv["total_recipients"], 4, "{pv}");
    assert_eq!(serde_json::from_value::<BTreeMap<String, u64>>(pv["skipped"].clone()).unwrap(), skipped_want);
    assert_eq!(pv["sample"].as_array().unwrap().len(), 3);
    assert_eq!(pv["sample"][0]["message_body"], "Hi Abebe, your code is A1");
    assert_eq!(pv["sample"][0]["delivery_address"], "+251911000011");
    assert_eq!(pv["segments_total"], 0, "sandbox messages count no SMS segments");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM messages").await, 0);

    let mut queued = body.clone();
    queued["status"] = json!("queued");
    let r = app.post("/v1/group-messages").token(&u.token).json(queued).send().await;
    r.expect(201, None);
    let id = r.id();
    let done = wait_final(&app, &u, &id, 20).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["counters"]["total_recipients"], 4);
    assert_eq!(done["counters"]["sent_count"], 4);
    assert_eq!(done["counters"]["skipped_count"], 3);
    assert_eq!(
        (done["counters"]["failed_count"].as_i64(), done["counters"]["cancelled_count"].as_i64()),
        (Some(0), Some(0))
    );
    assert!(done["started_at"].is_string() && done["completed_at"].is_string(), "{done}");
    assert_invariant(&done);

    // Exactly one message per recipient, rendered for each.
    let msgs = messages_of(&app, &u, &id).await;
    let by_contact: HashMap<String, String> = msgs
        .iter()
        .map(|m| (m["contact_id"].as_str().unwrap().to_string(), m["message_body"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(msgs.len(), 4);
    assert_eq!(
        by_contact,
        HashMap::from([
            (a.clone(), "Hi Abebe, your code is A1".to_string()),
            (bb.clone(), "Hi Bontu, your code is B1".to_string()),
            (c.clone(), "Hi Chaltu, your code is C1".to_string()),
            (gg.clone(), "Hi Genet, your code is G1".to_string()),
        ])
    );
    assert!(msgs.iter().all(|m| m["template_id"] == tpl.as_str() && m["channel_id"] == ch.as_str()));

    // The skips, with their reasons.
    let r = app.get(&format!("/v1/group-messages/{id}/skipped")).token(&u.token).send().await;
    r.expect(200, None);
    let skips: HashMap<String, String> = r
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["contact_id"].as_str().unwrap().to_string(), s["reason"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        skips,
        HashMap::from([
            (d.clone(), "missing_variable:CODE".to_string()),
            (e.clone(), "opted_out".to_string()),
            (f.clone(), "no_address".to_string()),
        ])
    );
    let r = app
        .get(&format!("/v1/group-messages/{id}/skipped"))
        .token(&u.token)
        .query(&[("filter", "reason:eq:opted_out".into())])
        .send()
        .await;
    assert_eq!(r.body["meta"]["total"], 1);

    // A finished send's progress stream is its final event alone.
    let events = read_progress(&app, &u, &id).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!((events[0].0.as_str(), &events[0].1["status"]), ("complete", &json!("completed")));
}

/// A Telegram Bot API that rejects chat ids ending in 13 (chat not found: a permanent failure), and
/// is otherwise the real wire format; `delay` slows each send.
fn telegram_rejecting(delay: std::time::Duration) -> FakeServer {
    FakeServer::start(move |r| {
        if !r.path.starts_with(&format!("/bot{TELEGRAM_GOOD_TOKEN}/")) {
            return HttpResponse::Unauthorized()
                .json(json!({"ok": false, "error_code": 401, "description": "Unauthorized"}));
        }
        if r.path.ends_with("/getMe") {
            return HttpResponse::Ok().json(
                json!({"ok": true, "result": {"id": 1, "is_bot": true, "first_name": "T", "username": "t_bot"}}),
            );
        }
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        let body = r.json();
        let chat = body["chat_id"].as_str().unwrap_or_default().to_string();
        if chat.ends_with("13") {
            return HttpResponse::BadRequest()
                .json(json!({"ok": false, "error_code": 400, "description": "Bad Request: chat not found"}));
        }
        HttpResponse::Ok().json(json!({"ok": true, "result": {"message_id": 42, "date": 1_763_800_000,
            "chat": {"id": chat.parse::<i64>().unwrap_or(0), "type": "private"}, "text": body["text"]}}))
    })
}

async fn telegram_bot(app: &TestApp, u: &TestUser, base_url: &str) -> String {
    let r = app
        .post("/v1/channels")
        .token(&u.token)
        .json(json!({"name": "bot", "channel_type": "telegram", "retry_count": 0,
            "credentials": {"bot_token": TELEGRAM_GOOD_TOKEN, "base_url": base_url}}))
        .send()
        .await;
    r.expect(201, None);
    r.id()
}

/// Reads a progress stream to its end: the `(event, data)` pairs.
async fn read_progress(app: &TestApp, u: &TestUser, id: &str) -> Vec<(String, Value)> {
    let resp = app
        .client
        .get(format!("{}/v1/group-messages/{id}/progress?access_token={}", app.address, u.token))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut resp = resp;
    let mut body = String::new();
    while let Some(chunk) = resp.chunk().await.unwrap() {
        body.push_str(&String::from_utf8_lossy(&chunk));
    }
    body.split("\n\n")
        .filter(|e| e.starts_with("event: "))
        .map(|e| {
            let mut lines = e.lines();
            let name = lines.next().unwrap().trim_start_matches("event: ").to_string();
            let data = lines.next().unwrap().trim_start_matches("data: ");
            (name, serde_json::from_str(data).unwrap())
        })
        .collect()
}

async fn five_thousand_recipients_each_get_one_message_and_the_progress_stream_follows(b: Backend) {
    let tg = telegram_rejecting(std::time::Duration::ZERO);
    let app = TestApp::spawn(b).await;
    let u = et_user(&app, "bulk").await;
    let bot = telegram_bot(&app, &u, &tg.base_url).await;
    let seg = import_people(&app, &u, 5_000, "big").await;
    let r = app
        .post("/v1/group-messages")
        .token(&u.token)
        .json(json!({"name": "Everyone", "channel_id": bot, "message_body": "Hi {FIRST_NAME}", "segment_ids": [seg], "status": "queued"}))
        .send()
        .await;
    r.expect(201, None);
    let id = r.id();
    let events = read_progress(&app, &u, &id).await;
    let (last, progress) = events.split_last().expect("events");
    assert_eq!(last.0, "complete", "{events:?}");
    assert!(progress.iter().all(|(name, _)| name == "progress"));
    let sent: Vec<i64> = progress.iter().map(|(_, g)| g["counters"]["sent_count"].as_i64().unwrap()).collect();
    assert!(sent.windows(2).all(|w| w[0] <= w[1]), "counters only grow: {sent:?}");

    // Chat ids 7000013, 7000113, … 7004913 are rejected: 50 permanent failures.
    let done = wait_final(&app, &u, &id, 120).await;
    assert_eq!(last.1["status"], done["status"]);
    assert_eq!(done["status"], "partially_failed", "{done}");
    assert_eq!(done["counters"]["total_recipients"], 5_000);
    assert_eq!(done["counters"]["failed_count"], 50);
    assert_eq!(done["counters"]["sent_count"], 4_950);
    assert_invariant(&done);
    // The provider got exactly one request per contact, each rendered for its contact.
    let requests: Vec<Value> =
        tg.requests().iter().filter(|r| r.path.ends_with("/sendMessage")).map(|r| r.json()).collect();
    assert_eq!(requests.len(), 5_000);
    let chats: HashSet<&str> = requests.iter().map(|r| r["chat_id"].as_str().unwrap()).collect();
    assert_eq!(chats.len(), 5_000);
    let one = requests.iter().find(|r| r["chat_id"] == "7000042").unwrap();
    assert_eq!(one["text"], "Hi P42");
    assert_eq!(messages_of(&app, &u, &id).await.len(), 5_000);

    // The dispatcher's status events name their messages in batches: each message in exactly one.
    let mut named: HashMap<String, Vec<String>> = HashMap::new();
    let mut events = 0;
    for line in crate::channels::outbox_text(&app).await.lines() {
        let (event_type, payload) = line.split_once(' ').unwrap();
        if let Some(status) = event_type.strip_prefix("message.status.") {
            events += 1;
            let payload: Value = serde_json::from_str(payload).unwrap();
            let ids = payload["data"]["message_ids"].as_array().unwrap();
            named.entry(status.to_string()).or_default().extend(ids.iter().map(|i| i.as_str().unwrap().to_string()));
        }
    }
    for (status, n) in [("sent", 4_950), ("permanently_failed", 50)] {
        let ids = &named[status];
        assert_eq!((ids.len(), ids.iter().collect::<HashSet<_>>().len()), (n, n), "{status}: each message once");
    }
    assert!(events <= 5_000 / 50, "{events} status events for 5,000 messages: one per pass, not per message");
}

async fn a_fanout_cut_at_any_point_resumes_and_writes_nobody_twice(b: Backend) {
    let app = no_workers(b).await;
    let u = et_user(&app, "resume").await;
    let ch = sandbox(&app, &u, "s").await;
    let seg = import_people(&app, &u, 2_500, "r").await;
    let r = app
        .post("/v1/group-messages")
        .token(&u.token)
        .json(json!({"name": "Resumable", "channel_id": ch, "message_body": "Hi {FIRST_NAME}", "segment_ids": [seg], "status": "queued"}))
        .send()
        .await;
    let id = r.id();
    let m = &app.state.messaging;
    let mut now = Utc::now();
    // Killed after 5, 30, 80 ms (wherever that is: mid-batch or between batches), each time resumed by
    // a worker that comes after the claim ran out.
    for ms in [5u64, 30, 80] {
        let _ = tokio::time::timeout(std::time::Duration::from_millis(ms), m.fan_out_next(now)).await;
        now += Duration::seconds(turumba::modules::messaging::FANOUT_LEASE_SECS + 1);
    }
    while m.fan_out_next(now).await.unwrap() {
        now += Duration::seconds(turumba::modules::messaging::FANOUT_LEASE_SECS + 1);
    }
    let g = get(&app, &u, &id).await;
    assert_eq!(g["fanout_done"], true, "{g}");
    assert_eq!(g["status"], "processing", "its messages wait for the dispatcher: {g}");
    assert_eq!(g["counters"]["total_recipients"], 2_500);
    assert_eq!(g["counters"]["pending_count"], 2_500);
    let per_contact = "SELECT COUNT(*) FROM (SELECT contact_id FROM messages WHERE group_message_id IS NOT NULL \
        GROUP BY contact_id HAVING COUNT(*) > 1) AS d";
    assert_eq!(count(&app, "SELECT COUNT(*) FROM messages").await, 2_500);
    assert_eq!(count(&app, per_contact).await, 0);

    // Even a fan-out that lost its position writes nobody twice (the unique key), and counts nothing twice.
    let db = &app.state.db;
    db.execute_unprepared("UPDATE group_messages SET fanout_after = NULL, fanout_done = false").await.unwrap();
    // Past the last claim, which was renewed on the test's clock moved on by the real time the fan-out
    // took (seconds on a loaded machine).
    now += Duration::hours(1);
    assert!(m.fan_out_next(now).await.unwrap());
    let g = get(&app, &u, &id).await;
    assert_eq!(
        (g["fanout_done"].as_bool(), g["counters"]["total_recipients"].as_i64()),
        (Some(true), Some(2_500)),
        "{g}"
    );
    assert_eq!(count(&app, "SELECT COUNT(*) FROM messages").await, 2_500);
    assert!(!m.fan_out_next(now).await.unwrap(), "nothing is left to fan out");
}

async fn cancelling_stops_the_fanout_and_every_unsent_message(b: Backend) {
    // Mid-fan-out: whatever was written is cancelled, and the fan-out writes nothing more.
    let app = no_workers(b).await;
    let u = et_user(&app, "cancel").await;
    let ch = sandbox(&app, &u, "s").await;
    let seg = import_people(&app, &u, 3_000, "c").await;
    let body =
        json!({"name": "Stop", "channel_id": ch, "message_body": "Hi", "segment_ids": [seg], "status": "queued"});
    let id = app.post("/v1/group-messages").token(&u.token).json(body.clone()).send().await.id();
    let m = app.state.messaging.clone();
    let fanout = tokio::spawn(async move { m.fan_out_next(Utc::now()).await });
    eventually(30, "the fan-out wrote a batch", || async {
        get(&app, &u, &id).await["counters"]["total_recipients"].as_i64().unwrap() > 0
    })
    .await;
    let r = app
        .patch(&format!("/v1/group-messages/{id}"))
        .token(&u.token)
        .json(json!({"status": "cancelled"}))
        .send()
        .await;
    assert_eq!(r.data()["status"], "cancelled", "{}", r.body);
    fanout.await.unwrap().unwrap();
    let g = get(&app, &u, &id).await;
    let total = g["counters"]["total_recipients"].as_i64().unwrap();
    assert_eq!(g["counters"]["cancelled_count"].as_i64(), Some(total), "{g}");
    assert_eq!(g["counters"]["pending_count"], 0);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM messages WHERE status <> 'cancelled'").await, 0);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM messages").await, total);
    assert!(
        !app.state.messaging.fan_out_next(Utc::now() + Duration::hours(1)).await.unwrap(),
        "a cancelled send is not resumed"
    );

    // Mid-dispatch: a slow provider holds some messages; they finish, the rest are cancelled.
    let tg = telegram_rejecting(std::time::Duration::from_millis(300));
    let app = TestApp::spawn(b_again(&app)).await;
    let u = et_user(&app, "cancel2").await;
    let bot = telegram_bot(&app, &u, &tg.base_url).await;
    let seg = import_people(&app, &u, 300, "d").await;
    let body =
        json!({"name": "Stop", "channel_id": bot, "message_body": "Hi", "segment_ids": [seg], "status": "queued"});
    let id = app.post("/v1/group-messages").token(&u.token).json(body).send().await.id();
    let handed = || tg.requests().iter().filter(|r| r.path.ends_with("/sendMessage")).count() as i64;
    eventually(30, "some messages are with the provider", || async { handed() > 0 }).await;
    let r = app
        .patch(&format!("/v1/group-messages/{id}"))
        .token(&u.token)
        .json(json!({"status": "cancelled"}))
        .send()
        .await;
    assert_eq!(r.data()["status"], "cancelled", "{}", r.body);
    let g = wait_final(&app, &u, &id, 30).await;
    assert_eq!(g["status"], "cancelled");
    assert_invariant(&g);
    let c = &g["counters"];
    assert!(c["cancelled_count"].as_i64().unwrap() > 0, "{g}");
    let sent = handed();
    assert!(sent < 300, "the cancel stopped the sends: {sent}");
    assert_eq!(
        c["sent_count"].as_i64().unwrap() + c["failed_count"].as_i64().unwrap(),
        sent,
        "only messages handed over before the cancel were sent: {g}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert_eq!(handed(), sent, "nothing is sent after the cancel settled");
}

async fn the_preferred_strategy_routes_each_contact_to_a_channel_that_reaches_them(b: Backend) {
    let tg = crate::fakes::telegram();
    let app = no_workers(b).await;
    let u = et_user(&app, "router").await;
    let low = app
        .post("/v1/channels")
        .token(&u.token)
        .json(json!({"name": "low", "channel_type": "sandbox", "credentials": {}, "priority": 1}))
        .send()
        .await
        .id();
    let high = app
        .post("/v1/channels")
        .token(&u.token)
        .json(json!({"name": "high", "channel_type": "telegram", "priority": 10,
            "credentials": {"bot_token": TELEGRAM_GOOD_TOKEN, "base_url": tg.base_url}}))
        .send()
        .await
        .id();
    let both = json!({"phone": "0911000301", "channel_identities": {"telegram": "301"}});
    let mut prefers_sandbox = both.clone();
    prefers_sandbox["preferred_channel"] = json!("sandbox");
    let a = contact(&app, &u, prefers_sandbox).await;
    let mut no_preference = both.clone();
    no_preference["phone"] = json!("0911000302");
    no_preference["channel_identities"] = json!({"telegram": "302"});
    let bb = contact(&app, &u, no_preference).await;
    let c = contact(&app, &u, json!({"phone": "0911000303"})).await;
    let d = contact(&app, &u, json!({"email": "d@example.org", "preferred_channel": "telegram"})).await;
    let body =
        json!({"name": "Routed", "channel_strategy": "preferred", "message_body": "Hi", "contact_ids": [a, bb, c, d]});
    let r = app.post("/v1/group-messages/preview").token(&u.token).json(body.clone()).send().await;
    r.expect(200, None);
    assert_eq!(r.data()["total_recipients"], 3, "{}", r.body);
    assert_eq!(r.data()["skipped"], json!({"no_address": 1}));
    let mut queued = body;
    queued["status"] = json!("queued");
    let id = app.post("/v1/group-messages").token(&u.token).json(queued).send().await.id();
    assert!(app.state.messaging.fan_out_next(Utc::now()).await.unwrap());
    let routes: HashMap<String, (String, String)> = messages_of(&app, &u, &id)
        .await
        .iter()
        .map(|m| {
            let s = |k: &str| m[k].as_str().unwrap().to_string();
            (s("contact_id"), (s("channel_id"), s("delivery_address")))
        })
        .collect();
    assert_eq!(
        routes,
        HashMap::from([
            (a, (low.clone(), "+251911000301".to_string())),
            (bb, (high.clone(), "302".to_string())),
            (c, (low.clone(), "+251911000303".to_string())),
        ])
    );
}

/// Twilio's Messages API answering each send with a message SID of its own (`SM` + the number's
/// digits), so that each message's receipts can be told apart.
fn twilio_numbered() -> FakeServer {
    FakeServer::start(|r| {
        if r.method == "GET" {
            return HttpResponse::Ok()
                .json(json!({"sid": TWILIO_SID, "friendly_name": "t", "status": "active", "type": "Full"}));
        }
        let to = crate::fakes::form(r).into_iter().find(|(k, _)| k == "To").map(|(_, v)| v).unwrap_or_default();
        let sid = format!("SM{:0>32}", to.trim_start_matches('+'));
        HttpResponse::Created().json(json!({"sid": sid, "status": "queued", "num_segments": "1", "to": to}))
    })
}

async fn late_receipts_move_the_counters_of_a_finished_send(b: Backend) {
    use crate::receipts::{PUBLIC, inbox_drained, refs, status, twilio_callback, twilio_channel};
    let tw = twilio_numbered();
    let app = TestApp::spawn_with(b, |s| s.public_base_url = Some(PUBLIC.into())).await;
    let u = et_user(&app, "late").await;
    let (channel, hook) = twilio_channel(&app, &u, "tw", &tw.base_url).await;
    let mut ids = Vec::new();
    for i in 1..=3 {
        ids.push(contact(&app, &u, json!({"phone": format!("09110002{i:02}")})).await);
    }
    let sid = |i: u32| format!("SM{:0>32}", format!("2519110002{i:02}"));
    let r = app
        .post("/v1/group-messages")
        .token(&u.token)
        .json(json!({"name": "Late", "channel_id": channel, "message_body": "Selam", "contact_ids": ids, "status": "queued"}))
        .send()
        .await;
    let id = r.id();
    let done = wait_final(&app, &u, &id, 20).await;
    assert_eq!(
        (done["status"].as_str(), done["counters"]["sent_count"].as_i64()),
        (Some("completed"), Some(3)),
        "{done}"
    );
    assert_eq!(done["counters"]["delivered_count"], 0);
    // Receipts after completion: one delivered, one undelivered, a read receipt for the delivered one
    // (counted once), and a read receipt standing in for a delivery receipt that never came.
    for (i, st) in [(1, "delivered"), (2, "undelivered"), (1, "read"), (3, "read")] {
        twilio_callback(&app, &hook, &refs(&status(&sid(i), st))).await;
    }
    inbox_drained(&app).await;
    let g = get(&app, &u, &id).await;
    let c = &g["counters"];
    assert_eq!(
        (c["sent_count"].as_i64(), c["delivered_count"].as_i64(), c["failed_count"].as_i64()),
        (Some(2), Some(2), Some(1)),
        "{g}"
    );
    assert_eq!(g["status"], "partially_failed", "a late failure changes the outcome: {g}");
    assert_invariant(&g);
}

/// The backend a test app runs on, for a second app in the same test.
fn b_again(app: &TestApp) -> Backend {
    match app.state.db.get_database_backend() {
        sea_orm::DbBackend::Postgres => Backend::postgres().expect("the first app ran on PostgreSQL"),
        _ => Backend::Sqlite,
    }
}

both_backends!(
    group_messages_validate_edit_and_isolate_tenants,
    a_group_send_reaches_each_contact_once_and_reports_every_skip,
    five_thousand_recipients_each_get_one_message_and_the_progress_stream_follows,
    a_fanout_cut_at_any_point_resumes_and_writes_nobody_twice,
    cancelling_stops_the_fanout_and_every_unsent_message,
    late_receipts_move_the_counters_of_a_finished_send,
    the_preferred_strategy_routes_each_contact_to_a_channel_that_reaches_them,
);
