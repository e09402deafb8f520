//! Templates (SPEC §6.1): CRUD with the variables re-extracted on every body change, WhatsApp approval,
//! URL attachments, and the preview that renders one recipient the way a send will.

use chrono::Utc;
use sea_orm::{ActiveModelTrait, IntoActiveModel, ModelTrait, Set};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;
use uuid::Uuid;
use validator::Validate;

use super::entity::template::{self, ApprovalStatus, FallbackStrategy};
use super::render::{Fallback, Parsed, Rendered, Variables, is_variable_name};
use super::service::Messaging;
use super::store;
use crate::db::list::{ListQuery, Page};
use crate::domain::channel_type::ChannelType;
use crate::error::{AppError, AppResult, FieldError};
use crate::modules::accounts::{AccountScope, CurrentUser};
use crate::modules::channels::analyse_sms;
use crate::modules::contacts::DirectoryContact;
use crate::modules::events::{EventBus, EventMeta};

/// Longest template body, in characters.
pub const MAX_BODY_CHARS: usize = 10_000;
/// Attachments per template or message.
pub const MAX_ATTACHMENTS: usize = 10;

/// A URL attachment: fetched by the provider (or by us for e-mail) when the message is sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    /// `http(s)://…`, at most 2,048 characters, no user name or password in it.
    pub url: String,
    /// `image`, `document` (default), `audio` or `video`.
    #[serde(default = "document")]
    pub kind: String,
    pub filename: Option<String>,
    pub caption: Option<String>,
}

fn document() -> String {
    "document".into()
}

/// A message's stored attachments as the channel adapters take them.
pub fn media_of(stored: &serde_json::Value) -> Vec<crate::modules::channels::MediaAttachment> {
    let files: Vec<Attachment> = serde_json::from_value(stored.clone()).unwrap_or_default();
    files
        .into_iter()
        .map(|a| crate::modules::channels::MediaAttachment {
            url: a.url,
            kind: a.kind,
            filename: a.filename,
            caption: a.caption,
        })
        .collect()
}

const ATTACHMENT_KINDS: &[&str] = &["image", "document", "audio", "video"];

/// Checks attachments (422 naming `field[i].part`).
pub fn check_attachments(items: &[Attachment], field: &str) -> Result<(), Vec<FieldError>> {
    let mut errors = Vec::new();
    if items.len() > MAX_ATTACHMENTS {
        errors.push(FieldError::new(field, format!("at most {MAX_ATTACHMENTS} attachments")));
    }
    for (i, a) in items.iter().enumerate() {
        let at = |part: &str| format!("{field}[{i}].{part}");
        match url::Url::parse(&a.url) {
            Ok(u) if !matches!(u.scheme(), "http" | "https") => {
                errors.push(FieldError::new(at("url"), "must be an http or https URL"))
            }
            Ok(u) if !u.username().is_empty() || u.password().is_some() => {
                errors.push(FieldError::new(at("url"), "must not carry a user name or password"))
            }
            Ok(u) if u.host_str().is_none_or(str::is_empty) => {
                errors.push(FieldError::new(at("url"), "must name a host"))
            }
            Ok(_) if a.url.len() > 2048 => errors.push(FieldError::new(at("url"), "must be at most 2048 characters")),
            Ok(_) => {}
            Err(_) => errors.push(FieldError::new(at("url"), "must be an absolute http or https URL")),
        }
        if !ATTACHMENT_KINDS.contains(&a.kind.as_str()) {
            errors.push(FieldError::new(at("kind"), format!("must be one of {}", ATTACHMENT_KINDS.join(", "))));
        }
        if let Some(f) = &a.filename
            && (f.is_empty() || f.chars().count() > 255 || crate::domain::text::control_character(f).is_some())
        {
            errors.push(FieldError::new(at("filename"), "must be 1 to 255 characters without control characters"));
        }
        if a.caption.as_ref().is_some_and(|c| c.chars().count() > 1024) {
            errors.push(FieldError::new(at("caption"), "must be at most 1024 characters"));
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

type Patch<T> = Option<Option<T>>;

/// A new template (the body of `POST /v1/templates`).
#[derive(Debug, Clone, Default, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTemplate {
    #[validate(length(min = 1, max = 200), custom(function = "crate::domain::text::name"))]
    #[schema(min_length = 1, max_length = 200, pattern = r"^(?!\s+$)[^\u0000-\u001F\u007F-\u009F]*$")]
    pub name: String,
    /// `{NAME}` placeholders; `{{` and `}}` are literal braces.
    pub body: String,
    pub category: Option<String>,
    pub channel_type: Option<String>,
    pub language: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub default_values: Option<Value>,
    /// `keep_placeholder` (default), `use_default` or `skip_contact`.
    pub fallback_strategy: Option<String>,
    /// WhatsApp only: `pending`, `approved` or `rejected`.
    pub approval_status: Option<String>,
    pub external_template_id: Option<String>,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    pub is_active: Option<bool>,
}

/// A template change (the body of `PATCH /v1/templates/{id}`): absent = unchanged, `null` = cleared.
#[derive(Debug, Clone, Default, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplatePatch {
    #[validate(length(min = 1, max = 200), custom(function = "crate::domain::text::name"))]
    #[schema(min_length = 1, max_length = 200, pattern = r"^(?!\s+$)[^\u0000-\u001F\u007F-\u009F]*$")]
    pub name: Option<String>,
    pub body: Option<String>,
    #[serde(default, deserialize_with = "crate::http::patch")]
    #[schema(value_type = Option<String>)]
    pub category: Patch<String>,
    #[serde(default, deserialize_with = "crate::http::patch")]
    #[schema(value_type = Option<String>)]
    pub channel_type: Patch<String>,
    #[serde(default, deserialize_with = "crate::http::patch")]
    #[schema(value_type = Option<String>)]
    pub language: Patch<String>,
    #[serde(default, deserialize_with = "crate::http::patch")]
    #[schema(value_type = Option<Object>)]
    pub default_values: Patch<Value>,
    pub fallback_strategy: Option<String>,
    #[serde(default, deserialize_with = "crate::http::patch")]
    #[schema(value_type = Option<String>)]
    pub approval_status: Patch<String>,
    #[serde(default, deserialize_with = "crate::http::patch")]
    #[schema(value_type = Option<String>)]
    pub external_template_id: Patch<String>,
    pub attachments: Option<Vec<Attachment>>,
    pub is_active: Option<bool>,
}

/// Who a preview renders for: a contact of the account, or sample values.
#[derive(Debug, Clone, Default)]
pub struct PreviewInput {
    pub contact_id: Option<Uuid>,
    pub sample: Option<Map<String, Value>>,
    pub custom_values: Option<Map<String, Value>>,
}

/// A rendered preview.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Preview {
    pub body: String,
    /// Placeholders nothing resolved (before the fallback strategy applied).
    pub missing: Vec<String>,
    /// SMS parts the body takes.
    pub segments: usize,
    /// `GSM-7` or `UCS-2`.
    pub encoding: String,
    /// `missing_variable:NAME` when the template's `skip_contact` strategy would skip this recipient.
    pub skip_reason: Option<String>,
}

fn parse_strategy(raw: &str) -> AppResult<FallbackStrategy> {
    FallbackStrategy::parse(raw).ok_or_else(|| {
        AppError::field("fallback_strategy", format!("must be one of {}", template::FALLBACK_STRATEGIES.join(", ")))
    })
}

fn parse_approval(raw: &str) -> AppResult<ApprovalStatus> {
    ApprovalStatus::parse(raw).ok_or_else(|| {
        AppError::field("approval_status", format!("must be one of {}", template::APPROVAL_STATUSES.join(", ")))
    })
}

fn parse_channel_type(raw: &str) -> AppResult<ChannelType> {
    ChannelType::parse(raw).ok_or_else(|| {
        AppError::field(
            "channel_type",
            format!("must be one of {}", crate::domain::channel_type::CHANNEL_TYPES.join(", ")),
        )
    })
}

fn check_body(body: &str) -> AppResult<()> {
    if body.trim().is_empty() {
        return Err(AppError::field("body", "must not be empty"));
    }
    if body.chars().count() > MAX_BODY_CHARS {
        return Err(AppError::field("body", format!("must be at most {MAX_BODY_CHARS} characters")));
    }
    Ok(())
}

/// `default_values`: an object of placeholder names to strings, numbers or booleans.
fn check_defaults(v: &Value) -> AppResult<Value> {
    let Some(map) = v.as_object() else {
        return Err(AppError::field("default_values", "must be an object of NAME: value"));
    };
    for (k, value) in map {
        if !is_variable_name(k) {
            return Err(AppError::field(format!("default_values.{k}"), "keys are placeholder names ([A-Z][A-Z0-9_]*)"));
        }
        if !(value.is_string() || value.is_number() || value.is_boolean()) {
            return Err(AppError::field(format!("default_values.{k}"), "must be a string, number or boolean"));
        }
    }
    Ok(v.clone())
}

fn optional_text(value: Option<String>, field: &str, max: usize) -> AppResult<Option<String>> {
    let Some(v) = value.map(|v| v.trim().to_string()).filter(|v| !v.is_empty()) else { return Ok(None) };
    if v.chars().count() > max {
        return Err(AppError::field(field, format!("must be at most {max} characters")));
    }
    if crate::domain::text::control_character(&v).is_some() {
        return Err(AppError::field(field, "must not contain control characters"));
    }
    Ok(Some(v))
}

/// Approval applies to WhatsApp templates only.
fn check_approval(t: &template::ActiveModel) -> AppResult<()> {
    let whatsapp = matches!(t.channel_type.as_ref(), Some(ChannelType::Whatsapp));
    if t.approval_status.as_ref().is_some() && !whatsapp {
        return Err(AppError::field("approval_status", "only WhatsApp templates (channel_type whatsapp) are approved"));
    }
    Ok(())
}

fn name_conflict(e: sea_orm::DbErr) -> AppError {
    if crate::db::is_unique_violation(&e) {
        AppError::Conflict {
            message: "a template with this name already exists".into(),
            details: json!({ "field": "name" }),
        }
    } else {
        e.into()
    }
}

/// Renders a template's body with `vars` and its fallback strategy. (A group send parses the body once
/// and renders each recipient from the parts; a single send or a preview renders one.)
pub(super) fn render_template(t: &template::Model, vars: &Variables<'_>) -> Rendered {
    let defaults = t.default_values.as_object().cloned().unwrap_or_default();
    Parsed::parse(&t.body).render(|name| vars.get(name), fallback_of(t.fallback_strategy, &defaults))
}

/// A template's fallback strategy over its `default_values`.
pub(super) fn fallback_of(strategy: FallbackStrategy, defaults: &Map<String, Value>) -> Fallback<'_> {
    match strategy {
        FallbackStrategy::KeepPlaceholder => Fallback::KeepPlaceholder,
        FallbackStrategy::UseDefault => Fallback::UseDefault(defaults),
        FallbackStrategy::SkipContact => Fallback::SkipContact,
    }
}

/// The recipient's time zone for `CURRENT_DATE`/`CURRENT_TIME`: the contact's, else the account's.
pub(super) fn recipient_zone(contact: Option<&DirectoryContact>, account_zone: &str) -> Option<chrono_tz::Tz> {
    let zone = |name: Option<&str>| name.and_then(|z| z.parse::<chrono_tz::Tz>().ok());
    zone(contact.and_then(|c| c.timezone.as_deref())).or_else(|| zone(Some(account_zone)))
}

/// The category of the templates that group sends made from a `message_body` create.
pub const AUTO_GENERATED: &str = "auto-generated";

/// The template a group send given a `message_body` creates (category `auto-generated`, named after
/// the send and unique by its id); `field` names the body in errors.
pub(super) fn auto_template(
    scope: AccountScope,
    user_id: Option<Uuid>,
    owner: Uuid,
    name: &str,
    body: String,
    field: &str,
) -> AppResult<template::ActiveModel> {
    check_body(&body)
        .map_err(|_| AppError::field(field, format!("must be 1 to {MAX_BODY_CHARS} characters and not only spaces")))?;
    let now = Utc::now();
    let short: String = name.chars().take(150).collect();
    Ok(template::ActiveModel {
        id: Set(Uuid::now_v7()),
        account_id: Set(scope.account_id()),
        name: Set(format!("{short} ({owner})")),
        variables: Set(json!(Parsed::parse(&body).variables())),
        body: Set(body),
        category: Set(Some(AUTO_GENERATED.into())),
        channel_type: Set(None),
        language: Set(None),
        default_values: Set(json!({})),
        fallback_strategy: Set(FallbackStrategy::KeepPlaceholder),
        approval_status: Set(None),
        external_template_id: Set(None),
        attachments: Set(json!([])),
        is_active: Set(true),
        created_by_user_id: Set(user_id),
        created_at: Set(now),
        updated_at: Set(now),
    })
}

impl Messaging {
    /// The account's templates, filtered, sorted and paged.
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn list_templates(&self, scope: AccountScope, q: &ListQuery) -> AppResult<Page<template::Model>> {
        store::list_templates(&self.db, scope, q).await
    }

    pub async fn get_template(&self, scope: AccountScope, id: Uuid) -> AppResult<template::Model> {
        store::find_template(&self.db, scope, id).await?.ok_or(AppError::NotFound("template"))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn create_template(
        &self,
        scope: AccountScope,
        user_id: Option<Uuid>,
        new: NewTemplate,
        meta: &EventMeta,
    ) -> AppResult<template::Model> {
        check_body(&new.body)?;
        check_attachments(&new.attachments, "attachments").map_err(AppError::Validation)?;
        let now = Utc::now();
        let active = template::ActiveModel {
            id: Set(Uuid::now_v7()),
            account_id: Set(scope.account_id()),
            name: Set(new.name.trim().to_string()),
            variables: Set(json!(Parsed::parse(&new.body).variables())),
            body: Set(new.body),
            category: Set(optional_text(new.category, "category", 100)?),
            channel_type: Set(new.channel_type.as_deref().map(parse_channel_type).transpose()?),
            language: Set(optional_text(new.language, "language", 35)?),
            default_values: Set(new.default_values.as_ref().map(check_defaults).transpose()?.unwrap_or(json!({}))),
            fallback_strategy: Set(new
                .fallback_strategy
                .as_deref()
                .map(parse_strategy)
                .transpose()?
                .unwrap_or(FallbackStrategy::KeepPlaceholder)),
            approval_status: Set(new.approval_status.as_deref().map(parse_approval).transpose()?),
            external_template_id: Set(optional_text(new.external_template_id, "external_template_id", 512)?),
            attachments: Set(json!(new.attachments)),
            is_active: Set(new.is_active.unwrap_or(true)),
            created_by_user_id: Set(user_id),
            created_at: Set(now),
            updated_at: Set(now),
        };
        check_approval(&active)?;
        let txn = crate::db::begin_write(&self.db).await?;
        let t = active.insert(&txn).await.map_err(name_conflict)?;
        self.commit_template(txn, "template.created", &t, None, meta).await?;
        Ok(t)
    }

    /// Commits a template's change with its event (and the audit entry of the request).
    async fn commit_template(
        &self,
        txn: sea_orm::DatabaseTransaction,
        event: &str,
        t: &template::Model,
        before: Option<&template::Model>,
        meta: &EventMeta,
    ) -> AppResult<()> {
        let shown = |t: &template::Model| {
            json!({ "name": t.name, "body": t.body, "channel_type": t.channel_type, "is_active": t.is_active,
                    "approval_status": t.approval_status, "fallback_strategy": t.fallback_strategy })
        };
        let mut bus = EventBus::new(meta.clone());
        if let Some(b) = before {
            bus.before(shown(b));
        }
        bus.emit(event, "template", t.id, Some(t.account_id), shown(t));
        Ok(self.events.commit(txn, bus).await?)
    }

    /// Applies the fields present. A new body re-extracts `variables`; messages already created keep the
    /// text they were rendered with.
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn update_template(
        &self,
        scope: AccountScope,
        id: Uuid,
        p: TemplatePatch,
        meta: &EventMeta,
    ) -> AppResult<template::Model> {
        let before = self.get_template(scope, id).await?;
        let mut active = before.clone().into_active_model();
        if let Some(name) = p.name {
            active.name = Set(name.trim().to_string());
        }
        if let Some(body) = p.body {
            check_body(&body)?;
            active.variables = Set(json!(Parsed::parse(&body).variables()));
            active.body = Set(body);
        }
        if let Some(v) = p.category {
            active.category = Set(optional_text(v, "category", 100)?);
        }
        if let Some(v) = p.channel_type {
            active.channel_type = Set(v.as_deref().map(parse_channel_type).transpose()?);
        }
        if let Some(v) = p.language {
            active.language = Set(optional_text(v, "language", 35)?);
        }
        if let Some(v) = p.default_values {
            active.default_values = Set(v.as_ref().map(check_defaults).transpose()?.unwrap_or(json!({})));
        }
        if let Some(v) = p.fallback_strategy {
            active.fallback_strategy = Set(parse_strategy(&v)?);
        }
        if let Some(v) = p.approval_status {
            active.approval_status = Set(v.as_deref().map(parse_approval).transpose()?);
        }
        if let Some(v) = p.external_template_id {
            active.external_template_id = Set(optional_text(v, "external_template_id", 512)?);
        }
        if let Some(items) = p.attachments {
            check_attachments(&items, "attachments").map_err(AppError::Validation)?;
            active.attachments = Set(json!(items));
        }
        if let Some(v) = p.is_active {
            active.is_active = Set(v);
        }
        check_approval(&active)?;
        active.updated_at = Set(Utc::now());
        let txn = crate::db::begin_write(&self.db).await?;
        let t = active.update(&txn).await.map_err(name_conflict)?;
        self.commit_template(txn, "template.updated", &t, Some(&before), meta).await?;
        Ok(t)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn delete_template(&self, scope: AccountScope, id: Uuid, meta: &EventMeta) -> AppResult<()> {
        let t = self.get_template(scope, id).await?;
        let txn = crate::db::begin_write(&self.db).await?;
        t.clone().delete(&txn).await?;
        self.commit_template(txn, "template.deleted", &t, None, meta).await
    }

    /// Renders the template for a contact of the account (or sample values) as a send would: the
    /// resolution order, the fallback strategy, then what the text costs as SMS. Writes nothing.
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn preview_template(
        &self,
        scope: AccountScope,
        id: Uuid,
        sender: &CurrentUser,
        input: PreviewInput,
    ) -> AppResult<Preview> {
        let t = self.get_template(scope, id).await?;
        let contact = match input.contact_id {
            Some(cid) => Some(
                self.directory
                    .get(scope, cid)
                    .await?
                    .ok_or_else(|| AppError::field("contact_id", "no such contact in this account"))?,
            ),
            None => None,
        };
        let account = self.accounts.get_account(scope).await?;
        let timezone = recipient_zone(contact.as_ref(), &account.timezone);
        let vars = Variables {
            recipient: input.sample.as_ref(),
            custom: input.custom_values.as_ref(),
            contact: contact.as_ref(),
            account_name: Some(&account.name),
            sender_name: Some(&sender.full_name),
            sender_email: Some(&sender.email),
            timezone,
            now: None,
        };
        let rendered = render_template(&t, &vars);
        let sms = analyse_sms(&rendered.text);
        let skip_reason = match t.fallback_strategy {
            FallbackStrategy::SkipContact => rendered.skip_reason(),
            _ => None,
        };
        Ok(Preview {
            segments: sms.segments,
            encoding: sms.encoding.as_str().to_string(),
            skip_reason,
            missing: rendered.missing,
            body: rendered.text,
        })
    }
}
