//! `/v1/contacts` and `/v1/contacts/{id}*`: contacts and their tags.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;
use validator::Validate;

use super::Patch;
use crate::db::list::ListQuery;
use crate::error::{AppError, AppResult, ErrorBody};
use crate::http::Json;
use crate::http::envelope::{self, Envelope, ListEnvelope};
use crate::modules::accounts::RequestCtx;
use crate::modules::contacts::service::{ContactInput, ContactList, ContactPatch, ContactView, Contacts, opt_outs};

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
    #[schema(max_items = 100)]
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
    #[schema(min_items = 1, max_items = 100)]
    pub tag_ids: Vec<Uuid>,
}

/// Contacts of the active account. Filters: every scalar field, `attributes.<key>` (typed),
/// `channel_identities.<type>`, `tags`, `group_id`, `opted_out_channels`, `created_at`, `updated_at`,
/// `last_inbound_at`; `q=` searches names, phone and e-mail.
#[utoipa::path(get, path = "/v1/contacts", tag = "contacts",
    params(("filter" = Option<Vec<String>>, Query), ("sort" = Option<Vec<String>>, Query), ("q" = Option<String>, Query), ("skip" = Option<u64>, Query), ("limit" = Option<u64>, Query)),
    responses((status = 200, body = ListEnvelope<ContactDto>), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_contacts(contacts: web::Data<Contacts>, ctx: RequestCtx, q: ListQuery) -> AppResult<HttpResponse> {
    ctx.require("contacts:read")?;
    let page = contacts.list_contacts(ctx.scope(), ContactList::All, &q).await?;
    Ok(envelope::list(page.map(ContactDto::from)))
}

#[utoipa::path(post, path = "/v1/contacts", tag = "contacts", request_body = CreateContactRequest,
    responses((status = 201, body = Envelope<ContactDto>), (status = 409, body = ErrorBody, description = "phone, e-mail or channel identity taken; details.existing_id names the contact"), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_contact(
    contacts: web::Data<Contacts>,
    ctx: RequestCtx,
    body: Json<CreateContactRequest>,
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
    let view = contacts.create_contact(ctx.scope(), input, &b.tag_ids.unwrap_or_default(), &ctx.meta()).await?;
    Ok(envelope::created(ContactDto::from(view)))
}

#[utoipa::path(get, path = "/v1/contacts/{id}", tag = "contacts", responses((status = 200, body = Envelope<ContactDto>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_contact(
    contacts: web::Data<Contacts>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    ctx.require("contacts:read")?;
    let c = contacts.get_contact(ctx.scope(), id.into_inner()).await?;
    Ok(envelope::ok(ContactDto::from(contacts.view(ctx.scope(), c).await?)))
}

#[utoipa::path(patch, path = "/v1/contacts/{id}", tag = "contacts", request_body = UpdateContactRequest,
    responses((status = 200, body = Envelope<ContactDto>), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_contact(
    contacts: web::Data<Contacts>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
    body: Json<UpdateContactRequest>,
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
    let view = contacts.update_contact(ctx.scope(), id.into_inner(), patch, &ctx.meta()).await?;
    Ok(envelope::ok(ContactDto::from(view)))
}

#[utoipa::path(delete, path = "/v1/contacts/{id}", tag = "contacts", responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_contact(
    contacts: web::Data<Contacts>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    ctx.require("contacts:write")?;
    contacts.delete_contact(ctx.scope(), id.into_inner(), &ctx.meta()).await?;
    Ok(envelope::no_content())
}

/// Adds tags to a contact (tags it already has are kept).
#[utoipa::path(post, path = "/v1/contacts/{id}/tags", tag = "contacts", request_body = TagIdsRequest,
    responses((status = 200, body = Envelope<ContactDto>), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn add_contact_tags(
    contacts: web::Data<Contacts>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
    body: Json<TagIdsRequest>,
) -> AppResult<HttpResponse> {
    ctx.require("contacts:write")?;
    body.validate()?;
    let view = contacts.add_tags(ctx.scope(), id.into_inner(), &body.tag_ids, &ctx.meta()).await?;
    Ok(envelope::ok(ContactDto::from(view)))
}

#[utoipa::path(delete, path = "/v1/contacts/{id}/tags/{tag_id}", tag = "contacts", responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn remove_contact_tag(
    contacts: web::Data<Contacts>,
    ctx: RequestCtx,
    path: web::Path<(Uuid, Uuid)>,
) -> AppResult<HttpResponse> {
    ctx.require("contacts:write")?;
    let (id, tag_id) = path.into_inner();
    contacts.remove_tag(ctx.scope(), id, tag_id, &ctx.meta()).await?;
    Ok(envelope::no_content())
}

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/v1/contacts/{id}")
            .route(web::get().to(get_contact))
            .route(web::patch().to(update_contact))
            .route(web::delete().to(delete_contact)),
    )
    .service(web::resource("/v1/contacts/{id}/tags").route(web::post().to(add_contact_tags)))
    .service(web::resource("/v1/contacts/{id}/tags/{tag_id}").route(web::delete().to(remove_contact_tag)));
}
