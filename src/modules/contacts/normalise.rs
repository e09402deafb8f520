//! Validating contact data, shared by the API and the CSV import: attribute keys, channel identities,
//! opt-outs, language and time zone. Phones and e-mails are parsed by the kernel's [`PhoneE164`] and
//! [`EmailAddress`].

use phonenumber::country;
use serde_json::{Map, Value};

use crate::domain::channel_type::is_channel_type;
#[cfg(test)]
use crate::domain::default_region;
use crate::domain::{EmailAddress, PhoneE164};
use crate::error::FieldError;

/// A contact's phone as stored: E.164 (see [`PhoneE164::parse`]).
pub fn normalise_phone(raw: &str, region: Option<country::Id>) -> Result<String, String> {
    PhoneE164::parse(raw, region).map(PhoneE164::into_string)
}

/// A contact's e-mail as stored (see [`EmailAddress::parse`]).
pub fn normalise_email(raw: &str) -> Result<String, String> {
    EmailAddress::parse(raw).map(EmailAddress::into_string)
}

/// Attribute keys (and channel identity types) are `[a-z0-9_]+`, at most 64 characters.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= 64 && key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

pub fn valid_language(lang: &str) -> bool {
    let mut parts = lang.split(['-', '_']);
    let primary = parts.next().unwrap_or_default();
    (2..=3).contains(&primary.len())
        && primary.chars().all(|c| c.is_ascii_alphabetic())
        && parts.all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

pub fn check_attributes(value: &Value, field: &str, errors: &mut Vec<FieldError>) -> Map<String, Value> {
    match value {
        Value::Object(map) => {
            for key in map.keys() {
                if !valid_key(key) {
                    errors.push(FieldError::new(
                        format!("{field}.{key}"),
                        "attribute keys must match [a-z0-9_]+ (at most 64 characters)",
                    ));
                }
            }
            map.clone()
        }
        Value::Null => Map::new(),
        _ => {
            errors.push(FieldError::new(field, "must be a JSON object"));
            Map::new()
        }
    }
}

/// `{"telegram": "123", ...}`: known channel types with non-empty string (or integer) identities.
pub fn check_identities(value: &Value, errors: &mut Vec<FieldError>) -> Map<String, Value> {
    let mut out = Map::new();
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let field = format!("channel_identities.{k}");
                if !is_channel_type(k) {
                    errors.push(FieldError::new(field, "is not a channel type"));
                    continue;
                }
                match v {
                    Value::String(s) if !s.trim().is_empty() && s.len() <= 255 => {
                        out.insert(k.clone(), Value::String(s.trim().to_string()));
                    }
                    Value::Number(n) if n.is_i64() || n.is_u64() => {
                        out.insert(k.clone(), Value::String(n.to_string()));
                    }
                    Value::Null => {}
                    _ => errors.push(FieldError::new(field, "must be a non-empty string")),
                }
            }
        }
        Value::Null => {}
        _ => errors.push(FieldError::new("channel_identities", "must be a JSON object")),
    }
    out
}

/// A JSON array of channel types, de-duplicated and sorted.
pub fn check_opt_outs(values: &[String], errors: &mut Vec<FieldError>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in values {
        if !is_channel_type(v) {
            errors.push(FieldError::new("opted_out_channels", format!("`{v}` is not a channel type")));
        } else if !out.contains(v) {
            out.push(v.clone());
        }
    }
    out.sort();
    out
}

/// Turns a CSV cell into a JSON attribute value: canonical integers and decimals become numbers,
/// `true`/`false` booleans, everything else stays a string (so `0911…` keeps its leading zero).
pub fn infer_attribute(cell: &str) -> Value {
    let s = cell.trim();
    if s == "true" {
        return Value::Bool(true);
    }
    if s == "false" {
        return Value::Bool(false);
    }
    if is_canonical_number(s)
        && let Ok(n) = s.parse::<f64>()
        && let Some(num) =
            if s.contains('.') { serde_json::Number::from_f64(n) } else { s.parse::<i64>().ok().map(Into::into) }
    {
        return Value::Number(num);
    }
    Value::String(s.to_string())
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?`, at most 15 digits: a number a spreadsheet would not mangle either.
pub fn is_canonical_number(s: &str) -> bool {
    let body = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match body.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (body, None),
    };
    let digits = int.len() + frac.map_or(0, str::len);
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && (int == "0" || !int.starts_with('0'))
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
        && digits <= 15
}

#[cfg(test)]
mod tests {
    use super::*;

    fn et() -> Option<country::Id> {
        default_region(Some("ET"))
    }

    #[test]
    fn national_numbers_use_the_default_region() {
        assert_eq!(normalise_phone("0911 234 567", et()).unwrap(), "+251911234567");
        assert_eq!(normalise_phone("0911-234-567", default_region(Some("+251"))).unwrap(), "+251911234567");
        assert_eq!(normalise_phone("911234567", default_region(Some("251"))).unwrap(), "+251911234567");
        assert_eq!(normalise_phone("(202) 456-1111", default_region(Some("US"))).unwrap(), "+12024561111");
    }

    #[test]
    fn international_numbers_ignore_the_default_region() {
        assert_eq!(normalise_phone("+254 712 345 678", et()).unwrap(), "+254712345678");
        assert_eq!(normalise_phone("+251911234567", None).unwrap(), "+251911234567");
        assert_eq!(normalise_phone("00251911234567", et()).unwrap(), "+251911234567");
    }

    #[test]
    fn invalid_numbers_are_rejected() {
        assert!(normalise_phone("0911", et()).unwrap_err().contains("valid"));
        assert!(normalise_phone("hello", et()).is_err());
        assert!(normalise_phone("", et()).is_err());
        assert!(normalise_phone("+999 123", None).is_err());
        assert!(normalise_phone("0911234567", None).unwrap_err().contains("default_country_code"));
    }

    #[test]
    fn regions_resolve_from_alpha2_and_calling_codes() {
        assert_eq!(default_region(Some("et")), et());
        assert_eq!(default_region(Some("+44")), Some(country::Id::GB));
        assert_eq!(default_region(Some("+1")), Some(country::Id::US));
        assert_eq!(default_region(None), None);
        assert_eq!(default_region(Some("+0")), None);
    }

    #[test]
    fn emails_are_lowercased_and_checked() {
        assert_eq!(normalise_email("  Abebe@Example.ORG ").unwrap(), "abebe@example.org");
        assert!(normalise_email("not-an-email").is_err());
        assert!(normalise_email("a@").is_err());
    }

    #[test]
    fn attribute_values_are_typed_from_csv_cells() {
        assert_eq!(infer_attribute("42"), Value::from(42));
        assert_eq!(infer_attribute("-3.5"), Value::from(-3.5));
        assert_eq!(infer_attribute("0911234567"), Value::from("0911234567"));
        assert_eq!(infer_attribute("2026-01-15"), Value::from("2026-01-15"));
        assert_eq!(infer_attribute("true"), Value::Bool(true));
        assert_eq!(infer_attribute("1e5"), Value::from("1e5"));
        assert_eq!(infer_attribute("1234567890123456"), Value::from("1234567890123456"));
    }

    #[test]
    fn keys_and_languages() {
        assert!(valid_key("program_name"));
        assert!(valid_key("cohort2"));
        assert!(!valid_key("Program"));
        assert!(!valid_key("a-b"));
        assert!(!valid_key(""));
        assert!(valid_language("am"));
        assert!(valid_language("en-US"));
        assert!(!valid_language("english!"));
    }
}
