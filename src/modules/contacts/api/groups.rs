//! `/v1/groups*`: groups with exact member counts, and their members.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;
use validator::Validate;

use super::contacts::ContactDto;
use super::{ContactTargetRequest, Patch};
use crate::db::list::ListQuery;
use crate::error::{AppError, AppResult, ErrorBody};
use crate::http::Json;
use crate::http::envelope::{self, Envelope, ListEnvelope};
use crate::modules::accounts::RequestCtx;
use crate::modules::contacts::entity::group;
use crate::modules::contacts::service::{ContactList, Contacts};

#[derive(Debug, Serialize, ToSchema)]
pub struct GroupDto {
    pub id: Uuid,
    pub account_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub contact_count: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<group::Model> for GroupDto {
    fn from(g: group::Model) -> Self {
        GroupDto {
            id: g.id,
            account_id: g.account_id,
            name: g.name,
            description: g.description,
            contact_count: g.contact_count,
            created_at: g.created_at,
            updated_at: g.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGroupRequest {
    #[validate(length(min = 1, max = 200), custom(function = "crate::domain::text::name"))]
    #[schema(min_length = 1, max_length = 200, pattern = r"^(?!\s+$)[^\u0000-\u001F\u007F-\u009F]*$")]
    pub name: String,
    #[validate(length(max = 2000))]
    #[schema(max_length = 2000)]
    pub description: Option<String>,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateGroupRequest {
    #[validate(length(min = 1, max = 200), custom(function = "crate::domain::text::name"))]
    #[schema(min_length = 1, max_length = 200, pattern = r"^(?!\s+$)[^\u0000-\u001F\u007F-\u009F]*$")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "crate::http::patch")]
    #[schema(value_type = Option<String>)]
    pub description: Patch<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MembershipChangeDto {
    /// Contacts added (or removed) by this request; members already present (or absent) are not counted.
    pub changed: u64,
    pub group: GroupDto,
}

// ------------------------------------------------------------------ groups

#[utoipa::path(get, path = "/v1/groups", tag = "groups", params(("filter" = Option<Vec<String>>, Query), ("sort" = Option<Vec<String>>, Query), ("skip" = Option<u64>, Query), ("limit" = Option<u64>, Query)),
    responses((status = 200, body = ListEnvelope<GroupDto>), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_groups(contacts: web::Data<Contacts>, ctx: RequestCtx, q: ListQuery) -> AppResult<HttpResponse> {
    ctx.require("contacts:read")?;
    Ok(envelope::list(contacts.list_groups(ctx.scope(), &q).await?.map(GroupDto::from)))
}

#[utoipa::path(post, path = "/v1/groups", tag = "groups", request_body = CreateGroupRequest,
    responses((status = 201, body = Envelope<GroupDto>), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_group(
    contacts: web::Data<Contacts>,
    ctx: RequestCtx,
    body: Json<CreateGroupRequest>,
) -> AppResult<HttpResponse> {
    ctx.require("contacts:write")?;
    body.validate()?;
    let g = contacts.create_group(ctx.scope(), &body.name, body.description.clone(), &ctx.meta()).await?;
    Ok(envelope::created(GroupDto::from(g)))
}

#[utoipa::path(get, path = "/v1/groups/{id}", tag = "groups", responses((status = 200, body = Envelope<GroupDto>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_group(contacts: web::Data<Contacts>, ctx: RequestCtx, id: web::Path<Uuid>) -> AppResult<HttpResponse> {
    ctx.require("contacts:read")?;
    Ok(envelope::ok(GroupDto::from(contacts.get_group(ctx.scope(), id.into_inner()).await?)))
}

#[utoipa::path(patch, path = "/v1/groups/{id}", tag = "groups", request_body = UpdateGroupRequest,
    responses((status = 200, body = Envelope<GroupDto>), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_group(
    contacts: web::Data<Contacts>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
    body: Json<UpdateGroupRequest>,
) -> AppResult<HttpResponse> {
    ctx.require("contacts:write")?;
    body.validate()?;
    let b = body.into_inner();
    if let Some(Some(d)) = &b.description
        && d.len() > 2000
    {
        return Err(AppError::field("description", "must be at most 2000 characters"));
    }
    let g = contacts.update_group(ctx.scope(), id.into_inner(), b.name, b.description, &ctx.meta()).await?;
    Ok(envelope::ok(GroupDto::from(g)))
}

#[utoipa::path(delete, path = "/v1/groups/{id}", tag = "groups", responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_group(
    contacts: web::Data<Contacts>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    ctx.require("contacts:write")?;
    contacts.delete_group(ctx.scope(), id.into_inner(), &ctx.meta()).await?;
    Ok(envelope::no_content())
}

/// Members of a group, paged, with the contact filters, sorting and `q=`.
#[utoipa::path(get, path = "/v1/groups/{id}/contacts", tag = "groups",
    params(("filter" = Option<Vec<String>>, Query), ("sort" = Option<Vec<String>>, Query), ("q" = Option<String>, Query), ("skip" = Option<u64>, Query), ("limit" = Option<u64>, Query)),
    responses((status = 200, body = ListEnvelope<ContactDto>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_group_contacts(
    contacts: web::Data<Contacts>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
    q: ListQuery,
) -> AppResult<HttpResponse> {
    ctx.require("contacts:read")?;
    let page = contacts.list_contacts(ctx.scope(), ContactList::Group(id.into_inner()), &q).await?;
    Ok(envelope::list(page.map(ContactDto::from)))
}

/// Adds contacts by `contact_ids` or by `filter`; `contact_count` stays exact.
#[utoipa::path(post, path = "/v1/groups/{id}/contacts", tag = "groups", request_body = ContactTargetRequest,
    responses((status = 200, body = Envelope<MembershipChangeDto>), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn add_group_contacts(
    contacts: web::Data<Contacts>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
    body: Json<ContactTargetRequest>,
) -> AppResult<HttpResponse> {
    change_members(contacts, ctx, id.into_inner(), body.into_inner(), true).await
}

/// Removes contacts by `contact_ids` (or `filter`).
#[utoipa::path(delete, path = "/v1/groups/{id}/contacts", tag = "groups", request_body = ContactTargetRequest,
    responses((status = 200, body = Envelope<MembershipChangeDto>), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn remove_group_contacts(
    contacts: web::Data<Contacts>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
    body: Json<ContactTargetRequest>,
) -> AppResult<HttpResponse> {
    change_members(contacts, ctx, id.into_inner(), body.into_inner(), false).await
}

async fn change_members(
    contacts: web::Data<Contacts>,
    ctx: RequestCtx,
    id: Uuid,
    b: ContactTargetRequest,
    add: bool,
) -> AppResult<HttpResponse> {
    ctx.require("contacts:write")?;
    let target = b.target();
    let (changed, g) = contacts.change_members(ctx.scope(), id, target, add, &ctx.meta()).await?;
    Ok(envelope::ok(MembershipChangeDto { changed, group: g.into() }))
}

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/v1/groups").route(web::get().to(list_groups)).route(web::post().to(create_group)))
        .service(
            web::resource("/v1/groups/{id}")
                .route(web::get().to(get_group))
                .route(web::patch().to(update_group))
                .route(web::delete().to(delete_group)),
        )
        .service(
            web::resource("/v1/groups/{id}/contacts")
                .route(web::get().to(list_group_contacts))
                .route(web::post().to(add_group_contacts))
                .route(web::delete().to(remove_group_contacts)),
        );
}
