//! `/v1/tags*`: tags, and tagging many contacts at once (by ids or by filter).

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;
use validator::Validate;

use super::ContactTargetRequest;
use crate::db::list::ListQuery;
use crate::error::{AppResult, ErrorBody};
use crate::http::Json;
use crate::http::envelope::{self, Envelope, ListEnvelope};
use crate::modules::accounts::RequestCtx;
use crate::modules::contacts::entity::tag;
use crate::modules::contacts::service::Contacts;

#[derive(Debug, Serialize, ToSchema)]
pub struct TagDto {
    pub id: Uuid,
    pub account_id: Uuid,
    pub name: String,
    pub color: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<tag::Model> for TagDto {
    fn from(t: tag::Model) -> Self {
        TagDto {
            id: t.id,
            account_id: t.account_id,
            name: t.name,
            color: t.color,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

fn valid_color(c: &str) -> Result<(), validator::ValidationError> {
    let ok = c.len() == 7 && c.starts_with('#') && c[1..].chars().all(|ch| ch.is_ascii_hexdigit());
    if ok { Ok(()) } else { Err(validator::ValidationError::new("color").with_message("must be #rrggbb".into())) }
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTagRequest {
    #[validate(length(min = 1, max = 100), custom(function = "crate::domain::text::name"))]
    #[schema(min_length = 1, max_length = 100, pattern = r"^(?!\s+$)[^\u0000-\u001F\u007F-\u009F]*$")]
    pub name: String,
    /// `#rrggbb` (default `#6b7280`)
    #[validate(custom(function = "valid_color"))]
    #[schema(pattern = r"^#[0-9a-fA-F]{6}$")]
    pub color: Option<String>,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTagRequest {
    #[validate(length(min = 1, max = 100), custom(function = "crate::domain::text::name"))]
    #[schema(min_length = 1, max_length = 100, pattern = r"^(?!\s+$)[^\u0000-\u001F\u007F-\u009F]*$")]
    pub name: Option<String>,
    #[validate(custom(function = "valid_color"))]
    #[schema(pattern = r"^#[0-9a-fA-F]{6}$")]
    pub color: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TaggedDto {
    /// Contacts that gained (or lost) the tag with this request.
    pub changed: u64,
}

// ------------------------------------------------------------------ tags

#[utoipa::path(get, path = "/v1/tags", tag = "tags", params(("filter" = Option<Vec<String>>, Query), ("sort" = Option<Vec<String>>, Query), ("skip" = Option<u64>, Query), ("limit" = Option<u64>, Query)),
    responses((status = 200, body = ListEnvelope<TagDto>), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_tags(contacts: web::Data<Contacts>, ctx: RequestCtx, q: ListQuery) -> AppResult<HttpResponse> {
    ctx.require("contacts:read")?;
    Ok(envelope::list(contacts.list_tags(ctx.scope(), &q).await?.map(TagDto::from)))
}

#[utoipa::path(post, path = "/v1/tags", tag = "tags", request_body = CreateTagRequest,
    responses((status = 201, body = Envelope<TagDto>), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_tag(
    contacts: web::Data<Contacts>,
    ctx: RequestCtx,
    body: Json<CreateTagRequest>,
) -> AppResult<HttpResponse> {
    ctx.require("contacts:write")?;
    body.validate()?;
    let t = contacts.create_tag(ctx.scope(), &body.name, body.color.as_deref(), &ctx.meta()).await?;
    Ok(envelope::created(TagDto::from(t)))
}

#[utoipa::path(get, path = "/v1/tags/{id}", tag = "tags", responses((status = 200, body = Envelope<TagDto>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_tag(contacts: web::Data<Contacts>, ctx: RequestCtx, id: web::Path<Uuid>) -> AppResult<HttpResponse> {
    ctx.require("contacts:read")?;
    Ok(envelope::ok(TagDto::from(contacts.get_tag(ctx.scope(), id.into_inner()).await?)))
}

#[utoipa::path(patch, path = "/v1/tags/{id}", tag = "tags", request_body = UpdateTagRequest,
    responses((status = 200, body = Envelope<TagDto>), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_tag(
    contacts: web::Data<Contacts>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
    body: Json<UpdateTagRequest>,
) -> AppResult<HttpResponse> {
    ctx.require("contacts:write")?;
    body.validate()?;
    let b = body.into_inner();
    Ok(envelope::ok(TagDto::from(
        contacts.update_tag(ctx.scope(), id.into_inner(), b.name, b.color, &ctx.meta()).await?,
    )))
}

#[utoipa::path(delete, path = "/v1/tags/{id}", tag = "tags", responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_tag(
    contacts: web::Data<Contacts>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    ctx.require("contacts:write")?;
    contacts.delete_tag(ctx.scope(), id.into_inner(), &ctx.meta()).await?;
    Ok(envelope::no_content())
}

/// Bulk tagging: tags every contact named by `contact_ids` or matching `filter`.
#[utoipa::path(post, path = "/v1/tags/{id}/contacts", tag = "tags", request_body = ContactTargetRequest,
    responses((status = 200, body = Envelope<TaggedDto>), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn tag_contacts(
    contacts: web::Data<Contacts>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
    body: Json<ContactTargetRequest>,
) -> AppResult<HttpResponse> {
    bulk_tag(contacts, ctx, id.into_inner(), body.into_inner(), true).await
}

/// Bulk untagging by `contact_ids` or `filter`.
#[utoipa::path(delete, path = "/v1/tags/{id}/contacts", tag = "tags", request_body = ContactTargetRequest,
    responses((status = 200, body = Envelope<TaggedDto>), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn untag_contacts(
    contacts: web::Data<Contacts>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
    body: Json<ContactTargetRequest>,
) -> AppResult<HttpResponse> {
    bulk_tag(contacts, ctx, id.into_inner(), body.into_inner(), false).await
}

async fn bulk_tag(
    contacts: web::Data<Contacts>,
    ctx: RequestCtx,
    id: Uuid,
    b: ContactTargetRequest,
    add: bool,
) -> AppResult<HttpResponse> {
    ctx.require("contacts:write")?;
    let target = b.target();
    let changed = contacts.tag_contacts(ctx.scope(), id, target, add, &ctx.meta()).await?;
    Ok(envelope::ok(TaggedDto { changed }))
}

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/v1/tags").route(web::get().to(list_tags)).route(web::post().to(create_tag)))
        .service(
            web::resource("/v1/tags/{id}")
                .route(web::get().to(get_tag))
                .route(web::patch().to(update_tag))
                .route(web::delete().to(delete_tag)),
        )
        .service(
            web::resource("/v1/tags/{id}/contacts")
                .route(web::post().to(tag_contacts))
                .route(web::delete().to(untag_contacts)),
        );
}
