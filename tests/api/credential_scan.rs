//! A scan for credentials where they must never be (issue 18, item 6): the real binary, logging at
//! `debug`, is given a password, signs in and out, changes the password, and gets channels of every
//! provider with secrets, sending through a provider that echoes every credential it receives back
//! in its errors; webhooks are verified with the Meta verify token. Then every response (but the
//! sign-in answers that hand the tokens out), the whole server log, every audit entry, the OpenAPI
//! document and the database files are searched for each secret, in plain, URL-encoded and (for
//! HTTP Basic) base64 form.

use actix_web::HttpResponse;
use serde_json::{Value, json};

use crate::fakes::FakeServer;
use crate::helpers::Backend;
use crate::processes::{Client, Stack};

/// A provider (or a proxy in front of one) that answers every request with an error quoting the
/// whole request: method, path (with its query), authorization headers and body.
fn echoing_provider() -> FakeServer {
    FakeServer::start(|r| {
        let echo = format!("cannot serve {} {} headers {:?} body {}", r.method, r.path, r.headers, r.body);
        HttpResponse::Unauthorized().json(json!({
            "ok": false, "error_code": 401, "description": echo,
            "code": 20003, "message": echo, "status": 401,
            "error-text": echo, "messages": [{"status": "4", "error-text": echo}],
            "error": {"message": echo, "type": "OAuthException", "code": 190},
        }))
    })
}

/// A secret value nobody else would write: `tag` plus random characters.
fn secret(tag: &str) -> String {
    format!("{tag}-{}", &uuid::Uuid::new_v4().simple().to_string()[..20])
}

/// Every form a secret could leak in: as is, URL-encoded, and inside JSON (escaped).
fn forms(s: &str) -> Vec<String> {
    let encoded: String = url::form_urlencoded::byte_serialize(s.as_bytes()).collect();
    vec![s.to_string(), encoded, s.replace(':', "%3A"), s.replace(':', "\\u003a")]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_reaches_a_log_a_response_an_audit_entry_or_the_database() {
    let echo = echoing_provider();
    let url = echo.base_url.clone();
    let mut stack = Stack::new(&Backend::Sqlite, None, None).await;
    stack.set("TURUMBA_LOG", "debug");
    stack.start("all").await;
    let password = secret("pw-first");
    let c = stack.sign_in_as("scan@example.com", &password).await;
    let mut secrets: Vec<String> = vec![password.clone()];
    let mut seen: Vec<String> = Vec::new();
    let record = |seen: &mut Vec<String>, what: &str, answer: (u16, Value)| {
        seen.push(format!("{what} → {} {}", answer.0, answer.1));
        answer
    };

    // Sessions: the tokens handed out, refreshed, and a changed password.
    let anon = Client { token: String::new(), ..c.clone() };
    let (_, login) =
        anon.call("POST", "/v1/auth/login", Some(json!({"email": "scan@example.com", "password": password}))).await;
    let refresh = login["data"]["refresh_token"].as_str().unwrap().to_string();
    secrets.push(refresh.clone());
    secrets.push(c.token.clone());
    let (_, refreshed) = anon.call("POST", "/v1/auth/refresh", Some(json!({"refresh_token": refresh}))).await;
    secrets.push(refreshed["data"]["access_token"].as_str().unwrap().to_string());
    secrets.push(refreshed["data"]["refresh_token"].as_str().unwrap().to_string());
    let new_password = secret("pw-second");
    secrets.push(new_password.clone());
    let a = c
        .call(
            "POST",
            "/v1/auth/change-password",
            Some(json!({"current_password": password, "new_password": new_password})),
        )
        .await;
    assert!(a.0 < 300, "{a:?}");
    record(&mut seen, "change-password", a);
    let wrong =
        anon.call("POST", "/v1/auth/login", Some(json!({"email": "scan@example.com", "password": password}))).await;
    assert_eq!(wrong.0, 401, "the old password is refused");
    record(&mut seen, "login with the old password", wrong);
    let c = stack.log_in("scan@example.com", &new_password).await;
    secrets.push(c.token.clone());

    // Channels of every provider with secrets; the REST ones answer through the echoing provider.
    let tg = format!("{}:{}", 777_000 + rand_digits(), secret("tg"));
    let wa_verify = secret("wa-verify");
    let channels = [
        json!({"channel_type": "telegram", "credentials": {"bot_token": tg, "base_url": url}}),
        json!({"channel_type": "sms", "provider": "twilio", "credentials": {"account_sid": "ACscan", "auth_token": secret("twilio"), "from": "+15005550006", "base_url": url}}),
        json!({"channel_type": "sms", "provider": "africastalking", "credentials": {"username": "sandbox", "api_key": secret("at-key"), "base_url": url}}),
        json!({"channel_type": "sms", "provider": "vonage", "credentials": {"api_key": "scankey", "api_secret": secret("vonage"), "from": "Turumba", "base_url": url}}),
        json!({"channel_type": "whatsapp", "credentials": {"access_token": secret("wa-token"), "phone_number_id": "100", "business_account_id": "200", "app_secret": secret("wa-app"), "verify_token": wa_verify, "base_url": url}}),
        json!({"channel_type": "messenger", "credentials": {"page_access_token": secret("page-token"), "page_id": "300", "app_secret": secret("m-app"), "verify_token": secret("m-verify"), "base_url": url}}),
        json!({"channel_type": "smpp", "credentials": {"host": "127.0.0.1", "port": 9, "system_id": "scan", "password": "smpp-pw1", "source_addr": "Turumba"}}),
        json!({"channel_type": "email", "credentials": {"smtp_host": "127.0.0.1", "smtp_port": 9, "smtp_username": "scan", "smtp_password": secret("smtp"), "smtp_tls": "none", "from_email": "scan@example.com", "imap_host": "127.0.0.1", "imap_port": 9, "imap_username": "scan", "imap_password": secret("imap"), "imap_tls": "none"}}),
    ];
    // SMPP passwords are at most 8 characters (SMPP 3.4): a fixed but unusual one.
    secrets.push("smpp-pw1".into());
    let twilio_basic = |creds: &Value| {
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("ACscan:{}", creds["auth_token"].as_str().unwrap()),
        )
    };
    let contact = c
        .ok(
            "POST",
            "/v1/contacts",
            Some(json!({"first_name": "Scan", "phone": "+251911000001", "email": "to@example.com",
            "channel_identities": {"telegram": "424242", "messenger": "PSID42"}})),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut ids = Vec::new();
    for (i, mut body) in channels.into_iter().enumerate() {
        for v in body["credentials"].as_object().unwrap().values() {
            if let Some(s) = v.as_str().filter(|s| s.contains('-') && s.len() > 12) {
                secrets.push(s.to_string());
            }
        }
        if body["provider"] == "twilio" {
            secrets.push(twilio_basic(&body["credentials"]));
        }
        body["name"] = json!(format!("scan {i}"));
        let created = record(&mut seen, "create channel", c.call("POST", "/v1/channels", Some(body)).await);
        assert_eq!(created.0, 201, "{created:?}");
        let id = created.1["data"]["id"].as_str().unwrap().to_string();
        record(&mut seen, "get channel", c.call("GET", &format!("/v1/channels/{id}"), None).await);
        let sent = c
            .call("POST", "/v1/messages", Some(json!({"channel_id": id, "contact_id": contact, "message_body": "hi"})))
            .await;
        ids.push((id, record(&mut seen, "send", sent).1["data"]["id"].as_str().map(str::to_string)));
    }
    // A credential rotation, and the Meta subscription handshake with the right and a wrong token.
    let rotated = secret("tg-rotated");
    let (tg_id, _) = &ids[0];
    let patched = c
        .call(
            "PATCH",
            &format!("/v1/channels/{tg_id}"),
            Some(json!({"credentials": {"bot_token": format!("888:{rotated}"), "base_url": url}})),
        )
        .await;
    secrets.push(rotated);
    record(&mut seen, "rotate", patched);
    let wa_id = &ids[4].0;
    for token in [wa_verify.as_str(), "not-the-token"] {
        let r = anon
            .http
            .get(format!(
                "{}/v1/webhooks/whatsapp/{wa_id}?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=99",
                anon.base
            ))
            .send()
            .await
            .unwrap();
        seen.push(format!("handshake → {} {}", r.status(), r.text().await.unwrap()));
    }
    // Let every send finish (failed against the echo, or unreachable), then read everything back.
    for (_, m) in &ids {
        if let Some(m) = m {
            let path = format!("/v1/messages/{m}");
            crate::helpers::eventually(120, "each send reached a final or retry state", || async {
                let s = c.ok("GET", &path, None).await["status"].as_str().unwrap_or_default().to_string();
                s != "queued" && s != "sending"
            })
            .await;
            record(&mut seen, "message", c.call("GET", &path, None).await);
        }
    }
    assert!(echo.requests().len() >= 6, "every REST adapter reached the echoing provider");
    record(&mut seen, "channels", c.call("GET", "/v1/channels?limit=100", None).await);
    record(&mut seen, "messages", c.call("GET", "/v1/messages?limit=100", None).await);
    record(&mut seen, "context", c.call("GET", "/v1/context", None).await);
    let audit = record(&mut seen, "audit", c.call("GET", "/v1/audit-logs?limit=100", None).await);
    assert!(
        audit.1["data"].as_array().is_some_and(|a| a.len() >= 10),
        "the audit log has the scan's writes: {}",
        audit.1
    );
    record(&mut seen, "openapi", anon.call("GET", "/v1/openapi.json", None).await);

    let log = stack.servers[0].log();
    assert!(log.contains("DEBUG"), "the server logged at debug");
    let mut db = String::new();
    for file in ["turumba.db", "turumba.db-wal"] {
        if let Ok(bytes) = std::fs::read(stack.data_dir.join(file)) {
            db.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    assert!(db.contains("scan@example.com"), "the database files were read");
    let places = [("a response", seen.join("\n")), ("the server log", log), ("the database files", db)];
    for s in &secrets {
        for form in forms(s) {
            for (place, text) in &places {
                assert!(!text.contains(&form), "`{form}` reached {place}");
            }
        }
    }
    eprintln!("{} secrets, {} responses, none found anywhere", secrets.len(), seen.len());
    stack.finish().await;
}

fn rand_digits() -> u32 {
    uuid::Uuid::new_v4().as_fields().0 % 1000
}
