//! Provider adapters over real HTTP against local servers speaking each provider's wire format
//! (Twilio, Africa's Talking, Vonage, WhatsApp Cloud, Messenger): the exact request sent, each error
//! class, verification, and their webhooks (signature schemes, parsing, de-duplication).

use std::time::Duration;

use base64::Engine;
use chrono::Utc;
use serde_json::{Value, json};
use turumba::modules::accounts::AccountScope;
use turumba::modules::channels::{ErrorClass, OutboundMessage, ProviderError, SendReceipt};
use uuid::Uuid;

use crate::fakes::{self, AT_KEY, GRAPH_TOKEN, TWILIO_SID, TWILIO_TOKEN, VONAGE_SECRET};
use crate::helpers::{Backend, Resp, TestApp, TestUser};

const PUBLIC: &str = "https://hooks.example.org";

async fn setup(b: Backend) -> (TestApp, TestUser, AccountScope) {
    let app = TestApp::spawn_with(b, |s| s.public_base_url = Some(PUBLIC.into())).await;
    let u = app.user("provider").await;
    let scope = app.state.accounts.operator_scope(Uuid::parse_str(&u.account_id).unwrap()).await.unwrap();
    (app, u, scope)
}

async fn create(app: &TestApp, u: &TestUser, body: Value) -> Resp {
    let r = app.post("/v1/channels").token(&u.token).json(body).send().await;
    r.expect(201, None);
    r
}

async fn send(
    app: &TestApp,
    scope: AccountScope,
    id: &str,
    msg: OutboundMessage,
) -> Result<SendReceipt, ProviderError> {
    let registry = app.state.channels.registry();
    let channel = registry.load(scope, Uuid::parse_str(id).unwrap()).await.unwrap();
    registry.send(scope, &channel, &msg).await.unwrap()
}

fn msg(to: &str, text: &str) -> OutboundMessage {
    OutboundMessage { message_id: Uuid::now_v7(), to: to.into(), text: text.into(), ..Default::default() }
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The path (and query) of a webhook URL Turumba shows.
fn local(webhook_url: &str) -> String {
    webhook_url.trim_start_matches(PUBLIC).to_string()
}

async fn twilio_sends_verifies_and_accepts_signed_callbacks(b: Backend) {
    let fake = fakes::twilio();
    let (app, u, scope) = setup(b).await;
    let creds = |token: &str| json!({"account_sid": TWILIO_SID, "auth_token": token, "from": "+15005550006", "base_url": fake.base_url});
    let bad = create(
        &app,
        &u,
        json!({"name": "bad", "channel_type": "sms", "provider": "twilio", "credentials": creds("wrong")}),
    )
    .await;
    assert_eq!(bad.data()["status"], "error");
    assert_eq!(bad.data()["error_message"], "twilio: Authenticate");
    let r = create(
        &app,
        &u,
        json!({"name": "tw", "channel_type": "sms", "provider": "twilio", "credentials": creds(TWILIO_TOKEN)}),
    )
    .await;
    assert_eq!(r.data()["status"], "connected", "{:?}", r.body);
    let id = r.id();
    let hook = r.data()["webhook_url"].as_str().unwrap().to_string();
    assert_eq!(hook, format!("{PUBLIC}/v1/webhooks/sms/{id}"));

    let text = "Selam! Your code is 1234. €5 off today only — reply STOP to opt out of these messages, we will not message you again after that. Thanks for staying with us.";
    let receipt = send(&app, scope, &id, msg("+251911000001", text)).await.expect("sent");
    assert_eq!(receipt.provider_message_id.as_deref(), Some("SM00000000000000000000000000000001"));
    assert_eq!((receipt.segments, receipt.encoding), (Some(2), Some("UCS-2")), "the em dash is not GSM-7");
    let sent = fake.last("/Messages.json").unwrap();
    assert_eq!(
        fakes::form(&sent),
        pairs(&[("To", "+251911000001"), ("From", "+15005550006"), ("Body", text), ("StatusCallback", &hook)])
    );

    let e = send(&app, scope, &id, msg("+15005550001", "x")).await.unwrap_err();
    assert_eq!((e.class, e.code.as_deref()), (ErrorClass::Permanent, Some("21211")));
    assert_eq!(e.message, "twilio: The 'To' number +15005550001 is not a valid phone number.");
    let e = send(&app, scope, &id, msg("+15005550429", "x")).await.unwrap_err();
    assert_eq!((e.class, e.retry_after), (ErrorClass::Throttled, Some(Duration::from_secs(3))));
    let e = send(&app, scope, &id, msg("+15005550500", "x")).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Transient);

    // A Messaging Service SID goes as MessagingServiceSid.
    app.patch(&format!("/v1/channels/{id}"))
        .token(&u.token)
        .json(json!({"credentials": {"from": "MG0000000000000000000000000000000a"}}))
        .send()
        .await
        .expect(200, None);
    send(&app, scope, &id, msg("+251911000002", "hi")).await.expect("sent");
    let form = fakes::form(&fake.last("/Messages.json").unwrap());
    assert_eq!(form[1], ("MessagingServiceSid".to_string(), "MG0000000000000000000000000000000a".to_string()));

    // Callbacks: X-Twilio-Signature = base64(HMAC-SHA1(token, URL + sorted key‖value)), computed here
    // independently of the product's code.
    let sign = |params: &[(&str, &str)]| {
        let mut sorted = params.to_vec();
        sorted.sort();
        let data = sorted.iter().fold(hook.clone(), |acc, (k, v)| format!("{acc}{k}{v}"));
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, TWILIO_TOKEN.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(aws_lc_rs::hmac::sign(&key, data.as_bytes()).as_ref())
    };
    let encode =
        |params: &[(&str, &str)]| form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
    let status = [
        ("MessageSid", "SM00000000000000000000000000000001"),
        ("MessageStatus", "delivered"),
        ("To", "+251911000001"),
        ("From", "+15005550006"),
        ("AccountSid", TWILIO_SID),
    ];
    let path = local(&hook);
    let post = |params: &[(&str, &str)], sig: String| {
        app.post(&path).header("X-Twilio-Signature", &sig).raw("application/x-www-form-urlencoded", encode(params))
    };
    post(&status, "bm90IGEgc2lnbmF0dXJl".into()).send().await.expect(401, None);
    let r = post(&status, sign(&status)).send().await;
    r.expect(200, None);
    assert_eq!((r.data()["status"].clone(), r.data()["items"].clone()), (json!("received"), json!(1)));
    assert_eq!(post(&status, sign(&status)).send().await.data()["duplicate"], true);
    let inbound = [
        ("MessageSid", "SM00000000000000000000000000000099"),
        ("From", "+251911000003"),
        ("To", "+15005550006"),
        ("Body", "STOP"),
        ("NumMedia", "0"),
    ];
    let r = post(&inbound, sign(&inbound)).send().await;
    assert_eq!(r.data()["items"], 1);
    let events = crate::channels::outbox_text(&app).await;
    assert!(events.contains(r#""kind":"status""#) && events.contains(r#""status":"delivered""#), "{events}");
    assert!(events.contains(r#""from":"+251911000003""#) && events.contains(r#""text":"STOP""#), "{events}");
}

async fn africastalking_and_vonage_send_and_accept_token_callbacks(b: Backend) {
    let at = fakes::africastalking();
    let vg = fakes::vonage();
    let (app, u, scope) = setup(b).await;
    let r = create(&app, &u, json!({"name": "at", "channel_type": "sms", "provider": "africastalking", "credentials": {"username": "sandbox", "api_key": AT_KEY, "sender_id": "TURUMBA", "base_url": at.base_url}})).await;
    assert_eq!(r.data()["status"], "connected", "{:?}", r.body);
    let at_id = r.id();
    let at_hook = r.data()["webhook_url"].as_str().unwrap().to_string();
    assert!(at_hook.starts_with(&format!("{PUBLIC}/v1/webhooks/sms/{at_id}?token=")), "{at_hook}");
    let receipt = send(&app, scope, &at_id, msg("+254711000001", "Habari")).await.expect("sent");
    assert_eq!(receipt.provider_message_id.as_deref(), Some("ATXid_0001"));
    let sent = at.last("/version1/messaging").unwrap();
    assert_eq!(
        fakes::form(&sent),
        pairs(&[("username", "sandbox"), ("to", "+254711000001"), ("message", "Habari"), ("from", "TURUMBA")])
    );
    assert!(sent.headers.iter().any(|(k, v)| k == "accept" && v == "application/json"));
    let e = send(&app, scope, &at_id, msg("+254711000403", "x")).await.unwrap_err();
    assert_eq!(
        (e.class, e.code.as_deref(), e.message.as_str()),
        (ErrorClass::Permanent, Some("403"), "africastalking: InvalidPhoneNumber")
    );
    let e = send(&app, scope, &at_id, msg("+254711000500", "x")).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Transient);
    let bad = create(&app, &u, json!({"name": "at-bad", "channel_type": "sms", "provider": "africastalking", "credentials": {"username": "sandbox", "api_key": "nope", "base_url": at.base_url}})).await;
    assert_eq!(bad.data()["error_message"], "africastalking: The supplied authentication is invalid");

    // Delivery report: unsigned by the provider, so the URL token is the check.
    let dlr = "id=ATXid_0001&status=Success&phoneNumber=%2B254711000001&networkCode=63902";
    let path = local(&at_hook);
    let no_token = path.split('?').next().unwrap().to_string();
    app.post(&no_token).raw("application/x-www-form-urlencoded", dlr).send().await.expect(401, None);
    app.post(&format!("{no_token}?token=guess"))
        .raw("application/x-www-form-urlencoded", dlr)
        .send()
        .await
        .expect(401, None);
    let r = app.post(&path).raw("application/x-www-form-urlencoded", dlr).send().await;
    r.expect(200, None);
    assert_eq!(r.data()["items"], 1);
    let inbound = "id=in-1&from=%2B254711000009&to=12345&text=Hello&date=2026-11-22T10%3A00%3A00Z&linkId=x";
    assert_eq!(app.post(&path).raw("application/x-www-form-urlencoded", inbound).send().await.data()["items"], 1);

    // Vonage: numbers without the plus, unicode type for UCS-2, client-ref and callback.
    let r = create(&app, &u, json!({"name": "vg", "channel_type": "sms", "provider": "vonage", "credentials": {"api_key": "key1", "api_secret": VONAGE_SECRET, "from": "Turumba", "base_url": vg.base_url}})).await;
    assert_eq!(r.data()["status"], "connected", "{:?}", r.body);
    let vg_id = r.id();
    let vg_hook = r.data()["webhook_url"].as_str().unwrap().to_string();
    let m = msg("+447700900000", "ሰላም");
    let ref_id = m.message_id.to_string();
    let receipt = send(&app, scope, &vg_id, m).await.expect("sent");
    assert_eq!((receipt.provider_message_id.as_deref(), receipt.encoding), (Some("0A0000000123ABCD1"), Some("UCS-2")));
    assert_eq!(
        fakes::form(&vg.last("/sms/json").unwrap()),
        pairs(&[
            ("api_key", "key1"),
            ("api_secret", VONAGE_SECRET),
            ("from", "Turumba"),
            ("to", "447700900000"),
            ("text", "ሰላም"),
            ("client-ref", &ref_id),
            ("type", "unicode"),
            ("callback", &vg_hook)
        ])
    );
    let e = send(&app, scope, &vg_id, msg("+447700900001", "x")).await.unwrap_err();
    assert_eq!((e.class, e.message.as_str()), (ErrorClass::Permanent, "vonage: Invalid to address"));
    let e = send(&app, scope, &vg_id, msg("+447700900002", "x")).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Throttled);
    app.patch(&format!("/v1/channels/{vg_id}"))
        .token(&u.token)
        .json(json!({"credentials": {"api_secret": "rotated-wrong"}}))
        .send()
        .await;
    let r = app.get(&format!("/v1/channels/{vg_id}")).token(&u.token).send().await;
    assert_eq!(r.data()["status"], "error");
    assert_eq!(r.data()["error_message"], "vonage: authentication failed");
    // Vonage delivery receipts may come as GET-style query strings on a POST without a body, or JSON.
    let json_dlr = json!({"msisdn": "447700900000", "to": "Turumba", "messageId": "0A0000000123ABCD1", "status": "delivered", "err-code": "0"});
    let r = app.post(&local(&vg_hook)).json(json_dlr).send().await;
    r.expect(200, None);
    assert_eq!(r.data()["items"], 1);
    let events = crate::channels::outbox_text(&app).await;
    assert!(events.contains(r#""provider_message_id":"0A0000000123ABCD1""#), "{events}");
    assert!(events.contains(r#""from":"+254711000009""#), "{events}");
}

/// Meta's `X-Hub-Signature-256` of `body` under the app secret.
pub fn hub_signature(secret: &str, body: &str) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    format!("sha256={}", hex::encode(aws_lc_rs::hmac::sign(&key, body.as_bytes()).as_ref()))
}

async fn whatsapp_and_messenger_respect_the_window_and_verify_hub_signatures(b: Backend) {
    let graph = fakes::graph();
    let (app, u, scope) = setup(b).await;
    let r = create(&app, &u, json!({"name": "wa", "channel_type": "whatsapp", "credentials": {"access_token": GRAPH_TOKEN, "phone_number_id": "1065550001", "business_account_id": "99", "app_secret": "wa-app-secret", "verify_token": "vt", "base_url": graph.base_url}})).await;
    assert_eq!(r.data()["status"], "connected", "{:?}", r.body);
    let wa = r.id();
    let verify = graph.last("/v21.0/1065550001?").unwrap();
    assert!(verify.path.contains("fields=display_phone_number%2Cverified_name"), "{}", verify.path);

    // Inside the window: text. Outside: refused before any request unless a template is given.
    let mut m = msg("+251911000001", "Selam");
    m.last_inbound_at = Some(Utc::now() - chrono::Duration::hours(2));
    let receipt = send(&app, scope, &wa, m).await.expect("sent");
    assert_eq!(receipt.provider_message_id.as_deref(), Some("wamid.HBgLMTU1NTAwMDAwMDEVAgARGBI"));
    assert_eq!(
        graph.last("/messages").unwrap().json(),
        json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": "+251911000001", "type": "text", "text": {"preview_url": false, "body": "Selam"}})
    );
    let before = graph.requests().len();
    let mut m = msg("+251911000001", "Selam");
    m.last_inbound_at = Some(Utc::now() - chrono::Duration::hours(25));
    let e = send(&app, scope, &wa, m).await.unwrap_err();
    assert_eq!((e.class, e.code.as_deref()), (ErrorClass::Permanent, Some("outside_window")));
    assert_eq!(graph.requests().len(), before, "nothing was sent");
    let mut m = msg("+251911000001", "");
    m.template = Some(
        json!({"name": "order_update", "language": "am", "components": [{"type": "body", "parameters": [{"type": "text", "text": "42"}]}]}),
    );
    send(&app, scope, &wa, m).await.expect("template sent");
    assert_eq!(
        graph.last("/messages").unwrap().json()["template"],
        json!({"name": "order_update", "language": {"code": "am"}, "components": [{"type": "body", "parameters": [{"type": "text", "text": "42"}]}]})
    );
    let mut m = msg("+15550130429", "x");
    m.last_inbound_at = Some(Utc::now());
    assert_eq!(send(&app, scope, &wa, m).await.unwrap_err().class, ErrorClass::Throttled);
    let mut m = msg("+15550000190", "x");
    m.last_inbound_at = Some(Utc::now());
    assert_eq!(send(&app, scope, &wa, m).await.unwrap_err().class, ErrorClass::Auth);

    // Webhook: signed with the app secret; messages and statuses in one payload become two items.
    let payload = json!({"object": "whatsapp_business_account", "entry": [{"id": "99", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550001", "phone_number_id": "1065550001"},
        "contacts": [{"profile": {"name": "Almaz"}, "wa_id": "251911000001"}],
        "messages": [{"from": "251911000001", "id": "wamid.IN1", "timestamp": "1763800000", "type": "text", "text": {"body": "Ishi"}}],
        "statuses": [{"id": "wamid.HBgLMTU1NTAwMDAwMDEVAgARGBI", "status": "read", "timestamp": "1763800001", "recipient_id": "251911000001"}]
    }}]}]}).to_string();
    let path = format!("/v1/webhooks/whatsapp/{wa}");
    app.post(&path)
        .header("X-Hub-Signature-256", &hub_signature("other", &payload))
        .raw("application/json", payload.clone())
        .send()
        .await
        .expect(401, None);
    app.post(&path).raw("application/json", payload.clone()).send().await.expect(401, None);
    let r = app
        .post(&path)
        .header("X-Hub-Signature-256", &hub_signature("wa-app-secret", &payload))
        .raw("application/json", payload.clone())
        .send()
        .await;
    r.expect(200, None);
    assert_eq!(r.data()["items"], 2);
    let events = crate::channels::outbox_text(&app).await;
    assert!(events.contains(r#""from":"+251911000001""#) && events.contains(r#""from_name":"Almaz""#), "{events}");
    assert!(events.contains(r#""status":"read""#), "{events}");

    // Messenger: RESPONSE inside the window, page token as Bearer; delivery webhooks.
    let r = create(&app, &u, json!({"name": "fb", "channel_type": "messenger", "credentials": {"page_access_token": GRAPH_TOKEN, "page_id": "2075550001", "app_secret": "fb-app-secret", "verify_token": "vt2", "base_url": graph.base_url}})).await;
    assert_eq!(r.data()["status"], "connected", "{:?}", r.body);
    let fb = r.id();
    let mut m = msg("6789", "Hello from the page");
    m.last_inbound_at = Some(Utc::now() - chrono::Duration::minutes(5));
    let receipt = send(&app, scope, &fb, m).await.expect("sent");
    assert_eq!(receipt.provider_message_id.as_deref(), Some("m_AG5Hz2Uq7tuwNEhXfYYKj8mJEM"));
    assert_eq!(
        graph.last("/me/messages").unwrap().json(),
        json!({"recipient": {"id": "6789"}, "messaging_type": "RESPONSE", "message": {"text": "Hello from the page"}})
    );
    let e = send(&app, scope, &fb, msg("6789", "late")).await.unwrap_err();
    assert_eq!(e.code.as_deref(), Some("outside_window"));
    let mut m = msg("130429", "x");
    m.last_inbound_at = Some(Utc::now());
    assert_eq!(send(&app, scope, &fb, m).await.unwrap_err().class, ErrorClass::Throttled);
    let payload = json!({"object": "page", "entry": [{"id": "2075550001", "time": 1763800000000i64, "messaging": [
        {"sender": {"id": "6789"}, "recipient": {"id": "2075550001"}, "timestamp": 1763800000000i64, "message": {"mid": "m_in_1", "text": "hi page"}},
        {"sender": {"id": "2075550001"}, "recipient": {"id": "6789"}, "timestamp": 1763800000001i64, "message": {"mid": "m_echo", "is_echo": true, "text": "echo"}},
        {"sender": {"id": "6789"}, "recipient": {"id": "2075550001"}, "delivery": {"mids": ["m_AG5Hz2Uq7tuwNEhXfYYKj8mJEM"], "watermark": 1763800000500i64}}
    ]}]}).to_string();
    let r = app
        .post(&format!("/v1/webhooks/messenger/{fb}"))
        .header("X-Hub-Signature-256", &hub_signature("fb-app-secret", &payload))
        .raw("application/json", payload)
        .send()
        .await;
    r.expect(200, None);
    assert_eq!(r.data()["items"], 2, "the echo of our own message is not an item");
}

async fn an_unreachable_smsc_leaves_the_channel_in_error(b: Backend) {
    // An SMSC that is not there: the channel exists, in `error`, with the reason; verify says the same.
    let (app, u, _) = setup(b).await;
    let r = create(&app, &u, json!({"name": "smsc", "channel_type": "smpp", "credentials": {"host": "127.0.0.1", "port": 9, "system_id": "id", "password": "pw", "source_addr": "Turumba"}})).await;
    assert_eq!(r.data()["status"], "error");
    let message = r.data()["error_message"].as_str().unwrap().to_string();
    assert!(message.starts_with("smpp: cannot connect to 127.0.0.1:9"), "{message}");
    let v = app.post(&format!("/v1/channels/{}/verify", r.id())).token(&u.token).send().await;
    v.expect(200, None);
    assert_eq!(v.data()["status"], "error");
}

both_backends!(
    twilio_sends_verifies_and_accepts_signed_callbacks,
    africastalking_and_vonage_send_and_accept_token_callbacks,
    whatsapp_and_messenger_respect_the_window_and_verify_hub_signatures,
    an_unreachable_smsc_leaves_the_channel_in_error,
);

/// A provider that answers too slowly: the send gives up at the client's timeout and the failure is
/// transient (dispatch retries it), and the error names no secret.
#[tokio::test]
async fn a_slow_provider_times_out_as_transient() {
    use std::sync::Arc;
    use turumba::modules::channels::{ChannelContext, ProviderAdapter};
    use turumba::modules::channels::{Credentials, TelegramCredentials};
    use turumba::modules::channels::{Telegram, http_client_with_timeout};
    // The fake's handler runs on its worker thread; sleeping there makes the answer late.
    let slow = crate::fakes::FakeServer::start(|_| {
        std::thread::sleep(Duration::from_millis(1500));
        actix_web::HttpResponse::Ok().json(json!({"ok": true, "result": {"message_id": 1}}))
    });
    let adapter = Arc::new(Telegram::new(http_client_with_timeout(Duration::from_millis(300))));
    let ctx = ChannelContext::standalone(Credentials::Telegram(TelegramCredentials {
        bot_token: "123456:slow-secret-token".into(),
        base_url: Some(slow.base_url.clone()),
    }));
    let e = adapter.send(&ctx, &msg("1", "hi")).await.unwrap_err();
    // The fake records a request once its handler returns: none yet means we gave up before it answered.
    assert!(slow.requests().is_empty(), "the send waited for the slow answer");
    assert_eq!(e.class, ErrorClass::Transient);
    assert!(e.message.contains("timed out"), "{}", e.message);
    assert!(!e.message.contains("slow-secret-token"), "{}", e.message);
}
