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

/// The Telegram Bot API: `getMe`, `sendMessage`, `setWebhook`; token `TELEGRAM_GOOD_TOKEN` is valid.
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
            _ => err(404, "Not Found", Value::Null),
        }
    })
}
