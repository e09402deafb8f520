//! Telegram Bot API: `POST {base}/bot{token}/sendMessage {chat_id, text}` (files by URL through
//! `sendPhoto`/`sendDocument`/`sendAudio`/`sendVideo`, one call each), `getMe` to verify,
//! `setWebhook {url, secret_token}` to register, updates posted to us with the
//! `X-Telegram-Bot-Api-Secret-Token` header. Errors come as `{"ok": false, "error_code", "description",
//! "parameters": {"retry_after"}}`: 401 is a bad token (auth); 403 means the user blocked the bot
//! (permanent for that message, the channel is fine); 429 carries `retry_after`.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use serde_json::{Value, json};

use super::{media_plan, receipt_of, retry_after_header};
use crate::modules::channels::adapter::{
    ChannelContext, ErrorClass, OutboundMessage, ProviderAdapter, ProviderError, SendReceipt, WebhookItem,
    WebhookRequest,
};
use crate::modules::channels::credentials::{Credentials, TelegramCredentials};
use crate::secret::constant_time_eq;

pub const DEFAULT_BASE_URL: &str = "https://api.telegram.org";
pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";
/// Characters a photo or document caption may have.
const CAPTION_LIMIT: usize = 1024;

pub struct Telegram {
    http: reqwest::Client,
}

impl Telegram {
    pub fn new(http: reqwest::Client) -> Self {
        Telegram { http }
    }

    fn creds(channel: &ChannelContext) -> Result<&TelegramCredentials, ProviderError> {
        match &channel.credentials {
            Credentials::Telegram(c) => Ok(c),
            _ => Err(ProviderError::new(ErrorClass::Permanent, "not a telegram channel")),
        }
    }

    async fn call(&self, c: &TelegramCredentials, method: &str, body: Option<&Value>) -> Result<Value, ProviderError> {
        let base = c.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL);
        let url = format!("{base}/bot{}/{method}", c.bot_token);
        let req = match body {
            Some(b) => self.http.post(url).json(b),
            None => self.http.get(url),
        };
        let resp = req.send().await.map_err(|e| ProviderError::from_http(&e))?;
        let status = resp.status().as_u16();
        let retry_header = retry_after_header(resp.headers());
        let text = resp.text().await.map_err(|e| ProviderError::from_http(&e))?;
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status == 200 && v["ok"] == json!(true) {
            return Ok(v["result"].clone());
        }
        let code = v["error_code"].as_u64().map(|c| c as u16).unwrap_or(status);
        let description = v["description"].as_str().map(str::to_string).unwrap_or_else(|| format!("HTTP {status}"));
        let class = match code {
            // A wrong token is 401; a malformed one makes the whole path unknown (404 "Not Found").
            401 => ErrorClass::Auth,
            404 if description.contains("Not Found") => ErrorClass::Auth,
            403 => ErrorClass::Permanent,
            429 => ErrorClass::Throttled,
            500..=599 => ErrorClass::Transient,
            _ => ErrorClass::Permanent,
        };
        let retry = v["parameters"]["retry_after"].as_u64().map(Duration::from_secs).or(retry_header);
        Err(ProviderError::new(class, format!("telegram: {description}")).with_code(code).retry_after(retry))
    }
}

#[async_trait]
impl ProviderAdapter for Telegram {
    fn key(&self) -> (&'static str, Option<&'static str>) {
        ("telegram", None)
    }

    async fn send(&self, channel: &ChannelContext, message: &OutboundMessage) -> Result<SendReceipt, ProviderError> {
        let c = Self::creds(channel)?;
        let id_of = |result: &Value| result["message_id"].as_i64().map(|id| format!("{}:{id}", message.to));
        if message.attachments.is_empty() {
            let result =
                self.call(c, "sendMessage", Some(&json!({"chat_id": message.to, "text": message.text}))).await?;
            return Ok(receipt_of(id_of(&result).into_iter().collect()));
        }
        // A file by URL per call (Telegram fetches it); the text is the first file's caption when it fits.
        let plan = media_plan(&message.text, &message.attachments, Some(CAPTION_LIMIT), |_| true);
        let mut ids = Vec::new();
        if let Some(text) = plan.text_first {
            ids.extend(id_of(&self.call(c, "sendMessage", Some(&json!({"chat_id": message.to, "text": text}))).await?));
        }
        for (file, caption) in plan.files {
            let (method, field) = match file.kind.as_str() {
                "image" => ("sendPhoto", "photo"),
                "video" => ("sendVideo", "video"),
                "audio" => ("sendAudio", "audio"),
                _ => ("sendDocument", "document"),
            };
            let mut body = json!({"chat_id": message.to, field: file.url});
            if let Some(caption) = caption {
                body["caption"] = json!(caption);
            }
            ids.extend(id_of(&self.call(c, method, Some(&body)).await?));
        }
        Ok(receipt_of(ids))
    }

    fn sends_attachments(&self) -> bool {
        true
    }

    async fn verify(&self, channel: &ChannelContext) -> Result<String, ProviderError> {
        let c = Self::creds(channel)?;
        let me = self.call(c, "getMe", None).await?;
        Ok(me["username"].as_str().map(|u| format!("@{u}")).unwrap_or_else(|| "bot".into()))
    }

    async fn register_webhook(&self, channel: &ChannelContext) -> Result<(), ProviderError> {
        let c = Self::creds(channel)?;
        let (Some(url), Some(secret)) = (&channel.webhook_url, &channel.webhook_secret) else {
            return Ok(());
        };
        self.call(
            c,
            "setWebhook",
            Some(&json!({"url": url, "secret_token": secret, "allowed_updates": ["message", "edited_message"]})),
        )
        .await
        .map(|_| ())
    }

    fn verify_signature(&self, channel: &ChannelContext, request: &WebhookRequest) -> bool {
        match (&channel.webhook_secret, request.header(SECRET_HEADER)) {
            (Some(expected), Some(given)) => constant_time_eq(expected.as_bytes(), given.as_bytes()),
            _ => false,
        }
    }

    fn event_id(&self, request: &WebhookRequest) -> Option<String> {
        let update: Value = serde_json::from_slice(&request.body).ok()?;
        update["update_id"].as_i64().map(|id| format!("update:{id}"))
    }

    fn parse_webhook(&self, _channel: &ChannelContext, request: &WebhookRequest) -> Result<Vec<WebhookItem>, String> {
        let update: Value = serde_json::from_slice(&request.body).map_err(|e| format!("not JSON: {e}"))?;
        if update["update_id"].as_i64().is_none() {
            return Err("not a Telegram update (no update_id)".into());
        }
        let Some(msg) = update.get("message").or_else(|| update.get("edited_message")) else {
            // Other update kinds (callbacks, member changes) carry no message for us.
            return Ok(Vec::new());
        };
        let chat = msg["chat"]["id"].as_i64().ok_or("message without chat.id")?;
        let id = msg["message_id"].as_i64().ok_or("message without message_id")?;
        let from = &msg["from"];
        let name = [from["first_name"].as_str(), from["last_name"].as_str()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        let text = msg["text"].as_str().or(msg["caption"].as_str()).unwrap_or_default().to_string();
        Ok(vec![WebhookItem::Inbound {
            provider_message_id: format!("{chat}:{id}"),
            from: chat.to_string(),
            from_name: (!name.is_empty()).then_some(name),
            text,
            received_at: msg["date"].as_i64().and_then(|d| Utc.timestamp_opt(d, 0).single()),
            raw: msg.clone(),
        }])
    }
}
