//! `/v1/templates*`: message templates and their preview.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;
use validator::Validate;

use crate::db::list::ListQuery;
use crate::error::{AppResult, ErrorBody};
use crate::http::Json;
use crate::http::envelope::{self, Envelope, ListEnvelope};
use crate::modules::accounts::RequestCtx;
use crate::modules::messaging::entity::template;
use crate::modules::messaging::service::Messaging;
use crate::modules::messaging::templates::{Attachment, NewTemplate, Preview, PreviewInput, TemplatePatch};

#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateDto {
    pub id: Uuid,
    pub account_id: Uuid,
    pub name: String,
    pub body: String,
    pub category: Option<String>,
    pub channel_type: Option<String>,
    pub language: Option<String>,
    /// Placeholder names in `body`, in order of first appearance (read-only).
    pub variables: Vec<String>,
    #[schema(value_type = Object)]
    pub default_values: Value,
    /// `keep_placeholder`, `use_default` or `skip_contact`.
    pub fallback_strategy: String,
    /// WhatsApp only: `pending`, `approved` or `rejected`.
    pub approval_status: Option<String>,
    pub external_template_id: Option<String>,
    pub attachments: Vec<Attachment>,
    pub is_active: bool,
    pub created_by_user_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<template::Model> for TemplateDto {
    fn from(t: template::Model) -> Self {
        TemplateDto {
            id: t.id,
            account_id: t.account_id,
            name: t.name,
            body: t.body,
            category: t.category,
            channel_type: t.channel_type.map(|c| c.as_str().to_string()),
            language: t.language,
            variables: serde_json::from_value(t.variables).unwrap_or_default(),
            default_values: t.default_values,
            fallback_strategy: t.fallback_strategy.as_str().to_string(),
            approval_status: t.approval_status.map(|a| a.as_str().to_string()),
            external_template_id: t.external_template_id,
            attachments: serde_json::from_value(t.attachments).unwrap_or_default(),
            is_active: t.is_active,
            created_by_user_id: t.created_by_user_id,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

/// Render for a contact of the account (`contact_id`) or for `sample` values, with the send's
/// `custom_values`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    pub contact_id: Option<Uuid>,
    #[schema(value_type = Option<Object>)]
    pub sample: Option<Map<String, Value>>,
    #[schema(value_type = Option<Object>)]
    pub custom_values: Option<Map<String, Value>>,
}

/// Templates of the active account. Filters: name, category, channel_type, language, is_active,
/// approval_status, fallback_strategy, created_by_user_id, created_at, updated_at.
#[utoipa::path(get, path = "/v1/templates", tag = "templates",
    params(("filter" = Option<Vec<String>>, Query), ("sort" = Option<Vec<String>>, Query), ("skip" = Option<u64>, Query), ("limit" = Option<u64>, Query)),
    responses((status = 200, body = ListEnvelope<TemplateDto>), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_templates(messaging: web::Data<Messaging>, ctx: RequestCtx, q: ListQuery) -> AppResult<HttpResponse> {
    ctx.require("templates:read")?;
    Ok(envelope::list(messaging.list_templates(ctx.scope(), &q).await?.map(TemplateDto::from)))
}

#[utoipa::path(post, path = "/v1/templates", tag = "templates", request_body = NewTemplate,
    responses((status = 201, body = Envelope<TemplateDto>), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_template(
    messaging: web::Data<Messaging>,
    ctx: RequestCtx,
    body: Json<NewTemplate>,
) -> AppResult<HttpResponse> {
    ctx.require("templates:manage")?;
    body.validate()?;
    let t = messaging.create_template(ctx.scope(), Some(ctx.user_id()), body.into_inner(), &ctx.meta()).await?;
    Ok(envelope::created(TemplateDto::from(t)))
}

#[utoipa::path(get, path = "/v1/templates/{id}", tag = "templates",
    responses((status = 200, body = Envelope<TemplateDto>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_template(
    messaging: web::Data<Messaging>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    ctx.require("templates:read")?;
    Ok(envelope::ok(TemplateDto::from(messaging.get_template(ctx.scope(), id.into_inner()).await?)))
}

#[utoipa::path(patch, path = "/v1/templates/{id}", tag = "templates", request_body = TemplatePatch,
    responses((status = 200, body = Envelope<TemplateDto>), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_template(
    messaging: web::Data<Messaging>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
    body: Json<TemplatePatch>,
) -> AppResult<HttpResponse> {
    ctx.require("templates:manage")?;
    body.validate()?;
    let patch = body.into_inner();
    Ok(envelope::ok(TemplateDto::from(
        messaging.update_template(ctx.scope(), id.into_inner(), patch, &ctx.meta()).await?,
    )))
}

#[utoipa::path(delete, path = "/v1/templates/{id}", tag = "templates",
    responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_template(
    messaging: web::Data<Messaging>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    ctx.require("templates:manage")?;
    messaging.delete_template(ctx.scope(), id.into_inner(), &ctx.meta()).await?;
    Ok(envelope::no_content())
}

/// Renders the template for one recipient as a send would (nothing is written): the body, the
/// placeholders nothing resolved, and what it costs as SMS.
#[utoipa::path(post, path = "/v1/templates/{id}/preview", tag = "templates", request_body = PreviewRequest,
    responses((status = 200, body = Envelope<Preview>), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn preview_template(
    messaging: web::Data<Messaging>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
    body: Json<PreviewRequest>,
) -> AppResult<HttpResponse> {
    ctx.require("templates:read")?;
    let b = body.into_inner();
    let input = PreviewInput { contact_id: b.contact_id, sample: b.sample, custom_values: b.custom_values };
    Ok(envelope::ok(messaging.preview_template(ctx.scope(), id.into_inner(), &ctx.user, input).await?))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/v1/templates").route(web::get().to(list_templates)).route(web::post().to(create_template)),
    )
    .service(
        web::resource("/v1/templates/{id}")
            .route(web::get().to(get_template))
            .route(web::patch().to(update_template))
            .route(web::delete().to(delete_template)),
    )
    .service(web::resource("/v1/templates/{id}/preview").route(web::post().to(preview_template)));
}
