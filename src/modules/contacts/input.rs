//! A contact as a client (or a CSV row) writes it, and the checked, normalised form that is stored:
//! one place that turns input into a row, for the API, the import and inbound senders alike.

use chrono::Utc;
use sea_orm::Set;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::entity::contact;
use super::normalise::{self, check_attributes, check_identities, check_opt_outs};
use crate::domain::channel_type::is_channel_type;
use crate::error::FieldError;
use crate::modules::accounts::AccountScope;

/// Raw contact fields as a client (or a CSV row) gave them.
#[derive(Debug, Clone, Default)]
pub struct ContactInput {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub display_name: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub channel_identities: Option<Value>,
    pub preferred_channel: Option<String>,
    pub language: Option<String>,
    pub timezone: Option<String>,
    pub attributes: Option<Value>,
    pub opted_out_channels: Option<Vec<String>>,
}

/// A PATCH: absent keeps, `Some(None)` clears, `Some(Some(v))` sets.
#[derive(Debug, Clone, Default)]
pub struct ContactPatch {
    pub first_name: Option<Option<String>>,
    pub last_name: Option<Option<String>>,
    pub display_name: Option<Option<String>>,
    pub phone: Option<Option<String>>,
    pub email: Option<Option<String>>,
    pub channel_identities: Option<Option<Value>>,
    pub preferred_channel: Option<Option<String>>,
    pub language: Option<Option<String>>,
    pub timezone: Option<Option<String>>,
    pub attributes: Option<Option<Value>>,
    pub opted_out_channels: Option<Option<Vec<String>>>,
    pub tag_ids: Option<Option<Vec<Uuid>>>,
}

/// Contact fields after normalisation and validation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Normalised {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub display_name: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub channel_identities: Map<String, Value>,
    pub preferred_channel: Option<String>,
    pub language: Option<String>,
    pub timezone: Option<String>,
    pub attributes: Map<String, Value>,
    pub opted_out_channels: Vec<String>,
}

impl Normalised {
    pub fn identities(&self) -> Vec<(String, String)> {
        self.channel_identities.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect()
    }
}

pub(super) fn text(value: Option<&String>, field: &str, max: usize, errors: &mut Vec<FieldError>) -> Option<String> {
    let v = value.map(|s| s.trim()).filter(|s| !s.is_empty())?;
    if v.chars().count() > max {
        errors.push(FieldError::new(field, format!("must be at most {max} characters")));
    }
    if let Some(problem) = crate::domain::text::name_problem(v) {
        errors.push(FieldError::new(field, problem));
    }
    Some(v.to_string())
}

/// Normalises and validates every field, collecting all problems (422 lists each field).
pub fn normalise_input(
    input: &ContactInput,
    region: Option<phonenumber::country::Id>,
) -> Result<Normalised, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut n = Normalised {
        first_name: text(input.first_name.as_ref(), "first_name", 200, &mut errors),
        last_name: text(input.last_name.as_ref(), "last_name", 200, &mut errors),
        display_name: text(input.display_name.as_ref(), "display_name", 200, &mut errors),
        ..Default::default()
    };
    if let Some(p) = input.phone.as_deref().filter(|p| !p.trim().is_empty()) {
        match normalise::normalise_phone(p, region) {
            Ok(p) => n.phone = Some(p),
            Err(m) => errors.push(FieldError::new("phone", m)),
        }
    }
    if let Some(e) = input.email.as_deref().filter(|e| !e.trim().is_empty()) {
        match normalise::normalise_email(e) {
            Ok(e) => n.email = Some(e),
            Err(m) => errors.push(FieldError::new("email", m)),
        }
    }
    if let Some(ci) = &input.channel_identities {
        n.channel_identities = check_identities(ci, &mut errors);
    }
    if let Some(pc) = input.preferred_channel.as_deref().filter(|s| !s.is_empty()) {
        if is_channel_type(pc) {
            n.preferred_channel = Some(pc.to_string());
        } else {
            errors.push(FieldError::new(
                "preferred_channel",
                "must be a channel type (sms, smpp, telegram, whatsapp, messenger, email, sandbox)",
            ));
        }
    }
    if let Some(l) = input.language.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        if normalise::valid_language(l) && l.len() <= 35 {
            n.language = Some(l.to_string());
        } else {
            errors.push(FieldError::new("language", "must be a language tag such as am or en-US"));
        }
    }
    if let Some(tz) = input.timezone.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        if crate::modules::accounts::valid_timezone(tz) {
            n.timezone = Some(tz.to_string());
        } else {
            errors.push(FieldError::new("timezone", "must be an IANA time zone such as Africa/Addis_Ababa"));
        }
    }
    if let Some(a) = &input.attributes {
        n.attributes = check_attributes(a, "attributes", &mut errors);
    }
    if let Some(o) = &input.opted_out_channels {
        n.opted_out_channels = check_opt_outs(o, &mut errors);
    }
    if n.phone.is_none() && n.email.is_none() && n.channel_identities.is_empty() && errors.is_empty() {
        errors.push(FieldError::new("phone", "a contact needs a phone, an e-mail or a channel identity"));
    }
    if errors.is_empty() { Ok(n) } else { Err(errors) }
}

pub(super) fn input_of(c: &contact::Model) -> ContactInput {
    ContactInput {
        first_name: c.first_name.clone(),
        last_name: c.last_name.clone(),
        display_name: c.display_name.clone(),
        phone: c.phone.clone(),
        email: c.email.clone(),
        channel_identities: Some(c.channel_identities.clone()),
        preferred_channel: c.preferred_channel.clone(),
        language: c.language.clone(),
        timezone: c.timezone.clone(),
        attributes: Some(c.attributes.clone()),
        opted_out_channels: Some(opt_outs(c)),
    }
}

pub fn opt_outs(c: &contact::Model) -> Vec<String> {
    c.opted_out_channels
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// Writes normalised fields onto an active model.
pub fn assign(active: &mut contact::ActiveModel, n: &Normalised) {
    active.first_name = Set(n.first_name.clone());
    active.last_name = Set(n.last_name.clone());
    active.display_name = Set(n.display_name.clone());
    active.phone = Set(n.phone.clone());
    active.email = Set(n.email.clone());
    active.channel_identities = Set(Value::Object(n.channel_identities.clone()));
    active.preferred_channel = Set(n.preferred_channel.clone());
    active.language = Set(n.language.clone());
    active.timezone = Set(n.timezone.clone());
    active.attributes = Set(Value::Object(n.attributes.clone()));
    active.opted_out_channels = Set(json!(n.opted_out_channels));
}

pub fn new_contact(scope: AccountScope, n: &Normalised) -> contact::ActiveModel {
    let now = Utc::now();
    let mut active = contact::ActiveModel {
        id: Set(Uuid::now_v7()),
        account_id: Set(scope.account_id()),
        last_inbound_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    };
    assign(&mut active, n);
    active
}
