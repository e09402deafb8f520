//! Channel credentials per SPEC §5: one typed struct per channel type (and per SMS provider), checked
//! against a field table that names every allowed field, whether it is required and whether it is a
//! secret. The table makes errors name the exact field (`credentials.auth_token: is required`,
//! `credentials.foo: is not a field of sms/twilio`) and drives the masked form responses show.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::FieldError;

/// The SMS providers a `sms` channel can use.
pub const SMS_PROVIDERS: &[&str] = &["twilio", "africastalking", "vonage"];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Text,
    Url,
    Email,
    Port,
    /// An unsigned integer up to the given maximum.
    Uint(u64),
    /// A number between 0 and 1.
    Fraction,
    OneOf(&'static [&'static str]),
}

struct FieldSpec {
    name: &'static str,
    kind: Kind,
    required: bool,
    secret: bool,
}

const fn req(name: &'static str, kind: Kind) -> FieldSpec {
    FieldSpec { name, kind, required: true, secret: false }
}
const fn opt(name: &'static str, kind: Kind) -> FieldSpec {
    FieldSpec { name, kind, required: false, secret: false }
}
const fn secret(name: &'static str) -> FieldSpec {
    FieldSpec { name, kind: Kind::Text, required: true, secret: true }
}
const fn opt_secret(name: &'static str) -> FieldSpec {
    FieldSpec { name, kind: Kind::Text, required: false, secret: true }
}

const BASE_URL: FieldSpec = opt("base_url", Kind::Url);
const API_VERSION: FieldSpec = opt("api_version", Kind::Text);

const TWILIO: &[FieldSpec] = &[req("account_sid", Kind::Text), secret("auth_token"), req("from", Kind::Text), BASE_URL];
const AFRICASTALKING: &[FieldSpec] =
    &[req("username", Kind::Text), secret("api_key"), opt("sender_id", Kind::Text), BASE_URL];
const VONAGE: &[FieldSpec] = &[req("api_key", Kind::Text), secret("api_secret"), req("from", Kind::Text), BASE_URL];
const SMPP: &[FieldSpec] = &[
    req("host", Kind::Text),
    opt("port", Kind::Port),
    req("system_id", Kind::Text),
    secret("password"),
    opt("system_type", Kind::Text),
    req("source_addr", Kind::Text),
    opt("source_addr_ton", Kind::Uint(6)),
    opt("source_addr_npi", Kind::Uint(18)),
    opt("bind_type", Kind::OneOf(&["transceiver", "transmitter"])),
];
const TELEGRAM: &[FieldSpec] = &[secret("bot_token"), BASE_URL];
const WHATSAPP: &[FieldSpec] = &[
    secret("access_token"),
    req("phone_number_id", Kind::Text),
    req("business_account_id", Kind::Text),
    secret("app_secret"),
    secret("verify_token"),
    BASE_URL,
    API_VERSION,
];
const MESSENGER: &[FieldSpec] = &[
    secret("page_access_token"),
    req("page_id", Kind::Text),
    secret("app_secret"),
    secret("verify_token"),
    BASE_URL,
    API_VERSION,
];
const EMAIL: &[FieldSpec] = &[
    req("smtp_host", Kind::Text),
    opt("smtp_port", Kind::Port),
    req("smtp_username", Kind::Text),
    secret("smtp_password"),
    opt("smtp_tls", Kind::OneOf(&["starttls", "tls", "none"])),
    req("from_email", Kind::Email),
    opt("from_name", Kind::Text),
    opt("reply_to", Kind::Email),
    opt("imap_host", Kind::Text),
    opt("imap_port", Kind::Port),
    opt("imap_username", Kind::Text),
    opt_secret("imap_password"),
    opt("imap_tls", Kind::OneOf(&["tls", "none"])),
];
const SANDBOX: &[FieldSpec] = &[opt("latency_ms", Kind::Uint(60_000)), opt("failure_rate", Kind::Fraction)];

fn spec(channel_type: &str, provider: Option<&str>) -> Option<&'static [FieldSpec]> {
    Some(match (channel_type, provider) {
        ("sms", Some("twilio")) => TWILIO,
        ("sms", Some("africastalking")) => AFRICASTALKING,
        ("sms", Some("vonage")) => VONAGE,
        ("smpp", None) => SMPP,
        ("telegram", None) => TELEGRAM,
        ("whatsapp", None) => WHATSAPP,
        ("messenger", None) => MESSENGER,
        ("email", None) => EMAIL,
        ("sandbox", None) => SANDBOX,
        _ => return None,
    })
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TwilioCredentials {
    pub account_sid: String,
    pub auth_token: String,
    /// A phone number, or a Messaging Service SID (`MG…`).
    pub from: String,
    pub base_url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AfricasTalkingCredentials {
    pub username: String,
    pub api_key: String,
    pub sender_id: Option<String>,
    pub base_url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VonageCredentials {
    pub api_key: String,
    pub api_secret: String,
    pub from: String,
    pub base_url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SmppCredentials {
    pub host: String,
    #[serde(default = "default_smpp_port")]
    pub port: u16,
    pub system_id: String,
    pub password: String,
    pub system_type: Option<String>,
    pub source_addr: String,
    pub source_addr_ton: Option<u8>,
    pub source_addr_npi: Option<u8>,
    #[serde(default = "default_bind_type")]
    pub bind_type: String,
}

fn default_smpp_port() -> u16 {
    2775
}
fn default_bind_type() -> String {
    "transceiver".into()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TelegramCredentials {
    pub bot_token: String,
    pub base_url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WhatsAppCredentials {
    pub access_token: String,
    pub phone_number_id: String,
    pub business_account_id: String,
    pub app_secret: String,
    pub verify_token: String,
    pub base_url: Option<String>,
    pub api_version: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MessengerCredentials {
    pub page_access_token: String,
    pub page_id: String,
    pub app_secret: String,
    pub verify_token: String,
    pub base_url: Option<String>,
    pub api_version: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EmailCredentials {
    pub smtp_host: String,
    #[serde(default = "default_smtp_port")]
    pub smtp_port: u16,
    pub smtp_username: String,
    pub smtp_password: String,
    #[serde(default = "default_smtp_tls")]
    pub smtp_tls: String,
    pub from_email: String,
    pub from_name: Option<String>,
    pub reply_to: Option<String>,
    pub imap_host: Option<String>,
    #[serde(default = "default_imap_port")]
    pub imap_port: u16,
    pub imap_username: Option<String>,
    pub imap_password: Option<String>,
    #[serde(default = "default_imap_tls")]
    pub imap_tls: String,
}

fn default_smtp_port() -> u16 {
    587
}
fn default_smtp_tls() -> String {
    "starttls".into()
}
fn default_imap_port() -> u16 {
    993
}
fn default_imap_tls() -> String {
    "tls".into()
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SandboxCredentials {
    pub latency_ms: Option<u64>,
    pub failure_rate: Option<f64>,
}

/// A channel's decrypted credentials, typed by channel type and provider.
#[derive(Debug, Clone, PartialEq)]
pub enum Credentials {
    Twilio(TwilioCredentials),
    AfricasTalking(AfricasTalkingCredentials),
    Vonage(VonageCredentials),
    Smpp(SmppCredentials),
    Telegram(TelegramCredentials),
    WhatsApp(WhatsAppCredentials),
    Messenger(MessengerCredentials),
    Email(EmailCredentials),
    Sandbox(SandboxCredentials),
}

fn typed<T: DeserializeOwned>(obj: &Map<String, Value>) -> Result<T, Vec<FieldError>> {
    serde_json::from_value(Value::Object(obj.clone()))
        .map_err(|e| vec![FieldError::new("credentials", format!("are not valid: {e}"))])
}

impl Credentials {
    /// Checks `value` against the fields of `channel_type`/`provider`: unknown, missing, empty or
    /// mistyped fields are named one by one (`credentials.<field>`).
    pub fn parse(channel_type: &str, provider: Option<&str>, value: &Value) -> Result<Credentials, Vec<FieldError>> {
        let fields = spec(channel_type, provider).ok_or_else(|| {
            vec![FieldError::new(
                "provider",
                match channel_type {
                    "sms" => format!("must be one of {}", SMS_PROVIDERS.join(", ")),
                    _ => format!("must be null for {channel_type} channels"),
                },
            )]
        })?;
        let Some(obj) = value.as_object() else {
            return Err(vec![FieldError::new("credentials", "must be an object")]);
        };
        let what = match provider {
            Some(p) => format!("{channel_type}/{p}"),
            None => channel_type.to_string(),
        };
        let mut errors = Vec::new();
        for key in obj.keys() {
            if !fields.iter().any(|f| f.name == key) {
                errors.push(FieldError::new(format!("credentials.{key}"), format!("is not a field of {what}")));
            }
        }
        // Nulls count as absent (a PATCH removes an optional field with null).
        let mut clean = Map::new();
        for f in fields {
            match obj.get(f.name) {
                None | Some(Value::Null) => {
                    if f.required {
                        errors.push(FieldError::new(format!("credentials.{}", f.name), "is required"));
                    }
                }
                Some(v) => match check(f.kind, v) {
                    Ok(v) => {
                        clean.insert(f.name.to_string(), v);
                    }
                    Err(m) => errors.push(FieldError::new(format!("credentials.{}", f.name), m)),
                },
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(match (channel_type, provider) {
            ("sms", Some("twilio")) => Credentials::Twilio(typed(&clean)?),
            ("sms", Some("africastalking")) => Credentials::AfricasTalking(typed(&clean)?),
            ("sms", Some("vonage")) => Credentials::Vonage(typed(&clean)?),
            ("smpp", _) => Credentials::Smpp(typed(&clean)?),
            ("telegram", _) => Credentials::Telegram(typed(&clean)?),
            ("whatsapp", _) => Credentials::WhatsApp(typed(&clean)?),
            ("messenger", _) => Credentials::Messenger(typed(&clean)?),
            ("email", _) => Credentials::Email(typed(&clean)?),
            _ => Credentials::Sandbox(typed(&clean)?),
        })
    }

    /// `(channel_type, provider)` these credentials belong to.
    pub fn kind(&self) -> (&'static str, Option<&'static str>) {
        match self {
            Credentials::Twilio(_) => ("sms", Some("twilio")),
            Credentials::AfricasTalking(_) => ("sms", Some("africastalking")),
            Credentials::Vonage(_) => ("sms", Some("vonage")),
            Credentials::Smpp(_) => ("smpp", None),
            Credentials::Telegram(_) => ("telegram", None),
            Credentials::WhatsApp(_) => ("whatsapp", None),
            Credentials::Messenger(_) => ("messenger", None),
            Credentials::Email(_) => ("email", None),
            Credentials::Sandbox(_) => ("sandbox", None),
        }
    }

    /// The stored form (what the vault seals).
    pub fn to_json(&self) -> Value {
        let v = match self {
            Credentials::Twilio(c) => serde_json::to_value(c),
            Credentials::AfricasTalking(c) => serde_json::to_value(c),
            Credentials::Vonage(c) => serde_json::to_value(c),
            Credentials::Smpp(c) => serde_json::to_value(c),
            Credentials::Telegram(c) => serde_json::to_value(c),
            Credentials::WhatsApp(c) => serde_json::to_value(c),
            Credentials::Messenger(c) => serde_json::to_value(c),
            Credentials::Email(c) => serde_json::to_value(c),
            Credentials::Sandbox(c) => serde_json::to_value(c),
        };
        let mut v = v.expect("credentials serialise");
        if let Some(obj) = v.as_object_mut() {
            obj.retain(|_, v| !v.is_null());
        }
        v
    }

    /// What responses show: secrets as `••••` plus their last four characters (nothing of short ones),
    /// everything else as it is.
    pub fn masked(&self, channel_type: &str, provider: Option<&str>) -> Value {
        let fields = spec(channel_type, provider).unwrap_or(&[]);
        let mut v = self.to_json();
        if let Some(obj) = v.as_object_mut() {
            for (k, val) in obj.iter_mut() {
                let is_secret = fields.iter().find(|f| f.name == k).is_none_or(|f| f.secret);
                if is_secret && let Some(s) = val.as_str() {
                    *val = Value::String(mask(s));
                }
            }
        }
        v
    }

    /// Every secret value (for redaction checks and log scrubbing).
    pub fn secrets(&self, channel_type: &str, provider: Option<&str>) -> Vec<String> {
        let fields = spec(channel_type, provider).unwrap_or(&[]);
        let v = self.to_json();
        fields
            .iter()
            .filter(|f| f.secret)
            .filter_map(|f| v.get(f.name).and_then(Value::as_str).map(str::to_string))
            .collect()
    }

    /// Every form in which a secret can travel to a provider, to take out of its error texts: each
    /// secret value, and `base64(field:secret)` for each other text field (HTTP Basic credentials, as
    /// an echoing proxy would quote the `Authorization` header).
    pub fn redactable(&self, channel_type: &str, provider: Option<&str>) -> Vec<String> {
        use base64::Engine;
        let fields = spec(channel_type, provider).unwrap_or(&[]);
        let v = self.to_json();
        let value = |name: &str| v.get(name).and_then(Value::as_str).filter(|s| !s.is_empty());
        let secrets: Vec<&str> = fields.iter().filter(|f| f.secret).filter_map(|f| value(f.name)).collect();
        let mut out: Vec<String> = secrets.iter().map(|s| s.to_string()).collect();
        for user in fields.iter().filter(|f| !f.secret).filter_map(|f| value(f.name)) {
            for secret in &secrets {
                out.push(base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}")));
            }
        }
        out
    }

    /// The provider base URL when one is configured.
    pub fn base_url(&self) -> Option<&str> {
        match self {
            Credentials::Twilio(c) => c.base_url.as_deref(),
            Credentials::AfricasTalking(c) => c.base_url.as_deref(),
            Credentials::Vonage(c) => c.base_url.as_deref(),
            Credentials::Telegram(c) => c.base_url.as_deref(),
            Credentials::WhatsApp(c) => c.base_url.as_deref(),
            Credentials::Messenger(c) => c.base_url.as_deref(),
            _ => None,
        }
    }
}

pub fn mask(s: &str) -> String {
    let n = s.chars().count();
    if n <= 8 {
        "••••".to_string()
    } else {
        let tail: String = s.chars().skip(n - 4).collect();
        format!("••••{tail}")
    }
}

fn check(kind: Kind, v: &Value) -> Result<Value, String> {
    match kind {
        Kind::Text => match v.as_str().map(str::trim) {
            Some("") => Err("must not be empty".into()),
            Some(s) if s.len() > 2048 => Err("is too long".into()),
            Some(s) => Ok(Value::String(s.to_string())),
            None => Err("must be a string".into()),
        },
        Kind::Url => match v.as_str().map(|s| s.trim().trim_end_matches('/')) {
            Some(s) if (s.starts_with("http://") || s.starts_with("https://")) && s.len() > 8 => {
                Ok(Value::String(s.to_string()))
            }
            _ => Err("must be an http:// or https:// URL".into()),
        },
        Kind::Email => match v.as_str().map(str::trim) {
            Some(s) if validator::ValidateEmail::validate_email(&s) => Ok(Value::String(s.to_string())),
            _ => Err("must be an e-mail address".into()),
        },
        Kind::Port => match v.as_u64() {
            Some(p) if (1..=65535).contains(&p) => Ok(v.clone()),
            _ => Err("must be a port number (1-65535)".into()),
        },
        Kind::Uint(max) => match v.as_u64() {
            Some(n) if n <= max => Ok(v.clone()),
            _ => Err(format!("must be a whole number from 0 to {max}")),
        },
        Kind::Fraction => match v.as_f64() {
            Some(f) if (0.0..=1.0).contains(&f) => Ok(v.clone()),
            _ => Err("must be a number from 0 to 1".into()),
        },
        Kind::OneOf(options) => match v.as_str() {
            Some(s) if options.contains(&s) => Ok(v.clone()),
            _ => Err(format!("must be one of {}", options.join(", "))),
        },
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields(errors: Vec<FieldError>) -> Vec<String> {
        errors.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn each_type_has_its_fields() {
        let c = Credentials::parse(
            "sms",
            Some("twilio"),
            &json!({"account_sid": "AC1", "auth_token": "tok_1234567890", "from": "+15005550006"}),
        )
        .unwrap();
        assert!(matches!(c, Credentials::Twilio(ref t) if t.from == "+15005550006"));
        let masked = c.masked("sms", Some("twilio"));
        assert_eq!(masked["auth_token"], "••••7890");
        assert_eq!(masked["account_sid"], "AC1", "identifiers are shown");
        let e = Credentials::parse("sms", Some("twilio"), &json!({"account_sid": "AC1", "from": "x", "token": "t"}))
            .unwrap_err();
        assert_eq!(fields(e), vec!["credentials.token", "credentials.auth_token"]);
        let e = Credentials::parse("sms", None, &json!({})).unwrap_err();
        assert_eq!(fields(e), vec!["provider"]);
        let e = Credentials::parse("telegram", Some("twilio"), &json!({})).unwrap_err();
        assert_eq!(fields(e), vec!["provider"]);
        let smpp = Credentials::parse(
            "smpp",
            None,
            &json!({"host": "smsc", "system_id": "id", "password": "pw", "source_addr": "Turumba"}),
        )
        .unwrap();
        assert!(matches!(smpp, Credentials::Smpp(ref s) if s.port == 2775 && s.bind_type == "transceiver"));
        assert_eq!(smpp.masked("smpp", None)["password"], "••••");
        let e = Credentials::parse(
            "email",
            None,
            &json!({"smtp_host": "h", "smtp_username": "u", "smtp_password": "p", "from_email": "nope", "smtp_port": 70000, "smtp_tls": "ssl"}),
        )
        .unwrap_err();
        assert_eq!(fields(e), vec!["credentials.smtp_port", "credentials.smtp_tls", "credentials.from_email"]);
        assert_eq!(Credentials::parse("sandbox", None, &json!({})).unwrap(), Credentials::Sandbox(Default::default()));
        let e = Credentials::parse("sandbox", None, &json!({"failure_rate": 2})).unwrap_err();
        assert_eq!(fields(e), vec!["credentials.failure_rate"]);
        let e = Credentials::parse("telegram", None, &json!({"bot_token": " ", "base_url": "ftp://x"})).unwrap_err();
        assert_eq!(fields(e), vec!["credentials.bot_token", "credentials.base_url"]);
    }

    #[test]
    fn stored_form_round_trips_and_secrets_are_listed() {
        let c = Credentials::parse(
            "whatsapp",
            None,
            &json!({"access_token": "EAAG-long-token", "phone_number_id": "1", "business_account_id": "2", "app_secret": "s3cr3t-app", "verify_token": "vt", "base_url": "http://127.0.0.1:9/"}),
        )
        .unwrap();
        assert_eq!(c.base_url(), Some("http://127.0.0.1:9"));
        assert_eq!(Credentials::parse("whatsapp", None, &c.to_json()).unwrap(), c);
        let mut s = c.secrets("whatsapp", None);
        s.sort();
        assert_eq!(s, vec!["EAAG-long-token", "s3cr3t-app", "vt"]);
    }
}
