//! The one interface every provider speaks (SPEC §5.1): send, verify, parse webhooks (inbound messages
//! and delivery statuses), verify webhook signatures; and the error classes dispatch acts on.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::credentials::Credentials;

/// A channel as an adapter sees it: decrypted credentials, only inside the channels module.
#[derive(Clone)]
pub struct ChannelContext {
    pub id: Uuid,
    pub account_id: Uuid,
    pub channel_type: String,
    pub provider: Option<String>,
    pub credentials: Credentials,
    pub sender_name: Option<String>,
    /// Where the provider must post (`{public_base_url}/v1/webhooks/{type}/{id}`), when configured.
    pub webhook_url: Option<String>,
    /// The Telegram secret token set with `setWebhook`.
    pub webhook_secret: Option<String>,
}

impl ChannelContext {
    /// A channel that lives only in memory (benchmarks, adapter tests): a fresh id, no webhook.
    pub fn standalone(credentials: Credentials) -> Self {
        let (channel_type, provider) = credentials.kind();
        ChannelContext {
            id: Uuid::now_v7(),
            account_id: Uuid::now_v7(),
            channel_type: channel_type.into(),
            provider: provider.map(str::to_string),
            credentials,
            sender_name: None,
            webhook_url: None,
            webhook_secret: None,
        }
    }
}

impl std::fmt::Debug for ChannelContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelContext")
            .field("id", &self.id)
            .field("channel_type", &self.channel_type)
            .field("provider", &self.provider)
            .field("credentials", &"[redacted]")
            .finish()
    }
}

/// One message to one recipient.
#[derive(Debug, Clone, Default)]
pub struct OutboundMessage {
    /// Our message id (sent as the client reference where the provider has one).
    pub message_id: Uuid,
    /// The address on the channel type: E.164 phone, e-mail, chat id or PSID.
    pub to: String,
    pub text: String,
    /// E-mail subject (`metadata.subject`).
    pub subject: Option<String>,
    /// E-mail HTML body.
    pub html: Option<String>,
    /// WhatsApp template (`{name, language, components}`), required outside the 24 h window.
    pub template: Option<Value>,
    /// When the contact last wrote to us (WhatsApp/Messenger customer-service window).
    pub last_inbound_at: Option<DateTime<Utc>>,
    /// Files by URL (at most 10): the provider fetches them (Telegram, WhatsApp, Messenger, Twilio MMS);
    /// the e-mail adapter fetches them itself and attaches them.
    pub attachments: Vec<MediaAttachment>,
}

/// A file sent with a message, by URL.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MediaAttachment {
    pub url: String,
    /// `image`, `document`, `audio` or `video`.
    pub kind: String,
    pub filename: Option<String>,
    pub caption: Option<String>,
}

/// What the provider said when it accepted a message.
#[derive(Debug, Clone, PartialEq)]
pub struct SendReceipt {
    /// The provider's id of the message (of its first part, for a multi-part SMS).
    pub provider_message_id: Option<String>,
    /// The ids of the other provider messages the send became: the other parts of a multi-part SMS
    /// (SMPP gives each part its own id and receipt), the attachments sent after the text (Telegram,
    /// WhatsApp, Messenger). A receipt for any of them finds the message.
    pub part_ids: Vec<String>,
    /// `delivered` when the provider confirms delivery synchronously (sandbox, Telegram), else `sent`.
    pub status: &'static str,
    /// SMS only: parts and encoding.
    pub segments: Option<usize>,
    pub encoding: Option<&'static str>,
}

/// The error code of a send refused because another process holds the channel's SMPP bind: its
/// dispatcher sends the message (see `leases`).
pub const BIND_OWNED_ELSEWHERE: &str = "bind_owned_elsewhere";

/// How dispatch treats a failure (SPEC §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Network, timeout, 5xx: retry with backoff.
    Transient,
    /// 429 or a provider throttling code: wait `retry_after`, not counted as an attempt.
    Throttled,
    /// Invalid number, blocked, other 4xx: the message fails for good.
    Permanent,
    /// 401/403: the message fails for good and the channel goes to `error`.
    Auth,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Throttled => "throttled",
            ErrorClass::Permanent => "permanent",
            ErrorClass::Auth => "auth",
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{class:?}: {message}")]
pub struct ProviderError {
    pub class: ErrorClass,
    pub message: String,
    /// The provider's own error code, when it gave one.
    pub code: Option<String>,
    pub retry_after: Option<Duration>,
}

impl ProviderError {
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        ProviderError { class, message: message.into(), code: None, retry_after: None }
    }
    pub fn with_code(mut self, code: impl ToString) -> Self {
        self.code = Some(code.to_string());
        self
    }
    pub fn retry_after(mut self, d: Option<Duration>) -> Self {
        self.retry_after = d;
        self
    }
    /// Network-level failures: timeouts and refused connections are transient.
    pub fn from_http(e: &reqwest::Error) -> Self {
        // reqwest errors can carry the URL, which for Telegram holds the bot token: never include it.
        let e = e.without_url_ref();
        ProviderError::new(ErrorClass::Transient, format!("provider unreachable: {e}"))
    }
    /// The class of an HTTP status without a more specific provider code.
    pub fn from_status(status: u16, message: impl Into<String>) -> Self {
        let class = match status {
            401 | 403 => ErrorClass::Auth,
            429 => ErrorClass::Throttled,
            408 | 500..=599 => ErrorClass::Transient,
            _ => ErrorClass::Permanent,
        };
        ProviderError::new(class, message).with_code(status)
    }
}

trait WithoutUrl {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_ref(&self) -> String {
        let mut s = String::new();
        if self.is_timeout() {
            s.push_str("timed out");
        } else if self.is_connect() {
            s.push_str("connection failed");
        } else if self.is_decode() {
            s.push_str("unreadable response");
        } else {
            s.push_str("request failed");
        }
        let mut source = std::error::Error::source(self);
        // The innermost cause says why (e.g. "Connection refused"); none of them holds the URL.
        let mut last = None;
        while let Some(e) = source {
            last = Some(e.to_string());
            source = e.source();
        }
        if let Some(l) = last {
            s.push_str(": ");
            s.push_str(&l);
        }
        s
    }
}

/// A webhook request as received.
#[derive(Debug, Clone)]
pub struct WebhookRequest {
    /// The public URL the provider posted to (Twilio signs it).
    pub url: String,
    pub headers: HashMap<String, String>,
    pub body: bytes::Bytes,
    pub content_type: Option<String>,
}

impl WebhookRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
}

/// One item of a webhook payload.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WebhookItem {
    /// A message from a contact.
    Inbound {
        provider_message_id: String,
        /// The sender's address on the channel type.
        from: String,
        from_name: Option<String>,
        text: String,
        received_at: Option<DateTime<Utc>>,
        raw: Value,
    },
    /// A delivery status for a message we sent.
    Status {
        provider_message_id: String,
        /// sent | delivered | read | failed
        status: String,
        error: Option<String>,
        at: Option<DateTime<Utc>>,
        raw: Value,
    },
}

impl WebhookItem {
    /// The id that makes a redelivery of the same item recognisable.
    pub fn event_id(&self) -> String {
        match self {
            WebhookItem::Inbound { provider_message_id, .. } => format!("in:{provider_message_id}"),
            WebhookItem::Status { provider_message_id, status, .. } => format!("st:{provider_message_id}:{status}"),
        }
    }
}

#[async_trait]
pub trait ProviderAdapter: Send + Sync {
    /// `(channel_type, provider)` this adapter serves.
    fn key(&self) -> (&'static str, Option<&'static str>);

    async fn send(&self, channel: &ChannelContext, message: &OutboundMessage) -> Result<SendReceipt, ProviderError>;

    /// Checks the credentials with the provider; `Ok` carries what the provider said about the account
    /// (e.g. the bot's username).
    async fn verify(&self, channel: &ChannelContext) -> Result<String, ProviderError>;

    /// Whether the webhook request is signed by the provider (constant-time comparisons).
    fn verify_signature(&self, channel: &ChannelContext, request: &WebhookRequest) -> bool;

    /// The items of a webhook payload; `Err` for a payload that cannot be read (kept as `failed`).
    fn parse_webhook(&self, channel: &ChannelContext, request: &WebhookRequest) -> Result<Vec<WebhookItem>, String>;

    /// The provider's id of a webhook delivery, when it has one (Telegram `update_id`); otherwise the
    /// inbox de-duplicates on a hash of the raw body (a redelivery repeats the same bytes).
    fn event_id(&self, _request: &WebhookRequest) -> Option<String> {
        None
    }

    /// Whether the provider can carry [`OutboundMessage::attachments`]; a send with attachments through
    /// any other is refused when it is accepted (422), never cut down silently.
    fn sends_attachments(&self) -> bool {
        false
    }

    /// Registers our webhook with the provider where that is an API call (Telegram `setWebhook`).
    async fn register_webhook(&self, _channel: &ChannelContext) -> Result<(), ProviderError> {
        Ok(())
    }
}

impl ChannelContext {
    /// The channel's secret values as they can travel (see `Credentials::redactable`) and its
    /// webhook secret.
    pub fn secrets(&self) -> Vec<String> {
        let mut secrets = self.credentials.redactable(&self.channel_type, self.provider.as_deref());
        secrets.extend(self.webhook_secret.clone());
        secrets
    }

    /// A provider's error with every secret of this channel taken out of its text and code (an API, or
    /// a proxy in front of it, may echo the request path or body, which can hold a token).
    pub fn scrub(&self, mut error: ProviderError) -> ProviderError {
        let secrets = self.secrets();
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        error.message = crate::secret::redact(&error.message, &secrets);
        error.code = error.code.map(|c| crate::secret::redact(&c, &secrets));
        error
    }
}

/// An adapter whose errors are scrubbed of the channel's secrets ([`ChannelContext::scrub`]) before
/// they reach anyone who could store, log, emit or return them.
struct Scrubbed(Arc<dyn ProviderAdapter>);

#[async_trait]
impl ProviderAdapter for Scrubbed {
    fn key(&self) -> (&'static str, Option<&'static str>) {
        self.0.key()
    }
    async fn send(&self, channel: &ChannelContext, message: &OutboundMessage) -> Result<SendReceipt, ProviderError> {
        self.0.send(channel, message).await.map_err(|e| channel.scrub(e))
    }
    async fn verify(&self, channel: &ChannelContext) -> Result<String, ProviderError> {
        self.0.verify(channel).await.map_err(|e| channel.scrub(e))
    }
    fn verify_signature(&self, channel: &ChannelContext, request: &WebhookRequest) -> bool {
        self.0.verify_signature(channel, request)
    }
    fn parse_webhook(&self, channel: &ChannelContext, request: &WebhookRequest) -> Result<Vec<WebhookItem>, String> {
        self.0
            .parse_webhook(channel, request)
            .map_err(|e| channel.scrub(ProviderError::new(ErrorClass::Permanent, e)).message)
    }
    fn sends_attachments(&self) -> bool {
        self.0.sends_attachments()
    }
    fn event_id(&self, request: &WebhookRequest) -> Option<String> {
        self.0.event_id(request)
    }
    async fn register_webhook(&self, channel: &ChannelContext) -> Result<(), ProviderError> {
        self.0.register_webhook(channel).await.map_err(|e| channel.scrub(e))
    }
}

/// Adapters by `(channel_type, provider)`.
#[derive(Clone, Default)]
pub struct AdapterSet {
    adapters: HashMap<(String, Option<String>), Arc<dyn ProviderAdapter>>,
}

impl AdapterSet {
    /// Adds an adapter; every adapter of a set answers through [`Scrubbed`], so no caller ever sees a
    /// provider's error text with the channel's credentials in it.
    pub fn with(mut self, adapter: Arc<dyn ProviderAdapter>) -> Self {
        let (t, p) = adapter.key();
        self.adapters.insert((t.to_string(), p.map(str::to_string)), Arc::new(Scrubbed(adapter)));
        self
    }

    pub fn get(&self, channel_type: &str, provider: Option<&str>) -> Option<Arc<dyn ProviderAdapter>> {
        self.adapters.get(&(channel_type.to_string(), provider.map(str::to_string))).cloned()
    }
}
