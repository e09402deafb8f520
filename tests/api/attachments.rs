//! Files sent with a message reach each provider the way that provider takes them, through the real
//! dispatcher: Telegram `sendPhoto`/`sendDocument` by URL with the text as the first caption, WhatsApp
//! media messages by `link`, Messenger URL attachments after the text, Twilio `MediaUrl`, and e-mail as
//! downloaded `multipart/mixed` parts within a size cap. A provider that cannot carry files refuses them
//! when the message is accepted.

use actix_web::HttpResponse;
use mail_parser::MimeHeaders;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

use crate::fakes::{self, AT_KEY, FakeServer, GRAPH_TOKEN, TELEGRAM_GOOD_TOKEN, TWILIO_SID, TWILIO_TOKEN, form};
use crate::helpers::{Backend, TestApp, TestUser};
use crate::mail::{python, start_smtp_server};
use crate::receipts::{message, wait_status};

const MENU: &str = "https://files.example.org/menu.png";
const PDF: &str = "https://files.example.org/menu.pdf";

async fn channel(app: &TestApp, u: &TestUser, body: Value) -> String {
    let r = app.post("/v1/channels").token(&u.token).json(body).send().await;
    r.expect(201, None);
    assert_eq!(r.data()["status"], "connected", "{}", r.body);
    r.id()
}

async fn send(app: &TestApp, u: &TestUser, body: Value) -> String {
    let r = app.post("/v1/messages").token(&u.token).json(body).send().await;
    r.expect(201, None).id()
}

/// `sql` with `$1`, `$2` placeholders, on either database.
fn statement(app: &TestApp, sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    let backend = app.state.db.get_database_backend();
    let sql = match backend {
        sea_orm::DbBackend::Postgres => sql.to_string(),
        _ => sql.replace("$1", "?").replace("$2", "?"),
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// A contact who wrote a minute ago (inside the WhatsApp/Messenger 24 h window).
async fn recent_contact(app: &TestApp, u: &TestUser, body: Value) -> String {
    let id = app.post("/v1/contacts").token(&u.token).json(body).send().await.expect(201, None).id();
    let at = chrono::Utc::now() - chrono::Duration::minutes(1);
    let uuid = uuid::Uuid::parse_str(&id).unwrap();
    let sql = "UPDATE contacts SET last_inbound_at = $1 WHERE id = $2";
    app.state.db.execute_raw(statement(app, sql, vec![at.into(), uuid.into()])).await.unwrap();
    id
}

/// The other provider ids a send became (they lead receipts back to the message).
async fn parts(app: &TestApp, id: &str) -> Vec<String> {
    let sql = "SELECT provider_message_id FROM message_parts WHERE message_id = $1 ORDER BY 1";
    let uuid = uuid::Uuid::parse_str(id).unwrap();
    let rows = app.state.db.query_all_raw(statement(app, sql, vec![uuid.into()])).await.unwrap();
    rows.iter().map(|r| r.try_get::<String>("", "provider_message_id").unwrap()).collect()
}

async fn files_reach_telegram_whatsapp_messenger_and_twilio(b: Backend) {
    let (tg, graph, twilio, at) = (fakes::telegram(), fakes::graph(), fakes::twilio(), fakes::africastalking());
    let app = TestApp::spawn(b).await;
    let u = app.user("files").await;

    // Telegram: the text is the photo's caption; the document keeps its own; every id leads back.
    let bot = channel(&app, &u, json!({"name": "bot", "channel_type": "telegram", "credentials": {"bot_token": TELEGRAM_GOOD_TOKEN, "base_url": tg.base_url}})).await;
    let files = json!([{"url": MENU, "kind": "image"}, {"url": PDF, "caption": "the PDF"}]);
    let id = send(&app, &u, json!({"channel_id": bot, "delivery_address": "5550001", "message_body": "This week's menu", "attachments": files})).await;
    wait_status(&app, &u, &id, "sent").await;
    let calls: Vec<(String, Value)> = tg
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/send"))
        .map(|r| (r.path.rsplit('/').next().unwrap().to_string(), r.json()))
        .collect();
    assert_eq!(
        calls,
        vec![
            ("sendPhoto".into(), json!({"chat_id": "5550001", "photo": MENU, "caption": "This week's menu"})),
            ("sendDocument".into(), json!({"chat_id": "5550001", "document": PDF, "caption": "the PDF"})),
        ]
    );
    assert_eq!(message(&app, &u, &id).await["provider_message_id"], "5550001:43");
    assert_eq!(parts(&app, &id).await, vec!["5550001:44"]);
    // A text too long for a caption goes first, on its own.
    let long = "Selam! ".repeat(150);
    let id = send(&app, &u, json!({"channel_id": bot, "delivery_address": "5550002", "message_body": long, "attachments": [{"url": MENU, "kind": "image"}]})).await;
    wait_status(&app, &u, &id, "sent").await;
    let to_2: Vec<(String, Value)> = tg
        .requests()
        .into_iter()
        .filter(|r| r.json()["chat_id"] == "5550002")
        .map(|r| (r.path.rsplit('/').next().unwrap().to_string(), r.json()))
        .collect();
    assert_eq!(
        to_2,
        vec![
            ("sendMessage".into(), json!({"chat_id": "5550002", "text": long})),
            ("sendPhoto".into(), json!({"chat_id": "5550002", "photo": MENU})),
        ]
    );

    // WhatsApp: audio takes no caption, so the text goes first; the document keeps its file name.
    let wa = channel(&app, &u, json!({"name": "wa", "channel_type": "whatsapp", "credentials": {"access_token": GRAPH_TOKEN, "phone_number_id": "1065550001", "business_account_id": "99", "app_secret": "wa-app-secret", "verify_token": "vt", "base_url": graph.base_url}})).await;
    let almaz = recent_contact(&app, &u, json!({"first_name": "Almaz", "phone": "+251911000001"})).await;
    let files =
        json!([{"url": "https://files.example.org/hello.ogg", "kind": "audio"}, {"url": PDF, "filename": "menu.pdf"}]);
    let id = send(
        &app,
        &u,
        json!({"channel_id": wa, "contact_id": almaz, "message_body": "Listen and read", "attachments": files}),
    )
    .await;
    wait_status(&app, &u, &id, "sent").await;
    let sent: Vec<Value> =
        graph.requests().into_iter().filter(|r| r.path.ends_with("/1065550001/messages")).map(|r| r.json()).collect();
    let envelope = json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": "+251911000001"});
    let with = |extra: Value| {
        let mut v = envelope.clone();
        v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        v
    };
    assert_eq!(
        sent,
        vec![
            with(json!({"type": "text", "text": {"preview_url": false, "body": "Listen and read"}})),
            with(json!({"type": "audio", "audio": {"link": "https://files.example.org/hello.ogg"}})),
            with(json!({"type": "document", "document": {"link": PDF, "filename": "menu.pdf"}})),
        ]
    );
    // Each media message has its own id and its own receipts: they lead to this message.
    assert_eq!(parts(&app, &id).await, vec!["wamid.audio", "wamid.document"]);

    // Messenger: a message is a text or one attachment; the text goes first.
    let fb = channel(&app, &u, json!({"name": "fb", "channel_type": "messenger", "credentials": {"page_access_token": GRAPH_TOKEN, "page_id": "2075550001", "app_secret": "fb-app-secret", "verify_token": "vt2", "base_url": graph.base_url}})).await;
    let psid =
        recent_contact(&app, &u, json!({"first_name": "Kebede", "channel_identities": {"messenger": "2075550099"}}))
            .await;
    let id = send(
        &app,
        &u,
        json!({"channel_id": fb, "contact_id": psid, "message_body": "Your ticket", "attachments": [{"url": PDF}]}),
    )
    .await;
    wait_status(&app, &u, &id, "sent").await;
    let sent: Vec<Value> = graph
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/me/messages"))
        .map(|r| r.json()["message"].clone())
        .collect();
    assert_eq!(
        sent,
        vec![
            json!({"text": "Your ticket"}),
            json!({"attachment": {"type": "file", "payload": {"url": PDF, "is_reusable": true}}}),
        ]
    );

    // Twilio MMS: one MediaUrl per file.
    let tw = channel(&app, &u, json!({"name": "tw", "channel_type": "sms", "provider": "twilio", "credentials": {"account_sid": TWILIO_SID, "auth_token": TWILIO_TOKEN, "from": "+15005550006", "base_url": twilio.base_url}})).await;
    let id = send(&app, &u, json!({"channel_id": tw, "delivery_address": "+15005550010", "message_body": "Menu", "attachments": [{"url": MENU, "kind": "image"}, {"url": PDF}]})).await;
    wait_status(&app, &u, &id, "sent").await;
    let fields = form(&twilio.last("/Messages.json").unwrap());
    let media: Vec<&str> = fields.iter().filter(|(k, _)| k == "MediaUrl").map(|(_, v)| v.as_str()).collect();
    assert_eq!(media, vec![MENU, PDF]);

    // Africa's Talking sends text only: files are refused at once, naming the field, and nothing is queued.
    let sms = channel(&app, &u, json!({"name": "at", "channel_type": "sms", "provider": "africastalking", "credentials": {"username": "sandbox", "api_key": AT_KEY, "sender_id": "TURUMBA", "base_url": at.base_url}})).await;
    let r = app
        .post("/v1/messages")
        .token(&u.token)
        .json(json!({"channel_id": sms, "delivery_address": "+254711000001", "message_body": "Menu", "attachments": [{"url": PDF}]}))
        .send()
        .await;
    r.expect(422, Some("validation_error"));
    assert_eq!(r.body["details"]["errors"][0]["field"], "attachments", "{}", r.body);
    assert!(at.requests().iter().all(|r| r.path != "/version1/messaging"));
}

/// A file server for the e-mail test: a PDF, a PNG without a name in its URL, a file over the cap, a
/// missing file.
fn file_server() -> FakeServer {
    FakeServer::start(|r| match r.path.as_str() {
        "/docs/menu.pdf" => HttpResponse::Ok().content_type("application/pdf").body("%PDF-1.4 the menu"),
        "/img?id=7" => HttpResponse::Ok().content_type("image/png").body(vec![0x89, b'P', b'N', b'G']),
        "/big.bin" => HttpResponse::Ok().content_type("application/octet-stream").body(vec![b'x'; 4096]),
        _ => HttpResponse::NotFound().finish(),
    })
}

async fn email_attaches_downloaded_files_within_the_cap(b: Backend) {
    let Some(python) = python() else { return };
    let smtp = start_smtp_server(&python, Some(("mailer", "smtp-pass-0001"))).await;
    let files = file_server();
    // The file server is on this machine: allowed here, refused by default (see the fetch unit tests).
    let app = TestApp::spawn_with(b, |s| {
        s.attachments.allow_private_networks = true;
        s.attachments.max_bytes = 2048;
    })
    .await;
    let u = app.user("mailfiles").await;
    let mail = channel(&app, &u, json!({"name": "news", "channel_type": "email", "credentials": {"smtp_host": "127.0.0.1", "smtp_port": smtp.port, "smtp_tls": "none", "smtp_username": "mailer", "smtp_password": "smtp-pass-0001", "from_email": "news@turumba.example"}})).await;
    let base = &files.base_url;
    let id = send(&app, &u, json!({"channel_id": mail, "delivery_address": "almaz@example.org", "message_body": "The menu and a photo.",
        "metadata": {"subject": "Menu"},
        "attachments": [{"url": format!("{base}/docs/menu.pdf")}, {"url": format!("{base}/img?id=7"), "kind": "image", "filename": "dish.png"}]})).await;
    wait_status(&app, &u, &id, "sent").await;
    let mut text = String::new();
    for _ in 0..100 {
        if let Some(found) = std::fs::read_dir(smtp.maildir.join("new"))
            .ok()
            .and_then(|d| d.flatten().map(|e| std::fs::read_to_string(e.path()).unwrap()).next())
        {
            text = found;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(text.contains("multipart/mixed"), "{text}");
    let parsed = mail_parser::MessageParser::default().parse(text.as_bytes()).expect("a mail");
    assert_eq!(parsed.body_text(0).as_deref(), Some("The menu and a photo."), "{text}");
    let attached: Vec<(String, String, Vec<u8>)> = parsed
        .attachments()
        .map(|a| {
            let ct =
                a.content_type().map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or(""))).unwrap_or_default();
            (a.attachment_name().unwrap_or_default().to_string(), ct, a.contents().to_vec())
        })
        .collect();
    assert_eq!(
        attached,
        vec![
            ("menu.pdf".to_string(), "application/pdf".to_string(), b"%PDF-1.4 the menu".to_vec()),
            ("dish.png".to_string(), "image/png".to_string(), vec![0x89, b'P', b'N', b'G']),
        ]
    );

    // Over the cap, or gone: sending again cannot help, so the message fails at once and says why.
    for (path, why) in [("/big.bin", "2048 bytes at most"), ("/gone.pdf", "answered 404")] {
        let id = send(&app, &u, json!({"channel_id": mail, "delivery_address": "almaz@example.org", "message_body": "x", "attachments": [{"url": format!("{base}{path}")}]})).await;
        wait_status(&app, &u, &id, "permanently_failed").await;
        let m = message(&app, &u, &id).await;
        assert_eq!(m["attempts"], 1, "{m}");
        assert!(m["error_details"]["message"].as_str().unwrap().contains(why), "{m}");
    }
}

both_backends!(files_reach_telegram_whatsapp_messenger_and_twilio, email_attaches_downloaded_files_within_the_cap);
