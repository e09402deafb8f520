//! Inbound e-mail for `email` channels: IMAP polling with async-imap (TLS on 993 by default, or plain
//! for local servers). Unseen messages of INBOX are fetched without marking them (`BODY.PEEK[]`), parsed
//! with mail-parser, handed to the inbox, and only then flagged `\Seen`: a crash in between fetches them
//! again and the inbox drops the duplicate (its key is the Message-ID). `In-Reply-To` and `References`
//! travel with each item so replies can be threaded onto the message they answer.

use std::sync::Arc;

use futures_util::StreamExt;
use mail_parser::MessageParser;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::modules::channels::adapter::{ErrorClass, ProviderError, WebhookItem};
use crate::modules::channels::credentials::EmailCredentials;

/// Messages taken per poll (the rest wait for the next one).
pub const BATCH: usize = 100;

/// One received mail, ready for the inbox.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    pub event_id: String,
    pub raw: String,
    pub item: WebhookItem,
}

fn transient(what: &str, e: impl std::fmt::Display) -> ProviderError {
    ProviderError::new(ErrorClass::Transient, format!("imap: {what}: {e}"))
}

/// The mail as an inbound item: Message-ID (or a digest when it has none), sender, subject and text.
pub fn parse_mail(bytes: &[u8]) -> Option<ReceivedMail> {
    let m = MessageParser::default().parse(bytes)?;
    let from = m.from().and_then(|a| a.first())?;
    let address = from.address()?.to_lowercase();
    let message_id = match m.message_id() {
        Some(id) => format!("<{}>", id.trim_matches(|c| c == '<' || c == '>')),
        None => {
            use sha2::Digest;
            format!("<sha256-{}@turumba>", &hex::encode(sha2::Sha256::digest(bytes))[..32])
        }
    };
    let text = m.body_text(0).map(|t| t.trim().to_string()).unwrap_or_default();
    let subject = m.subject().map(str::to_string);
    let angle = |v: &str| format!("<{}>", v.trim_matches(|c| c == '<' || c == '>'));
    let in_reply_to = m.in_reply_to().as_text().map(angle);
    let references: Vec<String> = match m.references().as_text_list() {
        Some(list) => list.iter().map(|r| angle(r)).collect(),
        None => m.references().as_text().map(angle).into_iter().collect(),
    };
    let received_at = m.date().and_then(|d| chrono::DateTime::from_timestamp(d.to_timestamp(), 0));
    let raw = json!({
        "message_id": message_id,
        "subject": subject,
        "in_reply_to": in_reply_to,
        "references": references,
    });
    Some(ReceivedMail {
        event_id: format!("imap:{message_id}"),
        raw: raw.to_string(),
        item: WebhookItem::Inbound {
            provider_message_id: message_id,
            from: address,
            from_name: from.name().map(str::to_string),
            text,
            received_at,
            raw,
        },
    })
}

type Store<'a> = &'a (dyn Fn(ReceivedMail) -> futures_util::future::BoxFuture<'static, bool> + Send + Sync);

async fn poll_stream<S>(stream: S, c: &EmailCredentials, store: Store<'_>) -> Result<u64, ProviderError>
where
    S: AsyncRead + AsyncWrite + Unpin + std::fmt::Debug + Send,
{
    let mut client = async_imap::Client::new(stream);
    client
        .read_response()
        .await
        .map_err(|e| transient("no greeting", e))?
        .ok_or_else(|| transient("no greeting", "the server closed the connection"))?;
    let user = c.imap_username.as_deref().unwrap_or(&c.smtp_username);
    let password = c.imap_password.as_deref().unwrap_or(&c.smtp_password);
    let mut session = client
        .login(user, password)
        .await
        .map_err(|(e, _)| ProviderError::new(ErrorClass::Auth, format!("imap: login failed: {e}")))?;
    session.select("INBOX").await.map_err(|e| transient("select INBOX", e))?;
    let mut uids: Vec<u32> =
        session.uid_search("UNSEEN").await.map_err(|e| transient("search", e))?.into_iter().collect();
    uids.sort_unstable();
    uids.truncate(BATCH);
    let mut stored = 0;
    for uid in uids {
        let bodies: Vec<Vec<u8>> = {
            let mut fetches =
                session.uid_fetch(uid.to_string(), "(UID BODY.PEEK[])").await.map_err(|e| transient("fetch", e))?;
            let mut out = Vec::new();
            while let Some(f) = fetches.next().await {
                let f = f.map_err(|e| transient("fetch", e))?;
                if let Some(b) = f.body() {
                    out.push(b.to_vec());
                }
            }
            out
        };
        for body in bodies {
            let ok = match parse_mail(&body) {
                Some(mail) => store(mail).await,
                // Not a mail we can read (no sender): flagged so it is not fetched forever.
                None => true,
            };
            if !ok {
                continue;
            }
            let mut updates = session
                .uid_store(uid.to_string(), "+FLAGS (\\Seen)")
                .await
                .map_err(|e| transient("flag as seen", e))?;
            while updates.next().await.is_some() {}
            stored += 1;
        }
    }
    let _ = session.logout().await;
    Ok(stored)
}

/// Fetches the unseen mail of the channel's INBOX into `store`; returns how many were taken.
pub async fn poll(c: &EmailCredentials, store: Store<'_>) -> Result<u64, ProviderError> {
    let Some(host) = c.imap_host.as_deref() else {
        return Ok(0);
    };
    let tcp = tokio::net::TcpStream::connect((host, c.imap_port))
        .await
        .map_err(|e| transient(&format!("cannot connect to {host}:{}", c.imap_port), e))?;
    match c.imap_tls.as_str() {
        "tls" => {
            let mut roots = tokio_rustls::rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let config =
                tokio_rustls::rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
            let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host.to_string())
                .map_err(|e| ProviderError::new(ErrorClass::Permanent, format!("imap: bad host name: {e}")))?;
            let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, tcp)
                .await
                .map_err(|e| transient("TLS handshake", e))?;
            poll_stream(tls, c, store).await
        }
        // `none`, the only other value the credentials accept: a plain connection (local servers).
        _ => poll_stream(tcp, c, store).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_keep_their_thread() {
        let mail = b"From: Almaz Bekele <Almaz@Example.org>\r\nTo: news@turumba.example\r\nSubject: Re: Your order\r\nMessage-ID: <reply-1@example.org>\r\nIn-Reply-To: <0192-abc@turumba.example>\r\nReferences: <0192-abc@turumba.example>\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\n\r\nThank you!\r\n";
        let m = parse_mail(mail).unwrap();
        assert_eq!(m.event_id, "imap:<reply-1@example.org>");
        let WebhookItem::Inbound { from, from_name, text, raw, received_at, .. } = m.item else { panic!() };
        assert_eq!(
            (from.as_str(), from_name.as_deref(), text.as_str()),
            ("almaz@example.org", Some("Almaz Bekele"), "Thank you!")
        );
        assert_eq!(raw["in_reply_to"], "<0192-abc@turumba.example>");
        assert_eq!(raw["references"], json!(["<0192-abc@turumba.example>"]));
        assert_eq!(raw["subject"], "Re: Your order");
        assert_eq!(received_at.unwrap().to_rfc3339(), "2026-11-22T10:00:00+00:00");
        assert!(parse_mail(b"no headers at all").is_none());
    }
}
