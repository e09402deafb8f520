//! Delivery statuses and inbound messages (issue 15, items 4 and 5): a provider's signed callback moves
//! the message it names forward only, a receipt that beats the send's record is parked and matched by
//! it, an inbound message lands in the contact's history (the contact created when new), and STOP /
//! START change the contact's opt-outs and are confirmed.

use base64::Engine;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};
use turumba::app::BuildOptions;
use turumba::modules::messaging::{DispatchOptions, Dispatcher};

use crate::channels::outbox_text;
use crate::fakes::{self, TELEGRAM_GOOD_TOKEN, TWILIO_SID, TWILIO_TOKEN};
use crate::helpers::{Backend, Resp, TestApp, TestUser, eventually};
use crate::providers::hub_signature;

pub const PUBLIC: &str = "https://hooks.example.org";
const SID: &str = "SM00000000000000000000000000000001";

pub async fn twilio_channel(app: &TestApp, u: &TestUser, name: &str, base_url: &str) -> (String, String) {
    let r = app
        .post("/v1/channels")
        .token(&u.token)
        .json(json!({"name": name, "channel_type": "sms", "provider": "twilio", "credentials": {
            "account_sid": TWILIO_SID, "auth_token": TWILIO_TOKEN, "from": "+15005550006", "base_url": base_url}}))
        .send()
        .await;
    r.expect(201, None);
    assert_eq!(r.data()["status"], "connected", "{}", r.body);
    (r.id(), r.data()["webhook_url"].as_str().unwrap().to_string())
}

/// Posts a Twilio callback signed as Twilio signs it: base64(HMAC-SHA1(auth token, URL + sorted k‖v)).
pub async fn twilio_callback(app: &TestApp, hook: &str, params: &[(&str, &str)]) -> Resp {
    let mut sorted = params.to_vec();
    sorted.sort();
    let data = sorted.iter().fold(hook.to_string(), |acc, (k, v)| format!("{acc}{k}{v}"));
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, TWILIO_TOKEN.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(aws_lc_rs::hmac::sign(&key, data.as_bytes()).as_ref());
    let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
    let r = app
        .post(hook.trim_start_matches(PUBLIC))
        .header("X-Twilio-Signature", &sig)
        .raw("application/x-www-form-urlencoded", body)
        .send()
        .await;
    r.expect(200, None);
    r
}

pub fn status(sid: &str, status: &str) -> Vec<(&'static str, String)> {
    vec![
        ("MessageSid", sid.to_string()),
        ("MessageStatus", status.to_string()),
        ("To", "+251911000001".into()),
        ("From", "+15005550006".into()),
        ("AccountSid", TWILIO_SID.into()),
    ]
}

pub fn sms_from(sid: &str, from: &str, body: &str) -> Vec<(&'static str, String)> {
    vec![
        ("MessageSid", sid.to_string()),
        ("From", from.to_string()),
        ("To", "+15005550006".into()),
        ("Body", body.to_string()),
        ("NumMedia", "0".into()),
    ]
}

pub fn refs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

async fn send(app: &TestApp, u: &TestUser, channel: &str, to: &str) -> String {
    let r = app
        .post("/v1/messages")
        .token(&u.token)
        .json(json!({"channel_id": channel, "delivery_address": to, "message_body": "Selam"}))
        .send()
        .await;
    r.expect(201, None).id()
}

pub async fn message(app: &TestApp, u: &TestUser, id: &str) -> Value {
    app.get(&format!("/v1/messages/{id}")).token(&u.token).send().await.data().clone()
}

pub async fn wait_status(app: &TestApp, u: &TestUser, id: &str, want: &str) {
    eventually(10, &format!("message {id} is {want}"), || async move { message(app, u, id).await["status"] == want })
        .await;
}

pub async fn count(app: &TestApp, sql: &str) -> i64 {
    let db = &app.state.db;
    let row = db.query_one_raw(Statement::from_string(db.get_database_backend(), sql)).await.unwrap().unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

/// Every inbox row has been handled by the status and inbound consumer.
pub async fn inbox_drained(app: &TestApp) {
    eventually(10, "every inbox row is processed", || async move {
        count(app, "SELECT COUNT(*) FROM webhook_inbox WHERE status <> 'processed'").await == 0
    })
    .await;
}

async fn contact_by_phone(app: &TestApp, u: &TestUser, phone: &str) -> Value {
    let r = app.get("/v1/contacts").token(&u.token).query(&[("filter", format!("phone:eq:{phone}"))]).send().await;
    r.expect(200, None);
    r.body["data"][0].clone()
}

async fn receipts_move_a_message_forward_only(b: Backend) {
    let tw = fakes::twilio();
    let app = TestApp::spawn_with(b, |s| s.public_base_url = Some(PUBLIC.into())).await;
    let u = app.user("receipts").await;
    let (channel, hook) = twilio_channel(&app, &u, "tw", &tw.base_url).await;
    let id = send(&app, &u, &channel, "+251911000001").await;
    wait_status(&app, &u, &id, "sent").await;
    assert_eq!(message(&app, &u, &id).await["provider_message_id"], SID);

    // Twilio reports `delivered`: the message moves on, its event is emitted, the inbox row is processed.
    twilio_callback(&app, &hook, &refs(&status(SID, "delivered"))).await;
    wait_status(&app, &u, &id, "delivered").await;
    inbox_drained(&app).await;
    let m = message(&app, &u, &id).await;
    assert!(m["delivered_at"].is_string(), "{m}");
    assert!(outbox_text(&app).await.contains("message.status.delivered"));

    // A late `sent` and a `failed` after delivery never move it back.
    twilio_callback(&app, &hook, &refs(&status(SID, "sent"))).await;
    twilio_callback(&app, &hook, &refs(&status(SID, "failed"))).await;
    inbox_drained(&app).await;
    let m = message(&app, &u, &id).await;
    assert_eq!((m["status"].clone(), m["failed_at"].clone()), (json!("delivered"), Value::Null), "{m}");
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM parked_receipts").await,
        0,
        "a known message's receipt is never parked"
    );

    // `undelivered` on a message only `sent` ends it for good with the provider's reason.
    let tw2 = fakes::twilio();
    let (channel2, hook2) = twilio_channel(&app, &u, "tw2", &tw2.base_url).await;
    let id2 = send(&app, &u, &channel2, "+251911000002").await;
    wait_status(&app, &u, &id2, "sent").await;
    let mut failed = status(SID, "undelivered");
    failed.push(("ErrorCode", "30005".into()));
    twilio_callback(&app, &hook2, &refs(&failed)).await;
    wait_status(&app, &u, &id2, "permanently_failed").await;
    assert_eq!(
        message(&app, &u, &id).await["status"],
        "delivered",
        "the same provider id on another channel is another message"
    );
    let text = app.get("/metrics").send().await.body.as_str().unwrap().to_string();
    assert!(text.contains(r#"message_status_updates_total{outcome="delivered"}"#), "{text}");
    assert!(text.contains(r#"message_status_updates_total{outcome="ignored"}"#), "{text}");
}

async fn a_receipt_that_beats_the_send_record_is_parked_and_matched(b: Backend) {
    let tw = fakes::twilio();
    let opts = BuildOptions { dispatch: false, ..Default::default() };
    let app = TestApp::spawn_full(b, |s| s.public_base_url = Some(PUBLIC.into()), opts).await;
    let u = app.user("race").await;
    let (channel, hook) = twilio_channel(&app, &u, "tw", &tw.base_url).await;
    let id = send(&app, &u, &channel, "+251911000001").await;

    // The provider's `delivered` arrives before the dispatcher recorded the provider's answer (here:
    // before it even ran): nothing carries that id yet, so the receipt is parked, not lost.
    twilio_callback(&app, &hook, &refs(&status(SID, "delivered"))).await;
    inbox_drained(&app).await;
    assert_eq!(count(&app, "SELECT COUNT(*) FROM parked_receipts").await, 1);
    assert_eq!(message(&app, &u, &id).await["status"], "queued");

    // The send's record matches it (in its transaction; on SQLite, whose record is one statement list,
    // in one right after it): the message ends delivered, the parking is empty.
    let d = Dispatcher::new(app.state.messaging.clone(), app.state.channels.registry(), DispatchOptions::default());
    assert_eq!(d.run_once().await.unwrap(), 1);
    let m = message(&app, &u, &id).await;
    assert_eq!((m["status"].clone(), m["provider_message_id"].clone()), (json!("delivered"), json!(SID)), "{m}");
    assert!(m["sent_at"].is_string() && m["delivered_at"].is_string(), "{m}");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM parked_receipts").await, 0);
    let events = outbox_text(&app).await;
    assert!(events.contains("message.status.sent") && events.contains("message.status.delivered"), "{events}");
}

async fn inbound_messages_reach_the_history_and_keywords_opt_out(b: Backend) {
    let tw = fakes::twilio();
    let app = TestApp::spawn_with(b, |s| s.public_base_url = Some(PUBLIC.into())).await;
    let u = app.user("inbound").await;
    let (channel, hook) = twilio_channel(&app, &u, "tw", &tw.base_url).await;

    // A new sender: the contact is created, the message is in its history, inbound and delivered.
    twilio_callback(&app, &hook, &refs(&sms_from("SMin1", "+251911000077", "Selam, is the clinic open?"))).await;
    inbox_drained(&app).await;
    let contact = contact_by_phone(&app, &u, "+251911000077").await;
    let cid = contact["id"].as_str().expect("the sender became a contact").to_string();
    let history = app.get(&format!("/v1/contacts/{cid}/messages")).token(&u.token).send().await;
    let items = history.body["data"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1, "{}", history.body);
    assert_eq!(
        (items[0]["direction"].clone(), items[0]["status"].clone(), items[0]["message_body"].clone()),
        (json!("inbound"), json!("delivered"), json!("Selam, is the clinic open?"))
    );
    assert_eq!(items[0]["channel_id"], channel);
    // The same provider message again (another delivery of it) is stored once.
    let mut again = sms_from("SMin1", "+251911000077", "Selam, is the clinic open?");
    again.push(("ApiVersion", "2010-04-01".into()));
    twilio_callback(&app, &hook, &refs(&again)).await;
    inbox_drained(&app).await;
    let r = app.get(&format!("/v1/contacts/{cid}/messages")).token(&u.token).send().await;
    assert_eq!(r.body["meta"]["total"], 1);
    assert!(outbox_text(&app).await.contains("message.inbound"));

    // STOP opts the contact out of sms and is confirmed; sends to it are refused.
    twilio_callback(&app, &hook, &refs(&sms_from("SMin2", "+251911000077", "stop"))).await;
    inbox_drained(&app).await;
    let c = app.get(&format!("/v1/contacts/{cid}")).token(&u.token).send().await;
    assert_eq!(c.data()["opted_out_channels"], json!(["sms"]));
    let confirmations = || {
        tw.requests()
            .into_iter()
            .filter(|r| r.path.ends_with("/Messages.json"))
            .map(|r| fakes::form(&r))
            .filter(|f| f.iter().any(|(k, v)| k == "To" && v == "+251911000077"))
            .map(|f| f.into_iter().find(|(k, _)| k == "Body").map(|(_, v)| v).unwrap_or_default())
            .collect::<Vec<_>>()
    };
    eventually(10, "the opt-out is confirmed", || async { confirmations().len() == 1 }).await;
    assert!(confirmations()[0].contains("unsubscribed"), "{:?}", confirmations());
    let r = app
        .post("/v1/messages")
        .token(&u.token)
        .json(json!({"channel_id": channel, "contact_id": cid, "message_body": "hello"}))
        .send()
        .await;
    r.expect(422, None);
    assert!(r.body.to_string().contains("opted_out"), "{}", r.body);
    // A second STOP changes nothing and is not answered again.
    twilio_callback(&app, &hook, &refs(&sms_from("SMin3", "+251911000077", "STOP"))).await;
    inbox_drained(&app).await;

    // START opts it back in (confirmed); the account's own keyword list replaces the defaults.
    twilio_callback(&app, &hook, &refs(&sms_from("SMin4", "+251911000077", "START"))).await;
    inbox_drained(&app).await;
    let c = app.get(&format!("/v1/contacts/{cid}")).token(&u.token).send().await;
    assert_eq!(c.data()["opted_out_channels"], json!([]));
    eventually(10, "the opt-in is confirmed", || async { confirmations().len() == 2 }).await;
    app.patch(&format!("/v1/accounts/{}", u.account_id))
        .token(&u.token)
        .json(json!({"settings": {"opt_out_keywords": ["ATQUM"], "opt_out_reply": ""}}))
        .send()
        .await
        .expect(200, None);
    twilio_callback(&app, &hook, &refs(&sms_from("SMin5", "+251911000077", "STOP"))).await;
    twilio_callback(&app, &hook, &refs(&sms_from("SMin6", "+251911000077", "atqum"))).await;
    inbox_drained(&app).await;
    let c = app.get(&format!("/v1/contacts/{cid}")).token(&u.token).send().await;
    assert_eq!(c.data()["opted_out_channels"], json!(["sms"]), "the account's keyword opted it out");
    let r = app.get(&format!("/v1/contacts/{cid}/messages")).token(&u.token).send().await;
    // Six inbound messages and the two confirmations (the account's empty reply sends none).
    assert_eq!(r.body["meta"]["total"], 8, "{}", r.body);
    assert_eq!(confirmations().len(), 2);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM messages WHERE direction = 'system'").await, 2);
}

async fn a_telegram_reply_lands_in_the_contact_history(b: Backend) {
    let tg = fakes::telegram();
    let app = TestApp::spawn_with(b, |s| s.public_base_url = Some(PUBLIC.into())).await;
    let u = app.user("tgreply").await;
    let r = app
        .post("/v1/channels")
        .token(&u.token)
        .json(json!({"name": "bot", "channel_type": "telegram", "credentials": {"bot_token": TELEGRAM_GOOD_TOKEN, "base_url": tg.base_url}}))
        .send()
        .await;
    let bot = r.expect(201, None).id();
    let secret = tg.last("/setWebhook").unwrap().json()["secret_token"].as_str().unwrap().to_string();
    let c = app
        .post("/v1/contacts")
        .token(&u.token)
        .json(json!({"first_name": "Abebe", "channel_identities": {"telegram": "5550001"}}))
        .send()
        .await;
    let cid = c.expect(201, None).id();
    let r = app
        .post("/v1/messages")
        .token(&u.token)
        .json(json!({"channel_id": bot, "contact_id": cid, "message_body": "Your appointment is tomorrow"}))
        .send()
        .await;
    let id = r.expect(201, None).id();
    wait_status(&app, &u, &id, "sent").await;

    // The contact answers in Telegram: the update is matched to the contact by its chat id.
    let update = json!({"update_id": 900, "message": {"message_id": 43, "date": 1_763_800_000,
        "from": {"id": 5550001, "is_bot": false, "first_name": "Abebe"},
        "chat": {"id": 5550001, "type": "private"}, "text": "Thank you, I will come"}});
    app.post(&format!("/v1/webhooks/telegram/{bot}"))
        .header("X-Telegram-Bot-Api-Secret-Token", &secret)
        .json(update)
        .send()
        .await
        .expect(200, None);
    inbox_drained(&app).await;
    let r = app.get(&format!("/v1/contacts/{cid}/messages")).token(&u.token).send().await;
    let items = r.body["data"].as_array().unwrap();
    let both: Vec<(Value, Value)> = items.iter().map(|m| (m["direction"].clone(), m["message_body"].clone())).collect();
    assert!(both.contains(&(json!("outbound"), json!("Your appointment is tomorrow"))), "{both:?}");
    assert!(both.contains(&(json!("inbound"), json!("Thank you, I will come"))), "{both:?}");
    let contacts = app.get("/v1/contacts").token(&u.token).send().await;
    assert_eq!(contacts.body["meta"]["total"], 1, "the reply was matched, not a new contact");
    let c = app.get(&format!("/v1/contacts/{cid}")).token(&u.token).send().await;
    assert!(c.data()["last_inbound_at"].is_string(), "{}", c.body);
}

/// WhatsApp allows free text only within 24 h of the contact's last message: the dispatcher hands the
/// adapter the contact's `last_inbound_at`, which an inbound message sets.
async fn a_whatsapp_reply_opens_the_service_window(b: Backend) {
    let graph = fakes::graph();
    let app = TestApp::spawn_with(b, |s| s.public_base_url = Some(PUBLIC.into())).await;
    let u = app.user("window").await;
    let r = app
        .post("/v1/channels")
        .token(&u.token)
        .json(json!({"name": "wa", "channel_type": "whatsapp", "credentials": {"access_token": fakes::GRAPH_TOKEN,
            "phone_number_id": "1065550001", "business_account_id": "99", "app_secret": "wa-app-secret",
            "verify_token": "vt", "base_url": graph.base_url}}))
        .send()
        .await;
    let wa = r.expect(201, None).id();
    let silent = app.post("/v1/contacts").token(&u.token).json(json!({"phone": "+251911000002"})).send().await;
    let silent = silent.expect(201, None).id();
    let payload = json!({"object": "whatsapp_business_account", "entry": [{"id": "99", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550001", "phone_number_id": "1065550001"},
        "contacts": [{"profile": {"name": "Almaz"}, "wa_id": "251911000001"}],
        "messages": [{"from": "251911000001", "id": "wamid.IN1", "timestamp": chrono::Utc::now().timestamp().to_string(),
            "type": "text", "text": {"body": "Selam, when is my visit?"}}]
    }}]}]})
    .to_string();
    let sig = hub_signature("wa-app-secret", &payload);
    app.post(&format!("/v1/webhooks/whatsapp/{wa}"))
        .header("X-Hub-Signature-256", &sig)
        .raw("application/json", payload)
        .send()
        .await
        .expect(200, None);
    inbox_drained(&app).await;
    let almaz = contact_by_phone(&app, &u, "+251911000001").await;
    assert_eq!(almaz["display_name"], "Almaz");
    let almaz = almaz["id"].as_str().unwrap().to_string();

    let send_to = |contact: String| {
        let (app, u, wa) = (&app, &u, wa.clone());
        async move {
            let r = app
                .post("/v1/messages")
                .token(&u.token)
                .json(json!({"channel_id": wa, "contact_id": contact, "message_body": "Tomorrow at 10"}))
                .send()
                .await;
            r.expect(201, None).id()
        }
    };
    let answered = send_to(almaz).await;
    wait_status(&app, &u, &answered, "sent").await;
    let sent = graph.last("/messages").unwrap().json();
    assert_eq!((sent["type"].clone(), sent["text"]["body"].clone()), (json!("text"), json!("Tomorrow at 10")));
    let cold = send_to(silent).await;
    wait_status(&app, &u, &cold, "permanently_failed").await;
    assert_eq!(message(&app, &u, &cold).await["error_details"]["provider_code"], "outside_window");
}

/// Each provider's own receipt format reaches the message through the real webhook endpoint: an Africa's
/// Talking delivery report (form), a Vonage DLR (JSON) saying it failed, a Messenger `delivery` event
/// (signed JSON naming the message ids).
async fn africastalking_vonage_and_messenger_receipts_reach_their_messages(b: Backend) {
    use fakes::{AT_KEY, GRAPH_TOKEN, VONAGE_SECRET};
    let (at, vg, graph) = (fakes::africastalking(), fakes::vonage(), fakes::graph());
    let app = TestApp::spawn_with(b, |s| s.public_base_url = Some(PUBLIC.into())).await;
    let u = app.user("dlr").await;
    let create = |body: Value| {
        let (app, u) = (&app, &u);
        async move {
            let r = app.post("/v1/channels").token(&u.token).json(body).send().await;
            r.expect(201, None);
            assert_eq!(r.data()["status"], "connected", "{}", r.body);
            (r.id(), r.data()["webhook_url"].as_str().unwrap().trim_start_matches(PUBLIC).to_string())
        }
    };

    // Africa's Talking: `status=Success` for the id it answered the send with.
    let (at_id, at_hook) = create(json!({"name": "at", "channel_type": "sms", "provider": "africastalking", "credentials": {"username": "sandbox", "api_key": AT_KEY, "sender_id": "TURUMBA", "base_url": at.base_url}})).await;
    let id = send(&app, &u, &at_id, "+254711000001").await;
    wait_status(&app, &u, &id, "sent").await;
    assert_eq!(message(&app, &u, &id).await["provider_message_id"], "ATXid_0001");
    let report = "id=ATXid_0001&status=Success&phoneNumber=%2B254711000001&networkCode=63902&retryCount=0";
    app.post(&at_hook).raw("application/x-www-form-urlencoded", report).send().await.expect(200, None);
    wait_status(&app, &u, &id, "delivered").await;

    // Vonage: a JSON DLR saying the message failed, with its error code.
    let (vg_id, vg_hook) = create(json!({"name": "vg", "channel_type": "sms", "provider": "vonage", "credentials": {"api_key": "key1", "api_secret": VONAGE_SECRET, "from": "Turumba", "base_url": vg.base_url}})).await;
    let id = send(&app, &u, &vg_id, "+447911123456").await;
    wait_status(&app, &u, &id, "sent").await;
    let dlr = json!({"msisdn": "447911123456", "to": "Turumba", "messageId": "0A0000000123ABCD1", "status": "failed", "err-code": "6"});
    app.post(&vg_hook).json(dlr).send().await.expect(200, None);
    wait_status(&app, &u, &id, "permanently_failed").await;
    let m = message(&app, &u, &id).await;
    assert_eq!(
        (m["error_details"]["code"].clone(), m["error_details"]["message"].clone()),
        (json!("undelivered"), json!("vonage error 6")),
        "{m}"
    );

    // Messenger: a signed `delivery` event naming the message's id.
    let (fb_id, fb_hook) = create(json!({"name": "fb", "channel_type": "messenger", "credentials": {"page_access_token": GRAPH_TOKEN, "page_id": "2075550001", "app_secret": "fb-app-secret", "verify_token": "vt2", "base_url": graph.base_url}})).await;
    let contact = app
        .post("/v1/contacts")
        .token(&u.token)
        .json(json!({"first_name": "Kebede", "channel_identities": {"messenger": "2075550099"}}))
        .send()
        .await
        .expect(201, None)
        .id();
    // Kebede wrote a minute ago: the page may answer.
    let inbound = json!({"object": "page", "entry": [{"id": "2075550001", "time": 1, "messaging": [{"sender": {"id": "2075550099"}, "recipient": {"id": "2075550001"},
        "timestamp": chrono::Utc::now().timestamp_millis() - 60_000, "message": {"mid": "m_in_1", "text": "Hello"}}]}]});
    let signed = |body: &Value| {
        let body = body.to_string();
        (body.clone(), hub_signature("fb-app-secret", &body))
    };
    let (body, sig) = signed(&inbound);
    app.post(&fb_hook).header("X-Hub-Signature-256", &sig).raw("application/json", body).send().await.expect(200, None);
    inbox_drained(&app).await;
    let r = app
        .post("/v1/messages")
        .token(&u.token)
        .json(json!({"channel_id": fb_id, "contact_id": contact, "message_body": "Your ticket is ready"}))
        .send()
        .await;
    let id = r.expect(201, None).id();
    wait_status(&app, &u, &id, "sent").await;
    let mid = message(&app, &u, &id).await["provider_message_id"].as_str().unwrap().to_string();
    let delivery = json!({"object": "page", "entry": [{"id": "2075550001", "time": 2, "messaging": [{"sender": {"id": "2075550099"}, "recipient": {"id": "2075550001"},
        "delivery": {"mids": [mid], "watermark": chrono::Utc::now().timestamp_millis()}}]}]});
    let (body, sig) = signed(&delivery);
    app.post(&fb_hook).header("X-Hub-Signature-256", &sig).raw("application/json", body).send().await.expect(200, None);
    wait_status(&app, &u, &id, "delivered").await;
    inbox_drained(&app).await;
}

both_backends!(
    africastalking_vonage_and_messenger_receipts_reach_their_messages,
    a_whatsapp_reply_opens_the_service_window,
    receipts_move_a_message_forward_only,
    a_receipt_that_beats_the_send_record_is_parked_and_matched,
    inbound_messages_reach_the_history_and_keywords_opt_out,
    a_telegram_reply_lands_in_the_contact_history,
);
