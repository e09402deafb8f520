//! Channels (issue 5): CRUD with per-type credential checks, masking, status transitions, verification
//! and sending through adapters over real HTTP, tenant isolation, credential rotation.

use std::time::Duration;

use serde_json::{Value, json};
use turumba::modules::channels::{ErrorClass, OutboundMessage};
use uuid::Uuid;

use crate::fakes::{self, TELEGRAM_GOOD_TOKEN};
use crate::helpers::{Backend, TestApp, TestUser, eventually};

const TWILIO_TOKEN: &str = "twilio-auth-token-0123456789";

async fn create(app: &TestApp, u: &TestUser, body: Value) -> crate::helpers::Resp {
    app.post("/v1/channels").token(&u.token).json(body).send().await
}

/// Every outbox payload of the test database, as one string (to prove secrets never reach events).
pub async fn outbox_text(app: &TestApp) -> String {
    use sea_orm::ConnectionTrait;
    use sea_orm::sea_query::{Alias, Query};
    let q = Query::select()
        .column(Alias::new("event_type"))
        .column(Alias::new("payload"))
        .from(Alias::new("outbox_events"))
        .to_owned();
    let rows = app.state.db.query_all(&q).await.unwrap();
    rows.iter()
        .map(|r| {
            let t: String = r.try_get("", "event_type").unwrap();
            let p: Value = r.try_get("", "payload").unwrap();
            format!("{t} {p}\n")
        })
        .collect()
}

async fn channels_are_created_checked_masked_and_managed(b: Backend) {
    let app = TestApp::spawn(b).await;
    let u = app.user("owner").await;
    // A sandbox channel needs nothing and verifies at once.
    let r = create(&app, &u, json!({"name": "Try it", "channel_type": "sandbox", "credentials": {}})).await;
    r.expect(201, None);
    assert_eq!(r.data()["status"], "connected");
    assert_eq!(r.data()["retry_count"], 3);
    assert_eq!(r.data()["retry_interval"], 60);
    assert_eq!(r.data()["priority"], 0);
    assert!(r.data()["last_verified_at"].is_string());
    let sandbox = r.id();
    assert_eq!(r.data()["webhook_url"], format!("/v1/webhooks/sandbox/{sandbox}"));

    // Twilio: secrets masked, identifiers shown; the secret appears in no response and no event.
    let twilio_body = json!({
        "name": "SMS", "channel_type": "sms", "provider": "twilio", "sender_name": "Turumba",
        "credentials": {"account_sid": "AC123", "auth_token": TWILIO_TOKEN, "from": "+15005550006"},
        "rate_limit": 600, "priority": 5, "retry_count": 2, "retry_interval": 30, "is_enabled": false
    });
    let r = create(&app, &u, twilio_body.clone()).await;
    r.expect(201, None);
    let twilio = r.id();
    assert_eq!(
        r.data()["credentials"],
        json!({"account_sid": "AC123", "auth_token": "••••6789", "from": "+15005550006"})
    );
    assert_eq!(r.data()["status"], "disabled", "created disabled: not verified, not sending");
    assert_eq!((r.data()["rate_limit"].clone(), r.data()["priority"].clone()), (json!(600), json!(5)));
    create(&app, &u, twilio_body).await.expect(409, Some("conflict"));

    // Wrong credential shapes name the field.
    let r = create(&app, &u, json!({"name": "x", "channel_type": "sms", "provider": "twilio", "credentials": {"account_sid": "AC1", "from": "+1", "token": "t"}})).await;
    r.expect(422, Some("validation_error"));
    assert_eq!(r.error_fields(), vec!["credentials.token", "credentials.auth_token"]);
    let r = create(&app, &u, json!({"name": "x", "channel_type": "sms", "credentials": {}})).await;
    assert_eq!(r.error_fields(), vec!["provider"]);
    let r = create(&app, &u, json!({"name": "x", "channel_type": "fax", "credentials": {}})).await;
    assert_eq!(r.error_fields(), vec!["channel_type"]);
    let r =
        create(&app, &u, json!({"name": " ", "channel_type": "sandbox", "credentials": {}, "retry_count": 99})).await;
    let mut fields = r.error_fields();
    fields.sort();
    assert_eq!(fields, vec!["name", "retry_count"]);
    let r = create(&app, &u, json!({"name": "x", "channel_type": "email", "credentials": {"smtp_host": "h", "smtp_username": "u", "smtp_password": "p", "from_email": "not-mail"}})).await;
    assert_eq!(r.error_fields(), vec!["credentials.from_email"]);
    create(&app, &u, json!({"name": "x", "channel_type": "sandbox", "credentials": {}, "colour": "red"}))
        .await
        .expect(422, None);

    // List with filters; bad filters are 400.
    let r = app.get("/v1/channels?filter=channel_type:eq:sms").token(&u.token).send().await;
    r.expect(200, None);
    assert_eq!(r.data().as_array().unwrap().len(), 1);
    assert_eq!(r.data()[0]["id"], twilio.as_str());
    let r = app.get("/v1/channels?filter=is_enabled:eq:true&sort=name:asc").token(&u.token).send().await;
    assert_eq!(r.data().as_array().unwrap().len(), 1);
    app.get("/v1/channels?filter=status:eq:sleepy").token(&u.token).send().await.expect(400, None);
    app.get("/v1/channels?filter=credentials:eq:x").token(&u.token).send().await.expect(400, None);

    // PATCH replaces single credential fields; the rest is kept.
    let r = app
        .patch(&format!("/v1/channels/{twilio}"))
        .token(&u.token)
        .json(json!({"credentials": {"from": "MG0123"}, "sender_name": null, "rate_limit": null}))
        .send()
        .await;
    r.expect(200, None);
    assert_eq!(r.data()["credentials"]["from"], "MG0123");
    assert_eq!(r.data()["credentials"]["auth_token"], "••••6789");
    assert_eq!(r.data()["sender_name"], Value::Null);
    assert_eq!(r.data()["rate_limit"], Value::Null);
    let r = app
        .patch(&format!("/v1/channels/{twilio}"))
        .token(&u.token)
        .json(json!({"credentials": {"auth_token": null}}))
        .send()
        .await;
    assert_eq!(r.error_fields(), vec!["credentials.auth_token"], "a required field cannot be removed");
    let r = app
        .patch(&format!("/v1/channels/{twilio}"))
        .token(&u.token)
        .json(json!({"default_country_code": "Ethiopia"}))
        .send()
        .await;
    assert_eq!(r.error_fields(), vec!["default_country_code"]);

    // Disabled channels do not verify; disabling is a status.
    app.post(&format!("/v1/channels/{twilio}/verify")).token(&u.token).send().await.expect(409, None);
    let r =
        app.patch(&format!("/v1/channels/{sandbox}")).token(&u.token).json(json!({"is_enabled": false})).send().await;
    assert_eq!(r.data()["status"], "disabled");
    let r =
        app.patch(&format!("/v1/channels/{sandbox}")).token(&u.token).json(json!({"is_enabled": true})).send().await;
    assert_eq!(r.data()["status"], "connected", "enabling verifies again");

    // Permissions: an agent reads channels but cannot manage them.
    let agent = app.user("agent").await;
    app.add_member(&u, &agent, "agent").await;
    let r = app.get("/v1/channels").token(&agent.token).account(&u.account_id).send().await;
    r.expect(200, None);
    create(&app, &agent, json!({"name": "a", "channel_type": "sandbox", "credentials": {}})).await.expect(201, None); // in the agent's own account, where it is admin
    app.post("/v1/channels")
        .token(&agent.token)
        .account(&u.account_id)
        .json(json!({"name": "a", "channel_type": "sandbox", "credentials": {}}))
        .send()
        .await
        .expect(403, None);

    app.delete(&format!("/v1/channels/{twilio}")).token(&u.token).send().await.expect(204, None);
    app.get(&format!("/v1/channels/{twilio}")).token(&u.token).send().await.expect(404, Some("not_found"));

    let events = outbox_text(&app).await;
    assert!(events.contains("channel.created") && events.contains("channel.deleted"));
    assert!(events.contains("channel.status_changed"));
    assert!(!events.contains(TWILIO_TOKEN) && !events.contains("6789\""), "no secret in any event");
    // The stored column holds no plaintext either.
    use sea_orm::{ConnectionTrait, Statement};
    let rows = app
        .state
        .db
        .query_all_raw(Statement::from_string(app.state.db.get_database_backend(), "SELECT credentials FROM channels"))
        .await
        .unwrap();
    for row in rows {
        let sealed: Vec<u8> = row.try_get("", "credentials").unwrap();
        assert!(!String::from_utf8_lossy(&sealed).contains("AC123"));
    }
}

async fn another_tenants_channels_are_404(b: Backend) {
    let app = TestApp::spawn(b).await;
    let alice = app.user("alice").await;
    let mallory = app.user("mallory").await;
    let id = create(&app, &alice, json!({"name": "A", "channel_type": "sandbox", "credentials": {}})).await.id();
    let path = format!("/v1/channels/{id}");
    app.get(&path).token(&mallory.token).send().await.expect(404, Some("not_found"));
    app.patch(&path).token(&mallory.token).json(json!({"name": "stolen"})).send().await.expect(404, None);
    app.post(&format!("{path}/verify")).token(&mallory.token).send().await.expect(404, None);
    app.get(&format!("{path}/health")).token(&mallory.token).send().await.expect(404, None);
    app.delete(&path).token(&mallory.token).send().await.expect(404, None);
    let r = app.get("/v1/channels").token(&mallory.token).send().await;
    assert_eq!(r.data(), &json!([]));
    // Mallory naming Alice's account is refused outright.
    app.get("/v1/channels").token(&mallory.token).account(&alice.account_id).send().await.expect(403, None);
    // Still Alice's, unchanged.
    let r = app.get(&path).token(&alice.token).send().await;
    assert_eq!(r.data()["name"], "A");
    // Same names in two accounts are fine.
    create(&app, &mallory, json!({"name": "A", "channel_type": "sandbox", "credentials": {}})).await.expect(201, None);
}

async fn telegram_channels_verify_send_and_classify_errors_over_http(b: Backend) {
    let tg = fakes::telegram();
    let app = TestApp::spawn_with(b, |s| s.public_base_url = Some("https://turumba.example.org".into())).await;
    let u = app.user("tg").await;
    let body = |name: &str, token: &str| json!({"name": name, "channel_type": "telegram", "credentials": {"bot_token": token, "base_url": tg.base_url}});
    // A bad token: the channel exists, in `error` with the provider's message (not a 500).
    let r = create(&app, &u, body("bad", "999:wrong")).await;
    r.expect(201, None);
    assert_eq!(r.data()["status"], "error");
    assert_eq!(r.data()["error_message"], "telegram: Unauthorized");
    assert_eq!(r.data()["credentials"]["bot_token"], "••••rong");

    // A good one: getMe, then setWebhook with our URL and a generated secret token.
    let r = create(&app, &u, body("good", TELEGRAM_GOOD_TOKEN)).await;
    r.expect(201, None);
    assert_eq!(r.data()["status"], "connected", "{:?}", r.body);
    let id = r.id();
    assert_eq!(r.data()["webhook_url"], format!("https://turumba.example.org/v1/webhooks/telegram/{id}"));
    let get_me = tg.last("/getMe").expect("getMe called");
    assert_eq!(get_me.path, format!("/bot{TELEGRAM_GOOD_TOKEN}/getMe"));
    let hook = tg.last("/setWebhook").expect("setWebhook called").json();
    assert_eq!(hook["url"], format!("https://turumba.example.org/v1/webhooks/telegram/{id}"));
    let secret = hook["secret_token"].as_str().unwrap().to_string();
    assert_eq!(secret.len(), 32);
    assert!(secret.chars().all(|c| c.is_ascii_alphanumeric()));
    // Re-verifying keeps the same secret (Telegram keeps sending the one it has).
    app.post(&format!("/v1/channels/{id}/verify")).token(&u.token).send().await.expect(200, None);
    assert_eq!(tg.last("/setWebhook").unwrap().json()["secret_token"], secret.as_str());

    // Sending through the registry: the exact Bot API request, then each error class.
    let scope = app.state.accounts.operator_scope(Uuid::parse_str(&u.account_id).unwrap()).await.unwrap();
    let registry = app.state.channels.registry();
    let channel = registry.load(scope, Uuid::parse_str(&id).unwrap()).await.unwrap();
    let msg = |to: &str| OutboundMessage {
        message_id: Uuid::now_v7(),
        to: to.into(),
        text: "Selam 👋".into(),
        ..Default::default()
    };
    let receipt = registry.send(scope, &channel, &msg("5550001")).await.unwrap().expect("sent");
    assert_eq!(receipt.provider_message_id.as_deref(), Some("5550001:42"));
    let sent = tg.last("/sendMessage").unwrap();
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.path, format!("/bot{TELEGRAM_GOOD_TOKEN}/sendMessage"));
    assert_eq!(sent.json(), json!({"chat_id": "5550001", "text": "Selam 👋"}));
    assert!(sent.headers.iter().any(|(k, v)| k == "content-type" && v.starts_with("application/json")));

    let e = registry.send(scope, &channel, &msg("403")).await.unwrap().unwrap_err();
    assert_eq!((e.class, e.code.as_deref()), (ErrorClass::Permanent, Some("403")), "blocked by the user");
    let e = registry.send(scope, &channel, &msg("400")).await.unwrap().unwrap_err();
    assert_eq!(e.class, ErrorClass::Permanent);
    assert_eq!(e.message, "telegram: Bad Request: chat not found");
    let e = registry.send(scope, &channel, &msg("500")).await.unwrap().unwrap_err();
    assert_eq!(e.class, ErrorClass::Transient);
    let e = registry.send(scope, &channel, &msg("429")).await.unwrap().unwrap_err();
    assert_eq!((e.class, e.retry_after), (ErrorClass::Throttled, Some(Duration::from_secs(7))));
    let r = app.get(&format!("/v1/channels/{id}")).token(&u.token).send().await;
    assert_eq!(r.data()["status"], "rate_limited");
    assert!(r.data()["rate_limited_until"].is_string());
    let health = app.get(&format!("/v1/channels/{id}/health")).token(&u.token).send().await;
    health.expect(200, None);
    assert_eq!(health.data()["sent_last_hour"], 1);
    assert_eq!(health.data()["failed_last_hour"], 3, "throttled sends are not failures");
    assert_eq!(health.data()["consecutive_failures"], 2);
    assert!(health.data()["latency_ms"].is_number());

    // Success lifts the rate limit; a provider that cannot be reached is transient.
    registry.send(scope, &channel, &msg("1")).await.unwrap().expect("sent");
    let r = app.get(&format!("/v1/channels/{id}")).token(&u.token).send().await;
    assert_eq!(r.data()["status"], "connected");
    let unreachable = create(
        &app,
        &u,
        json!({"name": "down", "channel_type": "telegram", "credentials": {"bot_token": TELEGRAM_GOOD_TOKEN, "base_url": "http://127.0.0.1:9"}}),
    )
    .await;
    assert_eq!(unreachable.data()["status"], "error");
    let message = unreachable.data()["error_message"].as_str().unwrap();
    assert!(message.starts_with("provider unreachable"), "{message}");
    assert!(!message.contains(TELEGRAM_GOOD_TOKEN), "the token is not in the error: {message}");

    // An auth failure while sending puts the channel in `error`.
    let patched = app
        .patch(&format!("/v1/channels/{id}"))
        .token(&u.token)
        .json(json!({"credentials": {"bot_token": "123456:revoked"}}))
        .send()
        .await;
    assert_eq!(patched.data()["status"], "error", "changed credentials are verified again");
    let channel = registry.load(scope, Uuid::parse_str(&id).unwrap()).await.unwrap();
    let e = registry.send(scope, &channel, &msg("1")).await.unwrap().unwrap_err();
    assert_eq!(e.class, ErrorClass::Auth);
    let r = app.get(&format!("/v1/channels/{id}")).token(&u.token).send().await;
    assert_eq!(r.data()["status"], "error");
    assert_eq!(r.data()["error_message"], "telegram: Unauthorized");
    assert!(!r.body.to_string().contains("revoked"), "no secret in the response");
}

async fn five_permanent_failures_in_a_row_put_a_channel_in_error(b: Backend) {
    use turumba::modules::channels::ProviderError;
    let app = TestApp::spawn(b).await;
    let u = app.user("perm").await;
    let id = create(&app, &u, json!({"name": "s", "channel_type": "sandbox", "credentials": {}})).await.id();
    let scope = app.state.accounts.operator_scope(Uuid::parse_str(&u.account_id).unwrap()).await.unwrap();
    let cid = Uuid::parse_str(&id).unwrap();
    let perm = ProviderError::new(ErrorClass::Permanent, "invalid number");
    for i in 1..=4 {
        let c = app.state.channels.report_outcome(scope, cid, Err(&perm)).await.unwrap();
        assert_eq!((c.status.as_str(), c.consecutive_failures), ("connected", i));
    }
    let c = app.state.channels.report_outcome(scope, cid, Err(&perm)).await.unwrap();
    assert_eq!(c.status, "error");
    assert_eq!(c.error_message.as_deref(), Some("5 permanent failures in a row; last: invalid number"));
    let c = app.state.channels.report_outcome(scope, cid, Ok(())).await.unwrap();
    assert_eq!((c.status.as_str(), c.consecutive_failures), ("connected", 0));
    // A throttle without a hint waits the default minute; disabled channels stay disabled.
    let c = app
        .state
        .channels
        .report_outcome(scope, cid, Err(&ProviderError::new(ErrorClass::Throttled, "slow down")))
        .await
        .unwrap();
    let wait = c.rate_limited_until.unwrap() - chrono::Utc::now();
    assert!(wait > chrono::Duration::seconds(50) && wait <= chrono::Duration::seconds(60));
    let listed = |filter: &'static str| {
        let (app, token) = (&app, u.token.clone());
        async move {
            let r = app.get(&format!("/v1/channels?filter={filter}")).token(&token).send().await;
            r.data().as_array().unwrap().len()
        }
    };
    assert_eq!(listed("status:eq:rate_limited").await, 1);
    // A rate limit that has passed: the channel shows `connected`, and lists agree.
    let short = ProviderError::new(ErrorClass::Throttled, "slow down").retry_after(Some(Duration::from_millis(1)));
    app.state.channels.report_outcome(scope, cid, Err(&short)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(app.get(&format!("/v1/channels/{id}")).token(&u.token).send().await.data()["status"], "connected");
    assert_eq!(listed("status:eq:rate_limited").await, 0);
    assert_eq!(listed("status:eq:connected").await, 1);
    app.patch(&format!("/v1/channels/{id}")).token(&u.token).json(json!({"is_enabled": false})).send().await;
    let c = app.state.channels.report_outcome(scope, cid, Ok(())).await.unwrap();
    assert_eq!(c.status, "disabled");
}

async fn credentials_are_resealed_under_a_rotated_key(b: Backend) {
    use turumba::modules::channels::{Channels, Vault, all_adapters, http_client};
    use turumba::secret::SecretKey;
    let app = TestApp::spawn(b).await;
    let u = app.user("rot").await;
    let id = create(
        &app,
        &u,
        json!({"name": "sms", "channel_type": "sms", "provider": "vonage", "is_enabled": false,
               "credentials": {"api_key": "k", "api_secret": "vonage-secret-1", "from": "Turumba"}}),
    )
    .await
    .id();
    let old = SecretKey::load_or_create(None, &app.data_dir()).unwrap();
    let new = SecretKey::generate();
    let state = &app.state;
    let with = |vault: Vault| {
        Channels::new(
            state.db.clone(),
            state.accounts.clone(),
            state.events.clone(),
            state.memo.clone(),
            vault,
            all_adapters(http_client(), None, None, None, Default::default()),
            None,
        )
    };
    let scope = state.accounts.operator_scope(Uuid::parse_str(&u.account_id).unwrap()).await.unwrap();
    let cid = Uuid::parse_str(&id).unwrap();
    let rotated = with(Vault::new(&new, std::slice::from_ref(&old)));
    assert_eq!(rotated.rotate_credentials().await.unwrap(), 1);
    assert_eq!(rotated.rotate_credentials().await.unwrap(), 0, "nothing left under the old key");
    // Only the new key opens them now.
    let only_new = with(Vault::new(&new, &[]));
    let row = only_new.get(scope, cid).await.unwrap();
    assert_eq!(only_new.view(row.clone()).unwrap().masked_credentials["api_key"], "k");
    assert!(with(Vault::new(&old, &[])).view(row).is_err());
}

async fn telegram_webhooks_are_signed_stored_once_and_emitted(b: Backend) {
    use sea_orm::{ConnectionTrait, Statement};
    let tg = fakes::telegram();
    let app = TestApp::spawn_with(b, |s| s.public_base_url = Some("https://hooks.example.org".into())).await;
    let u = app.user("hooks").await;
    let id = create(
        &app,
        &u,
        json!({"name": "bot", "channel_type": "telegram", "credentials": {"bot_token": TELEGRAM_GOOD_TOKEN, "base_url": tg.base_url}}),
    )
    .await
    .id();
    let secret = tg.last("/setWebhook").unwrap().json()["secret_token"].as_str().unwrap().to_string();
    let path = format!("/v1/webhooks/telegram/{id}");
    let update = |update_id: i64, text: &str| {
        json!({"update_id": update_id, "message": {"message_id": 7, "date": 1_763_800_000,
            "from": {"id": 5550001, "is_bot": false, "first_name": "Abebe", "last_name": "Kebede"},
            "chat": {"id": 5550001, "type": "private"}, "text": text}})
    };
    let inbox_rows = || async {
        let rows = app
            .state
            .db
            .query_all_raw(Statement::from_string(
                app.state.db.get_database_backend(),
                "SELECT provider_event_id, status FROM webhook_inbox ORDER BY received_at, id",
            ))
            .await
            .unwrap();
        rows.iter()
            .map(|r| {
                (r.try_get::<String>("", "provider_event_id").unwrap(), r.try_get::<String>("", "status").unwrap())
            })
            .collect::<Vec<_>>()
    };

    // No secret, a wrong one: 401 and nothing stored.
    app.post(&path).json(update(1, "hi")).send().await.expect(401, Some("unauthorized"));
    app.post(&path)
        .header("X-Telegram-Bot-Api-Secret-Token", "wrong-secret-wrong-secret-wrong-")
        .json(update(1, "hi"))
        .send()
        .await
        .expect(401, None);
    assert!(inbox_rows().await.is_empty());

    // Signed: stored, one event with the parsed item; a redelivery changes nothing.
    let signed = |body: Value| app.post(&path).header("X-Telegram-Bot-Api-Secret-Token", &secret).json(body);
    let r = signed(update(1, "Selam")).send().await;
    r.expect(200, None);
    assert_eq!(
        (r.data()["duplicate"].clone(), r.data()["status"].clone(), r.data()["items"].clone()),
        (json!(false), json!("received"), json!(1))
    );
    let r2 = signed(update(1, "Selam")).send().await;
    r2.expect(200, None);
    assert_eq!(r2.data()["duplicate"], true);
    assert_eq!(r2.data()["inbox_id"], r.data()["inbox_id"]);
    // One row; the messaging consumer takes its item (the relay runs in this app) and marks it processed.
    eventually(10, "the stored update is processed", || async {
        inbox_rows().await == vec![("update:1".to_string(), "processed".to_string())]
    })
    .await;
    let events = outbox_text(&app).await;
    let inbound: Vec<&str> = events.lines().filter(|l| l.starts_with("webhook.inbound.telegram ")).collect();
    assert_eq!(inbound.len(), 1, "{events}");
    let payload: Value = serde_json::from_str(inbound[0].trim_start_matches("webhook.inbound.telegram ")).unwrap();
    let item = &payload["data"]["item"];
    assert_eq!(item["kind"], "inbound");
    assert_eq!(item["from"], "5550001");
    assert_eq!(item["from_name"], "Abebe Kebede");
    assert_eq!(item["text"], "Selam");
    assert_eq!(item["provider_message_id"], "5550001:7");
    assert!(!events.contains(&secret), "the webhook secret is in no event");

    // Unreadable but signed: kept as failed, still 200. Updates without a message: stored, no items.
    let r = app
        .post(&path)
        .header("X-Telegram-Bot-Api-Secret-Token", &secret)
        .raw("application/json", "{not json")
        .send()
        .await;
    r.expect(200, None);
    assert_eq!(r.data()["status"], "failed");
    let r = signed(json!({"update_id": 2, "my_chat_member": {}})).send().await;
    assert_eq!((r.data()["status"].clone(), r.data()["items"].clone()), (json!("received"), json!(0)));

    // Unknown channel, wrong type in the path, not an id: 404. Too large: 413.
    app.post(&format!("/v1/webhooks/telegram/{}", Uuid::now_v7())).json(update(3, "x")).send().await.expect(404, None);
    app.post(&format!("/v1/webhooks/whatsapp/{id}")).json(update(3, "x")).send().await.expect(404, None);
    app.post("/v1/webhooks/telegram/not-an-id").json(update(3, "x")).send().await.expect(404, None);
    let big = "x".repeat(2 * 1024 * 1024);
    app.post(&path)
        .header("X-Telegram-Bot-Api-Secret-Token", &secret)
        .raw("application/json", big)
        .send()
        .await
        .expect(413, Some("payload_too_large"));

    // A disabled channel's deliveries are stored and flagged, not processed.
    app.patch(&format!("/v1/channels/{id}")).token(&u.token).json(json!({"is_enabled": false})).send().await;
    let r = signed(update(4, "late")).send().await;
    assert_eq!(r.data()["status"], "ignored");
    let after = outbox_text(&app).await;
    assert_eq!(after.lines().filter(|l| l.starts_with("webhook.inbound.telegram ")).count(), 1);
    assert_eq!(inbox_rows().await.len(), 4);
}

async fn meta_webhook_handshake_echoes_the_challenge(b: Backend) {
    let app = TestApp::spawn(b).await;
    let u = app.user("meta").await;
    let r = create(
        &app,
        &u,
        json!({"name": "wa", "channel_type": "whatsapp", "credentials": {"access_token": "EAAG-token-1234", "phone_number_id": "10", "business_account_id": "20", "app_secret": "app-secret-xyz", "verify_token": "let-me-in"}}),
    )
    .await;
    r.expect(201, None);
    let id = r.id();
    let path = format!("/v1/webhooks/whatsapp/{id}");
    let r = app
        .client
        .get(format!("{}{path}?hub.mode=subscribe&hub.verify_token=let-me-in&hub.challenge=1158201444", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "1158201444");
    app.get(&format!("{path}?hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1")).send().await.expect(403, None);
    app.get(&format!("/v1/webhooks/whatsapp/{}?hub.mode=subscribe&hub.verify_token=let-me-in", Uuid::now_v7()))
        .send()
        .await
        .expect(404, None);
}

/// The real binary, its log captured at debug level (every module, SQL included) while channels with
/// secrets are created, verified against a provider that fails and one that answers, updated, sent
/// through, and hit by a forged webhook: no secret appears in any log line.
async fn credentials_never_reach_the_log(b: Backend) {
    let tg = fakes::telegram();
    let twilio = fakes::twilio();
    let app = TestApp::spawn(b).await;
    let u = app.user("logs").await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log_path = app.data_dir().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_turumba"))
        .args(["serve", "--no-migrate"])
        .env("DATABASE_URL", &app.settings.database_url)
        .env("TURUMBA_DATA_DIR", app.data_dir())
        .env("TURUMBA_PORT", port.to_string())
        .env("TURUMBA_LOG", "debug")
        .env("TURUMBA_LOG_FORMAT", "json")
        .env_remove("AMQP_URL")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("the binary runs");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut up = false;
    for _ in 0..100 {
        if client.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status().is_success()) {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "the server started: {}", std::fs::read_to_string(&log_path).unwrap_or_default());
    let call = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut req = client.request(method, format!("{base}{path}")).bearer_auth(&u.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let secrets = [
        TELEGRAM_GOOD_TOKEN,
        "123456:wrong-token-zzzz",
        fakes::TWILIO_TOKEN,
        "twilio-wrong-token-9999",
        "replaced-token-5555",
    ];
    let (s, _) = call(reqwest::Method::POST, "/v1/channels", Some(json!({"name": "tg-bad", "channel_type": "telegram", "credentials": {"bot_token": secrets[1], "base_url": tg.base_url}}))).await;
    assert_eq!(s, 201);
    let (s, body) = call(reqwest::Method::POST, "/v1/channels", Some(json!({"name": "tg", "channel_type": "telegram", "credentials": {"bot_token": secrets[0], "base_url": tg.base_url}}))).await;
    assert_eq!(s, 201);
    let tg_id = body["data"]["id"].as_str().unwrap().to_string();
    let (s, body) = call(reqwest::Method::POST, "/v1/channels", Some(json!({"name": "tw", "channel_type": "sms", "provider": "twilio", "credentials": {"account_sid": fakes::TWILIO_SID, "auth_token": secrets[3], "from": "+15005550006", "base_url": twilio.base_url}}))).await;
    assert_eq!((s, body["data"]["status"].as_str()), (201, Some("error")));
    let tw_id = body["data"]["id"].as_str().unwrap().to_string();
    let (s, body) = call(
        reqwest::Method::PATCH,
        &format!("/v1/channels/{tw_id}"),
        Some(json!({"credentials": {"auth_token": secrets[2]}})),
    )
    .await;
    assert_eq!((s, body["data"]["status"].as_str()), (200, Some("connected")));
    let (s, _) = call(
        reqwest::Method::PATCH,
        &format!("/v1/channels/{tg_id}"),
        Some(json!({"credentials": {"bot_token": secrets[4]}})),
    )
    .await;
    assert_eq!(s, 200);
    // A malformed credential update is rejected with the field named, not the value.
    let (s, body) = call(reqwest::Method::POST, "/v1/channels", Some(json!({"name": "x", "channel_type": "sms", "provider": "twilio", "credentials": {"account_sid": fakes::TWILIO_SID, "auth_token": secrets[2], "from": "+1", "extra": secrets[0]}}))).await;
    assert_eq!(s, 422);
    assert!(!body.to_string().contains(secrets[0]) && !body.to_string().contains(secrets[2]));
    let r = client
        .post(format!("{base}/v1/webhooks/telegram/{tg_id}"))
        .header("X-Telegram-Bot-Api-Secret-Token", secrets[0])
        .json(&json!({"update_id": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(text.contains("/v1/channels") || text.contains(&tg_id), "the log captured the requests: {text}");
    assert!(text.lines().count() > 20, "debug logging was on: {} lines", text.lines().count());
    for s in secrets {
        assert!(!text.contains(s), "`{s}` appears in the log");
    }
}

/// `turumba admin rotate-key --generate`: a new key file, the old one kept as previous, every channel
/// re-sealed; a fresh process opens the credentials with the new key.
async fn rotate_key_cli_reseals_every_channel(b: Backend) {
    let app = TestApp::spawn(b).await;
    let u = app.user("rotcli").await;
    let id =
        create(&app, &u, json!({"name": "s", "channel_type": "sandbox", "credentials": {"latency_ms": 5}})).await.id();
    let key_before = std::fs::read_to_string(app.data_dir().join("secret.key")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_turumba"))
        .args(["admin", "rotate-key", "--generate"])
        .env("DATABASE_URL", &app.settings.database_url)
        .env("TURUMBA_DATA_DIR", app.data_dir())
        .env("TURUMBA_LOG", "error")
        .env_remove("TURUMBA_SECRET_KEY")
        .env_remove("AMQP_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("re-sealed the credentials of 1 channel(s)"), "{stdout}");
    let key_after = std::fs::read_to_string(app.data_dir().join("secret.key")).unwrap();
    assert_ne!(key_before, key_after);
    let previous = std::fs::read_to_string(app.data_dir().join("secret.key.previous")).unwrap();
    assert_eq!(previous.trim(), key_before.trim());
    // A process started now (current + previous keys) opens them; the old key alone no longer does.
    let state = turumba::app::build_state(app.settings.clone(), false).await.unwrap();
    let scope = state.accounts.operator_scope(Uuid::parse_str(&u.account_id).unwrap()).await.unwrap();
    let c = state.channels.get(scope, Uuid::parse_str(&id).unwrap()).await.unwrap();
    assert_eq!(state.channels.view(c.clone()).unwrap().masked_credentials, json!({"latency_ms": 5}));
    assert!(app.state.channels.view(c).is_err(), "the old key alone cannot open re-sealed credentials");
}

/// The sandbox channel keeps what it "sent": listed newest first, filterable, failures included,
/// tenant-scoped, and only for sandbox channels.
async fn sandbox_channels_show_what_they_sent(b: Backend) {
    let app = TestApp::spawn(b).await;
    let u = app.user("sandboxer").await;
    let ok = create(&app, &u, json!({"name": "try", "channel_type": "sandbox", "credentials": {}})).await.id();
    let flaky =
        create(&app, &u, json!({"name": "flaky", "channel_type": "sandbox", "credentials": {"failure_rate": 1.0}}))
            .await
            .id();
    let scope = app.state.accounts.operator_scope(Uuid::parse_str(&u.account_id).unwrap()).await.unwrap();
    let registry = app.state.channels.registry();
    let ch = registry.load(scope, Uuid::parse_str(&ok).unwrap()).await.unwrap();
    for (to, text) in [("+251911000001", "first"), ("+251911000002", "ሰላም second")] {
        let m = OutboundMessage { message_id: Uuid::now_v7(), to: to.into(), text: text.into(), ..Default::default() };
        let r = registry.send(scope, &ch, &m).await.unwrap().expect("the sandbox accepts");
        assert_eq!(r.status, "delivered");
    }
    let bad = registry.load(scope, Uuid::parse_str(&flaky).unwrap()).await.unwrap();
    let m = OutboundMessage {
        message_id: Uuid::now_v7(),
        to: "+251911000003".into(),
        text: "x".into(),
        ..Default::default()
    };
    assert_eq!(registry.send(scope, &bad, &m).await.unwrap().unwrap_err().class, ErrorClass::Transient);

    let r = app.get(&format!("/v1/channels/{ok}/sandbox/messages")).token(&u.token).send().await;
    r.expect(200, None);
    let list = r.data().as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["text"], "ሰላም second", "newest first");
    assert_eq!((list[0]["encoding"].as_str(), list[0]["status"].as_str()), (Some("UCS-2"), Some("delivered")));
    assert_eq!(r.body["meta"]["total"], 2);
    let r = app
        .get(&format!("/v1/channels/{ok}/sandbox/messages?filter=to:eq:%2B251911000001"))
        .token(&u.token)
        .send()
        .await;
    assert_eq!(r.data().as_array().unwrap().len(), 1);
    let r = app.get(&format!("/v1/channels/{flaky}/sandbox/messages")).token(&u.token).send().await;
    assert_eq!(r.data()[0]["status"], "failed");
    assert_eq!(r.data()[0]["error"], "sandbox: simulated failure (failure_rate)");
    // Another tenant, and a channel that is not a sandbox: 404.
    let other = app.user("peeker").await;
    app.get(&format!("/v1/channels/{ok}/sandbox/messages")).token(&other.token).send().await.expect(404, None);
    let tg = create(
        &app,
        &u,
        json!({"name": "tg", "channel_type": "telegram", "is_enabled": false, "credentials": {"bot_token": "1:x"}}),
    )
    .await
    .id();
    app.get(&format!("/v1/channels/{tg}/sandbox/messages")).token(&u.token).send().await.expect(404, None);
    app.get(&format!("/v1/channels/{ok}/sandbox/messages?filter=status:eq:lost"))
        .token(&u.token)
        .send()
        .await
        .expect(400, None);
}

both_backends!(
    channels_are_created_checked_masked_and_managed,
    another_tenants_channels_are_404,
    telegram_channels_verify_send_and_classify_errors_over_http,
    five_permanent_failures_in_a_row_put_a_channel_in_error,
    credentials_are_resealed_under_a_rotated_key,
    telegram_webhooks_are_signed_stored_once_and_emitted,
    meta_webhook_handshake_echoes_the_challenge,
    credentials_never_reach_the_log,
    rotate_key_cli_reseals_every_channel,
    sandbox_channels_show_what_they_sent,
);
