//! The dispatcher: queued messages reach the provider over real HTTP and move on (`sent`/`delivered`),
//! failures are classified (retry with backoff as due rows, throttling without spending an attempt,
//! permanent at once), a lapsed claim is taken over, two dispatchers never send a message twice (nor
//! one whose claim is too short for its turn), and a channel holds at most its share of the send slots.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};
use turumba::app::BuildOptions;
use turumba::modules::messaging::{DispatchOptions, Dispatcher};

use crate::channels::outbox_text;
use crate::fakes::{self, TELEGRAM_GOOD_TOKEN};
use crate::helpers::{Backend, TestApp, TestUser, eventually};
use crate::messages::sandbox as sandbox_channel;

fn manual() -> BuildOptions {
    BuildOptions { dispatch: false, ..Default::default() }
}

fn dispatcher(app: &TestApp) -> Dispatcher {
    Dispatcher::new(app.state.messaging.clone(), app.state.channels.registry(), DispatchOptions::default())
}

pub async fn send(app: &TestApp, u: &TestUser, channel: &str, to: &str, body: &str) -> String {
    let r = app
        .post("/v1/messages")
        .token(&u.token)
        .json(json!({"channel_id": channel, "delivery_address": to, "message_body": body}))
        .send()
        .await;
    r.expect(201, None);
    r.id()
}

async fn message(app: &TestApp, u: &TestUser, id: &str) -> Value {
    app.get(&format!("/v1/messages/{id}")).token(&u.token).send().await.data().clone()
}

async fn telegram_channel(app: &TestApp, u: &TestUser, base_url: &str, retry: Value) -> String {
    let mut body = json!({"name": "bot", "channel_type": "telegram", "credentials": {"bot_token": TELEGRAM_GOOD_TOKEN, "base_url": base_url}});
    if let Some(map) = retry.as_object() {
        for (k, v) in map {
            body[k] = v.clone();
        }
    }
    let r = app.post("/v1/channels").token(&u.token).json(body).send().await;
    r.expect(201, None);
    assert_eq!(r.data()["status"], "connected", "{}", r.body);
    r.id()
}

/// The message's due time as stored (`next_attempt_at`, which only due rows carry).
pub async fn due_at(app: &TestApp, id: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let db = &app.state.db;
    let backend = db.get_database_backend();
    let sql = match backend {
        sea_orm::DbBackend::Postgres => "SELECT next_attempt_at FROM messages WHERE id = $1",
        _ => "SELECT next_attempt_at FROM messages WHERE id = ?",
    };
    let id = uuid::Uuid::parse_str(id).unwrap();
    let row = db.query_one_raw(Statement::from_sql_and_values(backend, sql, [id.into()])).await.unwrap().unwrap();
    row.try_get_by_index(0).unwrap()
}

/// Runs two dispatchers (each with its loops) until `n` of the user's messages are `status`, for at
/// most `secs`, then stops them.
async fn two_dispatchers_until(app: &TestApp, u: &TestUser, options: DispatchOptions, status: &str, n: u64, secs: u64) {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let tracker = tokio_util::task::TaskTracker::new();
    for _ in 0..2 {
        Dispatcher::new(app.state.messaging.clone(), app.state.channels.registry(), options).start(&shutdown, &tracker);
    }
    let path = format!("/v1/messages?filter=status:eq:{status}&limit=1");
    eventually(secs, &format!("{n} messages {status}"), || {
        let path = &path;
        async move { app.get(path).token(&u.token).send().await.body["meta"]["total"] == n }
    })
    .await;
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
}

async fn queued_messages_reach_the_provider_and_move_on(b: Backend) {
    let tg = fakes::telegram();
    let app = TestApp::spawn(b).await;
    let u = app.user("dispatch").await;
    let bot = telegram_channel(&app, &u, &tg.base_url, json!({})).await;
    let id = send(&app, &u, &bot, "5550001", "Selam from the dispatcher").await;
    eventually(10, "the Telegram message is sent", || {
        let (app, u, id) = (&app, &u, &id);
        async move { message(app, u, id).await["status"] == "sent" }
    })
    .await;
    let m = message(&app, &u, &id).await;
    assert_eq!((m["provider_message_id"].clone(), m["attempts"].clone()), (json!("5550001:42"), json!(1)));
    assert!(m["sent_at"].is_string() && m["delivered_at"].is_null(), "{m}");
    assert_eq!(due_at(&app, &id).await, None, "a sent message is due no more");
    let sent: Vec<_> = tg.requests().into_iter().filter(|r| r.path.ends_with("/sendMessage")).collect();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].json(), json!({"chat_id": "5550001", "text": "Selam from the dispatcher"}));
    assert!(outbox_text(&app).await.contains("message.status.sent"));

    // The sandbox confirms delivery at once.
    let sandbox = sandbox_channel(&app, &u, "s").await;
    let id = send(&app, &u, &sandbox, "+251911000001", "hello").await;
    eventually(10, "the sandbox message is delivered", || {
        let (app, u, id) = (&app, &u, &id);
        async move { message(app, u, id).await["status"] == "delivered" }
    })
    .await;
    let r = app.get(&format!("/v1/channels/{sandbox}/sandbox/messages")).token(&u.token).send().await;
    assert_eq!(r.body["meta"]["total"], 1);
    // What the dispatcher did is in the metrics.
    let text = app.get("/metrics").send().await.body.as_str().unwrap().to_string();
    assert!(text.contains(r#"messages_dispatched_total{channel_type="telegram",outcome="sent"}"#), "{text}");
    assert!(text.contains(r#"messages_dispatched_total{channel_type="sandbox",outcome="delivered"}"#), "{text}");
    assert!(text.contains("dispatch_provider_latency_seconds_bucket"), "{text}");
    assert!(text.contains(r#"message_dispatch_delay_seconds_bucket{channel_type="telegram""#), "{text}");
}

async fn failures_are_classified_retried_as_due_rows_and_claims_taken_over(b: Backend) {
    let tg = fakes::telegram();
    let app = TestApp::spawn_full(b, |_| {}, manual()).await;
    let u = app.user("retries").await;
    let bot = telegram_channel(&app, &u, &tg.base_url, json!({"retry_count": 2, "retry_interval": 1})).await;
    let d = dispatcher(&app);
    let to = |chat: &str| {
        tg.requests()
            .into_iter()
            .filter(|r| r.path.ends_with("/sendMessage") && r.body.contains(&format!("\"{chat}\"")))
            .count()
    };

    // Transient (5xx): retried after 1 s, then 2 s, then given up after the retries are spent.
    let flaky = send(&app, &u, &bot, "500", "x").await;
    assert_eq!(d.run_once().await.unwrap(), 1);
    let m = message(&app, &u, &flaky).await;
    assert_eq!((m["status"].clone(), m["attempts"].clone()), (json!("failed"), json!(1)));
    assert_eq!(m["error_details"]["code"], "transient");
    assert_eq!(d.run_once().await.unwrap(), 0, "the retry is not due yet");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(d.run_once().await.unwrap(), 1);
    assert_eq!(message(&app, &u, &flaky).await["attempts"], 2);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(d.run_once().await.unwrap(), 1);
    let m = message(&app, &u, &flaky).await;
    assert_eq!((m["status"].clone(), m["attempts"].clone()), (json!("permanently_failed"), json!(3)));
    assert!(m["failed_at"].is_string());
    assert_eq!(to("500"), 3, "one provider request per attempt");

    // Permanent (400): failed for good at once.
    let bad = send(&app, &u, &bot, "400", "x").await;
    d.run_once().await.unwrap();
    let m = message(&app, &u, &bad).await;
    assert_eq!((m["status"].clone(), m["attempts"].clone()), (json!("permanently_failed"), json!(1)));
    assert_eq!(m["error_details"]["message"], "telegram: Bad Request: chat not found");

    // Throttled (429 with retry_after 7): back to queued, no attempt spent, due after the wait.
    let slow = send(&app, &u, &bot, "429", "x").await;
    d.run_once().await.unwrap();
    let m = message(&app, &u, &slow).await;
    assert_eq!((m["status"].clone(), m["attempts"].clone()), (json!("queued"), json!(0)));
    assert_eq!(d.run_once().await.unwrap(), 0, "waits the provider's retry_after");

    // A sent message is never claimed again (a redelivered dispatch event changes nothing).
    let ok = send(&app, &u, &bot, "777", "x").await;
    d.run_once().await.unwrap();
    assert_eq!(message(&app, &u, &ok).await["status"], "sent");
    assert_eq!(d.run_once().await.unwrap(), 0);
    assert_eq!(to("777"), 1);

    // A dispatcher that died after claiming: its lease runs out and another takes the message over;
    // a live claim is left alone.
    let db = &app.state.db;
    let backend = db.get_database_backend();
    let sql = |s: &str| {
        if backend == sea_orm::DbBackend::Postgres {
            s.replacen('?', "$1", 1).replacen('?', "$2", 1)
        } else {
            s.to_string()
        }
    };
    let orphan = send(&app, &u, &bot, "888", "x").await;
    let held = send(&app, &u, &bot, "999", "x").await;
    let past = chrono::Utc::now() - chrono::Duration::seconds(5);
    let future = chrono::Utc::now() + chrono::Duration::seconds(60);
    for (id, lease) in [(&orphan, past), (&held, future)] {
        let stmt = sql("UPDATE messages SET status = 'sending', attempts = 1, lease_until = ? WHERE id = ?");
        let id = uuid::Uuid::parse_str(id).unwrap();
        db.execute_raw(Statement::from_sql_and_values(backend, stmt, [lease.into(), id.into()])).await.unwrap();
    }
    assert_eq!(d.run_once().await.unwrap(), 1);
    let m = message(&app, &u, &orphan).await;
    assert_eq!((m["status"].clone(), m["attempts"].clone()), (json!("sent"), json!(2)));
    assert_eq!(message(&app, &u, &held).await["status"], "sending");
    assert_eq!(to("999"), 0);

    // The channel's health follows the provider's answers, reported once per pass: three transient
    // failures and one permanent count as failed, the throttled one not at all, two sends as sent.
    let h = app.get(&format!("/v1/channels/{bot}/health")).token(&u.token).send().await;
    assert_eq!(
        (h.data()["sent_last_hour"].clone(), h.data()["failed_last_hour"].clone()),
        (json!(2), json!(4)),
        "{}",
        h.body
    );
    let c = app.get(&format!("/v1/channels/{bot}")).token(&u.token).send().await;
    assert_eq!(c.data()["status"], "connected", "a success after the throttling ends rate_limited");
}

async fn two_dispatchers_never_send_a_message_twice(b: Backend) {
    let app = TestApp::spawn_full(b, |_| {}, manual()).await;
    let u = app.user("pair").await;
    let sandbox = sandbox_channel(&app, &u, "s").await;
    for i in 0..120 {
        send(&app, &u, &sandbox, &format!("+2519110{i:05}"), "x").await;
    }
    let small = DispatchOptions { batch: 7, ..Default::default() };
    let (a, b2) = (
        Dispatcher::new(app.state.messaging.clone(), app.state.channels.registry(), small),
        Dispatcher::new(app.state.messaging.clone(), app.state.channels.registry(), small),
    );
    let drain = |d: Dispatcher| async move {
        let mut handled = 0;
        loop {
            match d.run_once().await.unwrap() {
                0 => return handled,
                n => handled += n,
            }
        }
    };
    let (x, y) = tokio::join!(drain(a), drain(b2));
    assert_eq!(x + y, 120, "{x} + {y}");
    let r = app.get(&format!("/v1/channels/{sandbox}/sandbox/messages?limit=1000")).token(&u.token).send().await;
    assert_eq!(r.body["meta"]["total"], 120, "each message reached the provider once");
    let r = app.get("/v1/messages?filter=status:eq:delivered&limit=1").token(&u.token).send().await;
    assert_eq!(r.body["meta"]["total"], 120);
}

/// A pass starts a provider call only while its claim's lease covers the call and the record: with a
/// 4 s lease, a 2 s send timeout and one call at a time to a provider taking 400 ms, a pass of ten
/// messages sends the first few and hands the rest back (`queued`, no attempt spent) instead of
/// sending them after their lease ran out, when another dispatcher may already have taken them over.
/// Two such dispatchers then finish the work without sending any message twice.
async fn a_claim_too_short_for_its_turn_hands_the_message_back_unsent(b: Backend) {
    let slow = fakes::FakeServer::start(|r| {
        if r.path.ends_with("/sendMessage") {
            std::thread::sleep(Duration::from_millis(400));
        }
        actix_web::HttpResponse::Ok()
            .json(json!({"ok": true, "result": {"id": 1, "message_id": 42, "username": "slow_bot"}}))
    });
    let app = TestApp::spawn_full(b, |_| {}, manual()).await;
    let u = app.user("short-lease").await;
    let bot = telegram_channel(&app, &u, &slow.base_url, json!({})).await;
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(send(&app, &u, &bot, &format!("55500{i:02}"), "x").await);
    }
    let options = DispatchOptions {
        batch: 10,
        lease: Duration::from_secs(4),
        send_timeout: Duration::from_secs(2),
        concurrency: 1,
        per_channel: 1,
        poll: Duration::from_millis(20),
        ..Default::default()
    };
    assert_eq!(options.start_within(), Duration::from_millis(1500));
    let d = || Dispatcher::new(app.state.messaging.clone(), app.state.channels.registry(), options);
    assert_eq!(d().run_once().await.unwrap(), 10, "the pass claimed and settled all ten");
    let sent_to = |slow: &fakes::FakeServer| -> Vec<String> {
        slow.requests()
            .iter()
            .filter(|r| r.path.ends_with("/sendMessage"))
            .map(|r| r.json()["chat_id"].to_string())
            .collect()
    };
    // Each call takes 400 ms and they run one at a time: the fifth would start after 1.6 s.
    let first = sent_to(&slow).len();
    assert!((1..=4).contains(&first), "{first} sends started within 1.5 s of the claim");
    let mut handed_back = 0;
    for id in &ids {
        let m = message(&app, &u, id).await;
        match m["status"].as_str().unwrap() {
            "sent" => assert_eq!(m["attempts"], 1, "{m}"),
            "queued" => {
                assert_eq!(m["attempts"], 0, "handed back without spending an attempt: {m}");
                handed_back += 1;
            }
            other => panic!("{other}: {m}"),
        }
    }
    assert_eq!(first + handed_back, 10);

    two_dispatchers_until(&app, &u, options, "sent", 10, 60).await;
    let mut chats = sent_to(&slow);
    chats.sort();
    chats.dedup();
    assert_eq!((chats.len(), sent_to(&slow).len()), (10, 10), "each message reached the provider once");
}

/// A channel limited to 60 sends a minute (a burst of one) sends one message a second, however many
/// dispatchers share the work; waiting for the rate spends no attempt.
async fn the_rate_limit_holds_across_dispatchers(b: Backend) {
    let app = TestApp::spawn_full(b, |_| {}, manual()).await;
    let u = app.user("rate").await;
    let r = app
        .post("/v1/channels")
        .token(&u.token)
        .json(json!({"name": "slow", "channel_type": "sandbox", "credentials": {}, "rate_limit": 60}))
        .send()
        .await;
    r.expect(201, None);
    let ch = r.id();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(send(&app, &u, &ch, &format!("+25191100{i:04}"), "x").await);
    }
    let eager = DispatchOptions { poll: Duration::from_millis(20), ..Default::default() };
    two_dispatchers_until(&app, &u, eager, "delivered", 5, 20).await;
    let r = app.get(&format!("/v1/channels/{ch}/sandbox/messages?limit=100")).token(&u.token).send().await;
    let mut times: Vec<chrono::DateTime<chrono::Utc>> =
        r.data().as_array().unwrap().iter().map(|m| m["created_at"].as_str().unwrap().parse().unwrap()).collect();
    assert_eq!(times.len(), 5, "each message reached the provider once");
    times.sort();
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= chrono::Duration::milliseconds(900), "sends {gap} apart: {times:?}");
    }
    for id in &ids {
        assert_eq!(message(&app, &u, id).await["attempts"], 1, "waiting for the rate spends no attempt");
    }
}

/// A Telegram-format server answering `sendMessage` after `delay` (anything else at once), counting the
/// sends in flight at once: its own most, and the most of all servers sharing `all`.
struct SlowBot {
    base_url: String,
    most: Arc<AtomicUsize>,
    _server: actix_web::dev::ServerHandle,
}

fn slow_bot(delay: Duration, all: Arc<(AtomicUsize, AtomicUsize)>) -> SlowBot {
    use actix_web::{App, HttpResponse, HttpServer, web};
    let mine: Arc<(AtomicUsize, AtomicUsize)> = Arc::default();
    let most = Arc::new(AtomicUsize::new(0));
    let (mine2, most2) = (mine.clone(), most.clone());
    let server = HttpServer::new(move || {
        let (mine, most, all) = (mine2.clone(), most2.clone(), all.clone());
        App::new().default_service(web::to(move |req: actix_web::HttpRequest| {
            let (mine, most, all) = (mine.clone(), most.clone(), all.clone());
            async move {
                if !req.path().ends_with("/sendMessage") {
                    return HttpResponse::Ok().json(json!({"ok": true, "result": {"id": 1, "username": "slow_bot"}}));
                }
                let now = mine.0.fetch_add(1, SeqCst) + 1;
                most.fetch_max(now, SeqCst);
                let now_all = all.0.fetch_add(1, SeqCst) + 1;
                all.1.fetch_max(now_all, SeqCst);
                tokio::time::sleep(delay).await;
                mine.0.fetch_sub(1, SeqCst);
                all.0.fetch_sub(1, SeqCst);
                HttpResponse::Ok().json(json!({"ok": true, "result": {"message_id": 42, "username": "slow_bot"}}))
            }
        }))
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .unwrap()
    .disable_signals();
    let port = server.addrs()[0].port();
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    SlowBot { base_url: format!("http://127.0.0.1:{port}"), most, _server: handle }
}

/// Each channel has at most `per_channel` provider calls in flight, all channels together at most
/// `concurrency`: a slow provider cannot take every slot.
async fn a_channel_holds_at_most_its_share_of_the_send_slots(b: Backend) {
    let all: Arc<(AtomicUsize, AtomicUsize)> = Arc::default();
    let (slow_a, slow_b) =
        (slow_bot(Duration::from_millis(150), all.clone()), slow_bot(Duration::from_millis(150), all.clone()));
    let app = TestApp::spawn_full(b, |_| {}, manual()).await;
    let u = app.user("slots").await;
    let a = telegram_channel(&app, &u, &slow_a.base_url, json!({"name": "bot a"})).await;
    let b2 = telegram_channel(&app, &u, &slow_b.base_url, json!({"name": "bot b"})).await;
    let queue = |n: usize| {
        let (app, u, a, b2) = (&app, &u, a.clone(), b2.clone());
        async move {
            for i in 0..n {
                send(app, u, &a, &format!("55500{i:02}"), "a").await;
                send(app, u, &b2, &format!("55500{i:02}"), "b").await;
            }
        }
    };
    let pass = |concurrency: usize, per_channel: usize| {
        let options = DispatchOptions { concurrency, per_channel, ..Default::default() };
        Dispatcher::new(app.state.messaging.clone(), app.state.channels.registry(), options)
    };
    let reset = || {
        for counter in [&slow_a.most, &slow_b.most, &all.1] {
            counter.store(0, SeqCst);
        }
    };
    queue(9).await;
    reset();
    assert_eq!(pass(16, 3).run_once().await.unwrap(), 18);
    let seen = (slow_a.most.load(SeqCst), slow_b.most.load(SeqCst), all.1.load(SeqCst));
    assert_eq!(seen, (3, 3, 6), "three per channel, both channels at once");
    // The dispatcher's own bound holds over the channels'.
    queue(9).await;
    reset();
    assert_eq!(pass(4, 3).run_once().await.unwrap(), 18);
    assert_eq!(all.1.load(SeqCst), 4);
    assert!(slow_a.most.load(SeqCst) <= 3 && slow_b.most.load(SeqCst) <= 3);
    let r = app.get("/v1/messages?filter=status:eq:sent&limit=1").token(&u.token).send().await;
    assert_eq!(r.body["meta"]["total"], 36);
}

/// A provider call that outlasts the dispatcher's send timeout is a transient failure, retried later:
/// one stuck provider or connection never holds the dispatcher.
async fn a_provider_that_never_answers_times_out_as_transient(b: Backend) {
    let all: Arc<(AtomicUsize, AtomicUsize)> = Arc::default();
    let stuck = slow_bot(Duration::from_secs(30), all);
    let app = TestApp::spawn_full(b, |_| {}, manual()).await;
    let u = app.user("stuck").await;
    let bot = telegram_channel(&app, &u, &stuck.base_url, json!({})).await;
    let id = send(&app, &u, &bot, "5550001", "anyone there?").await;
    let options = DispatchOptions { send_timeout: Duration::from_millis(300), ..Default::default() };
    let d = Dispatcher::new(app.state.messaging.clone(), app.state.channels.registry(), options);
    assert!(due_at(&app, &id).await.is_some(), "a queued message is due");
    let (t, started) = (std::time::Instant::now(), chrono::Utc::now());
    let (handled, during) = tokio::join!(d.run_once(), async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        (message(&app, &u, &id).await["status"].clone(), due_at(&app, &id).await)
    });
    assert_eq!(handled.unwrap(), 1);
    assert!(t.elapsed() < Duration::from_secs(10), "the pass ended at the timeout, not the provider's answer");
    // While its provider call was open the message was claimed and had no due time (so it was not in
    // the dispatcher's due index).
    assert_eq!(during, (json!("sending"), None));
    let m = message(&app, &u, &id).await;
    // `failed` (not `permanently_failed`): a retry is due.
    assert_eq!((m["status"].clone(), m["attempts"].clone()), (json!("failed"), json!(1)), "{m}");
    assert_eq!(m["error_details"]["provider_code"], "send_timeout", "{m}");
    assert!(due_at(&app, &id).await.is_some_and(|due| due > started), "the retry has its due time");
}

/// A message taken over by another claim while this pass had it at the provider (its attempt moved
/// on) keeps the other claim's state: the pass records its other messages and no event for that one.
/// On SQLite the pass's record goes as one statement list, whose guard fails it whole here; it is then
/// written again in a transaction that sees which messages are still this claim's.
async fn a_record_leaves_a_message_another_claim_took_over(b: Backend) {
    use std::sync::{Condvar, Mutex};
    let gate: Arc<(Mutex<bool>, Condvar)> = Arc::default();
    let arrived = Arc::new(AtomicUsize::new(0));
    let tg = fakes::FakeServer::start({
        let (gate, arrived) = (gate.clone(), arrived.clone());
        move |r| {
            if r.path.ends_with("/sendMessage") {
                arrived.fetch_add(1, SeqCst);
                // Held until the test opens the gate: the messages stay claimed meanwhile.
                let (open, turned) = &*gate;
                let mut open = open.lock().unwrap();
                while !*open {
                    open = turned.wait(open).unwrap();
                }
                let chat = r.json()["chat_id"].as_str().unwrap_or_default().parse::<i64>().unwrap_or(0);
                return actix_web::HttpResponse::Ok().json(json!({"ok": true, "result": {
                    "message_id": 42, "date": 1_763_800_000, "chat": {"id": chat, "type": "private"}}}));
            }
            actix_web::HttpResponse::Ok()
                .json(json!({"ok": true, "result": {"id": 1, "is_bot": true, "first_name": "T"}}))
        }
    });
    let app = TestApp::spawn_full(b, |_| {}, manual()).await;
    let u = app.user("takeover").await;
    let bot = telegram_channel(&app, &u, &tg.base_url, json!({})).await;
    let kept = send(&app, &u, &bot, "111", "kept").await;
    let taken = send(&app, &u, &bot, "222", "taken").await;
    let pass = tokio::spawn({
        let d = dispatcher(&app);
        async move { d.run_once().await.unwrap() }
    });
    eventually(10, "a send reaches the provider", || async { arrived.load(SeqCst) > 0 }).await;
    // Another claim takes `taken` over (its attempt 2) while this pass waits for the provider.
    let db = &app.state.db;
    let backend = db.get_database_backend();
    let stmt = if backend == sea_orm::DbBackend::Postgres {
        "UPDATE messages SET attempts = attempts + 1 WHERE id = $1"
    } else {
        "UPDATE messages SET attempts = attempts + 1 WHERE id = ?"
    };
    let id = uuid::Uuid::parse_str(&taken).unwrap();
    db.execute_raw(Statement::from_sql_and_values(backend, stmt, [id.into()])).await.unwrap();
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
    assert_eq!(pass.await.unwrap(), 2);

    let m = message(&app, &u, &kept).await;
    assert_eq!((m["status"].clone(), m["provider_message_id"].clone()), (json!("sent"), json!("111:42")), "{m}");
    let m = message(&app, &u, &taken).await;
    assert_eq!((m["status"].clone(), m["attempts"].clone()), (json!("sending"), json!(2)), "the other claim's: {m}");
    let events = outbox_text(&app).await;
    assert!(status_events_naming(&events, &kept), "the kept message's status event: {events}");
    assert!(!status_events_naming(&events, &taken), "no status event for the message taken over: {events}");
}

/// Whether a `message.status.*` event in the outbox text names `id`.
fn status_events_naming(outbox: &str, id: &str) -> bool {
    outbox.lines().any(|l| l.contains("message.status.") && l.contains(id))
}

both_backends!(
    a_record_leaves_a_message_another_claim_took_over,
    a_provider_that_never_answers_times_out_as_transient,
    a_channel_holds_at_most_its_share_of_the_send_slots,
    the_rate_limit_holds_across_dispatchers,
    queued_messages_reach_the_provider_and_move_on,
    failures_are_classified_retried_as_due_rows_and_claims_taken_over,
    two_dispatchers_never_send_a_message_twice,
    a_claim_too_short_for_its_turn_hands_the_message_back_unsent,
);
