//! The event pipeline: outbox → relay → transport → consumers, on (SQLite + in-process),
//! (PostgreSQL + in-process) and (PostgreSQL + RabbitMQ), with the faults it must survive.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use sea_orm::{DatabaseTransaction, TransactionTrait};
use serde_json::json;
use turumba::app::BuildOptions;
use turumba::modules::events::{
    Confirms, Consumer, EventBus, EventEnvelope, EventMeta, HandlerError, SharedConsumer, Unavailable, ops,
};

use crate::helpers::{Backend, TestApp, amqp_url, eventually};

/// A test consumer: records each event it handled (the handler's effect) and fails on demand.
struct Recorder {
    name: String,
    bindings: Vec<String>,
    handled: Mutex<Vec<EventEnvelope>>,
    poison_name: Option<String>,
    healed: AtomicBool,
}

impl Recorder {
    fn new(name: &str, bindings: &[&str], poison_name: Option<&str>) -> Arc<Self> {
        Arc::new(Recorder {
            name: name.into(),
            bindings: bindings.iter().map(|b| b.to_string()).collect(),
            handled: Mutex::new(Vec::new()),
            poison_name: poison_name.map(str::to_string),
            healed: AtomicBool::new(false),
        })
    }
    fn handled(&self) -> Vec<EventEnvelope> {
        self.handled.lock().unwrap().clone()
    }
    fn count(&self, event_type: &str) -> usize {
        self.handled().iter().filter(|e| e.event_type == event_type).count()
    }
    fn times_handled(&self) -> HashMap<uuid::Uuid, usize> {
        let mut m = HashMap::new();
        for e in self.handled() {
            *m.entry(e.event_id).or_insert(0) += 1;
        }
        m
    }
}

#[async_trait]
impl Consumer for Recorder {
    fn name(&self) -> &str {
        &self.name
    }
    fn bindings(&self) -> Vec<String> {
        self.bindings.clone()
    }
    async fn handle(&self, _txn: &DatabaseTransaction, event: &EventEnvelope) -> Result<(), HandlerError> {
        if let Some(p) = &self.poison_name
            && event.data["name"] == p.as_str()
            && !self.healed.load(Ordering::SeqCst)
        {
            return Err(format!("cannot handle role {p}").into());
        }
        self.handled.lock().unwrap().push(event.clone());
        Ok(())
    }
}

fn opts(consumers: Vec<SharedConsumer>, relay: bool) -> BuildOptions {
    BuildOptions { consumers, relay, ..Default::default() }
}

/// A relay's settings for these tests: batches of 10, a 100 ms poll, a week's retention.
fn relay_settings(max_attempts: i32, listen_url: Option<String>) -> turumba::modules::events::RelaySettings {
    turumba::modules::events::RelaySettings {
        batch_size: 10,
        poll_interval: std::time::Duration::from_millis(100),
        max_attempts,
        retention: chrono::Duration::days(7),
        listen_url,
    }
}

/// Which transport a pipeline test runs on.
#[derive(Clone)]
enum Via {
    InProcess,
    Amqp { url: String, prefix: String },
}

impl Via {
    fn amqp() -> Option<Via> {
        amqp_url()
            .map(|url| Via::Amqp { url, prefix: format!("t{}.", &uuid::Uuid::new_v4().simple().to_string()[..12]) })
    }
    fn apply(&self, s: &mut turumba::config::Settings) {
        if let Via::Amqp { url, prefix } = self {
            s.amqp_url = Some(turumba::config::Secret::new(url.clone()));
            s.events.amqp_prefix = prefix.clone();
        }
    }
    async fn cleanup(&self, app: &TestApp, queues: &[&str]) {
        if let Some(a) = app.state.events.amqp() {
            let _ = a.delete_topology(queues).await;
        }
    }
}

async fn identity_events_flow_once(b: Backend, via: Via) {
    let rec = Recorder::new("test_audit", &["#"], None);
    let app = TestApp::spawn_full(b, |s| via.apply(s), opts(vec![rec.clone()], true)).await;
    let u = app.user("eva").await;
    let role = app
        .post("/v1/roles")
        .token(&u.token)
        .header("X-Request-Id", "req-role-1")
        .json(json!({"name": "auditor", "permissions": {"audit:read": true}}))
        .send()
        .await;
    role.expect(201, None);
    let other = app.user("ollie").await;
    app.add_member(&u, &other, "viewer").await;
    eventually(20, "role.created and member.added reach the consumer", || async {
        rec.count("role.created") == 1 && rec.count("member.added") == 1 && rec.count("account.created") == 2
    })
    .await;
    let events = rec.handled();
    let created = events.iter().find(|e| e.event_type == "role.created").unwrap();
    assert_eq!(created.aggregate_type, "role");
    assert_eq!(created.aggregate_id.to_string(), role.id());
    assert_eq!(created.account_id.unwrap().to_string(), u.account_id);
    assert_eq!(created.user_id.unwrap().to_string(), u.user_id);
    assert_eq!(created.request_id.as_deref(), Some("req-role-1"));
    assert_eq!(created.data["name"], "auditor");
    eventually(10, "the outbox drains", || async {
        let s = ops::outbox_status(&app.state.db).await.unwrap();
        s.pending == 0 && s.failed == 0 && s.published >= 4
    })
    .await;
    assert!(rec.times_handled().values().all(|n| *n == 1), "every event handled exactly once");
    via.cleanup(&app, &["test_audit"]).await;
}

async fn a_poisoned_event_is_dead_lettered_after_five_attempts(b: Backend, via: Via) {
    let rec = Recorder::new("test_roles", &["role.*"], Some("poison"));
    let app = TestApp::spawn_full(b, |s| via.apply(s), opts(vec![rec.clone()], true)).await;
    let u = app.user("pete").await;
    for name in ["poison", "fine"] {
        app.create_role(&u.token, name).await;
    }
    // The poisoned event does not block the next one.
    eventually(20, "the healthy event is handled", || async { rec.count("role.created") == 1 }).await;
    let amqp = app.state.events.amqp().cloned();
    eventually(30, "the poisoned event reaches the dead-letter queue", || async {
        ops::dlq_list(&app.state.db, amqp.as_deref(), 10).await.unwrap().len() == 1
    })
    .await;
    let letters = ops::dlq_list(&app.state.db, amqp.as_deref(), 10).await.unwrap();
    assert_eq!(letters[0].queue, "test_roles");
    assert_eq!(letters[0].attempts, 5);
    assert_eq!(letters[0].event_type, "role.created");
    assert!(letters[0].error.contains("cannot handle role poison"), "{}", letters[0].error);
    // Nothing stays stuck in the outbox either.
    eventually(10, "outbox drained", || async { ops::outbox_status(&app.state.db).await.unwrap().pending == 0 }).await;

    // Fixed handler: a replay delivers it again, only to the consumer that failed.
    rec.healed.store(true, Ordering::SeqCst);
    let n = ops::dlq_replay(&app.state.db, amqp.as_deref(), 10).await.unwrap();
    assert_eq!(n, 1);
    app.state.events.committed();
    eventually(20, "the replayed event is handled", || async { rec.count("role.created") == 2 }).await;
    assert!(ops::dlq_list(&app.state.db, amqp.as_deref(), 10).await.unwrap().is_empty());
    assert!(rec.times_handled().values().all(|n| *n == 1));
    via.cleanup(&app, &["test_roles"]).await;
}

async fn a_relay_dying_after_publish_causes_no_double_effect(b: Backend, via: Via) {
    let rec = Recorder::new("test_crash", &["drill.*"], None);
    let app = TestApp::spawn_full(b, |s| via.apply(s), opts(vec![rec.clone()], false)).await;
    let events = write_events(&app, "drill.happened", 5).await;
    let relay = app.state.events.relay();
    // The "crashed" relay published everything but recorded nothing.
    assert_eq!(relay.publish_without_recording().await.unwrap(), 5);
    eventually(20, "first delivery handled", || async { rec.handled().len() == 5 }).await;
    assert_eq!(ops::outbox_status(&app.state.db).await.unwrap().pending, 5, "rows are still pending");
    // A new relay publishes them again; the consumer drops the duplicates.
    let outcome = relay.pass().await.unwrap();
    assert_eq!(outcome.published, 5);
    assert_eq!(ops::outbox_status(&app.state.db).await.unwrap().pending, 0);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let times = rec.times_handled();
    assert_eq!(times.len(), 5);
    assert!(events.iter().all(|id| times.get(id) == Some(&1)), "each effect happened once: {times:?}");
    via.cleanup(&app, &["test_crash"]).await;
}

/// Writes `n` events through an EventBus in one transaction, as a service would.
/// A consumer that refuses roles named `refused` for good and asks for `later` to come back after a
/// wait (once), as a provider answering 400 or 429 with `Retry-After` would make a dispatcher do.
struct Judge {
    attempts: Mutex<HashMap<String, usize>>,
    handled: Mutex<Vec<String>>,
}

#[async_trait]
impl Consumer for Judge {
    fn name(&self) -> &str {
        "test_judge"
    }
    fn bindings(&self) -> Vec<String> {
        vec!["role.created".into()]
    }
    async fn handle(&self, _txn: &DatabaseTransaction, event: &EventEnvelope) -> Result<(), HandlerError> {
        let name = event.data["name"].as_str().unwrap_or_default().to_string();
        let attempt = {
            let mut a = self.attempts.lock().unwrap();
            let n = a.entry(name.clone()).or_insert(0);
            *n += 1;
            *n
        };
        match name.as_str() {
            "refused" => Err(HandlerError::Permanent("the provider refuses this recipient".into())),
            "later" if attempt == 1 => Err(HandlerError::RetryAfter {
                error: "rate limited".into(),
                after: std::time::Duration::from_millis(300),
            }),
            _ => {
                self.handled.lock().unwrap().push(name);
                Ok(())
            }
        }
    }
}

/// A permanent refusal is dead-lettered after its first attempt (no retries); a "retry after" is tried
/// again and then handled; neither holds up the others.
async fn each_failure_kind_is_settled_its_own_way(b: Backend, via: Via) {
    let judge = Arc::new(Judge { attempts: Mutex::new(HashMap::new()), handled: Mutex::new(Vec::new()) });
    let app = TestApp::spawn_full(b, |s| via.apply(s), opts(vec![judge.clone()], true)).await;
    let u = app.user("judith").await;
    for name in ["refused", "later", "fine"] {
        app.create_role(&u.token, name).await;
    }
    eventually(30, "the deferred and the healthy events are handled", || async {
        let mut h = judge.handled.lock().unwrap().clone();
        h.sort();
        h == ["fine", "later"]
    })
    .await;
    let amqp = app.state.events.amqp().cloned();
    eventually(30, "the refused event reaches the dead-letter queue", || async {
        ops::dlq_list(&app.state.db, amqp.as_deref(), 10).await.unwrap().len() == 1
    })
    .await;
    let letters = ops::dlq_list(&app.state.db, amqp.as_deref(), 10).await.unwrap();
    assert_eq!(letters[0].queue, "test_judge");
    assert_eq!(letters[0].attempts, 1, "a permanent failure is not retried");
    assert!(letters[0].error.contains("refuses this recipient"), "{}", letters[0].error);
    let attempts = judge.attempts.lock().unwrap().clone();
    assert_eq!(attempts["refused"], 1);
    assert_eq!(attempts["later"], 2, "retried once after its wait, then handled");
    assert_eq!(attempts["fine"], 1);
    via.cleanup(&app, &["test_judge"]).await;
}

async fn write_events(app: &TestApp, event_type: &str, n: usize) -> Vec<uuid::Uuid> {
    let txn = app.state.db.begin().await.unwrap();
    let mut bus = EventBus::new(EventMeta::default());
    for i in 0..n {
        bus.emit(event_type, "drill", uuid::Uuid::now_v7(), None, json!({ "i": i }));
    }
    let ids = bus.events().iter().map(|e| e.event_id).collect();
    bus.flush(&txn).await.unwrap();
    txn.commit().await.unwrap();
    ids
}

mod in_process {
    use super::*;

    async fn identity_events_flow_through_the_outbox(b: Backend) {
        identity_events_flow_once(b, Via::InProcess).await
    }
    async fn poisoned_events_are_dead_lettered(b: Backend) {
        a_poisoned_event_is_dead_lettered_after_five_attempts(b, Via::InProcess).await
    }
    async fn relay_crash_after_publish_is_deduplicated(b: Backend) {
        a_relay_dying_after_publish_causes_no_double_effect(b, Via::InProcess).await
    }

    async fn failures_are_settled_by_kind(b: Backend) {
        each_failure_kind_is_settled_its_own_way(b, Via::InProcess).await
    }
    both_backends!(
        identity_events_flow_through_the_outbox,
        poisoned_events_are_dead_lettered,
        relay_crash_after_publish_is_deduplicated,
        failures_are_settled_by_kind
    );
}

/// PostgreSQL + RabbitMQ. Skipped (with a printed reason) without TURUMBA_TEST_AMQP_URL, except in CI.
mod rabbitmq {
    use super::*;

    async fn setup() -> Option<(Backend, Via)> {
        let via = Via::amqp()?;
        let b = Backend::postgres()?;
        Some((b, via))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn identity_events_flow_through_rabbitmq() {
        let Some((b, via)) = setup().await else { return };
        identity_events_flow_once(b, via).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn poisoned_events_end_in_the_rabbitmq_dlq() {
        let Some((b, via)) = setup().await else { return };
        a_poisoned_event_is_dead_lettered_after_five_attempts(b, via).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failures_are_settled_by_kind_over_rabbitmq() {
        let Some((b, via)) = setup().await else { return };
        each_failure_kind_is_settled_its_own_way(b, via).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn relay_crash_after_publish_is_deduplicated_over_rabbitmq() {
        let Some((b, via)) = setup().await else { return };
        a_relay_dying_after_publish_causes_no_double_effect(b, via).await
    }
}

/// Faults that need a real broker or several relays: PostgreSQL + RabbitMQ.
mod faults {
    use super::*;
    use crate::helpers::Proxy;
    use sea_orm::ConnectionTrait;

    /// `amqp://user:pass@host:port/vhost` → (`host:port`, the URL through `127.0.0.1:proxy_port`).
    fn through_proxy(url: &str, proxy_port: u16) -> (String, String) {
        let (scheme_auth, rest) = url.split_once('@').expect("URL has credentials");
        let (hostport, vhost) = rest.split_once('/').unwrap_or((rest, ""));
        (hostport.to_string(), format!("{scheme_auth}@127.0.0.1:{proxy_port}/{vhost}"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_broker_outage_loses_nothing_and_publishes_everything_after() {
        let Some(Via::Amqp { url, prefix }) = Via::amqp() else { return };
        let Some(b) = Backend::postgres() else { return };
        let (target, _) = through_proxy(&url, 0);
        let proxy = Proxy::start(target).await;
        let (_, proxied) = through_proxy(&url, proxy.port);
        let via = Via::Amqp { url: proxied, prefix };
        let rec = Recorder::new("test_outage", &["role.*"], None);
        let app = TestApp::spawn_full(b, |s| via.apply(s), opts(vec![rec.clone()], true)).await;
        let u = app.user("olga").await;
        app.create_role(&u.token, "before").await;
        eventually(20, "the pipeline works before the outage", || async { rec.count("role.created") == 1 }).await;
        assert_eq!(app.get("/readyz").send().await.status, 200);

        proxy.down();
        for i in 0..5 {
            let r = app
                .post("/v1/roles")
                .token(&u.token)
                .json(json!({"name": format!("during-{i}"), "permissions": {}}))
                .send()
                .await;
            r.expect(201, None);
        }
        app.get("/readyz").send().await.expect(503, Some("service_unavailable"));
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let s = ops::outbox_status(&app.state.db).await.unwrap();
        assert_eq!((s.pending, s.failed), (5, 0), "events wait in the outbox, none failed: {s:?}");
        assert_eq!(rec.count("role.created"), 1);

        proxy.up();
        eventually(45, "every event written during the outage is published and handled", || async {
            rec.count("role.created") == 6 && ops::outbox_status(&app.state.db).await.unwrap().pending == 0
        })
        .await;
        assert!(rec.times_handled().values().all(|n| *n == 1));
        assert_eq!(app.get("/readyz").send().await.status, 200);
        via.cleanup(&app, &["test_outage"]).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_relays_on_postgres_publish_every_row_exactly_once() {
        let Some(via) = Via::amqp() else { return };
        let Some(b) = Backend::postgres() else { return };
        let rec = Recorder::new("test_two_relays", &["drill.*"], None);
        let app = TestApp::spawn_full(b, |s| via.apply(s), opts(vec![rec.clone()], false)).await;
        let mut ids = Vec::new();
        for _ in 0..30 {
            ids.extend(write_events(&app, "drill.parallel", 10).await);
        }
        let stop = tokio_util::sync::CancellationToken::new();
        let one = tokio::spawn(app.state.events.relay().run(stop.clone()));
        let two = tokio::spawn(app.state.events.relay().run(stop.clone()));
        eventually(60, "300 events handled", || async { rec.handled().len() >= 300 }).await;
        eventually(10, "outbox drained", || async { ops::outbox_status(&app.state.db).await.unwrap().pending == 0 })
            .await;
        stop.cancel();
        let _ = tokio::join!(one, two);
        let times = rec.times_handled();
        assert_eq!(times.len(), 300);
        assert!(ids.iter().all(|id| times.get(id) == Some(&1)), "every event handled once");
        // SKIP LOCKED: no row was ever published by both relays (each was marked after one publish).
        let row = app
            .state
            .db
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                "SELECT count(*) AS n FROM outbox_events WHERE status <> 'published' OR attempts <> 1".to_string(),
            ))
            .await
            .unwrap()
            .unwrap();
        let n: i64 = row.try_get("", "n").unwrap();
        assert_eq!(n, 0);
        via.cleanup(&app, &["test_two_relays"]).await;
    }
}

async fn operator_cli_shows_outbox_and_dead_letters(b: Backend) {
    let rec = Recorder::new("test_cli", &["role.*"], Some("poison"));
    let app = TestApp::spawn_full(b, |_| {}, opts(vec![rec.clone()], true)).await;
    let u = app.user("carl").await;
    app.create_role(&u.token, "poison").await;
    eventually(30, "dead letter stored", || async { ops::dlq_list(&app.state.db, None, 10).await.unwrap().len() == 1 })
        .await;
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_turumba"))
            .args(args)
            .env("DATABASE_URL", &app.settings.database_url)
            .env("TURUMBA_DATA_DIR", app.data_dir())
            .env("TURUMBA_LOG", "error")
            .env_remove("AMQP_URL")
            .output()
            .expect("the binary runs");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let status = cli(&["outbox", "status"]);
    assert!(status.contains("pending    0"), "{status}");
    assert!(status.contains("failed     0"), "{status}");
    assert!(!status.contains("published  0"), "{status}");
    let dlq = cli(&["dlq", "list"]);
    assert!(dlq.contains("role.created queue=test_cli attempts=5"), "{dlq}");
    assert!(dlq.contains("cannot handle role poison"), "{dlq}");
    assert_eq!(cli(&["outbox", "retry-failed"]).trim(), "re-queued 0 event(s)");
}

async fn metrics_show_the_pipeline(b: Backend) {
    let rec = Recorder::new("test_metrics", &["role.*"], None);
    let app = TestApp::spawn_full(b, |_| {}, opts(vec![rec.clone()], true)).await;
    let u = app.user("mia").await;
    app.create_role(&u.token, "m").await;
    eventually(20, "handled", || async { rec.count("role.created") == 1 }).await;
    eventually(10, "metrics exported", || async {
        let text = app.get("/metrics").send().await.body.as_str().unwrap_or_default().to_string();
        text.contains("consumer_handled_total{queue=\"test_metrics\"}")
            && text.contains("outbox_publish_latency_seconds_bucket")
            && text.contains("outbox_pending")
            && text.contains("outbox_oldest_pending_age_seconds")
    })
    .await;
}

both_backends!(operator_cli_shows_outbox_and_dead_letters, metrics_show_the_pipeline);

async fn split_roles_need_postgres_and_a_broker(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let url = crate::helpers::fresh_database(&b, dir.path()).await;
    let settings = turumba::config::Settings::for_test(dir.path(), &url);
    for role in [turumba::app::Role::Api, turumba::app::Role::OutboxRelay, turumba::app::Role::Worker] {
        let err = turumba::app::Application::build(settings.clone(), BuildOptions { role, ..Default::default() })
            .await
            .err()
            .expect("refused without a broker");
        assert!(err.contains("needs a shared database and a broker"), "{err}");
    }
}

mod roles {
    use super::*;
    both_backends!(split_roles_need_postgres_and_a_broker);
}

/// A transport that refuses every event (as RabbitMQ does for an unroutable mandatory message), to
/// exercise the relay's bookkeeping against the real outbox.
struct Refusing;

#[async_trait]
impl turumba::modules::events::Transport for Refusing {
    async fn send(&self, events: &[EventEnvelope]) -> Result<Confirms, Unavailable> {
        let outcomes = events.iter().map(|_| Err("unroutable: NO_ROUTE".to_string())).collect();
        Ok(Box::pin(async move { Ok(outcomes) }))
    }
    async fn check(&self) -> Result<(), String> {
        Ok(())
    }
    fn name(&self) -> &'static str {
        "refusing"
    }
}

async fn refused_events_back_off_fail_and_can_be_retried(b: Backend) {
    let rec = Recorder::new("test_retry", &["drill.*"], None);
    let app = TestApp::spawn_full(b, |_| {}, opts(vec![rec.clone()], false)).await;
    write_events(&app, "drill.refused", 1).await;
    let refusing = turumba::modules::events::Relay::new(
        app.state.db.clone(),
        Arc::new(Refusing),
        relay_settings(2, None),
        Arc::new(tokio::sync::Notify::new()),
    );
    assert_eq!(refusing.pass().await.unwrap().failed, 1);
    let s = ops::outbox_status(&app.state.db).await.unwrap();
    assert_eq!((s.pending, s.failed), (1, 0), "first refusal: pending again, backing off");
    // Not due yet: the backoff holds it back.
    assert_eq!(refusing.pass().await.unwrap(), Default::default());
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(refusing.pass().await.unwrap().failed, 1);
    let s = ops::outbox_status(&app.state.db).await.unwrap();
    assert_eq!((s.pending, s.failed), (0, 1), "second refusal reaches the limit: failed");
    let failed = ops::outbox_failed(&app.state.db, 10).await.unwrap();
    assert_eq!(failed[0].attempts, 2);
    assert_eq!(failed[0].last_error.as_deref(), Some("unroutable: NO_ROUTE"));

    // The operator re-queues it; a working relay publishes it.
    assert_eq!(ops::outbox_retry_failed(&app.state.db, None).await.unwrap(), 1);
    assert_eq!(app.state.events.relay().pass().await.unwrap().published, 1);
    eventually(10, "handled after the retry", || async { rec.handled().len() == 1 }).await;
    // Published rows are purged after the retention.
    assert_eq!(
        ops::outbox_purge_published(&app.state.db, chrono::Utc::now() - chrono::Duration::days(1)).await.unwrap(),
        0
    );
    assert_eq!(
        ops::outbox_purge_published(&app.state.db, chrono::Utc::now() + chrono::Duration::seconds(1)).await.unwrap(),
        1
    );
    assert_eq!(ops::outbox_status(&app.state.db).await.unwrap(), Default::default());
}

/// Records the order in which the relay hands events to the transport.
#[derive(Default)]
struct OrderRecorder {
    seen: Mutex<Vec<uuid::Uuid>>,
}

#[async_trait]
impl turumba::modules::events::Transport for OrderRecorder {
    async fn send(&self, events: &[EventEnvelope]) -> Result<Confirms, Unavailable> {
        self.seen.lock().unwrap().extend(events.iter().map(|e| e.event_id));
        let n = events.len();
        // A little confirm latency, so that the next claims overlap with it.
        Ok(Box::pin(async move {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            Ok(vec![Ok(()); n])
        }))
    }
    async fn check(&self) -> Result<(), String> {
        Ok(())
    }
    fn name(&self) -> &'static str {
        "order-recorder"
    }
}

/// A backlog of many full batches (PostgreSQL pipelines them: the next batches are claimed and sent
/// while the earlier ones await their confirms): every event is published once, in commit order, and
/// marked published.
async fn a_backlog_is_published_once_and_in_order(b: Backend) {
    use turumba::modules::events::Relay;
    let app = TestApp::spawn_full(b, |_| {}, opts(vec![], false)).await;
    let mut ids = Vec::new();
    for _ in 0..7 {
        ids.extend(write_events(&app, "drill.order", 8).await);
    }
    let transport = Arc::new(OrderRecorder::default());
    let relay = Relay::new(
        app.state.db.clone(),
        transport.clone(),
        relay_settings(10, None),
        Arc::new(tokio::sync::Notify::new()),
    );
    let mut published = 0;
    let mut passes = Vec::new();
    loop {
        let o = relay.pass().await.unwrap();
        assert!(!o.unavailable && o.failed == 0, "{o:?}");
        if o.published == 0 {
            break;
        }
        passes.push(o.published);
        published += o.published;
    }
    if app.state.db.get_database_backend() == sea_orm::DbBackend::Postgres {
        assert_eq!(passes, vec![56], "one pass drains the backlog, batch after batch");
    } else {
        assert_eq!(passes, vec![10, 10, 10, 10, 10, 6], "SQLite: one batch per pass");
    }
    assert_eq!(published, 56);
    assert_eq!(*transport.seen.lock().unwrap(), ids, "published once each, in commit order");
    assert_eq!(ops::outbox_status(&app.state.db).await.unwrap().pending, 0);
}

mod bookkeeping {
    use super::*;
    both_backends!(refused_events_back_off_fail_and_can_be_retried, a_backlog_is_published_once_and_in_order);
}

/// Hands every batch over at once and holds its confirms until the test opens that batch's gate
/// (with the broker's answer: confirmed, or the connection lost).
#[derive(Default)]
struct Gated {
    sent: Mutex<Vec<Vec<uuid::Uuid>>>,
    gates: Mutex<Vec<Option<tokio::sync::oneshot::Sender<bool>>>>,
}

impl Gated {
    fn sent(&self) -> Vec<Vec<uuid::Uuid>> {
        self.sent.lock().unwrap().clone()
    }
    fn open(&self, batch: usize, confirmed: bool) {
        let gate = self.gates.lock().unwrap()[batch].take().expect("each gate opens once");
        gate.send(confirmed).unwrap();
    }
}

#[async_trait]
impl turumba::modules::events::Transport for Gated {
    async fn send(&self, events: &[EventEnvelope]) -> Result<Confirms, Unavailable> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.sent.lock().unwrap().push(events.iter().map(|e| e.event_id).collect());
        self.gates.lock().unwrap().push(Some(tx));
        let n = events.len();
        Ok(Box::pin(async move {
            match rx.await {
                Ok(true) => Ok(vec![Ok(()); n]),
                _ => Err(Unavailable("connection lost before the confirms".into())),
            }
        }))
    }
    async fn check(&self) -> Result<(), String> {
        Ok(())
    }
    fn name(&self) -> &'static str {
        "gated"
    }
}

/// Every outbox row (PostgreSQL): event id, status, attempts, oldest first.
async fn outbox_rows(app: &TestApp) -> Vec<(uuid::Uuid, String, i32)> {
    use sea_orm::ConnectionTrait;
    let sql = "SELECT event_id, status, attempts FROM outbox_events ORDER BY created_at, id";
    app.state
        .db
        .query_all_raw(sea_orm::Statement::from_string(sea_orm::DbBackend::Postgres, sql.to_string()))
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            (r.try_get("", "event_id").unwrap(), r.try_get("", "status").unwrap(), r.try_get("", "attempts").unwrap())
        })
        .collect()
}

/// PostgreSQL: events that commit while a batch awaits its confirms are claimed and sent at once, not
/// after that batch is confirmed; each batch is marked published only on its own confirms, and a batch
/// whose confirms were lost stays pending (no attempt counted) even when a later one was confirmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_committed_during_a_publish_do_not_wait_for_its_confirms() {
    use turumba::modules::events::Relay;
    let Some(b) = Backend::postgres() else { return };
    let app = TestApp::spawn_full(b, |_| {}, opts(vec![], false)).await;
    let transport = Arc::new(Gated::default());
    let wake = Arc::new(tokio::sync::Notify::new());
    let relay = Arc::new(Relay::new(app.state.db.clone(), transport.clone(), relay_settings(10, None), wake.clone()));
    let first = write_events(&app, "drill.pipeline", 3).await;
    let pass = tokio::spawn({
        let relay = relay.clone();
        async move { relay.pass().await.unwrap() }
    });
    eventually(10, "the first batch is handed over", || async { transport.sent().len() == 1 }).await;

    // Committed while the first batch's confirms are outstanding.
    let second = write_events(&app, "drill.pipeline", 2).await;
    wake.notify_one();
    eventually(10, "the second batch is handed over before the first is confirmed", || async {
        transport.sent().len() == 2
    })
    .await;
    assert_eq!(transport.sent(), vec![first.clone(), second.clone()]);
    assert!(!pass.is_finished());
    assert!(
        outbox_rows(&app).await.iter().all(|(_, status, _)| status == "pending"),
        "nothing marked before a confirm"
    );

    // The broker confirms the second batch, the connection drops before the first one's confirms.
    transport.open(1, true);
    transport.open(0, false);
    let outcome = pass.await.unwrap();
    assert_eq!((outcome.published, outcome.failed, outcome.unavailable), (2, 0, true));
    let rows = outbox_rows(&app).await;
    for (id, status, attempts) in &rows {
        if first.contains(id) {
            assert_eq!((status.as_str(), *attempts), ("pending", 0), "lost batch: pending, no attempt counted");
        } else {
            assert!(second.contains(id));
            assert_eq!((status.as_str(), *attempts), ("published", 1));
        }
    }

    // The next pass sends the lost batch again and marks it once confirmed.
    let pass = tokio::spawn({
        let relay = relay.clone();
        async move { relay.pass().await.unwrap() }
    });
    eventually(10, "the lost batch is handed over again", || async { transport.sent().len() == 3 }).await;
    assert_eq!(transport.sent()[2], first);
    transport.open(2, true);
    assert_eq!(pass.await.unwrap().published, 3);
    assert!(outbox_rows(&app).await.iter().all(|(_, status, _)| status == "published"));
}

/// PostgreSQL: a relay in another process sleeps until a writer's commit sends its `NOTIFY` (written
/// in the same statement as the outbox rows), not until its poll interval (here a minute).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_elsewhere_wakes_at_the_writers_commit() {
    use turumba::modules::events::{Relay, RelaySettings};
    let Some(b) = Backend::postgres() else { return };
    let app = TestApp::spawn_full(b, |_| {}, opts(vec![], false)).await;
    let transport = Arc::new(OrderRecorder::default());
    let relay = Relay::new(
        app.state.db.clone(),
        transport.clone(),
        RelaySettings {
            poll_interval: std::time::Duration::from_secs(60),
            ..relay_settings(10, Some(app.settings.database_url.clone()))
        },
        // Its own doorbell, which no writer here rings: only the database can wake it.
        Arc::new(tokio::sync::Notify::new()),
    );
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(relay.run(shutdown.clone()));
    // Its first pass finds nothing; then it listens.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let written = write_events(&app, "drill.doorbell", 2).await;
    eventually(10, "the relay publishes at the commit", || async { *transport.seen.lock().unwrap() == written }).await;
    shutdown.cancel();
    running.await.unwrap();
}

/// A consumer whose effect is a row in `test_effects` (with the id of the transaction that wrote it on
/// PostgreSQL), handling deliveries in batches. The event whose `data.i` is poisoned fails after
/// writing its effect (so a rollback must remove it); a clashing one writes a row that breaks a
/// deferred unique constraint, so its transaction fails only at commit.
struct Effects {
    name: String,
    batch: usize,
    poison_i: Mutex<Option<i64>>,
    clashing: Mutex<std::collections::HashSet<uuid::Uuid>>,
}

impl Effects {
    fn new(name: &str, batch: usize) -> Arc<Self> {
        Arc::new(Effects { name: name.into(), batch, poison_i: Mutex::default(), clashing: Mutex::default() })
    }

    fn poison(&self, i: Option<i64>) {
        *self.poison_i.lock().unwrap() = i;
    }

    /// The tables the effects go to (before any event is written).
    async fn create_tables(app: &TestApp) {
        use sea_orm::ConnectionTrait;
        let db = &app.state.db;
        db.execute_unprepared("CREATE TABLE test_effects (event_id TEXT PRIMARY KEY, txid BIGINT NOT NULL)")
            .await
            .unwrap();
        if db.get_database_backend() == sea_orm::DbBackend::Postgres {
            db.execute_unprepared("CREATE TABLE test_clash (k INT, UNIQUE (k) DEFERRABLE INITIALLY DEFERRED)")
                .await
                .unwrap();
            db.execute_unprepared("INSERT INTO test_clash (k) VALUES (1)").await.unwrap();
        }
    }

    /// (event id, transaction id) of every effect.
    async fn effects(app: &TestApp) -> Vec<(String, i64)> {
        use sea_orm::ConnectionTrait;
        let db = &app.state.db;
        let sql = "SELECT event_id, txid FROM test_effects ORDER BY event_id";
        db.query_all_raw(sea_orm::Statement::from_string(db.get_database_backend(), sql.to_string()))
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.try_get("", "event_id").unwrap(), r.try_get("", "txid").unwrap()))
            .collect()
    }
}

#[async_trait]
impl Consumer for Effects {
    fn name(&self) -> &str {
        &self.name
    }
    fn bindings(&self) -> Vec<String> {
        vec!["drill.#".into()]
    }
    fn batch_size(&self) -> usize {
        self.batch
    }
    async fn handle(&self, txn: &DatabaseTransaction, event: &EventEnvelope) -> Result<(), HandlerError> {
        use sea_orm::ConnectionTrait;
        let pg = txn.get_database_backend() == sea_orm::DbBackend::Postgres;
        let txid = if pg { "txid_current()" } else { "0" };
        let id = event.event_id;
        txn.execute_unprepared(&format!("INSERT INTO test_effects (event_id, txid) VALUES ('{id}', {txid})"))
            .await
            .map_err(|e| e.to_string())?;
        if self.clashing.lock().unwrap().contains(&id) {
            txn.execute_unprepared("INSERT INTO test_clash (k) VALUES (1)").await.map_err(|e| e.to_string())?;
        }
        let poison = *self.poison_i.lock().unwrap();
        if poison.is_some() && event.data["i"].as_i64() == poison {
            return Err(format!("poisoned event {}", event.data["i"]).into());
        }
        Ok(())
    }
}

fn drill_events(n: usize) -> Vec<EventEnvelope> {
    let meta = EventMeta::default();
    (0..n)
        .map(|i| EventEnvelope::new(&meta, "drill.batch", "drill", uuid::Uuid::now_v7(), None, json!({ "i": i })))
        .collect()
}

/// A batch is recorded and handled in one transaction; when one handler fails, the batch is rolled
/// back and handled event by event: the failing event fails alone (its effect gone), the others are
/// handled once, a delivery repeated inside the batch is a duplicate, and handling the batch again
/// only handles what failed.
async fn a_consumer_batch_commits_once_and_the_failing_event_fails_alone(b: Backend) {
    use turumba::modules::events::Outcome::{Duplicate, Failed, Handled};
    use turumba::modules::events::process_batch;
    let app = TestApp::spawn_full(b, |_| {}, opts(vec![], false)).await;
    Effects::create_tables(&app).await;
    let fx = Effects::new("test_batch", 16);
    let pg = app.state.db.get_database_backend() == sea_orm::DbBackend::Postgres;

    let healthy = drill_events(5);
    assert_eq!(process_batch(&app.state.db, fx.as_ref(), &healthy).await, vec![Handled; 5]);
    let effects = Effects::effects(&app).await;
    assert_eq!(effects.len(), 5);
    if pg {
        let txids: std::collections::HashSet<i64> = effects.iter().map(|e| e.1).collect();
        assert_eq!(txids.len(), 1, "one transaction for the batch: {effects:?}");
    }

    let events = drill_events(5);
    fx.poison(Some(2));
    let mut delivered = events.clone();
    delivered.push(events[0].clone());
    let outcomes = process_batch(&app.state.db, fx.as_ref(), &delivered).await;
    assert_eq!(outcomes, vec![Handled, Handled, Failed("poisoned event 2".into()), Handled, Handled, Duplicate]);
    let effects = Effects::effects(&app).await;
    assert_eq!(effects.len(), 9, "the poisoned event's effect was rolled back");
    assert!(!effects.iter().any(|e| e.0 == events[2].event_id.to_string()));
    // Already handled ones are duplicates; the one that failed is handled now that it is healed.
    fx.poison(None);
    let outcomes = process_batch(&app.state.db, fx.as_ref(), &events).await;
    assert_eq!(outcomes, vec![Duplicate, Duplicate, Handled, Duplicate, Duplicate]);
    assert_eq!(Effects::effects(&app).await.len(), 10);
    for e in healthy.iter().chain(&events) {
        assert!(turumba::modules::events::was_processed(&app.state.db, "test_batch", e.event_id).await.unwrap());
    }
}

/// PostgreSQL: a batch whose commit fails (a deferred constraint) is handled again event by event; only
/// the event that breaks the constraint fails, with the database's error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_cannot_commit_is_handled_again_event_by_event() {
    use turumba::modules::events::{Outcome, process_batch, was_processed};
    let Some(b) = Backend::postgres() else { return };
    let app = TestApp::spawn_full(b, |_| {}, opts(vec![], false)).await;
    Effects::create_tables(&app).await;
    let fx = Effects::new("test_batch_commit", 16);
    let events = drill_events(4);
    fx.clashing.lock().unwrap().insert(events[1].event_id);
    let outcomes = process_batch(&app.state.db, fx.as_ref(), &events).await;
    assert_eq!(outcomes[0], Outcome::Handled);
    assert!(matches!(&outcomes[1], Outcome::Failed(e) if e.starts_with("database")), "{outcomes:?}");
    assert_eq!(outcomes[2..], [Outcome::Handled, Outcome::Handled]);
    let effects = Effects::effects(&app).await;
    assert_eq!(effects.len(), 3);
    assert!(!effects.iter().any(|e| e.0 == events[1].event_id.to_string()));
    let txids: std::collections::HashSet<i64> = effects.iter().map(|e| e.1).collect();
    assert_eq!(txids.len(), 3, "one transaction per event after the failed batch");
    assert!(!was_processed(&app.state.db, "test_batch_commit", events[1].event_id).await.unwrap());
}

/// A burst through the running pipeline to a batching consumer: every event's effect happens once, the
/// poisoned one ends in the dead-letter queue after 5 attempts without holding up the rest, and
/// nothing is left unacknowledged.
async fn a_batching_consumer_handles_a_burst_once(b: Backend, via: Via) {
    let fx = Effects::new("test_burst", 16);
    let app = TestApp::spawn_full(b, |s| via.apply(s), opts(vec![fx.clone()], true)).await;
    Effects::create_tables(&app).await;
    fx.poison(Some(7));
    let ids = write_events(&app, "drill.burst", 40).await;
    app.state.events.committed();
    let amqp = app.state.events.amqp().cloned();
    eventually(30, "39 effects and one dead letter", || async {
        Effects::effects(&app).await.len() == 39
            && ops::dlq_list(&app.state.db, amqp.as_deref(), 10).await.unwrap().len() == 1
    })
    .await;
    let mut want: Vec<String> = ids.iter().enumerate().filter(|(i, _)| *i != 7).map(|(_, id)| id.to_string()).collect();
    want.sort();
    let got: Vec<String> = Effects::effects(&app).await.into_iter().map(|e| e.0).collect();
    assert_eq!(got, want, "each effect once, none for the poisoned event");
    let letters = ops::dlq_list(&app.state.db, amqp.as_deref(), 10).await.unwrap();
    assert_eq!((letters[0].queue.as_str(), letters[0].attempts), ("test_burst", 5));
    assert!(letters[0].error.contains("poisoned event 7"), "{}", letters[0].error);
    eventually(10, "outbox drained", || async { ops::outbox_status(&app.state.db).await.unwrap().pending == 0 }).await;
    if let Some(a) = &amqp {
        // Once the consumer has gone, anything it left unacknowledged would be back in the queue.
        app.state.shutdown.cancel();
        eventually(10, "the consumer has left", || async {
            a.queue_stats("test_burst").await.is_ok_and(|(_, consumers)| consumers == 0)
        })
        .await;
        assert_eq!(a.queue_stats("test_burst").await.unwrap(), (0, 0), "nothing left unacknowledged");
    }
    via.cleanup(&app, &["test_burst"]).await;
}

mod batches {
    use super::*;

    async fn a_batching_consumer_handles_a_burst_in_process(b: Backend) {
        a_batching_consumer_handles_a_burst_once(b, Via::InProcess).await
    }

    both_backends!(
        a_consumer_batch_commits_once_and_the_failing_event_fails_alone,
        a_batching_consumer_handles_a_burst_in_process
    );

    /// The audit queue, when on, receives a copy of every event (so events nobody consumes yet are
    /// routable) and is transient (the broker does not persist the copies); when off it is not declared
    /// and such an event is refused as unroutable rather than dropped in silence.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_audit_queue_is_a_transient_tap_and_can_be_left_out() {
        use turumba::modules::events::{Amqp, Transport};
        let Some(Via::Amqp { url, prefix }) = Via::amqp() else { return };
        for on in [true, false] {
            let a = Amqp::new(&url, &format!("{prefix}{on}."), 8, 5, on);
            a.check().await.unwrap();
            let outcomes = a.publish(&drill_events(3)).await.unwrap();
            let stats = a.queue_stats("messaging_audit").await;
            if on {
                assert!(outcomes.iter().all(|o| o.is_ok()), "{outcomes:?}");
                assert_eq!(stats.unwrap(), (3, 0));
                // Declaring it durable now fails: it exists, and not as a durable queue.
                let conn = lapin::Connection::connect(&url, Default::default()).await.unwrap();
                let ch = conn.create_channel().await.unwrap();
                let durable =
                    lapin::options::QueueDeclareOptions { durable: true, passive: false, ..Default::default() };
                let name = format!("{prefix}{on}.messaging_audit");
                let err = ch.queue_declare(name.as_str().into(), durable, Default::default()).await.unwrap_err();
                assert!(err.to_string().contains("PRECONDITION_FAILED"), "{err}");
                let _ = conn.close(200, "bye".into()).await;
            } else {
                assert!(
                    outcomes.iter().all(|o| o.as_ref().is_err_and(|e| e.starts_with("unroutable"))),
                    "{outcomes:?}"
                );
                assert!(stats.is_err(), "no audit queue: {stats:?}");
            }
            a.delete_topology(&[]).await.unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batching_consumer_handles_a_burst_over_rabbitmq() {
        let Some(via) = Via::amqp() else { return };
        let Some(b) = Backend::postgres() else { return };
        a_batching_consumer_handles_a_burst_once(b, via).await
    }
}
