//! Meta's Graph API: WhatsApp Cloud API (`POST {base}/{ver}/{phone_number_id}/messages`, Bearer token;
//! text inside the 24 h customer-service window, a template outside it; files as media messages by
//! `link`) and Messenger (`POST {base}/{ver}/me/messages`, page token as Bearer; `messaging_type:
//! RESPONSE` inside the 24 h window; files as URL attachments, one message each). Webhooks of both are JSON signed with `X-Hub-Signature-256` under the app secret. Graph
//! errors are `{"error": {"message", "type", "code", "error_subcode"}}`; the code decides the class.

use async_trait::async_trait;
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{Value, json};

use super::{answer, media_plan, meta_signature_ok, receipt_of};
use crate::modules::channels::adapter::{
    ChannelContext, ErrorClass, OutboundMessage, ProviderAdapter, ProviderError, SendReceipt, WebhookItem,
    WebhookRequest,
};
use crate::modules::channels::credentials::{Credentials, MessengerCredentials, WhatsAppCredentials};

pub const DEFAULT_BASE_URL: &str = "https://graph.facebook.com";
pub const DEFAULT_API_VERSION: &str = "v21.0";
/// Characters a WhatsApp media caption may have.
const CAPTION_LIMIT: usize = 1024;
/// The customer-service window: free-form messages only this long after the contact last wrote.
pub const WINDOW_HOURS: i64 = 24;

pub fn in_window(last_inbound_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    last_inbound_at.is_some_and(|t| now - t < Duration::hours(WINDOW_HOURS))
}

fn classify(product: &str, status: u16, body: &Value) -> ProviderError {
    let err = &body["error"];
    let code = err["code"].as_u64();
    let message = err["message"].as_str().map(str::to_string).unwrap_or_else(|| format!("HTTP {status}"));
    let class = match (status, code) {
        // 190: access token expired or invalid; 10/200: permission errors.
        (_, Some(190 | 102 | 10 | 200)) | (401, _) => ErrorClass::Auth,
        // Application, account and pair rate limits.
        (_, Some(4 | 17 | 32 | 613 | 80007 | 130429 | 131056)) | (429, _) => ErrorClass::Throttled,
        // "Something went wrong" / service unavailable.
        (_, Some(1 | 2 | 131000 | 131016)) | (500..=599, _) => ErrorClass::Transient,
        _ => ErrorClass::Permanent,
    };
    let e = ProviderError::new(class, format!("{product}: {message}"));
    match code {
        Some(c) => e.with_code(c),
        None => e.with_code(status),
    }
}

fn timestamp(v: &Value) -> Option<DateTime<Utc>> {
    let secs = v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))?;
    // Messenger sends milliseconds, WhatsApp seconds.
    let secs = if secs > 100_000_000_000 { secs / 1000 } else { secs };
    Utc.timestamp_opt(secs, 0).single()
}

pub struct WhatsApp {
    http: reqwest::Client,
}

impl WhatsApp {
    pub fn new(http: reqwest::Client) -> Self {
        WhatsApp { http }
    }
    fn creds(channel: &ChannelContext) -> Result<&WhatsAppCredentials, ProviderError> {
        match &channel.credentials {
            Credentials::WhatsApp(c) => Ok(c),
            _ => Err(ProviderError::new(ErrorClass::Permanent, "not a WhatsApp channel")),
        }
    }
    fn url(c: &WhatsAppCredentials, path: &str) -> String {
        format!(
            "{}/{}/{path}",
            c.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL),
            c.api_version.as_deref().unwrap_or(DEFAULT_API_VERSION)
        )
    }
}

impl WhatsApp {
    /// One Cloud API message; the id WhatsApp gave it.
    async fn post(&self, c: &WhatsAppCredentials, body: &Value) -> Result<Option<String>, ProviderError> {
        let url = Self::url(c, &format!("{}/messages", c.phone_number_id));
        let a = answer(self.http.post(url).bearer_auth(&c.access_token).json(body).send().await).await?;
        if !a.ok() {
            return Err(classify("whatsapp", a.status, &a.json).retry_after(a.retry_after));
        }
        Ok(a.json["messages"][0]["id"].as_str().map(str::to_string))
    }

    /// Media messages by `link` (WhatsApp fetches the file), one per file; the text is the first file's
    /// caption when it fits (audio takes none), else a text message of its own first.
    async fn send_media(
        &self,
        c: &WhatsAppCredentials,
        message: &OutboundMessage,
        envelope: Value,
    ) -> Result<SendReceipt, ProviderError> {
        let plan = media_plan(&message.text, &message.attachments, Some(CAPTION_LIMIT), |kind| kind != "audio");
        let mut ids = Vec::new();
        if let Some(text) = plan.text_first {
            let mut body = envelope.clone();
            body["type"] = json!("text");
            body["text"] = json!({"preview_url": false, "body": text});
            ids.extend(self.post(c, &body).await?);
        }
        for (file, caption) in plan.files {
            let mut media = json!({"link": file.url});
            if let Some(caption) = caption {
                media["caption"] = json!(caption);
            }
            if file.kind == "document"
                && let Some(name) = &file.filename
            {
                media["filename"] = json!(name);
            }
            let mut body = envelope.clone();
            body["type"] = json!(file.kind);
            body[file.kind.as_str()] = media;
            ids.extend(self.post(c, &body).await?);
        }
        Ok(receipt_of(ids))
    }
}

#[async_trait]
impl ProviderAdapter for WhatsApp {
    fn key(&self) -> (&'static str, Option<&'static str>) {
        ("whatsapp", None)
    }

    async fn send(&self, channel: &ChannelContext, message: &OutboundMessage) -> Result<SendReceipt, ProviderError> {
        let c = Self::creds(channel)?;
        let mut body = json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": message.to});
        match (&message.template, in_window(message.last_inbound_at, Utc::now())) {
            (Some(t), _) => {
                body["type"] = json!("template");
                body["template"] = json!({
                    "name": t["name"],
                    "language": {"code": t["language"].as_str().unwrap_or("en")},
                    "components": t.get("components").cloned().unwrap_or(json!([])),
                });
            }
            (None, true) if !message.attachments.is_empty() => return self.send_media(c, message, body).await,
            (None, true) => {
                body["type"] = json!("text");
                body["text"] = json!({"preview_url": false, "body": message.text});
            }
            (None, false) => {
                return Err(ProviderError::new(
                    ErrorClass::Permanent,
                    "whatsapp: outside the 24 h customer-service window a template message is required",
                )
                .with_code("outside_window"));
            }
        }
        Ok(receipt_of(self.post(c, &body).await?.into_iter().collect()))
    }

    fn sends_attachments(&self) -> bool {
        true
    }

    async fn verify(&self, channel: &ChannelContext) -> Result<String, ProviderError> {
        let c = Self::creds(channel)?;
        let url = Self::url(c, &c.phone_number_id);
        let a = answer(
            self.http
                .get(url)
                .bearer_auth(&c.access_token)
                .query(&[("fields", "display_phone_number,verified_name")])
                .send()
                .await,
        )
        .await?;
        if !a.ok() {
            return Err(classify("whatsapp", a.status, &a.json));
        }
        Ok(format!(
            "{} ({})",
            a.json["verified_name"].as_str().unwrap_or("WhatsApp"),
            a.json["display_phone_number"].as_str().unwrap_or("?")
        ))
    }

    fn verify_signature(&self, channel: &ChannelContext, request: &WebhookRequest) -> bool {
        Self::creds(channel).is_ok_and(|c| meta_signature_ok(&c.app_secret, request))
    }

    fn parse_webhook(&self, _channel: &ChannelContext, request: &WebhookRequest) -> Result<Vec<WebhookItem>, String> {
        let v: Value = serde_json::from_slice(&request.body).map_err(|e| format!("not JSON: {e}"))?;
        if v["object"] != "whatsapp_business_account" {
            return Err("not a WhatsApp Business Account notification".into());
        }
        let mut items = Vec::new();
        for entry in v["entry"].as_array().into_iter().flatten() {
            for change in entry["changes"].as_array().into_iter().flatten() {
                let value = &change["value"];
                let names: Vec<(&str, &str)> = value["contacts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| Some((c["wa_id"].as_str()?, c["profile"]["name"].as_str()?)))
                    .collect();
                for m in value["messages"].as_array().into_iter().flatten() {
                    let from = m["from"].as_str().ok_or("message without from")?;
                    let text = m["text"]["body"]
                        .as_str()
                        .or(m["button"]["text"].as_str())
                        .or(m["interactive"]["button_reply"]["title"].as_str())
                        .or(m["image"]["caption"].as_str())
                        .unwrap_or_default();
                    items.push(WebhookItem::Inbound {
                        provider_message_id: m["id"].as_str().ok_or("message without id")?.to_string(),
                        // wa_id is the number without the plus.
                        from: if from.starts_with('+') { from.to_string() } else { format!("+{from}") },
                        from_name: names.iter().find(|(id, _)| *id == from).map(|(_, n)| n.to_string()),
                        text: text.to_string(),
                        received_at: timestamp(&m["timestamp"]),
                        raw: m.clone(),
                    });
                }
                for s in value["statuses"].as_array().into_iter().flatten() {
                    let error = s["errors"][0]["title"].as_str().or(s["errors"][0]["message"].as_str());
                    items.push(WebhookItem::Status {
                        provider_message_id: s["id"].as_str().ok_or("status without id")?.to_string(),
                        status: s["status"].as_str().unwrap_or("unknown").to_string(),
                        error: error.map(str::to_string),
                        at: timestamp(&s["timestamp"]),
                        raw: s.clone(),
                    });
                }
            }
        }
        Ok(items)
    }
}

pub struct Messenger {
    http: reqwest::Client,
}

impl Messenger {
    pub fn new(http: reqwest::Client) -> Self {
        Messenger { http }
    }
    fn creds(channel: &ChannelContext) -> Result<&MessengerCredentials, ProviderError> {
        match &channel.credentials {
            Credentials::Messenger(c) => Ok(c),
            _ => Err(ProviderError::new(ErrorClass::Permanent, "not a Messenger channel")),
        }
    }
    fn url(c: &MessengerCredentials, path: &str) -> String {
        format!(
            "{}/{}/{path}",
            c.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL),
            c.api_version.as_deref().unwrap_or(DEFAULT_API_VERSION)
        )
    }
}

#[async_trait]
impl ProviderAdapter for Messenger {
    fn key(&self) -> (&'static str, Option<&'static str>) {
        ("messenger", None)
    }

    async fn send(&self, channel: &ChannelContext, message: &OutboundMessage) -> Result<SendReceipt, ProviderError> {
        let c = Self::creds(channel)?;
        if !in_window(message.last_inbound_at, Utc::now()) {
            return Err(ProviderError::new(
                ErrorClass::Permanent,
                "messenger: outside the 24 h window since the person last wrote, the page cannot message them",
            )
            .with_code("outside_window"));
        }
        // A Messenger message is a text or one attachment (by URL; Meta fetches it): the text goes first.
        let plan = media_plan(&message.text, &message.attachments, None, |_| false);
        let text = if message.attachments.is_empty() { Some(message.text.as_str()) } else { plan.text_first };
        let mut contents: Vec<Value> = text.map(|t| json!({"text": t})).into_iter().collect();
        for (file, _) in plan.files {
            let kind = if file.kind == "document" { "file" } else { file.kind.as_str() };
            contents.push(json!({"attachment": {"type": kind, "payload": {"url": file.url, "is_reusable": true}}}));
        }
        let mut ids = Vec::new();
        for content in contents {
            let body = json!({"recipient": {"id": message.to}, "messaging_type": "RESPONSE", "message": content});
            let a = answer(
                self.http.post(Self::url(c, "me/messages")).bearer_auth(&c.page_access_token).json(&body).send().await,
            )
            .await?;
            if !a.ok() {
                return Err(classify("messenger", a.status, &a.json).retry_after(a.retry_after));
            }
            ids.extend(a.json["message_id"].as_str().map(str::to_string));
        }
        Ok(receipt_of(ids))
    }

    fn sends_attachments(&self) -> bool {
        true
    }

    async fn verify(&self, channel: &ChannelContext) -> Result<String, ProviderError> {
        let c = Self::creds(channel)?;
        let a = answer(
            self.http
                .get(Self::url(c, &c.page_id))
                .bearer_auth(&c.page_access_token)
                .query(&[("fields", "name,id")])
                .send()
                .await,
        )
        .await?;
        if !a.ok() {
            return Err(classify("messenger", a.status, &a.json));
        }
        Ok(a.json["name"].as_str().unwrap_or("page").to_string())
    }

    fn verify_signature(&self, channel: &ChannelContext, request: &WebhookRequest) -> bool {
        Self::creds(channel).is_ok_and(|c| meta_signature_ok(&c.app_secret, request))
    }

    fn parse_webhook(&self, _channel: &ChannelContext, request: &WebhookRequest) -> Result<Vec<WebhookItem>, String> {
        let v: Value = serde_json::from_slice(&request.body).map_err(|e| format!("not JSON: {e}"))?;
        if v["object"] != "page" {
            return Err("not a Page notification".into());
        }
        let mut items = Vec::new();
        for entry in v["entry"].as_array().into_iter().flatten() {
            for m in entry["messaging"].as_array().into_iter().flatten() {
                let sender = m["sender"]["id"].as_str().unwrap_or_default().to_string();
                if let Some(msg) = m.get("message") {
                    if msg["is_echo"] == json!(true) {
                        continue; // our own message echoed back
                    }
                    items.push(WebhookItem::Inbound {
                        provider_message_id: msg["mid"].as_str().ok_or("message without mid")?.to_string(),
                        from: sender,
                        from_name: None,
                        text: msg["text"].as_str().unwrap_or_default().to_string(),
                        received_at: timestamp(&m["timestamp"]),
                        raw: m.clone(),
                    });
                } else if let Some(d) = m.get("delivery") {
                    for mid in d["mids"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                        items.push(WebhookItem::Status {
                            provider_message_id: mid.to_string(),
                            status: "delivered".into(),
                            error: None,
                            at: timestamp(&d["watermark"]),
                            raw: m.clone(),
                        });
                    }
                }
            }
        }
        Ok(items)
    }
}
