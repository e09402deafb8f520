//! E-mail over SMTP with lettre: one pooled transport per channel (rebuilt when its credentials
//! change), `starttls`, `tls` or plain (`none`) per `smtp_tls`; subject from `metadata.subject`, text
//! and/or HTML bodies (multipart/alternative when both), files fetched by URL (see `fetch`: size-capped,
//! timed, public addresses only by default) attached in a multipart/mixed, a `Message-ID` of our own so replies can be
//! threaded by `In-Reply-To`. SMTP replies classify failures: 535/530 → auth, other 5xx → permanent,
//! 4xx and network trouble → transient. Verify connects and logs in.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart, header};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials as SmtpCredentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use uuid::Uuid;

use crate::modules::channels::adapter::{
    ChannelContext, ErrorClass, MediaAttachment, OutboundMessage, ProviderAdapter, ProviderError, SendReceipt,
    WebhookItem, WebhookRequest,
};
use crate::modules::channels::credentials::{Credentials, EmailCredentials};
use crate::modules::channels::fetch::MediaFetcher;

type Transport = AsyncSmtpTransport<Tokio1Executor>;

#[derive(Default)]
pub struct Email {
    /// Pooled transports by channel, with the credentials they were built from.
    transports: Mutex<HashMap<Uuid, (EmailCredentials, Transport)>>,
    /// Downloads the files a mail carries.
    media: MediaFetcher,
}

fn creds(channel: &ChannelContext) -> Result<&EmailCredentials, ProviderError> {
    match &channel.credentials {
        Credentials::Email(c) => Ok(c),
        _ => Err(ProviderError::new(ErrorClass::Permanent, "not an e-mail channel")),
    }
}

fn build(c: &EmailCredentials, pooled: bool) -> Result<Transport, ProviderError> {
    let builder = match c.smtp_tls.as_str() {
        "tls" => Transport::relay(&c.smtp_host),
        "starttls" => Transport::starttls_relay(&c.smtp_host),
        _ => Ok(Transport::builder_dangerous(&c.smtp_host)),
    }
    .map_err(|e| ProviderError::new(ErrorClass::Permanent, format!("email: bad SMTP host: {e}")))?;
    let builder = builder
        .port(c.smtp_port)
        .timeout(Some(Duration::from_secs(20)))
        .credentials(SmtpCredentials::new(c.smtp_username.clone(), c.smtp_password.clone()));
    let builder = if pooled {
        builder.pool_config(PoolConfig::new().max_size(8).idle_timeout(Duration::from_secs(60)))
    } else {
        builder.pool_config(PoolConfig::new().max_size(1).idle_timeout(Duration::from_secs(1)))
    };
    Ok(builder.build())
}

fn classify(e: &lettre::transport::smtp::Error) -> ProviderError {
    let code = e.status().map(|c| c.to_string());
    let class = match code.as_deref() {
        // Authentication failed / required / too weak (454, a temporary auth failure, stays transient).
        Some("535" | "530" | "534") => ErrorClass::Auth,
        _ if e.is_permanent() => ErrorClass::Permanent,
        _ => ErrorClass::Transient,
    };
    // lettre's messages hold the server's reply, never the password.
    let err = ProviderError::new(class, format!("email: {e}"));
    match code {
        Some(c) => err.with_code(c),
        None => err,
    }
}

fn mailbox(name: Option<&str>, address: &str, field: &str) -> Result<Mailbox, ProviderError> {
    let email = address
        .parse()
        .map_err(|e| ProviderError::new(ErrorClass::Permanent, format!("email: invalid {field} address: {e}")))?;
    Ok(Mailbox::new(name.map(str::to_string), email))
}

impl Email {
    pub fn new(media: MediaFetcher) -> Self {
        Email { transports: Mutex::default(), media }
    }

    /// Downloads the message's files (within one size budget for them all) as attachment parts.
    async fn attachments(&self, message: &OutboundMessage) -> Result<Vec<SinglePart>, ProviderError> {
        let mut budget = self.media.max_bytes();
        let mut parts = Vec::new();
        for (i, file) in message.attachments.iter().enumerate() {
            let fetched = self.media.fetch(&file.url, budget).await?;
            budget -= fetched.bytes.len() as u64;
            let content_type = fetched
                .content_type
                .as_deref()
                .and_then(|t| header::ContentType::parse(t).ok())
                .unwrap_or_else(|| header::ContentType::parse("application/octet-stream").expect("a MIME type"));
            parts.push(Attachment::new(file_name(file, i)).body(fetched.bytes, content_type));
        }
        Ok(parts)
    }

    fn transport(&self, channel: &ChannelContext, c: &EmailCredentials) -> Result<Transport, ProviderError> {
        let mut map = self.transports.lock().expect("transport map");
        if let Some((built_from, t)) = map.get(&channel.id)
            && built_from == c
        {
            return Ok(t.clone());
        }
        let t = build(c, true)?;
        map.insert(channel.id, (c.clone(), t.clone()));
        Ok(t)
    }
}

enum Body {
    Single(SinglePart),
    Multi(MultiPart),
}

/// The attachment's file name: the one given, else the URL's last path segment, else `attachment-N`.
fn file_name(file: &MediaAttachment, index: usize) -> String {
    file.filename.clone().filter(|f| !f.is_empty()).unwrap_or_else(|| {
        url::Url::parse(&file.url)
            .ok()
            .and_then(|u| u.path_segments().and_then(|mut s| s.next_back().map(str::to_string)))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| format!("attachment-{}", index + 1))
    })
}

/// The Message-ID Turumba gives an outbound message (replies carry it in `In-Reply-To`).
pub fn message_id(id: Uuid, from_email: &str) -> String {
    let domain = from_email.rsplit('@').next().unwrap_or("turumba.local");
    format!("<{id}@{domain}>")
}

#[async_trait]
impl ProviderAdapter for Email {
    fn key(&self) -> (&'static str, Option<&'static str>) {
        ("email", None)
    }

    async fn send(&self, channel: &ChannelContext, message: &OutboundMessage) -> Result<SendReceipt, ProviderError> {
        let c = creds(channel)?;
        let from_name = c.from_name.as_deref().or(channel.sender_name.as_deref());
        let mid = message_id(message.message_id, &c.from_email);
        let mut builder = Message::builder()
            .from(mailbox(from_name, &c.from_email, "from")?)
            .to(mailbox(None, &message.to, "recipient")?)
            .subject(message.subject.clone().unwrap_or_default())
            .message_id(Some(mid.clone()));
        if let Some(r) = &c.reply_to {
            builder = builder.reply_to(mailbox(None, r, "reply_to")?);
        }
        let text = (!message.text.is_empty()).then(|| message.text.clone());
        let body = match (text, &message.html) {
            (Some(t), Some(h)) => Body::Multi(MultiPart::alternative_plain_html(t, h.clone())),
            (None, Some(h)) => {
                Body::Single(SinglePart::builder().header(header::ContentType::TEXT_HTML).body(h.clone()))
            }
            (t, None) => {
                Body::Single(SinglePart::builder().header(header::ContentType::TEXT_PLAIN).body(t.unwrap_or_default()))
            }
        };
        let files = self.attachments(message).await?;
        let built = match (body, files.is_empty()) {
            (Body::Multi(m), true) => builder.multipart(m),
            (Body::Single(s), true) => builder.singlepart(s),
            // multipart/mixed: the body first, then each file.
            (body, false) => {
                let mixed = match body {
                    Body::Multi(m) => MultiPart::mixed().multipart(m),
                    Body::Single(s) => MultiPart::mixed().singlepart(s),
                };
                builder.multipart(files.into_iter().fold(mixed, MultiPart::singlepart))
            }
        }
        .map_err(|e| ProviderError::new(ErrorClass::Permanent, format!("email: cannot build the message: {e}")))?;
        let transport = self.transport(channel, c)?;
        transport.send(built).await.map_err(|e| classify(&e))?;
        Ok(SendReceipt {
            part_ids: Vec::new(),
            provider_message_id: Some(mid),
            status: "sent",
            segments: None,
            encoding: None,
        })
    }

    fn sends_attachments(&self) -> bool {
        true
    }

    async fn verify(&self, channel: &ChannelContext) -> Result<String, ProviderError> {
        let c = creds(channel)?;
        match build(c, false)?.test_connection().await {
            Ok(true) => Ok(format!("{}:{}", c.smtp_host, c.smtp_port)),
            Ok(false) => Err(ProviderError::new(ErrorClass::Transient, "email: the SMTP server did not answer NOOP")),
            Err(e) => Err(classify(&e)),
        }
    }

    fn verify_signature(&self, _channel: &ChannelContext, _request: &WebhookRequest) -> bool {
        false
    }

    fn parse_webhook(&self, _channel: &ChannelContext, _request: &WebhookRequest) -> Result<Vec<WebhookItem>, String> {
        Err("e-mail channels receive mail by IMAP polling, not webhooks".into())
    }
}
