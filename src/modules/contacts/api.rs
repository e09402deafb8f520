//! Routes and DTOs of the contacts module: `/v1/contacts*`, `/v1/tags*`, `/v1/groups*`, `/v1/segments*`.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;
use validator::Validate;

use super::entity::{contact, group, segment, tag};
use super::filter::{self, CONTACT_FIELDS};
use super::service::{ContactInput, ContactPatch, ContactView, Target, opt_outs};
use super::store;
use crate::app::AppState;
use crate::http::ctx::RequestCtx;
use crate::http::envelope::{self, Envelope, ListEnvelope};
use crate::http::error::{AppError, AppResult, ErrorBody};
use crate::http::list::{Field, Kind, ListQuery};

type Patch<T> = Option<Option<T>>;

// ------------------------------------------------------------------ DTOs

#[derive(Debug, Serialize, ToSchema)]
pub struct TagRef {
    pub id: Uuid,
    pub name: String,
    pub color: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ContactDto {
    pub id: Uuid,
    pub account_id: Uuid,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub display_name: Option<String>,
    /// E.164
    pub phone: Option<String>,
    pub email: Option<String>,
    #[schema(value_type = Object)]
    pub channel_identities: Value,
    pub preferred_channel: Option<String>,
    pub language: Option<String>,
    pub timezone: Option<String>,
    #[schema(value_type = Object)]
    pub attributes: Value,
    pub tags: Vec<TagRef>,
    pub opted_out_channels: Vec<String>,
    pub last_inbound_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<ContactView> for ContactDto {
    fn from(v: ContactView) -> Self {
        let c = v.contact;
        ContactDto {
            opted_out_channels: opt_outs(&c),
            id: c.id,
            account_id: c.account_id,
            first_name: c.first_name,
            last_name: c.last_name,
            display_name: c.display_name,
            phone: c.phone,
            email: c.email,
            channel_identities: c.channel_identities,
            preferred_channel: c.preferred_channel,
            language: c.language,
            timezone: c.timezone,
            attributes: c.attributes,
            tags: v.tags.into_iter().map(|t| TagRef { id: t.id, name: t.name, color: t.color }).collect(),
            last_inbound_at: c.last_inbound_at,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// A new contact: at least one of phone, email or a channel identity. National phone numbers are read
/// with the account's `default_country_code`.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateContactRequest {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub display_name: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub channel_identities: Option<Value>,
    pub preferred_channel: Option<String>,
    pub language: Option<String>,
    pub timezone: Option<String>,
    /// Keys match `[a-z0-9_]+`.
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<Value>,
    pub opted_out_channels: Option<Vec<String>>,
    #[validate(length(max = 100))]
    pub tag_ids: Option<Vec<Uuid>>,
}

/// Fields present are applied; `null` clears. `attributes` and `channel_identities` replace the whole
/// object; `tag_ids` replaces the contact's tags.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateContactRequest {
    #[serde(default, deserialize_with = "crate::http::patch")]
    #[schema(value_type = Option<String>)]
    pub first_name: Patch<String>,
    #[serde(default, deserialize_with = "crate::http::patch")]
    #[schema(value_type = Option<String>)]
    pub last_name: Patch<String>,
    #[serde(default, deserialize_with = "crate::http::patch")]
    #[schema(value_type = Option<String>)]
    pub display_name: Patch<String>,
    #[serde(default, deserialize_with = "crate::http::patch")]
    #[schema(value_type = Option<String>)]
    pub phone: Patch<String>,
    #[serde(default, deserialize_with = "crate::http::patch")]
    #[schema(value_type = Option<String>)]
    pub email: Patch<String>,
    #[serde(default, deserialize_with = "crate::http::patch")]
    #[schema(value_type = Option<Object>)]
    pub channel_identities: Patch<Value>,
    #[serde(default, deserialize_with = "crate::http::patch")]
    #[schema(value_type = Option<String>)]
    pub preferred_channel: Patch<String>,
    #[serde(default, deserialize_with = "crate::http::patch")]
    #[schema(value_type = Option<String>)]
    pub language: Patch<String>,
    #[serde(default, deserialize_with = "crate::http::patch")]
    #[schema(value_type = Option<String>)]
    pub timezone: Patch<String>,
    #[serde(default, deserialize_with = "crate::http::patch")]
    #[schema(value_type = Option<Object>)]
    pub attributes: Patch<Value>,
    #[serde(default, deserialize_with = "crate::http::patch")]
    #[schema(value_type = Option<Vec<String>>)]
    pub opted_out_channels: Patch<Vec<String>>,
    #[serde(default, deserialize_with = "crate::http::patch")]
    #[schema(value_type = Option<Vec<Uuid>>)]
    pub tag_ids: Patch<Vec<Uuid>>,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagIdsRequest {
    #[validate(length(min = 1, max = 100))]
    pub tag_ids: Vec<Uuid>,
}

/// `contact_ids` or `filter` (a string or an array of strings in the list filter syntax), not both.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactTargetRequest {
    pub contact_ids: Option<Vec<Uuid>>,
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Value>,
}

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

fn not_blank(s: &str) -> Result<(), validator::ValidationError> {
    if s.trim().is_empty() {
        Err(validator::ValidationError::new("blank").with_message("must not be blank".into()))
    } else {
        Ok(())
    }
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTagRequest {
    #[validate(length(min = 1, max = 100), custom(function = "not_blank"))]
    pub name: String,
    /// `#rrggbb` (default `#6b7280`)
    #[validate(custom(function = "valid_color"))]
    pub color: Option<String>,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTagRequest {
    #[validate(length(min = 1, max = 100), custom(function = "not_blank"))]
    pub name: Option<String>,
    #[validate(custom(function = "valid_color"))]
    pub color: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CountDto {
    pub count: u64,
}

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
    #[validate(length(min = 1, max = 200), custom(function = "not_blank"))]
    pub name: String,
    #[validate(length(max = 2000))]
    pub description: Option<String>,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateGroupRequest {
    #[validate(length(min = 1, max = 200), custom(function = "not_blank"))]
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

#[derive(Debug, Serialize, ToSchema)]
pub struct TaggedDto {
    /// Contacts that gained (or lost) the tag with this request.
    pub changed: u64,
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
    #[validate(length(min = 1, max = 200), custom(function = "not_blank"))]
    pub name: String,
    #[validate(length(max = 2000))]
    pub description: Option<String>,
    /// `"attributes.program:eq:cohort-2"` or `["tags:in:<id>", "created_at:ge:2026-01-01"]`
    #[schema(value_type = Object)]
    pub filter: Value,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSegmentRequest {
    #[validate(length(min = 1, max = 200), custom(function = "not_blank"))]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "crate::http::patch")]
    #[schema(value_type = Option<String>)]
    pub description: Patch<String>,
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Value>,
}

pub const TAG_FIELDS: &[Field<tag::Column>] = &[
    Field::new("id", tag::Column::Id, Kind::Uuid),
    Field::sortable("name", tag::Column::Name, Kind::Text),
    Field::new("color", tag::Column::Color, Kind::Text),
    Field::sortable("created_at", tag::Column::CreatedAt, Kind::Timestamp),
    Field::sortable("updated_at", tag::Column::UpdatedAt, Kind::Timestamp),
];

pub const GROUP_FIELDS: &[Field<group::Column>] = &[
    Field::new("id", group::Column::Id, Kind::Uuid),
    Field::sortable("name", group::Column::Name, Kind::Text),
    Field::sortable("contact_count", group::Column::ContactCount, Kind::Int),
    Field::sortable("created_at", group::Column::CreatedAt, Kind::Timestamp),
    Field::sortable("updated_at", group::Column::UpdatedAt, Kind::Timestamp),
];

pub const SEGMENT_FIELDS: &[Field<segment::Column>] = &[
    Field::new("id", segment::Column::Id, Kind::Uuid),
    Field::sortable("name", segment::Column::Name, Kind::Text),
    Field::sortable("created_at", segment::Column::CreatedAt, Kind::Timestamp),
    Field::sortable("updated_at", segment::Column::UpdatedAt, Kind::Timestamp),
];

// ------------------------------------------------------------------ contacts

/// Lists `select` (already scoped) with the caller's filters, `q=` search, sorting and paging.
async fn contact_page(
    state: &AppState,
    scope: crate::http::ctx::AccountScope,
    select: sea_orm::Select<contact::Entity>,
    q: &ListQuery,
) -> AppResult<HttpResponse> {
    use sea_orm::QueryFilter;
    let mut select = select.filter(state.contacts.compile(&q.filters)?);
    if let Some((_, text)) = q.extra.iter().find(|(k, _)| k == "q")
        && let Some(cond) = filter::search(text)
    {
        select = select.filter(cond);
    }
    let select = q.sort(select, CONTACT_FIELDS, contact::Column::Id, contact::Column::CreatedAt)?;
    let page = q.fetch(&state.db, select).await?;
    let views = state.contacts.views(scope, page.items).await?;
    let page = crate::http::envelope::Page { items: views, total: page.total, skip: page.skip, limit: page.limit };
    Ok(envelope::list(page.map(ContactDto::from)))
}

/// Contacts of the active account. Filters: every scalar field, `attributes.<key>` (typed),
/// `channel_identities.<type>`, `tags`, `group_id`, `opted_out_channels`, `created_at`, `updated_at`,
/// `last_inbound_at`; `q=` searches names, phone and e-mail.
#[utoipa::path(get, path = "/v1/contacts", tag = "contacts",
    params(("filter" = Option<Vec<String>>, Query), ("sort" = Option<Vec<String>>, Query), ("q" = Option<String>, Query), ("skip" = Option<u64>, Query), ("limit" = Option<u64>, Query)),
    responses((status = 200, body = ListEnvelope<ContactDto>), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_contacts(state: web::Data<AppState>, ctx: RequestCtx, q: ListQuery) -> AppResult<HttpResponse> {
    ctx.require("contacts:read")?;
    contact_page(&state, ctx.scope(), store::contacts_in(ctx.scope()), &q).await
}

#[utoipa::path(post, path = "/v1/contacts", tag = "contacts", request_body = CreateContactRequest,
    responses((status = 201, body = Envelope<ContactDto>), (status = 409, body = ErrorBody, description = "phone, e-mail or channel identity taken; details.existing_id names the contact"), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_contact(
    state: web::Data<AppState>,
    ctx: RequestCtx,
    body: web::Json<CreateContactRequest>,
) -> AppResult<HttpResponse> {
    ctx.require("contacts:write")?;
    body.validate()?;
    let b = body.into_inner();
    let input = ContactInput {
        first_name: b.first_name,
        last_name: b.last_name,
        display_name: b.display_name,
        phone: b.phone,
        email: b.email,
        channel_identities: b.channel_identities,
        preferred_channel: b.preferred_channel,
        language: b.language,
        timezone: b.timezone,
        attributes: b.attributes,
        opted_out_channels: b.opted_out_channels,
    };
    let view = state.contacts.create_contact(ctx.scope(), input, &b.tag_ids.unwrap_or_default(), &ctx.meta()).await?;
    Ok(envelope::created(ContactDto::from(view)))
}

#[utoipa::path(get, path = "/v1/contacts/{id}", tag = "contacts", responses((status = 200, body = Envelope<ContactDto>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_contact(state: web::Data<AppState>, ctx: RequestCtx, id: web::Path<Uuid>) -> AppResult<HttpResponse> {
    ctx.require("contacts:read")?;
    let c = state.contacts.get_contact(ctx.scope(), id.into_inner()).await?;
    Ok(envelope::ok(ContactDto::from(state.contacts.view(ctx.scope(), c).await?)))
}

#[utoipa::path(patch, path = "/v1/contacts/{id}", tag = "contacts", request_body = UpdateContactRequest,
    responses((status = 200, body = Envelope<ContactDto>), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_contact(
    state: web::Data<AppState>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
    body: web::Json<UpdateContactRequest>,
) -> AppResult<HttpResponse> {
    ctx.require("contacts:write")?;
    let b = body.into_inner();
    if let Some(Some(ids)) = &b.tag_ids
        && ids.len() > 100
    {
        return Err(AppError::field("tag_ids", "at most 100 tags"));
    }
    let patch = ContactPatch {
        first_name: b.first_name,
        last_name: b.last_name,
        display_name: b.display_name,
        phone: b.phone,
        email: b.email,
        channel_identities: b.channel_identities,
        preferred_channel: b.preferred_channel,
        language: b.language,
        timezone: b.timezone,
        attributes: b.attributes,
        opted_out_channels: b.opted_out_channels,
        tag_ids: b.tag_ids,
    };
    let view = state.contacts.update_contact(ctx.scope(), id.into_inner(), patch, &ctx.meta()).await?;
    Ok(envelope::ok(ContactDto::from(view)))
}

#[utoipa::path(delete, path = "/v1/contacts/{id}", tag = "contacts", responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_contact(
    state: web::Data<AppState>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    ctx.require("contacts:write")?;
    state.contacts.delete_contact(ctx.scope(), id.into_inner(), &ctx.meta()).await?;
    Ok(envelope::no_content())
}

/// Adds tags to a contact (tags it already has are kept).
#[utoipa::path(post, path = "/v1/contacts/{id}/tags", tag = "contacts", request_body = TagIdsRequest,
    responses((status = 200, body = Envelope<ContactDto>), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn add_contact_tags(
    state: web::Data<AppState>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
    body: web::Json<TagIdsRequest>,
) -> AppResult<HttpResponse> {
    ctx.require("contacts:write")?;
    body.validate()?;
    let view = state.contacts.add_tags(ctx.scope(), id.into_inner(), &body.tag_ids, &ctx.meta()).await?;
    Ok(envelope::ok(ContactDto::from(view)))
}

#[utoipa::path(delete, path = "/v1/contacts/{id}/tags/{tag_id}", tag = "contacts", responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn remove_contact_tag(
    state: web::Data<AppState>,
    ctx: RequestCtx,
    path: web::Path<(Uuid, Uuid)>,
) -> AppResult<HttpResponse> {
    ctx.require("contacts:write")?;
    let (id, tag_id) = path.into_inner();
    state.contacts.remove_tag(ctx.scope(), id, tag_id, &ctx.meta()).await?;
    Ok(envelope::no_content())
}

// ------------------------------------------------------------------ tags

#[utoipa::path(get, path = "/v1/tags", tag = "tags", params(("filter" = Option<Vec<String>>, Query), ("sort" = Option<Vec<String>>, Query), ("skip" = Option<u64>, Query), ("limit" = Option<u64>, Query)),
    responses((status = 200, body = ListEnvelope<TagDto>), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_tags(state: web::Data<AppState>, ctx: RequestCtx, q: ListQuery) -> AppResult<HttpResponse> {
    ctx.require("contacts:read")?;
    let select = q.apply(store::tags_in(ctx.scope()), TAG_FIELDS, tag::Column::Id, tag::Column::CreatedAt)?;
    Ok(envelope::list(q.fetch(&state.db, select).await?.map(TagDto::from)))
}

#[utoipa::path(post, path = "/v1/tags", tag = "tags", request_body = CreateTagRequest,
    responses((status = 201, body = Envelope<TagDto>), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_tag(
    state: web::Data<AppState>,
    ctx: RequestCtx,
    body: web::Json<CreateTagRequest>,
) -> AppResult<HttpResponse> {
    ctx.require("contacts:write")?;
    body.validate()?;
    let t = state.contacts.create_tag(ctx.scope(), &body.name, body.color.as_deref()).await?;
    Ok(envelope::created(TagDto::from(t)))
}

#[utoipa::path(get, path = "/v1/tags/{id}", tag = "tags", responses((status = 200, body = Envelope<TagDto>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_tag(state: web::Data<AppState>, ctx: RequestCtx, id: web::Path<Uuid>) -> AppResult<HttpResponse> {
    ctx.require("contacts:read")?;
    Ok(envelope::ok(TagDto::from(state.contacts.get_tag(ctx.scope(), id.into_inner()).await?)))
}

#[utoipa::path(patch, path = "/v1/tags/{id}", tag = "tags", request_body = UpdateTagRequest,
    responses((status = 200, body = Envelope<TagDto>), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_tag(
    state: web::Data<AppState>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
    body: web::Json<UpdateTagRequest>,
) -> AppResult<HttpResponse> {
    ctx.require("contacts:write")?;
    body.validate()?;
    let b = body.into_inner();
    Ok(envelope::ok(TagDto::from(state.contacts.update_tag(ctx.scope(), id.into_inner(), b.name, b.color).await?)))
}

#[utoipa::path(delete, path = "/v1/tags/{id}", tag = "tags", responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_tag(state: web::Data<AppState>, ctx: RequestCtx, id: web::Path<Uuid>) -> AppResult<HttpResponse> {
    ctx.require("contacts:write")?;
    state.contacts.delete_tag(ctx.scope(), id.into_inner()).await?;
    Ok(envelope::no_content())
}

/// Bulk tagging: tags every contact named by `contact_ids` or matching `filter`.
#[utoipa::path(post, path = "/v1/tags/{id}/contacts", tag = "tags", request_body = ContactTargetRequest,
    responses((status = 200, body = Envelope<TaggedDto>), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn tag_contacts(
    state: web::Data<AppState>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
    body: web::Json<ContactTargetRequest>,
) -> AppResult<HttpResponse> {
    bulk_tag(state, ctx, id.into_inner(), body.into_inner(), true).await
}

/// Bulk untagging by `contact_ids` or `filter`.
#[utoipa::path(delete, path = "/v1/tags/{id}/contacts", tag = "tags", request_body = ContactTargetRequest,
    responses((status = 200, body = Envelope<TaggedDto>), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn untag_contacts(
    state: web::Data<AppState>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
    body: web::Json<ContactTargetRequest>,
) -> AppResult<HttpResponse> {
    bulk_tag(state, ctx, id.into_inner(), body.into_inner(), false).await
}

async fn bulk_tag(
    state: web::Data<AppState>,
    ctx: RequestCtx,
    id: Uuid,
    b: ContactTargetRequest,
    add: bool,
) -> AppResult<HttpResponse> {
    ctx.require("contacts:write")?;
    let target = Target { contact_ids: b.contact_ids.as_deref(), filter: b.filter.as_ref() };
    let changed = state.contacts.tag_contacts(ctx.scope(), id, target, add, &ctx.meta()).await?;
    Ok(envelope::ok(TaggedDto { changed }))
}

// ------------------------------------------------------------------ groups

#[utoipa::path(get, path = "/v1/groups", tag = "groups", params(("filter" = Option<Vec<String>>, Query), ("sort" = Option<Vec<String>>, Query), ("skip" = Option<u64>, Query), ("limit" = Option<u64>, Query)),
    responses((status = 200, body = ListEnvelope<GroupDto>), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_groups(state: web::Data<AppState>, ctx: RequestCtx, q: ListQuery) -> AppResult<HttpResponse> {
    ctx.require("contacts:read")?;
    let select = q.apply(store::groups_in(ctx.scope()), GROUP_FIELDS, group::Column::Id, group::Column::CreatedAt)?;
    Ok(envelope::list(q.fetch(&state.db, select).await?.map(GroupDto::from)))
}

#[utoipa::path(post, path = "/v1/groups", tag = "groups", request_body = CreateGroupRequest,
    responses((status = 201, body = Envelope<GroupDto>), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_group(
    state: web::Data<AppState>,
    ctx: RequestCtx,
    body: web::Json<CreateGroupRequest>,
) -> AppResult<HttpResponse> {
    ctx.require("contacts:write")?;
    body.validate()?;
    let g = state.contacts.create_group(ctx.scope(), &body.name, body.description.clone(), &ctx.meta()).await?;
    Ok(envelope::created(GroupDto::from(g)))
}

#[utoipa::path(get, path = "/v1/groups/{id}", tag = "groups", responses((status = 200, body = Envelope<GroupDto>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_group(state: web::Data<AppState>, ctx: RequestCtx, id: web::Path<Uuid>) -> AppResult<HttpResponse> {
    ctx.require("contacts:read")?;
    Ok(envelope::ok(GroupDto::from(state.contacts.get_group(ctx.scope(), id.into_inner()).await?)))
}

#[utoipa::path(patch, path = "/v1/groups/{id}", tag = "groups", request_body = UpdateGroupRequest,
    responses((status = 200, body = Envelope<GroupDto>), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_group(
    state: web::Data<AppState>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
    body: web::Json<UpdateGroupRequest>,
) -> AppResult<HttpResponse> {
    ctx.require("contacts:write")?;
    body.validate()?;
    let b = body.into_inner();
    if let Some(Some(d)) = &b.description
        && d.len() > 2000
    {
        return Err(AppError::field("description", "must be at most 2000 characters"));
    }
    let g = state.contacts.update_group(ctx.scope(), id.into_inner(), b.name, b.description, &ctx.meta()).await?;
    Ok(envelope::ok(GroupDto::from(g)))
}

#[utoipa::path(delete, path = "/v1/groups/{id}", tag = "groups", responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_group(state: web::Data<AppState>, ctx: RequestCtx, id: web::Path<Uuid>) -> AppResult<HttpResponse> {
    ctx.require("contacts:write")?;
    state.contacts.delete_group(ctx.scope(), id.into_inner(), &ctx.meta()).await?;
    Ok(envelope::no_content())
}

/// Members of a group, paged, with the contact filters, sorting and `q=`.
#[utoipa::path(get, path = "/v1/groups/{id}/contacts", tag = "groups",
    params(("filter" = Option<Vec<String>>, Query), ("sort" = Option<Vec<String>>, Query), ("q" = Option<String>, Query), ("skip" = Option<u64>, Query), ("limit" = Option<u64>, Query)),
    responses((status = 200, body = ListEnvelope<ContactDto>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_group_contacts(
    state: web::Data<AppState>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
    q: ListQuery,
) -> AppResult<HttpResponse> {
    ctx.require("contacts:read")?;
    let g = state.contacts.get_group(ctx.scope(), id.into_inner()).await?;
    contact_page(&state, ctx.scope(), store::group_contacts(ctx.scope(), g.id), &q).await
}

/// Adds contacts by `contact_ids` or by `filter`; `contact_count` stays exact.
#[utoipa::path(post, path = "/v1/groups/{id}/contacts", tag = "groups", request_body = ContactTargetRequest,
    responses((status = 200, body = Envelope<MembershipChangeDto>), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn add_group_contacts(
    state: web::Data<AppState>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
    body: web::Json<ContactTargetRequest>,
) -> AppResult<HttpResponse> {
    change_members(state, ctx, id.into_inner(), body.into_inner(), true).await
}

/// Removes contacts by `contact_ids` (or `filter`).
#[utoipa::path(delete, path = "/v1/groups/{id}/contacts", tag = "groups", request_body = ContactTargetRequest,
    responses((status = 200, body = Envelope<MembershipChangeDto>), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn remove_group_contacts(
    state: web::Data<AppState>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
    body: web::Json<ContactTargetRequest>,
) -> AppResult<HttpResponse> {
    change_members(state, ctx, id.into_inner(), body.into_inner(), false).await
}

async fn change_members(
    state: web::Data<AppState>,
    ctx: RequestCtx,
    id: Uuid,
    b: ContactTargetRequest,
    add: bool,
) -> AppResult<HttpResponse> {
    ctx.require("contacts:write")?;
    let target = Target { contact_ids: b.contact_ids.as_deref(), filter: b.filter.as_ref() };
    let (changed, g) = state.contacts.change_members(ctx.scope(), id, target, add, &ctx.meta()).await?;
    Ok(envelope::ok(MembershipChangeDto { changed, group: g.into() }))
}

// ------------------------------------------------------------------ segments

#[utoipa::path(get, path = "/v1/segments", tag = "segments", params(("filter" = Option<Vec<String>>, Query), ("sort" = Option<Vec<String>>, Query), ("skip" = Option<u64>, Query), ("limit" = Option<u64>, Query)),
    responses((status = 200, body = ListEnvelope<SegmentDto>), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_segments(state: web::Data<AppState>, ctx: RequestCtx, q: ListQuery) -> AppResult<HttpResponse> {
    ctx.require("contacts:read")?;
    let select =
        q.apply(store::segments_in(ctx.scope()), SEGMENT_FIELDS, segment::Column::Id, segment::Column::CreatedAt)?;
    Ok(envelope::list(q.fetch(&state.db, select).await?.map(SegmentDto::from)))
}

/// A saved dynamic audience. The filter is validated now (422), so using it later cannot fail.
#[utoipa::path(post, path = "/v1/segments", tag = "segments", request_body = CreateSegmentRequest,
    responses((status = 201, body = Envelope<SegmentDto>), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_segment(
    state: web::Data<AppState>,
    ctx: RequestCtx,
    body: web::Json<CreateSegmentRequest>,
) -> AppResult<HttpResponse> {
    ctx.require("contacts:write")?;
    body.validate()?;
    let s = state.contacts.create_segment(ctx.scope(), &body.name, body.description.clone(), &body.filter).await?;
    Ok(envelope::created(SegmentDto::from(s)))
}

#[utoipa::path(get, path = "/v1/segments/{id}", tag = "segments", responses((status = 200, body = Envelope<SegmentDto>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_segment(state: web::Data<AppState>, ctx: RequestCtx, id: web::Path<Uuid>) -> AppResult<HttpResponse> {
    ctx.require("contacts:read")?;
    Ok(envelope::ok(SegmentDto::from(state.contacts.get_segment(ctx.scope(), id.into_inner()).await?)))
}

#[utoipa::path(patch, path = "/v1/segments/{id}", tag = "segments", request_body = UpdateSegmentRequest,
    responses((status = 200, body = Envelope<SegmentDto>), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_segment(
    state: web::Data<AppState>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
    body: web::Json<UpdateSegmentRequest>,
) -> AppResult<HttpResponse> {
    ctx.require("contacts:write")?;
    body.validate()?;
    let b = body.into_inner();
    let s = state.contacts.update_segment(ctx.scope(), id.into_inner(), b.name, b.description, b.filter).await?;
    Ok(envelope::ok(SegmentDto::from(s)))
}

#[utoipa::path(delete, path = "/v1/segments/{id}", tag = "segments", responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_segment(
    state: web::Data<AppState>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    ctx.require("contacts:write")?;
    state.contacts.delete_segment(ctx.scope(), id.into_inner()).await?;
    Ok(envelope::no_content())
}

/// Evaluates the segment now (extra query filters narrow it further).
#[utoipa::path(get, path = "/v1/segments/{id}/contacts", tag = "segments",
    params(("filter" = Option<Vec<String>>, Query), ("sort" = Option<Vec<String>>, Query), ("q" = Option<String>, Query), ("skip" = Option<u64>, Query), ("limit" = Option<u64>, Query)),
    responses((status = 200, body = ListEnvelope<ContactDto>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_segment_contacts(
    state: web::Data<AppState>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
    q: ListQuery,
) -> AppResult<HttpResponse> {
    use sea_orm::QueryFilter;
    ctx.require("contacts:read")?;
    let s = state.contacts.get_segment(ctx.scope(), id.into_inner()).await?;
    let cond = state.contacts.segment_condition(&s)?;
    contact_page(&state, ctx.scope(), store::contacts_in(ctx.scope()).filter(cond), &q).await
}

#[utoipa::path(get, path = "/v1/segments/{id}/count", tag = "segments", responses((status = 200, body = Envelope<CountDto>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn count_segment(
    state: web::Data<AppState>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    ctx.require("contacts:read")?;
    let count = state.contacts.count_segment(ctx.scope(), id.into_inner()).await?;
    Ok(envelope::ok(CountDto { count }))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    // Literal paths first: `/v1/contacts/export` must not be read as a contact id.
    cfg.service(
        web::resource("/v1/contacts").route(web::get().to(list_contacts)).route(web::post().to(create_contact)),
    )
    .configure(super::import::configure)
    .route("/v1/contacts/export", web::get().to(super::export::export_contacts))
    .service(
        web::resource("/v1/contacts/{id}")
            .route(web::get().to(get_contact))
            .route(web::patch().to(update_contact))
            .route(web::delete().to(delete_contact)),
    )
    .route("/v1/contacts/{id}/tags", web::post().to(add_contact_tags))
    .route("/v1/contacts/{id}/tags/{tag_id}", web::delete().to(remove_contact_tag))
    .service(web::resource("/v1/tags").route(web::get().to(list_tags)).route(web::post().to(create_tag)))
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
    )
    .service(web::resource("/v1/groups").route(web::get().to(list_groups)).route(web::post().to(create_group)))
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
    )
    .service(web::resource("/v1/segments").route(web::get().to(list_segments)).route(web::post().to(create_segment)))
    .service(
        web::resource("/v1/segments/{id}")
            .route(web::get().to(get_segment))
            .route(web::patch().to(update_segment))
            .route(web::delete().to(delete_segment)),
    )
    .route("/v1/segments/{id}/contacts", web::get().to(list_segment_contacts))
    .route("/v1/segments/{id}/count", web::get().to(count_segment));
}
