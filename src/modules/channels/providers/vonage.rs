//! Vonage SMS API: `POST {base}/sms/json` (`api_key, api_secret, from, to, text`, `type=unicode` for
//! UCS-2 texts, `client-ref` = our message id, `callback` = our webhook). The answer lists a status per
//! message part: "0" is success; 1 throttled; 4/8/9/11/14/32 account problems (auth); 5 internal
//! (transient); the rest (invalid number, barred, …) permanent. Verify reads the account balance.
//! Delivery receipts and inbound messages come as forms or query strings; Vonage's signing is optional,
//! so the webhook URL Turumba shows carries the channel's secret `token`.

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{answer, form_fields, url_token_ok};
use crate::modules::channels::adapter::{
    ChannelContext, ErrorClass, OutboundMessage, ProviderAdapter, ProviderError, SendReceipt, WebhookItem,
    WebhookRequest,
};
use crate::modules::channels::credentials::{Credentials, VonageCredentials};
use crate::modules::channels::sms::{self, Encoding};

pub const DEFAULT_BASE_URL: &str = "https://rest.nexmo.com";

pub struct Vonage {
    http: reqwest::Client,
}

impl Vonage {
    pub fn new(http: reqwest::Client) -> Self {
        Vonage { http }
    }
    fn creds(channel: &ChannelContext) -> Result<&VonageCredentials, ProviderError> {
        match &channel.credentials {
            Credentials::Vonage(c) => Ok(c),
            _ => Err(ProviderError::new(ErrorClass::Permanent, "not a Vonage channel")),
        }
    }
    fn base(c: &VonageCredentials) -> &str {
        c.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL)
    }
}

fn status_error(m: &Value) -> ProviderError {
    let code: u64 = m["status"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
    let text = m["error-text"].as_str().unwrap_or("rejected");
    let class = match code {
        1 => ErrorClass::Throttled,
        4 | 8 | 9 | 11 | 14 | 32 => ErrorClass::Auth,
        5 => ErrorClass::Transient,
        _ => ErrorClass::Permanent,
    };
    ProviderError::new(class, format!("vonage: {text}")).with_code(code)
}

/// Form fields of the body, or of the query string when the body is empty (Vonage's GET callbacks).
fn fields(request: &WebhookRequest) -> Vec<(String, String)> {
    if request.body.is_empty() {
        let query = request.url.split_once('?').map(|(_, q)| q).unwrap_or_default();
        return form_fields(query.as_bytes());
    }
    if request.content_type.as_deref().is_some_and(|t| t.starts_with("application/json")) {
        let v: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        return v
            .as_object()
            .map(|o| {
                o.iter().map(|(k, v)| (k.clone(), v.as_str().map(str::to_string).unwrap_or(v.to_string()))).collect()
            })
            .unwrap_or_default();
    }
    form_fields(&request.body)
}

#[async_trait]
impl ProviderAdapter for Vonage {
    fn key(&self) -> (&'static str, Option<&'static str>) {
        ("sms", Some("vonage"))
    }

    async fn send(&self, channel: &ChannelContext, message: &OutboundMessage) -> Result<SendReceipt, ProviderError> {
        let c = Self::creds(channel)?;
        let info = sms::analyse(&message.text);
        let mut form = vec![
            ("api_key", c.api_key.clone()),
            ("api_secret", c.api_secret.clone()),
            ("from", c.from.clone()),
            // Vonage wants the number in international format without the plus.
            ("to", message.to.trim_start_matches('+').to_string()),
            ("text", message.text.clone()),
            ("client-ref", message.message_id.to_string()),
        ];
        if info.encoding == Encoding::Ucs2 {
            form.push(("type", "unicode".into()));
        }
        if let Some(hook) = &channel.webhook_url {
            form.push(("callback", hook.clone()));
        }
        let a = answer(self.http.post(format!("{}/sms/json", Self::base(c))).form(&form).send().await).await?;
        if !a.ok() {
            let message = a.json["error-text"].as_str().unwrap_or(&a.text).to_string();
            return Err(ProviderError::from_status(a.status, format!("vonage: {message}")).retry_after(a.retry_after));
        }
        let parts = a.json["messages"].as_array().cloned().unwrap_or_default();
        if let Some(bad) = parts.iter().find(|m| m["status"] != "0") {
            return Err(status_error(bad));
        }
        Ok(SendReceipt {
            part_ids: Vec::new(),
            provider_message_id: parts.first().and_then(|m| m["message-id"].as_str()).map(str::to_string),
            status: "sent",
            segments: Some(parts.len().max(info.segments)),
            encoding: Some(info.encoding.as_str()),
        })
    }

    async fn verify(&self, channel: &ChannelContext) -> Result<String, ProviderError> {
        let c = Self::creds(channel)?;
        let a = answer(
            self.http
                .get(format!("{}/account/get-balance", Self::base(c)))
                .query(&[("api_key", &c.api_key), ("api_secret", &c.api_secret)])
                .send()
                .await,
        )
        .await?;
        if !a.ok() {
            let message = a.json["error-code-label"].as_str().unwrap_or(&a.text).to_string();
            return Err(ProviderError::from_status(a.status, format!("vonage: {message}")));
        }
        Ok(format!("balance {}", a.json["value"]))
    }

    fn verify_signature(&self, channel: &ChannelContext, request: &WebhookRequest) -> bool {
        url_token_ok(channel, request)
    }

    fn event_id(&self, request: &WebhookRequest) -> Option<String> {
        let f = fields(request);
        let get = |k: &str| super::field(&f, k);
        let id = get("messageId")?;
        Some(match get("status") {
            Some(s) if get("text").is_none() => format!("{id}:{s}"),
            _ => id,
        })
    }

    fn parse_webhook(&self, _channel: &ChannelContext, request: &WebhookRequest) -> Result<Vec<WebhookItem>, String> {
        let f = fields(request);
        let get = |k: &str| super::field(&f, k);
        let raw = Value::Object(f.iter().map(|(k, v)| (k.clone(), json!(v))).collect());
        let id = get("messageId").ok_or("no messageId")?;
        if let Some(text) = get("text") {
            let from = get("msisdn").ok_or("no msisdn")?;
            return Ok(vec![WebhookItem::Inbound {
                provider_message_id: id,
                from: if from.starts_with('+') { from } else { format!("+{from}") },
                from_name: None,
                text,
                received_at: None,
                raw,
            }]);
        }
        let status = match get("status").ok_or("neither text nor status")?.as_str() {
            "delivered" => "delivered",
            "failed" | "rejected" | "expired" => "failed",
            _ => "accepted", // accepted, buffered, unknown
        };
        Ok(vec![WebhookItem::Status {
            provider_message_id: id,
            status: status.to_string(),
            error: get("err-code").filter(|c| c != "0").map(|c| format!("vonage error {c}")),
            at: None,
            raw,
        }])
    }
}
