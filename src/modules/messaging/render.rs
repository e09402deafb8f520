//! Message templates (SPEC §6.1): `{NAME}` placeholders with NAME matching `[A-Z][A-Z0-9_]*`; `{{` and
//! `}}` are literal braces; anything else in braces is literal text. A body is parsed ONCE into parts
//! ([`Parsed`]); each recipient is then rendered from the parts without looking at the body again, which
//! is what a group send of 100,000 recipients repeats.
//!
//! Values are resolved by [`Variables`], first hit wins: per-recipient values → the send's
//! `custom_values` → contact fields → contact attributes (key upper-cased) → account → sender → system
//! (`CURRENT_DATE`, `CURRENT_TIME` in the recipient's or account's time zone) → the template's fallback
//! strategy.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::{Map, Value};

use crate::modules::contacts::DirectoryContact;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(String),
}

/// A body parsed into literal text and placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    parts: Vec<Part>,
    variables: Vec<String>,
}

/// What to do with a placeholder nothing resolves (the template's `fallback_strategy`).
#[derive(Debug, Clone, Copy)]
pub enum Fallback<'a> {
    /// Leave `{NAME}` in the text.
    KeepPlaceholder,
    /// `default_values[NAME]`, or empty.
    UseDefault(&'a Map<String, Value>),
    /// The recipient is skipped (`missing_variable:NAME`); the text keeps `{NAME}` for previews.
    SkipContact,
}

/// A rendered body and the placeholders nothing resolved (before the fallback applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    pub missing: Vec<String>,
}

impl Rendered {
    /// Why a `skip_contact` template skips this recipient: `missing_variable:NAME` of the first missing.
    pub fn skip_reason(&self) -> Option<String> {
        self.missing.first().map(|name| format!("missing_variable:{name}"))
    }
}

/// Whether `name` is a placeholder name: `[A-Z][A-Z0-9_]*`.
pub fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// The NAME of a placeholder at the start of `s` (just after its `{`), if `s` holds `NAME}`.
fn placeholder(s: &str) -> Option<&str> {
    let name = &s[..s.find('}')?];
    is_variable_name(name).then_some(name)
}

impl Parsed {
    pub fn parse(body: &str) -> Parsed {
        let mut parts = Vec::new();
        let mut variables: Vec<String> = Vec::new();
        let mut text = String::with_capacity(body.len());
        let mut i = 0;
        while i < body.len() {
            let rest = &body[i..];
            if rest.starts_with("{{") {
                text.push('{');
                i += 2;
                continue;
            }
            if rest.starts_with("}}") {
                text.push('}');
                i += 2;
                continue;
            }
            if let Some(name) = rest.strip_prefix('{').and_then(placeholder) {
                if !text.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut text)));
                }
                if !variables.iter().any(|v| v == name) {
                    variables.push(name.to_string());
                }
                parts.push(Part::Var(name.to_string()));
                i += name.len() + 2;
                continue;
            }
            let c = rest.chars().next().expect("i is inside the body");
            text.push(c);
            i += c.len_utf8();
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Parsed { parts, variables }
    }

    /// The distinct placeholder names, in order of first appearance.
    pub fn variables(&self) -> &[String] {
        &self.variables
    }

    /// Renders with `lookup` resolving each placeholder; unresolved ones follow `fallback`.
    pub fn render<'v>(&self, lookup: impl Fn(&str) -> Option<Cow<'v, str>>, fallback: Fallback<'_>) -> Rendered {
        let mut text = String::with_capacity(
            self.parts
                .iter()
                .map(|p| match p {
                    Part::Text(t) => t.len(),
                    Part::Var(_) => 16,
                })
                .sum(),
        );
        let mut missing: Vec<String> = Vec::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => text.push_str(t),
                Part::Var(name) => match lookup(name) {
                    Some(value) => text.push_str(&value),
                    None => {
                        if !missing.contains(name) {
                            missing.push(name.clone());
                        }
                        match fallback {
                            Fallback::UseDefault(defaults) => {
                                if let Some(v) = defaults.get(name).and_then(value_text) {
                                    text.push_str(&v);
                                }
                            }
                            Fallback::KeepPlaceholder | Fallback::SkipContact => {
                                text.push('{');
                                text.push_str(name);
                                text.push('}');
                            }
                        }
                    }
                },
            }
        }
        Rendered { text, missing }
    }
}

/// Doubles every brace, so `Parsed::parse(&escape(t))` renders back to `t` exactly.
pub fn escape(text: &str) -> String {
    text.replace('{', "{{").replace('}', "}}")
}

/// A JSON value as template text: strings as they are, numbers and booleans written out, `null` as no
/// value, arrays and objects as JSON.
fn value_text(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(Cow::Borrowed(s.as_str())),
        other => Some(Cow::Owned(other.to_string())),
    }
}

/// Where placeholder values come from, in the SPEC's order.
#[derive(Debug, Clone, Default)]
pub struct Variables<'a> {
    /// Values given for this recipient alone (API sends).
    pub recipient: Option<&'a Map<String, Value>>,
    /// The send's `custom_values`.
    pub custom: Option<&'a Map<String, Value>>,
    pub contact: Option<&'a DirectoryContact>,
    pub account_name: Option<&'a str>,
    pub sender_name: Option<&'a str>,
    pub sender_email: Option<&'a str>,
    /// The recipient's time zone, else the account's (for `CURRENT_DATE`/`CURRENT_TIME`).
    pub timezone: Option<Tz>,
    pub now: Option<DateTime<Utc>>,
}

impl<'a> Variables<'a> {
    pub fn get(&self, name: &str) -> Option<Cow<'a, str>> {
        for map in [self.recipient, self.custom].into_iter().flatten() {
            if let Some(v) = map.get(name).and_then(value_text) {
                return Some(v);
            }
        }
        if let Some(c) = self.contact
            && let Some(v) = contact_value(c, name)
        {
            return Some(v);
        }
        let fixed = match name {
            "ACCOUNT_NAME" => self.account_name,
            "SENDER_NAME" => self.sender_name,
            "SENDER_EMAIL" => self.sender_email,
            _ => None,
        };
        if let Some(v) = fixed {
            return Some(Cow::Borrowed(v));
        }
        let now = self.now.unwrap_or_else(Utc::now).with_timezone(&self.timezone.unwrap_or(Tz::UTC));
        match name {
            "CURRENT_DATE" => Some(Cow::Owned(now.format("%Y-%m-%d").to_string())),
            "CURRENT_TIME" => Some(Cow::Owned(now.format("%H:%M").to_string())),
            _ => None,
        }
    }
}

/// A contact field or attribute (`enrollment_date` answers `ENROLLMENT_DATE`).
fn contact_value<'a>(c: &'a DirectoryContact, name: &str) -> Option<Cow<'a, str>> {
    let field = |v: &'a Option<String>| v.as_deref().map(Cow::Borrowed);
    let full_name = || {
        let parts: Vec<&str> = [&c.first_name, &c.last_name].into_iter().filter_map(|p| p.as_deref()).collect();
        (!parts.is_empty()).then(|| Cow::Owned(parts.join(" ")))
    };
    let found = match name {
        "FIRST_NAME" => field(&c.first_name),
        "LAST_NAME" => field(&c.last_name),
        "FULL_NAME" => full_name(),
        "DISPLAY_NAME" => field(&c.display_name).or_else(full_name),
        "PHONE" => field(&c.phone),
        "EMAIL" => field(&c.email),
        "LANGUAGE" => field(&c.language),
        _ => None,
    };
    found.or_else(|| c.attributes.get(name.to_ascii_lowercase()).and_then(value_text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(body: &str, values: &[(&str, &str)], fallback: Fallback<'_>) -> Rendered {
        let map: Map<String, Value> = values.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        let vars = Variables { custom: Some(&map), ..Default::default() };
        Parsed::parse(body).render(|n| vars.get(n), fallback)
    }

    #[test]
    fn placeholders_braces_and_literal_text() {
        let r = render("Hi {NAME}, code {CODE_2}.", &[("NAME", "Abebe"), ("CODE_2", "42")], Fallback::KeepPlaceholder);
        assert_eq!(r.text, "Hi Abebe, code 42.");
        assert_eq!(
            render("{{NAME}} costs {{5}}", &[("NAME", "x")], Fallback::KeepPlaceholder).text,
            "{NAME} costs {5}"
        );
        // Anything else in braces is literal text.
        for literal in ["{name}", "{1ST}", "{NA ME}", "{}", "{ NAME}", "{NAME", "NAME}", "{Ñ}", "}{"] {
            assert_eq!(render(literal, &[("NAME", "x")], Fallback::UseDefault(&Map::new())).text, literal);
        }
        assert_eq!(render("{{{NAME}}}", &[("NAME", "x")], Fallback::KeepPlaceholder).text, "{x}");
        assert_eq!(render("{NAME}}", &[("NAME", "x")], Fallback::KeepPlaceholder).text, "x}");
        assert_eq!(render("ሰላም {NAME} 👋", &[("NAME", "ዓለም")], Fallback::KeepPlaceholder).text, "ሰላም ዓለም 👋");
    }

    #[test]
    fn variables_are_extracted_once_each_in_order() {
        let p = Parsed::parse("{B} {A} {B} {{C}} {lower} {D_1}");
        assert_eq!(p.variables(), ["B", "A", "D_1"]);
        assert!(Parsed::parse("no placeholders {here}").variables().is_empty());
    }

    #[test]
    fn the_three_fallback_strategies() {
        let defaults: Map<String, Value> = [("CITY".to_string(), json!("Addis"))].into_iter().collect();
        let keep = render("{CITY}/{ZIP}", &[], Fallback::KeepPlaceholder);
        assert_eq!((keep.text.as_str(), keep.missing.clone()), ("{CITY}/{ZIP}", vec!["CITY".into(), "ZIP".into()]));
        assert_eq!(render("{CITY}/{ZIP}", &[], Fallback::UseDefault(&defaults)).text, "Addis/");
        let skip = render("{ZIP} {CITY} {ZIP}", &[], Fallback::SkipContact);
        assert_eq!(skip.skip_reason().as_deref(), Some("missing_variable:ZIP"));
        assert_eq!(render("{CITY}", &[("CITY", "Bahir Dar")], Fallback::SkipContact).skip_reason(), None);
    }

    #[test]
    fn resolution_order_first_hit_wins() {
        let contact = DirectoryContact {
            id: uuid::Uuid::now_v7(),
            first_name: Some("Abebe".into()),
            last_name: Some("Kebede".into()),
            display_name: None,
            phone: Some("+251911000001".into()),
            email: None,
            language: Some("am".into()),
            timezone: Some("Africa/Addis_Ababa".into()),
            attributes: json!({"enrollment_date": "2026-01-15", "score": 9.5, "done": true, "first_name": "attr"}),
            channel_identities: json!({}),
            preferred_channel: None,
            opted_out_channels: json!([]),
        };
        let recipient: Map<String, Value> = [("FIRST_NAME".to_string(), json!("Per-recipient"))].into_iter().collect();
        let custom: Map<String, Value> =
            [("FIRST_NAME".to_string(), json!("Custom")), ("SCORE".to_string(), json!(null))].into_iter().collect();
        let now = DateTime::parse_from_rfc3339("2026-03-01T21:30:00Z").unwrap().with_timezone(&Utc);
        let mut vars = Variables {
            recipient: Some(&recipient),
            custom: Some(&custom),
            contact: Some(&contact),
            account_name: Some("Acme School"),
            sender_name: Some("Sara"),
            sender_email: Some("sara@acme.example"),
            timezone: Some(chrono_tz::Africa::Addis_Ababa),
            now: Some(now),
        };
        let get = |v: &Variables, n: &str| v.get(n).map(|c| c.into_owned());
        assert_eq!(get(&vars, "FIRST_NAME").as_deref(), Some("Per-recipient"));
        vars.recipient = None;
        assert_eq!(get(&vars, "FIRST_NAME").as_deref(), Some("Custom"));
        vars.custom = None;
        assert_eq!(get(&vars, "FIRST_NAME").as_deref(), Some("Abebe"), "contact fields before attributes");
        assert_eq!(get(&vars, "FULL_NAME").as_deref(), Some("Abebe Kebede"));
        assert_eq!(get(&vars, "DISPLAY_NAME").as_deref(), Some("Abebe Kebede"));
        assert_eq!(get(&vars, "ENROLLMENT_DATE").as_deref(), Some("2026-01-15"));
        assert_eq!(get(&vars, "SCORE").as_deref(), Some("9.5"), "a null custom value is no value");
        assert_eq!(get(&vars, "DONE").as_deref(), Some("true"));
        assert_eq!(get(&vars, "EMAIL"), None);
        assert_eq!(get(&vars, "ACCOUNT_NAME").as_deref(), Some("Acme School"));
        assert_eq!(get(&vars, "SENDER_EMAIL").as_deref(), Some("sara@acme.example"));
        // 21:30 UTC is 00:30 the next day in Addis Ababa.
        assert_eq!(get(&vars, "CURRENT_DATE").as_deref(), Some("2026-03-02"));
        assert_eq!(get(&vars, "CURRENT_TIME").as_deref(), Some("00:30"));
        assert_eq!(get(&vars, "NOPE"), None);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn parsing_and_rendering_never_panic(body in ".*", value in ".*") {
                let p = Parsed::parse(&body);
                let r = p.render(|_| Some(Cow::Borrowed(value.as_str())), Fallback::KeepPlaceholder);
                prop_assert!(r.missing.is_empty());
                let _ = p.render(|_| None, Fallback::UseDefault(&Map::new()));
                let _ = p.render(|_| None, Fallback::SkipContact);
            }

            #[test]
            fn escaped_text_renders_back_exactly(text in ".*") {
                let p = Parsed::parse(&escape(&text));
                prop_assert!(p.variables().is_empty());
                prop_assert_eq!(p.render(|_| None, Fallback::SkipContact).text, text);
            }

            #[test]
            fn a_body_without_placeholders_keeps_its_text(body in "[^{}]*") {
                let r = Parsed::parse(&body).render(|_| None, Fallback::KeepPlaceholder);
                prop_assert_eq!(r.text, body);
            }

            #[test]
            fn unresolved_placeholders_are_kept_verbatim(name in "[A-Z][A-Z0-9_]{0,10}", before in "[^{}]*", after in "[^{}]*") {
                let body = format!("{before}{{{name}}}{after}");
                let r = Parsed::parse(&body).render(|_| None, Fallback::KeepPlaceholder);
                prop_assert_eq!(&r.text, &body);
                prop_assert_eq!(r.missing, vec![name]);
            }
        }
    }
}
