//! `/v1/segments*`: saved filters (validated when saved), their contacts and their count.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;
use validator::Validate;

use super::Patch;
use super::contacts::ContactDto;
use crate::db::list::ListQuery;
use crate::error::{AppResult, ErrorBody};
use crate::http::Json;
use crate::http::envelope::{self, Envelope, ListEnvelope};
use crate::modules::accounts::RequestCtx;
use crate::modules::contacts::entity::segment;
use crate::modules::contacts::service::{ContactList, Contacts};

#[derive(Debug, Serialize, ToSchema)]
pub struct CountDto {
    pub count: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SegmentDto {
    pub id: Uuid,
    pub account_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    /// Filter strings, ANDed.
    pub filter: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<segment::Model> for SegmentDto {
    fn from(s: segment::Model) -> Self {
        SegmentDto {
            filter: s
                .filter
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                .unwrap_or_default(),
            id: s.id,
            account_id: s.account_id,
            name: s.name,
            description: s.description,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSegmentRequest {
    #[validate(length(min = 1, max = 200), custom(function = "crate::domain::text::name"))]
    #[schema(min_length = 1, max_length = 200, pattern = r"^(?!\s+$)[^\u0000-\u001F\u007F-\u009F]*$")]
    pub name: String,
    #[validate(length(max = 2000))]
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    /// `"attributes.program:eq:cohort-2"` or `["tags:in:<id>", "created_at:ge:2026-01-01"]`
    #[schema(value_type = Object)]
    pub filter: Value,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSegmentRequest {
    #[validate(length(min = 1, max = 200), custom(function = "crate::domain::text::name"))]
    #[schema(min_length = 1, max_length = 200, pattern = r"^(?!\s+$)[^\u0000-\u001F\u007F-\u009F]*$")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "crate::http::patch")]
    #[schema(value_type = Option<String>)]
    pub description: Patch<String>,
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Value>,
}

// ------------------------------------------------------------------ segments

#[utoipa::path(get, path = "/v1/segments", tag = "segments", params(("filter" = Option<Vec<String>>, Query), ("sort" = Option<Vec<String>>, Query), ("skip" = Option<u64>, Query), ("limit" = Option<u64>, Query)),
    responses((status = 200, body = ListEnvelope<SegmentDto>), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_segments(contacts: web::Data<Contacts>, ctx: RequestCtx, q: ListQuery) -> AppResult<HttpResponse> {
    ctx.require("contacts:read")?;
    Ok(envelope::list(contacts.list_segments(ctx.scope(), &q).await?.map(SegmentDto::from)))
}

/// A saved dynamic audience. The filter is validated now (422), so using it later cannot fail.
#[utoipa::path(post, path = "/v1/segments", tag = "segments", request_body = CreateSegmentRequest,
    responses((status = 201, body = Envelope<SegmentDto>), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_segment(
    contacts: web::Data<Contacts>,
    ctx: RequestCtx,
    body: Json<CreateSegmentRequest>,
) -> AppResult<HttpResponse> {
    ctx.require("contacts:write")?;
    body.validate()?;
    let s =
        contacts.create_segment(ctx.scope(), &body.name, body.description.clone(), &body.filter, &ctx.meta()).await?;
    Ok(envelope::created(SegmentDto::from(s)))
}

#[utoipa::path(get, path = "/v1/segments/{id}", tag = "segments", responses((status = 200, body = Envelope<SegmentDto>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_segment(
    contacts: web::Data<Contacts>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    ctx.require("contacts:read")?;
    Ok(envelope::ok(SegmentDto::from(contacts.get_segment(ctx.scope(), id.into_inner()).await?)))
}

#[utoipa::path(patch, path = "/v1/segments/{id}", tag = "segments", request_body = UpdateSegmentRequest,
    responses((status = 200, body = Envelope<SegmentDto>), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_segment(
    contacts: web::Data<Contacts>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
    body: Json<UpdateSegmentRequest>,
) -> AppResult<HttpResponse> {
    ctx.require("contacts:write")?;
    body.validate()?;
    let b = body.into_inner();
    let s = contacts.update_segment(ctx.scope(), id.into_inner(), b.name, b.description, b.filter, &ctx.meta()).await?;
    Ok(envelope::ok(SegmentDto::from(s)))
}

#[utoipa::path(delete, path = "/v1/segments/{id}", tag = "segments", responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_segment(
    contacts: web::Data<Contacts>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    ctx.require("contacts:write")?;
    contacts.delete_segment(ctx.scope(), id.into_inner(), &ctx.meta()).await?;
    Ok(envelope::no_content())
}

/// Evaluates the segment now (extra query filters narrow it further).
#[utoipa::path(get, path = "/v1/segments/{id}/contacts", tag = "segments",
    params(("filter" = Option<Vec<String>>, Query), ("sort" = Option<Vec<String>>, Query), ("q" = Option<String>, Query), ("skip" = Option<u64>, Query), ("limit" = Option<u64>, Query)),
    responses((status = 200, body = ListEnvelope<ContactDto>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_segment_contacts(
    contacts: web::Data<Contacts>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
    q: ListQuery,
) -> AppResult<HttpResponse> {
    ctx.require("contacts:read")?;
    let page = contacts.list_contacts(ctx.scope(), ContactList::Segment(id.into_inner()), &q).await?;
    Ok(envelope::list(page.map(ContactDto::from)))
}

#[utoipa::path(get, path = "/v1/segments/{id}/count", tag = "segments", responses((status = 200, body = Envelope<CountDto>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn count_segment(
    contacts: web::Data<Contacts>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    ctx.require("contacts:read")?;
    let count = contacts.count_segment(ctx.scope(), id.into_inner()).await?;
    Ok(envelope::ok(CountDto { count }))
}

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/v1/segments").route(web::get().to(list_segments)).route(web::post().to(create_segment)),
    )
    .service(
        web::resource("/v1/segments/{id}")
            .route(web::get().to(get_segment))
            .route(web::patch().to(update_segment))
            .route(web::delete().to(delete_segment)),
    )
    .service(web::resource("/v1/segments/{id}/contacts").route(web::get().to(list_segment_contacts)))
    .service(web::resource("/v1/segments/{id}/count").route(web::get().to(count_segment)));
}
