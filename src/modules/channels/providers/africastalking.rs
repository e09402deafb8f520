//! Africa's Talking SMS: `POST {base}/version1/messaging` (form `username, to, message, from`; header
//! `apiKey`; `Accept: application/json`). The answer lists each recipient with a `statusCode` (100–102
//! accepted; 403 invalid number, 406 blacklisted, 409 DND → permanent; 405 insufficient balance →
//! auth-like, the channel cannot send; 500–502 → transient). Verify fetches the user's balance.
//! Delivery reports and inbound messages are posted to us as forms; Africa's Talking does not sign them,
//! so the webhook URL Turumba shows carries the channel's secret `token`.

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{answer, form_fields, url_token_ok};
use crate::modules::channels::adapter::{
    ChannelContext, ErrorClass, OutboundMessage, ProviderAdapter, ProviderError, SendReceipt, WebhookItem,
    WebhookRequest,
};
use crate::modules::channels::credentials::{AfricasTalkingCredentials, Credentials};
use crate::modules::channels::sms;

pub const DEFAULT_BASE_URL: &str = "https://api.africastalking.com";

pub struct AfricasTalking {
    http: reqwest::Client,
}

impl AfricasTalking {
    pub fn new(http: reqwest::Client) -> Self {
        AfricasTalking { http }
    }
    fn creds(channel: &ChannelContext) -> Result<&AfricasTalkingCredentials, ProviderError> {
        match &channel.credentials {
            Credentials::AfricasTalking(c) => Ok(c),
            _ => Err(ProviderError::new(ErrorClass::Permanent, "not an Africa's Talking channel")),
        }
    }
    fn base(c: &AfricasTalkingCredentials) -> &str {
        c.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL)
    }
}

fn http_error(status: u16, text: &str) -> ProviderError {
    let message = if text.trim().is_empty() { format!("HTTP {status}") } else { text.trim().to_string() };
    ProviderError::from_status(status, format!("africastalking: {message}"))
}

fn recipient_error(r: &Value) -> ProviderError {
    let code = r["statusCode"].as_u64().unwrap_or(0);
    let status = r["status"].as_str().unwrap_or("failed");
    let class = match code {
        405 | 401 => ErrorClass::Auth,
        500..=502 => ErrorClass::Transient,
        _ => ErrorClass::Permanent,
    };
    ProviderError::new(class, format!("africastalking: {status}")).with_code(code)
}

#[async_trait]
impl ProviderAdapter for AfricasTalking {
    fn key(&self) -> (&'static str, Option<&'static str>) {
        ("sms", Some("africastalking"))
    }

    async fn send(&self, channel: &ChannelContext, message: &OutboundMessage) -> Result<SendReceipt, ProviderError> {
        let c = Self::creds(channel)?;
        let mut form =
            vec![("username", c.username.clone()), ("to", message.to.clone()), ("message", message.text.clone())];
        if let Some(from) = &c.sender_id {
            form.push(("from", from.clone()));
        }
        let a = answer(
            self.http
                .post(format!("{}/version1/messaging", Self::base(c)))
                .header("apiKey", &c.api_key)
                .header("Accept", "application/json")
                .form(&form)
                .send()
                .await,
        )
        .await?;
        if !a.ok() {
            return Err(http_error(a.status, &a.text).retry_after(a.retry_after));
        }
        let r = &a.json["SMSMessageData"]["Recipients"][0];
        if r.is_null() {
            // No recipient accepted: the summary says why (e.g. "InvalidSenderId").
            let why = a.json["SMSMessageData"]["Message"].as_str().unwrap_or("no recipient accepted");
            return Err(ProviderError::new(ErrorClass::Permanent, format!("africastalking: {why}")));
        }
        match r["statusCode"].as_u64() {
            Some(100..=102) => {
                let info = sms::analyse(&message.text);
                Ok(SendReceipt {
                    part_ids: Vec::new(),
                    provider_message_id: r["messageId"].as_str().map(str::to_string),
                    status: "sent",
                    segments: Some(info.segments),
                    encoding: Some(info.encoding.as_str()),
                })
            }
            _ => Err(recipient_error(r)),
        }
    }

    async fn verify(&self, channel: &ChannelContext) -> Result<String, ProviderError> {
        let c = Self::creds(channel)?;
        let a = answer(
            self.http
                .get(format!("{}/version1/user", Self::base(c)))
                .query(&[("username", &c.username)])
                .header("apiKey", &c.api_key)
                .header("Accept", "application/json")
                .send()
                .await,
        )
        .await?;
        if !a.ok() {
            return Err(http_error(a.status, &a.text));
        }
        Ok(format!("balance {}", a.json["UserData"]["balance"].as_str().unwrap_or("?")))
    }

    fn verify_signature(&self, channel: &ChannelContext, request: &WebhookRequest) -> bool {
        url_token_ok(channel, request)
    }

    fn event_id(&self, request: &WebhookRequest) -> Option<String> {
        let f = form_fields(&request.body);
        let get = |k: &str| super::field(&f, k);
        let id = get("id")?;
        Some(match get("status") {
            Some(s) if get("text").is_none() => format!("{id}:{s}"),
            _ => id,
        })
    }

    fn parse_webhook(&self, _channel: &ChannelContext, request: &WebhookRequest) -> Result<Vec<WebhookItem>, String> {
        let f = form_fields(&request.body);
        let get = |k: &str| super::field(&f, k);
        let id = get("id").ok_or("no id in the form")?;
        let raw = Value::Object(f.iter().map(|(k, v)| (k.clone(), json!(v))).collect());
        if let Some(text) = get("text") {
            return Ok(vec![WebhookItem::Inbound {
                provider_message_id: id,
                from: get("from").ok_or("no from in the form")?,
                from_name: None,
                text,
                received_at: get("date").and_then(|d| crate::db::list::parse_timestamp(&d)),
                raw,
            }]);
        }
        let status = match get("status").ok_or("neither text nor status")?.as_str() {
            "Success" => "delivered",
            "Failed" | "Rejected" | "AbsentSubscriber" | "Expired" => "failed",
            "Sent" | "Submitted" => "sent",
            _ => "accepted", // Buffered, Queued
        };
        Ok(vec![WebhookItem::Status {
            provider_message_id: id,
            status: status.to_string(),
            error: get("failureReason"),
            at: None,
            raw,
        }])
    }
}
