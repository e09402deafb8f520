//! Fault injection against the real binary (issue 18, item 4): `turumba serve` processes started as a
//! deployment starts them, then killed with SIGKILL and started again, cut off from RabbitMQ or from
//! PostgreSQL by a TCP proxy, sending into a provider that answers a storm of failures, or writing to
//! a SQLite disk that runs full. Every run asserts that no message row is lost or written twice; what
//! reached the provider twice (calls in flight when their dispatcher died) is counted, bounded by what
//! the dead process had claimed, and printed.
//!
//! `cargo test` runs the bounded version (10,000 recipients, 10 s outages); the long one:
//! `TURUMBA_TEST_FAULT_RECIPIENTS=100000 TURUMBA_TEST_FAULT_OUTAGE_SECS=30 cargo test --test api faults::`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::HttpResponse;
use sea_orm::DatabaseConnection;
use serde_json::{Value, json};

use crate::fakes::{FakeServer, TELEGRAM_GOOD_TOKEN};
use crate::helpers::{Backend, Proxy, amqp_url, eventually};
use crate::processes::{Client, DISPATCH_BATCH, DISPATCH_LOOPS, Stack, count};

mod provider_storm;
mod sqlite_disk_full;

/// Messages one dispatcher process holds claimed at most: `TURUMBA_DISPATCH__BATCH` × `__LOOPS`.
const CLAIMED_AT_MOST: i64 = DISPATCH_BATCH * DISPATCH_LOOPS;

fn recipients() -> usize {
    std::env::var("TURUMBA_TEST_FAULT_RECIPIENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000)
}

fn outage() -> Duration {
    Duration::from_secs(std::env::var("TURUMBA_TEST_FAULT_OUTAGE_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(10))
}

/// A Telegram Bot API in its real wire format that accepts every message and counts each chat's sends.
fn telegram() -> (FakeServer, Arc<Mutex<HashMap<String, u32>>>) {
    let per_chat: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let seen = per_chat.clone();
    let server = FakeServer::start(move |r| {
        if r.path.ends_with("/getMe") {
            return HttpResponse::Ok().json(
                json!({"ok": true, "result": {"id": 1, "is_bot": true, "first_name": "T", "username": "t_bot"}}),
            );
        }
        let body = r.json();
        let chat = body["chat_id"].as_str().unwrap_or_default().to_string();
        *seen.lock().unwrap().entry(chat.clone()).or_default() += 1;
        HttpResponse::Ok().json(json!({"ok": true, "result": {"message_id": 7, "date": 1_763_800_000,
            "chat": {"id": chat.parse::<i64>().unwrap_or(0), "type": "private"}, "text": body["text"]}}))
    });
    (server, per_chat)
}

fn sends(per_chat: &Mutex<HashMap<String, u32>>) -> (usize, u32) {
    let m = per_chat.lock().unwrap();
    (m.len(), m.values().sum())
}

/// A Telegram channel to `base_url` and a segment of `n` imported contacts (chat ids 9000000 + i).
pub(super) async fn channel_and_recipients(c: &Client, base_url: &str, n: usize) -> (String, String) {
    let ch = c
        .ok(
            "POST",
            "/v1/channels",
            Some(json!({"name": "bot", "channel_type": "telegram", "retry_count": 5,
            "retry_interval": 1, "credentials": {"bot_token": TELEGRAM_GOOD_TOKEN, "base_url": base_url}})),
        )
        .await;
    let mut csv = String::from("first_name,channel_identities.telegram,attributes.batch\n");
    for i in 0..n {
        csv.push_str(&format!("P{i},{},fault\n", 9_000_000 + i));
    }
    let r = c
        .http
        .post(format!("{}/v1/contacts/import", c.base))
        .bearer_auth(&c.token)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let job = r.json::<Value>().await.unwrap()["data"]["id"].as_str().unwrap().to_string();
    eventually(300, "the import finished", || async {
        c.ok("GET", &format!("/v1/contacts/imports/{job}"), None).await["status"] == "completed"
    })
    .await;
    let seg =
        c.ok("POST", "/v1/segments", Some(json!({"name": "everyone", "filter": "attributes.batch:eq:fault"}))).await;
    (ch["id"].as_str().unwrap().to_string(), seg["id"].as_str().unwrap().to_string())
}

pub(super) async fn group_send(c: &Client, channel: &str, segment: &str) -> String {
    let g = c
        .ok(
            "POST",
            "/v1/group-messages",
            Some(json!({"name": "Everyone", "channel_id": channel,
            "message_body": "Hi {FIRST_NAME}", "segment_ids": [segment], "status": "queued"})),
        )
        .await;
    g["id"].as_str().unwrap().to_string()
}

/// Waits until the group send is done with every message sent.
async fn all_sent(c: &Client, id: &str, n: usize) -> Value {
    let path = format!("/v1/group-messages/{id}");
    eventually(600, "every message of the group send is sent", || async {
        let (s, d) = c.call("GET", &path, None).await;
        s == 200 && d["data"]["counters"]["sent_count"] == n as u64 && d["data"]["status"] == "completed"
    })
    .await;
    c.ok("GET", &path, None).await
}

/// Exactly one message row per contact, each `sent` (the run's only group send: its rows are those
/// with a group).
async fn one_row_per_contact(db: &DatabaseConnection, n: usize) {
    let of_group = "FROM messages WHERE group_message_id IS NOT NULL";
    let rows = count(db, &format!("SELECT COUNT(*) {of_group}")).await;
    let contacts = count(db, &format!("SELECT COUNT(DISTINCT contact_id) {of_group}")).await;
    let sent = count(db, &format!("SELECT COUNT(*) {of_group} AND status = 'sent'")).await;
    assert_eq!((rows, contacts, sent), (n as i64, n as i64, n as i64), "rows, distinct contacts, sent");
}

async fn provider_progress(per_chat: &Mutex<HashMap<String, u32>>, at_least: usize, what: &str) {
    eventually(600, what, || async { sends(per_chat).0 >= at_least }).await;
}

/// SIGKILL of the process that sends (role `all` on SQLite; the `worker` beside a live `api` on
/// PostgreSQL + RabbitMQ) a quarter into a group send, then the same role started again.
async fn a_process_killed_mid_send_loses_and_doubles_no_message(b: Backend) {
    let n = recipients();
    let postgres = matches!(b, Backend::Postgres(_));
    let amqp = if postgres {
        match amqp_url() {
            Some(url) => Some(url),
            None => return,
        }
    } else {
        None
    };
    let (tg, per_chat) = telegram();
    let mut stack = Stack::new(&b, amqp, None).await;
    let victim = if postgres {
        stack.start("api").await;
        stack.start("worker").await
    } else {
        stack.start("all").await
    };
    let c = stack.sign_in().await;
    let (ch, seg) = channel_and_recipients(&c, &tg.base_url, n).await;
    let id = group_send(&c, &ch, &seg).await;
    provider_progress(&per_chat, n / 4, "a quarter of the recipients reached").await;

    stack.servers[victim].kill();
    let db = stack.db().await;
    // What the dead process had claimed and not recorded: the only messages the provider may see twice.
    let in_flight =
        count(&db, "SELECT COUNT(*) FROM messages WHERE status = 'sending' AND group_message_id IS NOT NULL").await;
    let at_kill = sends(&per_chat).1;
    let mut single = None;
    if postgres {
        // The API lives on without the worker: it reads and still accepts sends.
        c.ok("GET", &format!("/v1/group-messages/{id}"), None).await;
        let contact = c.ok("GET", "/v1/contacts?limit=1", None).await[0]["id"].as_str().unwrap().to_string();
        let m = c
            .ok(
                "POST",
                "/v1/messages",
                Some(json!({"channel_id": ch, "contact_id": contact, "message_body": "while the worker is down"})),
            )
            .await;
        single = Some((contact, m["id"].as_str().unwrap().to_string()));
    }
    let started = Instant::now();
    let restarted = stack.kill_and_restart(victim).await;
    let c = Client { base: stack.api(), ..c };
    let g = all_sent(&c, &id, n).await;
    one_row_per_contact(&db, n).await;
    let (chats, total) = sends(&per_chat);
    let duplicates = total as i64 - n as i64 - i64::from(single.is_some());
    eprintln!(
        "killed {} at {at_kill} provider sends of {n}; {in_flight} claimed and unrecorded; all sent {:.1} s after the restart; \
         provider-side duplicates: {duplicates}",
        stack.servers[restarted].role,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(chats, n, "every recipient reached the provider");
    assert!(
        (0..=in_flight).contains(&duplicates) && in_flight <= CLAIMED_AT_MOST,
        "only messages claimed by the dead process may reach the provider twice: {duplicates} duplicates, {in_flight} claimed"
    );
    assert_eq!(g["counters"]["total_recipients"], n as u64, "{g}");
    if let Some((_, m)) = single {
        eventually(60, "the send accepted while the worker was down is sent", || async {
            c.ok("GET", &format!("/v1/messages/{m}"), None).await["status"] == "sent"
        })
        .await;
    }
    stack.finish().await;
}

/// An `api` and a `worker` process on PostgreSQL + RabbitMQ a fifth into a group send to `n` contacts.
struct Sending {
    stack: Stack,
    /// The worker's index in `stack.servers`.
    worker: usize,
    c: Client,
    ch: String,
    /// One of the recipients, for single sends beside the group send.
    contact: String,
    id: String,
    per_chat: Arc<Mutex<HashMap<String, u32>>>,
    _tg: FakeServer,
}

async fn api_and_worker_sending(
    b: &Backend,
    amqp: String,
    via_db: Option<&dyn Fn(&str) -> String>,
    n: usize,
) -> Sending {
    let (tg, per_chat) = telegram();
    let mut stack = Stack::new(b, Some(amqp), via_db).await;
    stack.start("api").await;
    let worker = stack.start("worker").await;
    let c = stack.sign_in().await;
    let (ch, seg) = channel_and_recipients(&c, &tg.base_url, n).await;
    let contact = c.ok("GET", "/v1/contacts?limit=1", None).await[0]["id"].as_str().unwrap().to_string();
    let id = group_send(&c, &ch, &seg).await;
    provider_progress(&per_chat, n / 5, "a fifth of the recipients reached").await;
    Sending { stack, worker, c, ch, contact, id, per_chat, _tg: tg }
}

/// RabbitMQ unreachable for a while in the middle of a group send (api + worker on PostgreSQL).
async fn a_broker_outage_mid_send_loses_nothing_and_the_api_keeps_accepting(b: Backend, url: String) {
    let n = recipients();
    let (scheme_auth, rest) = url.split_once('@').unwrap();
    let (hostport, vhost) = rest.split_once('/').unwrap_or((rest, ""));
    let proxy = Proxy::start(hostport.to_string()).await;
    let proxied = format!("{scheme_auth}@127.0.0.1:{}/{vhost}", proxy.port);
    let Sending { mut stack, worker, c, ch, contact, id, per_chat, _tg } =
        api_and_worker_sending(&b, proxied, None, n).await;

    proxy.down();
    let until = Instant::now() + outage();
    let mut accepted = Vec::new();
    while Instant::now() < until {
        let m = c
            .ok(
                "POST",
                "/v1/messages",
                Some(json!({"channel_id": ch, "contact_id": contact, "message_body": "during the outage"})),
            )
            .await;
        accepted.push(m["id"].as_str().unwrap().to_string());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The API stays ready (what it accepts waits in the outbox) and says the broker is away; the
    // worker, which relays and consumes, is not ready.
    let plain = Client { token: String::new(), ..c.clone() };
    let (ready, body) = plain.call("GET", "/readyz", None).await;
    assert_eq!((ready, body["checks"]["broker"].as_str()), (200, Some("unavailable")), "api: {body}");
    let worker = Client { base: format!("http://127.0.0.1:{}", stack.servers[worker].port), ..plain };
    assert_eq!(worker.call("GET", "/readyz", None).await.0, 503, "the worker is not ready without its broker");
    proxy.up();

    all_sent(&c, &id, n).await;
    let db = stack.db().await;
    one_row_per_contact(&db, n).await;
    for m in &accepted {
        eventually(120, "every send accepted during the outage is sent", || async {
            c.ok("GET", &format!("/v1/messages/{m}"), None).await["status"] == "sent"
        })
        .await;
    }
    let (chats, total) = sends(&per_chat);
    eprintln!(
        "broker down {:?} mid-send: {} sends accepted meanwhile; provider saw {total} sends",
        outage(),
        accepted.len()
    );
    assert_eq!(chats, n);
    assert_eq!(total as usize, n + accepted.len(), "no process died: nothing reached the provider twice");
    assert!(stack.all_alive(), "nothing was restarted");
    stack.broker_holds_nothing().await;
    stack.finish().await;
}

/// PostgreSQL unreachable (connections cut, new ones refused — what a restart looks like to its
/// clients) in the middle of a group send: requests answer 503, never 500 or a hang, and the same
/// processes carry on once it is back.
async fn a_database_outage_answers_503_and_the_same_processes_recover(b: Backend, amqp: String) {
    let Backend::Postgres(base) = &b else { unreachable!("a PostgreSQL fault") };
    let n = recipients();
    let hostport = base.split_once('@').unwrap().1.split_once('/').unwrap().0.to_string();
    let proxy = Proxy::start(hostport.clone()).await;
    let port = proxy.port;
    let through = move |url: &str| url.replacen(&hostport, &format!("127.0.0.1:{port}"), 1);
    let Sending { mut stack, c, ch, contact, id, per_chat, _tg, .. } =
        api_and_worker_sending(&b, amqp, Some(&through), n).await;

    proxy.down();
    let until = Instant::now() + outage();
    let mut answers: HashMap<(u16, String), usize> = HashMap::new();
    while Instant::now() < until {
        for (method, path, body) in [
            ("GET", "/v1/contacts?limit=5".to_string(), None),
            (
                "POST",
                "/v1/messages".to_string(),
                Some(json!({"channel_id": ch, "contact_id": contact, "message_body": "x"})),
            ),
        ] {
            let (s, d) = c.call(method, &path, body).await;
            *answers.entry((s, d["error"].as_str().unwrap_or_default().to_string())).or_default() += 1;
        }
    }
    eprintln!("answers while PostgreSQL was unreachable: {answers:?}");
    assert!(
        answers.keys().all(|(s, code)| *s == 503 && code == "service_unavailable"),
        "every request answers 503 service_unavailable while the database is away: {answers:?}"
    );
    proxy.up();

    let after = json!({"channel_id": ch, "contact_id": contact, "message_body": "after"});
    let m = c.post_until_created("/v1/messages", after, 60).await["id"].as_str().unwrap().to_string();
    all_sent(&c, &id, n).await;
    let db = stack.db().await;
    one_row_per_contact(&db, n).await;
    eventually(120, "the send accepted after the outage is sent", || async {
        c.ok("GET", &format!("/v1/messages/{m}"), None).await["status"] == "sent"
    })
    .await;
    let (chats, total) = sends(&per_chat);
    let duplicates = total as i64 - n as i64 - 1;
    eprintln!("PostgreSQL down {:?} mid-send; provider-side duplicates: {duplicates}", outage());
    assert_eq!(chats, n, "every recipient reached");
    // A provider call whose outcome could not be recorded is sent again after its lease: at most what
    // the dispatcher held claimed.
    assert!((0..=CLAIMED_AT_MOST).contains(&duplicates), "{duplicates} duplicates");
    assert!(stack.all_alive(), "no process was restarted or died");
    stack.finish().await;
}

both_backends!(
    a_process_killed_mid_send_loses_and_doubles_no_message,
    a_provider_storm_is_classified_and_loses_nothing
);

async fn a_provider_storm_is_classified_and_loses_nothing(b: Backend) {
    provider_storm::a_provider_storm_is_classified_and_loses_nothing(b).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_disk_running_full_answers_503_and_corrupts_nothing() {
    sqlite_disk_full::the_sqlite_disk_running_full_answers_503_and_corrupts_nothing().await
}

/// Faults of PostgreSQL + RabbitMQ deployments (skipped, printed, without their variables outside CI).
mod postgres_and_rabbitmq {
    use super::*;

    fn services() -> Option<(Backend, String)> {
        Some((Backend::postgres()?, amqp_url()?))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_broker_outage_mid_send_loses_nothing_and_the_api_keeps_accepting() {
        if let Some((b, amqp)) = services() {
            super::a_broker_outage_mid_send_loses_nothing_and_the_api_keeps_accepting(b, amqp).await
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_database_outage_answers_503_and_the_same_processes_recover() {
        if let Some((b, amqp)) = services() {
            super::a_database_outage_answers_503_and_the_same_processes_recover(b, amqp).await
        }
    }
}
