//! The provider adapters, one file each, all behind [`super::adapter::ProviderAdapter`].

pub mod africastalking;
pub mod email;
pub mod imap;
pub mod meta;
pub mod sandbox;
pub mod smpp;
pub mod telegram;
pub mod twilio;
pub mod vonage;

use std::sync::Arc;
use std::time::Duration;

use super::adapter::AdapterSet;

/// One HTTP client for every HTTP provider: pooled keep-alive connections, bounded waits.
pub fn http_client() -> reqwest::Client {
    http_client_with_timeout(Duration::from_secs(30))
}

/// The same client with another total timeout per request (tests of slow providers).
pub fn http_client_with_timeout(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(64)
        .user_agent(concat!("turumba/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the HTTP client builds")
}

/// Every adapter this build has.
pub fn all(
    http: reqwest::Client,
    db: Option<sea_orm::DatabaseConnection>,
    smpp_deliveries: Option<tokio::sync::mpsc::Sender<smpp::SmppDelivery>>,
    smpp_leases: Option<super::leases::BindLeases>,
    media: super::fetch::MediaFetcher,
) -> AdapterSet {
    AdapterSet::default()
        .with(Arc::new(sandbox::Sandbox::new(db)))
        .with(Arc::new(email::Email::new(media)))
        .with(Arc::new(smpp::Smpp::new(smpp_deliveries, smpp_leases)))
        .with(Arc::new(telegram::Telegram::new(http.clone())))
        .with(Arc::new(twilio::Twilio::new(http.clone())))
        .with(Arc::new(africastalking::AfricasTalking::new(http.clone())))
        .with(Arc::new(vonage::Vonage::new(http.clone())))
        .with(Arc::new(meta::WhatsApp::new(http.clone())))
        .with(Arc::new(meta::Messenger::new(http)))
}

/// How a text and its files become provider messages where one message carries one file (Telegram,
/// WhatsApp, Messenger): the text rides as the first file's caption when it fits `caption_limit` and
/// that kind takes a caption; otherwise it goes first on its own. Every other file keeps its own caption.
pub struct MediaPlan<'a> {
    /// The text, when it is sent as a message of its own before the files.
    pub text_first: Option<&'a str>,
    /// Each file with the caption it carries.
    pub files: Vec<(&'a MediaAttachment, Option<&'a str>)>,
}

pub fn media_plan<'a>(
    text: &'a str,
    files: &'a [MediaAttachment],
    caption_limit: Option<usize>,
    takes_caption: impl Fn(&str) -> bool,
) -> MediaPlan<'a> {
    let text = Some(text).filter(|t| !t.trim().is_empty());
    let rides = match (text, files.first(), caption_limit) {
        (Some(t), Some(first), Some(limit)) => t.chars().count() <= limit && takes_caption(&first.kind),
        _ => false,
    };
    let files = files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let caption = if i == 0 && rides { text } else { f.caption.as_deref().filter(|_| takes_caption(&f.kind)) };
            (f, caption)
        })
        .collect();
    MediaPlan { text_first: if rides { None } else { text }, files }
}

/// The receipt of a send that became several provider messages, in the order they were sent.
pub fn receipt_of(mut ids: Vec<String>) -> super::adapter::SendReceipt {
    let first = (!ids.is_empty()).then(|| ids.remove(0));
    super::adapter::SendReceipt {
        provider_message_id: first,
        part_ids: ids,
        status: "sent",
        segments: None,
        encoding: None,
    }
}

/// `Retry-After` in seconds (the only form providers here send).
pub fn retry_after_header(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// A provider's HTTP answer: status, `Retry-After`, the body as JSON (`Null` when it is not JSON) and
/// as text.
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub json: serde_json::Value,
    pub text: String,
}

pub async fn answer(resp: Result<reqwest::Response, reqwest::Error>) -> Result<Answer, ProviderError> {
    let resp = resp.map_err(|e| ProviderError::from_http(&e))?;
    let status = resp.status().as_u16();
    let retry_after = retry_after_header(resp.headers());
    let text = resp.text().await.map_err(|e| ProviderError::from_http(&e))?;
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    Ok(Answer { status, retry_after, json, text })
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// HMAC-SHA256 of `body` under `key`, hex (Meta's `X-Hub-Signature-256: sha256=<hex>`).
pub fn hmac_sha256_hex(key: &[u8], body: &[u8]) -> String {
    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    hex::encode(aws_lc_rs::hmac::sign(&k, body).as_ref())
}

/// Meta's webhook signature check (WhatsApp, Messenger).
pub fn meta_signature_ok(app_secret: &str, request: &super::adapter::WebhookRequest) -> bool {
    let Some(given) = request.header("x-hub-signature-256").and_then(|h| h.strip_prefix("sha256=")) else {
        return false;
    };
    let expected = hmac_sha256_hex(app_secret.as_bytes(), &request.body);
    crate::secret::constant_time_eq(expected.as_bytes(), given.to_ascii_lowercase().as_bytes())
}

/// The `token` query parameter of the webhook URL, for providers that do not sign their callbacks
/// (Africa's Talking, Vonage): the URL Turumba shows carries the channel's webhook secret.
pub fn url_token_ok(channel: &super::adapter::ChannelContext, request: &super::adapter::WebhookRequest) -> bool {
    let Some(expected) = &channel.webhook_secret else { return false };
    let query = request.url.split_once('?').map(|(_, q)| q).unwrap_or_default();
    form_urlencoded::parse(query.as_bytes())
        .any(|(k, v)| k == "token" && crate::secret::constant_time_eq(v.as_bytes(), expected.as_bytes()))
}

/// The first value of `name` among form fields.
pub fn field(fields: &[(String, String)], name: &str) -> Option<String> {
    fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
}

/// The form fields of a `application/x-www-form-urlencoded` body, in order.
pub fn form_fields(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

use super::adapter::{MediaAttachment, ProviderError};

#[cfg(test)]
mod tests {
    use super::*;

    fn file(kind: &str, caption: Option<&str>) -> MediaAttachment {
        MediaAttachment {
            url: format!("https://x.example/{kind}"),
            kind: kind.into(),
            caption: caption.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn the_text_rides_as_the_first_caption_when_it_fits() {
        let files = [file("image", Some("own")), file("document", Some("doc"))];
        let plan = media_plan("Selam", &files, Some(10), |_| true);
        assert_eq!(plan.text_first, None);
        assert_eq!(plan.files.iter().map(|(_, c)| *c).collect::<Vec<_>>(), vec![Some("Selam"), Some("doc")]);
        // Too long for a caption: the text goes first and every file keeps its own caption.
        let plan = media_plan("Selam, a long text", &files, Some(10), |_| true);
        assert_eq!(plan.text_first, Some("Selam, a long text"));
        assert_eq!(plan.files.iter().map(|(_, c)| *c).collect::<Vec<_>>(), vec![Some("own"), Some("doc")]);
        // A first file that takes no caption (WhatsApp audio), or no captions at all (Messenger).
        let audio = [file("audio", Some("ignored")), file("image", None)];
        let plan = media_plan("Selam", &audio, Some(1024), |k| k != "audio");
        assert_eq!((plan.text_first, plan.files[0].1, plan.files[1].1), (Some("Selam"), None, None));
        let plan = media_plan("Selam", &files, None, |_| false);
        assert_eq!((plan.text_first, plan.files[0].1), (Some("Selam"), None));
        // A blank text is not sent.
        assert_eq!(media_plan("  ", &files, None, |_| false).text_first, None);
    }

    #[test]
    fn a_receipt_of_several_messages_leads_with_the_first() {
        let r = receipt_of(vec!["a".into(), "b".into(), "c".into()]);
        assert_eq!((r.provider_message_id.as_deref(), r.part_ids), (Some("a"), vec!["b".to_string(), "c".to_string()]));
        assert_eq!(receipt_of(Vec::new()).provider_message_id, None);
    }
}
