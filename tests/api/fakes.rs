//! Local stand-ins for provider APIs, speaking each provider's real wire format over real HTTP. Every
//! request is recorded so tests assert exactly what Turumba sent.

use std::sync::{Arc, Mutex};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Recorded {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

type Handler = Arc<dyn Fn(&Recorded) -> HttpResponse + Send + Sync>;

/// An HTTP server on a random loopback port answering with `handler` and recording every request.
pub struct FakeServer {
    pub base_url: String,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
    handle: actix_web::dev::ServerHandle,
}

impl FakeServer {
    pub fn start(handler: impl Fn(&Recorded) -> HttpResponse + Send + Sync + 'static) -> FakeServer {
        let requests: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let handler: Handler = Arc::new(handler);
        let (recorded, h) = (requests.clone(), handler.clone());
        let server = HttpServer::new(move || {
            let (recorded, h) = (recorded.clone(), h.clone());
            App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
                let (recorded, h) = (recorded.clone(), h.clone());
                async move {
                    let r = Recorded {
                        method: req.method().to_string(),
                        path: req.uri().to_string(),
                        headers: req
                            .headers()
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
                            .collect(),
                        body: String::from_utf8_lossy(&body).into_owned(),
                    };
                    let resp = h(&r);
                    recorded.lock().unwrap().push(r);
                    resp
                }
            }))
        })
        .workers(1)
        .bind(("127.0.0.1", 0))
        .expect("bind")
        .disable_signals();
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        FakeServer { base_url: format!("http://127.0.0.1:{port}"), requests, handle }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    pub fn last(&self, path_contains: &str) -> Option<Recorded> {
        self.requests().into_iter().rev().find(|r| r.path.contains(path_contains))
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        let h = self.handle.clone();
        tokio::spawn(async move { h.stop(false).await });
    }
}

pub const TELEGRAM_GOOD_TOKEN: &str = "123456:good-token-abcdef";

/// The Telegram Bot API: `getMe`, `sendMessage`, `send{Photo,Document,Audio,Video}` (message ids 43–46),
/// `setWebhook`; token `TELEGRAM_GOOD_TOKEN` is valid.
/// `sendMessage` answers by chat id: `429` → Too Many Requests with `retry_after: 7`; `403` → blocked by
/// the user; `400` → chat not found; `500` → Bad Gateway; anything else → ok.
pub fn telegram() -> FakeServer {
    FakeServer::start(|r| {
        let good = r.path.starts_with(&format!("/bot{TELEGRAM_GOOD_TOKEN}/"));
        if !good {
            return HttpResponse::Unauthorized()
                .json(json!({"ok": false, "error_code": 401, "description": "Unauthorized"}));
        }
        let method = r.path.rsplit('/').next().unwrap_or_default().to_string();
        let err = |status: u16, description: &str, extra: Value| {
            let mut body = json!({"ok": false, "error_code": status, "description": description});
            if !extra.is_null() {
                body["parameters"] = extra;
            }
            HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).json(body)
        };
        match method.as_str() {
            "getMe" => HttpResponse::Ok().json(json!({"ok": true, "result": {"id": 123456, "is_bot": true, "first_name": "Turumba Test", "username": "turumba_test_bot"}})),
            "setWebhook" => HttpResponse::Ok().json(json!({"ok": true, "result": true, "description": "Webhook was set"})),
            "sendMessage" => {
                let body = r.json();
                match body["chat_id"].as_str().unwrap_or_default() {
                    "429" => err(429, "Too Many Requests: retry after 7", json!({"retry_after": 7})),
                    "403" => err(403, "Forbidden: bot was blocked by the user", Value::Null),
                    "400" => err(400, "Bad Request: chat not found", Value::Null),
                    "500" => err(502, "Bad Gateway", Value::Null),
                    chat => HttpResponse::Ok().json(json!({"ok": true, "result": {
                        "message_id": 42,
                        "date": 1_763_800_000,
                        "chat": {"id": chat.parse::<i64>().unwrap_or(0), "type": "private"},
                        "text": body["text"],
                    }})),
                }
            }
            // Files by URL: an id per method, so tests tell the messages apart.
            "sendPhoto" | "sendDocument" | "sendAudio" | "sendVideo" => {
                let id = 43 + ["sendPhoto", "sendDocument", "sendAudio", "sendVideo"].iter().position(|m| *m == method).unwrap();
                HttpResponse::Ok().json(json!({"ok": true, "result": {"message_id": id, "date": 1_763_800_000, "chat": {"id": 1, "type": "private"}}}))
            }
            _ => err(404, "Not Found", Value::Null),
        }
    })
}

fn header<'a>(r: &'a Recorded, name: &str) -> Option<&'a str> {
    r.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

pub fn form(r: &Recorded) -> Vec<(String, String)> {
    form_urlencoded::parse(r.body.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

fn field(r: &Recorded, name: &str) -> String {
    form(r).into_iter().find(|(k, _)| k == name).map(|(_, v)| v).unwrap_or_default()
}

pub const TWILIO_SID: &str = "AC0123456789abcdef0123456789abcdef";
pub const TWILIO_TOKEN: &str = "twilio-good-auth-token-0001";

/// Twilio's REST API: account fetch and Messages.json with Basic auth. `To` decides the answer:
/// +15005550001 → 21211 invalid number; +15005550429 → 429 (Retry-After 3); +15005550500 → 503.
pub fn twilio() -> FakeServer {
    use base64::Engine;
    FakeServer::start(|r| {
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{TWILIO_SID}:{TWILIO_TOKEN}"))
        );
        if header(r, "authorization") != Some(expected.as_str()) {
            return HttpResponse::Unauthorized().json(json!({"code": 20003, "message": "Authenticate", "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401}));
        }
        if r.method == "GET" && r.path == format!("/2010-04-01/Accounts/{TWILIO_SID}.json") {
            return HttpResponse::Ok()
                .json(json!({"sid": TWILIO_SID, "friendly_name": "Turumba test", "status": "active", "type": "Full"}));
        }
        if r.method == "POST" && r.path == format!("/2010-04-01/Accounts/{TWILIO_SID}/Messages.json") {
            let to = field(r, "To");
            return match to.as_str() {
                "+15005550001" => HttpResponse::BadRequest().json(json!({"code": 21211, "message": format!("The 'To' number {to} is not a valid phone number."), "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400})),
                "+15005550429" => HttpResponse::TooManyRequests().insert_header(("Retry-After", "3")).json(json!({"code": 20429, "message": "Too Many Requests", "status": 429})),
                "+15005550500" => HttpResponse::ServiceUnavailable().json(json!({"code": 20500, "message": "Internal Server Error", "status": 503})),
                _ => HttpResponse::Created().json(json!({"sid": "SM00000000000000000000000000000001", "status": "queued", "num_segments": "2", "to": to, "body": field(r, "Body")})),
            };
        }
        HttpResponse::NotFound()
            .json(json!({"code": 20404, "message": "The requested resource was not found", "status": 404}))
    })
}

pub const AT_KEY: &str = "atsk_good_api_key_0001";

/// Africa's Talking: `/version1/messaging` and `/version1/user`, `apiKey` header. `to` decides:
/// +254711000403 → statusCode 403 InvalidPhoneNumber; +254711000500 → HTTP 500.
pub fn africastalking() -> FakeServer {
    FakeServer::start(|r| {
        if header(r, "apikey") != Some(AT_KEY) {
            return HttpResponse::Unauthorized().body("The supplied authentication is invalid");
        }
        if r.method == "GET" && r.path.starts_with("/version1/user?username=sandbox") {
            return HttpResponse::Ok().json(json!({"UserData": {"balance": "KES 1500.0000"}}));
        }
        if r.method == "POST" && r.path == "/version1/messaging" {
            let to = field(r, "to");
            return match to.as_str() {
                "+254711000500" => HttpResponse::InternalServerError().body("Internal Server Error"),
                "+254711000403" => HttpResponse::Created().json(json!({"SMSMessageData": {"Message": "Sent to 0/1 Total Cost: 0", "Recipients": [{"statusCode": 403, "number": to, "status": "InvalidPhoneNumber", "cost": "0", "messageId": "None"}]}})),
                _ => HttpResponse::Created().json(json!({"SMSMessageData": {"Message": "Sent to 1/1 Total Cost: KES 0.8000", "Recipients": [{"statusCode": 101, "number": to, "status": "Success", "cost": "KES 0.8000", "messageId": "ATXid_0001"}]}})),
            };
        }
        HttpResponse::NotFound().finish()
    })
}

pub const VONAGE_SECRET: &str = "vonage-good-secret";

/// Vonage SMS API: `/sms/json` and `/account/get-balance`. `to` decides: 447700900001 → status "3"
/// invalid parameters; 447700900002 → status "1" throttled.
pub fn vonage() -> FakeServer {
    FakeServer::start(|r| {
        if r.method == "GET" && r.path.starts_with("/account/get-balance") {
            return if r.path.contains(&format!("api_secret={VONAGE_SECRET}")) {
                HttpResponse::Ok().json(json!({"value": 10.28, "autoReload": false}))
            } else {
                HttpResponse::Unauthorized()
                    .json(json!({"error-code": "401", "error-code-label": "authentication failed"}))
            };
        }
        if r.method == "POST" && r.path == "/sms/json" {
            if field(r, "api_secret") != VONAGE_SECRET {
                return HttpResponse::Ok().json(
                    json!({"message-count": "1", "messages": [{"status": "4", "error-text": "Bad Credentials"}]}),
                );
            }
            let to = field(r, "to");
            let status = match to.as_str() {
                "447700900001" => Some(("3", "Invalid to address")),
                "447700900002" => Some(("1", "Throughput Rate Exceeded - please wait [ 30 ] and retry")),
                _ => None,
            };
            return match status {
                Some((s, text)) => HttpResponse::Ok().json(json!({"message-count": "1", "messages": [{"status": s, "error-text": text}]})),
                None => HttpResponse::Ok().json(json!({"message-count": "1", "messages": [{"to": to, "message-id": "0A0000000123ABCD1", "status": "0", "remaining-balance": "3.14159265", "message-price": "0.03330000", "network": "12345"}]})),
            };
        }
        HttpResponse::NotFound().finish()
    })
}

pub const GRAPH_TOKEN: &str = "EAAG-good-graph-token";

/// Meta's Graph API for WhatsApp (`/v21.0/{phone_number_id}/messages`, `/v21.0/{phone_number_id}`) and
/// Messenger (`/v21.0/me/messages`, `/v21.0/{page_id}`), Bearer tokens. Recipient `+15550000190`
/// (WhatsApp) or PSID `190` (Messenger) answer code 190 (expired token); `+15550130429`/`130429` answer
/// 130429 (rate limit). Media messages answer the id `wamid.<type>`, Messenger attachments `m_<type>`.
pub fn graph() -> FakeServer {
    FakeServer::start(|r| {
        let graph_error = |status: u16, code: u64, message: &str| {
            HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).json(
                json!({"error": {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AbCdEf"}}),
            )
        };
        if header(r, "authorization") != Some(format!("Bearer {GRAPH_TOKEN}").as_str()) {
            return graph_error(401, 190, "Error validating access token: Session has expired");
        }
        let body = r.json();
        match (r.method.as_str(), r.path.split('?').next().unwrap_or_default()) {
            ("GET", "/v21.0/1065550001") => HttpResponse::Ok().json(
                json!({"display_phone_number": "+1 555-000-1", "verified_name": "Turumba Test", "id": "1065550001"}),
            ),
            ("GET", "/v21.0/2075550001") => {
                HttpResponse::Ok().json(json!({"name": "Turumba Page", "id": "2075550001"}))
            }
            ("POST", "/v21.0/1065550001/messages") => match body["to"].as_str().unwrap_or_default() {
                "+15550000190" => graph_error(401, 190, "Error validating access token"),
                "+15550130429" => graph_error(400, 130429, "Rate limit hit"),
                to => {
                    let id = match body["type"].as_str() {
                        Some(kind @ ("image" | "document" | "audio" | "video")) => format!("wamid.{kind}"),
                        _ => "wamid.HBgLMTU1NTAwMDAwMDEVAgARGBI".to_string(),
                    };
                    HttpResponse::Ok().json(json!({"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to.trim_start_matches('+')}], "messages": [{"id": id}]}))
                }
            },
            ("POST", "/v21.0/me/messages") => match body["recipient"]["id"].as_str().unwrap_or_default() {
                "190" => graph_error(401, 190, "Error validating access token"),
                "130429" => graph_error(400, 4, "Application request limit reached"),
                psid => {
                    let id = match body["message"]["attachment"]["type"].as_str() {
                        Some(kind) => format!("m_{kind}"),
                        None => "m_AG5Hz2Uq7tuwNEhXfYYKj8mJEM".to_string(),
                    };
                    HttpResponse::Ok().json(json!({"recipient_id": psid, "message_id": id}))
                }
            },
            _ => graph_error(400, 100, "Unsupported request"),
        }
    })
}
