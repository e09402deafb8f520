//! Inbound e-mail for `email` channels: IMAP polling with async-imap (TLS on 993 by default, or plain
//! for local servers). Unseen messages of INBOX are fetched without marking them (`BODY.PEEK[]`), parsed
//! with mail-parser, handed to the inbox, and only then flagged `\Seen`: a crash in between fetches them
//! again and the inbox drops the duplicate (its key is the Message-ID). `In-Reply-To` and `References`
//! travel with each item so replies can be threaded onto the message they answer.

use std::sync::Arc;

use futures_util::StreamExt;
use mail_parser::{MessageParser, MimeHeaders};
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

/// A delivery status notification (RFC 3464) that says a mail we sent failed: the original's
/// Message-ID (the `provider_message_id` of the message), and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Bounce {
    pub original_message_id: String,
    pub reason: String,
}

/// Reads a bounce: a `multipart/report; report-type=delivery-status` whose status part says
/// `Action: failed`, with the original mail's headers (or the whole mail) attached. Delay and success
/// reports, and anything else, are `None`.
pub fn bounce_of(m: &mail_parser::Message<'_>, bytes: &[u8]) -> Option<Bounce> {
    let ct = m.content_type()?;
    let is_report = ct.ctype().eq_ignore_ascii_case("multipart")
        && ct.subtype().is_some_and(|s| s.eq_ignore_ascii_case("report"))
        && ct.attribute("report-type").is_some_and(|t| t.eq_ignore_ascii_case("delivery-status"));
    if !is_report {
        return None;
    }
    let text = String::from_utf8_lossy(bytes);
    let field = |name: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
            .collect()
    };
    if !field("Action").iter().any(|a| a.eq_ignore_ascii_case("failed")) {
        return None;
    }
    let own = m.message_id().map(|id| id.trim_matches(|c| c == '<' || c == '>').to_string());
    // The report's own Message-ID heads the mail; the original's comes in the attached headers.
    let original = field("Message-ID")
        .into_iter()
        .map(|id| id.trim_matches(|c| c == '<' || c == '>').to_string())
        .rfind(|id| !id.is_empty() && Some(id) != own.as_ref())?;
    let status = field("Status").into_iter().next().unwrap_or_default();
    let diagnostic = field("Diagnostic-Code").into_iter().next().unwrap_or_default();
    let reason = format!("bounced: {status} {diagnostic}").trim().to_string();
    Some(Bounce { original_message_id: format!("<{original}>"), reason })
}

/// The mail as an item: a bounce of a mail we sent becomes that message's `failed` status; any other
/// mail an inbound item (Message-ID, or a digest when it has none; sender, subject and text).
pub fn parse_mail(bytes: &[u8]) -> Option<ReceivedMail> {
    let m = MessageParser::default().parse(bytes)?;
    if let Some(b) = bounce_of(&m, bytes) {
        let own = m.message_id().map(|id| format!("<{}>", id.trim_matches(|c| c == '<' || c == '>')));
        let event_id = match own {
            Some(id) => format!("imap:{id}"),
            None => {
                use sha2::Digest;
                format!("imap:<sha256-{}@turumba>", &hex::encode(sha2::Sha256::digest(bytes))[..32])
            }
        };
        let raw = json!({ "bounce_of": b.original_message_id, "reason": b.reason });
        let at = m.date().and_then(|d| chrono::DateTime::from_timestamp(d.to_timestamp(), 0));
        return Some(ReceivedMail {
            event_id,
            raw: raw.to_string(),
            item: WebhookItem::Status {
                provider_message_id: b.original_message_id,
                status: "failed".into(),
                error: Some(b.reason),
                at,
                raw,
            },
        });
    }
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
    fn bounces_fail_the_mail_they_report_on() {
        let dsn = b"From: MAILER-DAEMON@mx.example.org\r\nTo: news@turumba.example\r\nSubject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn-1@mx.example.org>\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n\r\nFinal-Recipient: rfc822; nobody@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 User unknown\r\n--B\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: news@turumba.example\r\nTo: nobody@example.org\r\nMessage-ID: <0192-abc@turumba.example>\r\nSubject: Your order\r\n--B--\r\n";
        let m = parse_mail(dsn).expect("parsed");
        let WebhookItem::Status { provider_message_id, status, error, .. } = m.item else { panic!("{m:?}") };
        assert_eq!((provider_message_id.as_str(), status.as_str()), ("<0192-abc@turumba.example>", "failed"));
        assert_eq!(error.as_deref(), Some("bounced: 5.1.1 smtp; 550 5.1.1 User unknown"));
        // A delay report is not a failure: it stays an ordinary inbound mail.
        let delayed = String::from_utf8_lossy(dsn).replace("Action: failed", "Action: delayed");
        assert!(matches!(parse_mail(delayed.as_bytes()).unwrap().item, WebhookItem::Inbound { .. }));
    }

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
