//! Twilio Programmable Messaging: `POST {base}/2010-04-01/Accounts/{sid}/Messages.json` (form `To`,
//! `From` or `MessagingServiceSid`, `Body`, `StatusCallback`, a `MediaUrl` per file for MMS; Basic auth
//! `sid:token`), verify by fetching
//! the account, status callbacks and inbound messages posted to us as forms signed with
//! `X-Twilio-Signature` = base64(HMAC-SHA1(auth token, public URL + sorted `key value` pairs)).
//! Errors are `{"code", "message", "status"}`; the code decides the class (21211 invalid number,
//! 21610 unsubscribed → permanent; 20003 → auth; 20429/14107 → throttled).

use async_trait::async_trait;
use base64::Engine;
use serde_json::{Value, json};

use super::{answer, form_fields};
use crate::modules::channels::adapter::{
    ChannelContext, ErrorClass, OutboundMessage, ProviderAdapter, ProviderError, SendReceipt, WebhookItem,
    WebhookRequest,
};
use crate::modules::channels::credentials::{Credentials, TwilioCredentials};
use crate::modules::channels::sms;
use crate::secret::constant_time_eq;

pub const DEFAULT_BASE_URL: &str = "https://api.twilio.com";

pub struct Twilio {
    http: reqwest::Client,
}

impl Twilio {
    pub fn new(http: reqwest::Client) -> Self {
        Twilio { http }
    }

    fn creds(channel: &ChannelContext) -> Result<&TwilioCredentials, ProviderError> {
        match &channel.credentials {
            Credentials::Twilio(c) => Ok(c),
            _ => Err(ProviderError::new(ErrorClass::Permanent, "not a Twilio channel")),
        }
    }

    fn base(c: &TwilioCredentials) -> &str {
        c.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL)
    }
}

fn classify(status: u16, body: &Value) -> ProviderError {
    let code = body["code"].as_u64();
    let message = body["message"].as_str().map(str::to_string).unwrap_or_else(|| format!("HTTP {status}"));
    let class = match (status, code) {
        (_, Some(20003)) | (401 | 403, _) => ErrorClass::Auth,
        (_, Some(20429 | 14107 | 30022)) | (429, _) => ErrorClass::Throttled,
        (500..=599, _) => ErrorClass::Transient,
        _ => ErrorClass::Permanent,
    };
    let e = ProviderError::new(class, format!("twilio: {message}"));
    match code {
        Some(c) => e.with_code(c),
        None => e.with_code(status),
    }
}

/// The signature Twilio sends for a form POST to `url`.
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut data = url.to_string();
    for (k, v) in sorted {
        data.push_str(k);
        data.push_str(v);
    }
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, auth_token.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(aws_lc_rs::hmac::sign(&key, data.as_bytes()).as_ref())
}

#[async_trait]
impl ProviderAdapter for Twilio {
    fn key(&self) -> (&'static str, Option<&'static str>) {
        ("sms", Some("twilio"))
    }

    async fn send(&self, channel: &ChannelContext, message: &OutboundMessage) -> Result<SendReceipt, ProviderError> {
        let c = Self::creds(channel)?;
        let url = format!("{}/2010-04-01/Accounts/{}/Messages.json", Self::base(c), c.account_sid);
        let mut form = vec![("To", message.to.clone())];
        if c.from.starts_with("MG") {
            form.push(("MessagingServiceSid", c.from.clone()));
        } else {
            form.push(("From", c.from.clone()));
        }
        form.push(("Body", message.text.clone()));
        // MMS: Twilio fetches each file (up to 10) from its URL.
        form.extend(message.attachments.iter().map(|a| ("MediaUrl", a.url.clone())));
        if let Some(hook) = &channel.webhook_url {
            form.push(("StatusCallback", hook.clone()));
        }
        let a = answer(self.http.post(url).basic_auth(&c.account_sid, Some(&c.auth_token)).form(&form).send().await)
            .await?;
        if !a.ok() {
            return Err(classify(a.status, &a.json).retry_after(a.retry_after));
        }
        let info = sms::analyse(&message.text);
        Ok(SendReceipt {
            part_ids: Vec::new(),
            provider_message_id: a.json["sid"].as_str().map(str::to_string),
            status: "sent",
            segments: Some(a.json["num_segments"].as_str().and_then(|s| s.parse().ok()).unwrap_or(info.segments)),
            encoding: Some(info.encoding.as_str()),
        })
    }

    fn sends_attachments(&self) -> bool {
        true
    }

    async fn verify(&self, channel: &ChannelContext) -> Result<String, ProviderError> {
        let c = Self::creds(channel)?;
        let url = format!("{}/2010-04-01/Accounts/{}.json", Self::base(c), c.account_sid);
        let a = answer(self.http.get(url).basic_auth(&c.account_sid, Some(&c.auth_token)).send().await).await?;
        if !a.ok() {
            return Err(classify(a.status, &a.json));
        }
        if a.json["status"].as_str().is_some_and(|s| s != "active") {
            return Err(ProviderError::new(ErrorClass::Auth, format!("twilio: the account is {}", a.json["status"])));
        }
        Ok(a.json["friendly_name"].as_str().unwrap_or("twilio account").to_string())
    }

    fn verify_signature(&self, channel: &ChannelContext, request: &WebhookRequest) -> bool {
        let (Ok(c), Some(given)) = (Self::creds(channel), request.header("x-twilio-signature")) else {
            return false;
        };
        let expected = signature(&c.auth_token, &request.url, &form_fields(&request.body));
        constant_time_eq(expected.as_bytes(), given.as_bytes())
    }

    fn event_id(&self, request: &WebhookRequest) -> Option<String> {
        let f = form_fields(&request.body);
        let get = |k: &str| super::field(&f, k);
        let sid = get("MessageSid").or_else(|| get("SmsSid"))?;
        Some(match get("MessageStatus").or_else(|| get("SmsStatus")) {
            Some(s) if get("Body").is_none() => format!("{sid}:{s}"),
            _ => sid,
        })
    }

    fn parse_webhook(&self, _channel: &ChannelContext, request: &WebhookRequest) -> Result<Vec<WebhookItem>, String> {
        let f = form_fields(&request.body);
        let get = |k: &str| super::field(&f, k);
        let sid = get("MessageSid").or_else(|| get("SmsSid")).ok_or("no MessageSid in the form")?;
        let raw = Value::Object(f.iter().map(|(k, v)| (k.clone(), json!(v))).collect());
        if let Some(body) = get("Body") {
            return Ok(vec![WebhookItem::Inbound {
                provider_message_id: sid,
                from: get("From").ok_or("no From in the form")?,
                from_name: None,
                text: body,
                received_at: None,
                raw,
            }]);
        }
        let status = get("MessageStatus").or_else(|| get("SmsStatus")).ok_or("neither Body nor MessageStatus")?;
        let status = match status.as_str() {
            "delivered" => "delivered",
            "read" => "read",
            "undelivered" | "failed" => "failed",
            "sent" => "sent",
            // queued, accepted, sending, scheduled: nothing to move forward yet.
            _ => "accepted",
        };
        Ok(vec![WebhookItem::Status {
            provider_message_id: sid,
            status: status.to_string(),
            error: get("ErrorCode").map(|c| format!("twilio error {c}")),
            at: None,
            raw,
        }])
    }
}
