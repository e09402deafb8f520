//! `/v1/messages*` and `GET /v1/contacts/{id}/messages`: single sends and the message history.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::db::list::ListQuery;
use crate::error::{AppResult, ErrorBody};
use crate::http::Json;
use crate::http::envelope::{self, CursorEnvelope, Envelope};
use crate::modules::accounts::RequestCtx;
use crate::modules::messaging::entity::message;
use crate::modules::messaging::messages::{NewMessage, Sent};
use crate::modules::messaging::service::Messaging;

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MessageDto {
    pub id: Uuid,
    pub account_id: Uuid,
    pub channel_id: Uuid,
    pub channel_type: String,
    pub contact_id: Option<Uuid>,
    pub sent_by_user_id: Option<Uuid>,
    pub group_message_id: Option<Uuid>,
    pub scheduled_message_id: Option<Uuid>,
    pub template_id: Option<Uuid>,
    /// `outbound`, `inbound` or `system`.
    pub direction: String,
    /// `queued sending sent delivered failed permanently_failed cancelled`.
    pub status: String,
    pub delivery_address: String,
    pub message_body: String,
    pub original_template: Option<String>,
    #[schema(value_type = Vec<Object>)]
    pub attachments: Value,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub sent_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub read_at: Option<DateTime<Utc>>,
    pub failed_at: Option<DateTime<Utc>>,
    pub attempts: i32,
    pub provider_message_id: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: Value,
    #[schema(value_type = Option<Object>)]
    pub error_details: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<message::Model> for MessageDto {
    fn from(m: message::Model) -> Self {
        MessageDto {
            id: m.id,
            account_id: m.account_id,
            channel_id: m.channel_id,
            channel_type: m.channel_type.as_str().to_string(),
            contact_id: m.contact_id,
            sent_by_user_id: m.sent_by_user_id,
            group_message_id: m.group_message_id,
            scheduled_message_id: m.scheduled_message_id,
            template_id: m.template_id,
            direction: m.direction.as_str().to_string(),
            status: m.status.as_str().to_string(),
            delivery_address: m.delivery_address,
            message_body: m.message_body,
            original_template: m.original_template,
            attachments: m.attachments,
            scheduled_at: m.scheduled_at,
            sent_at: m.sent_at,
            delivered_at: m.delivered_at,
            read_at: m.read_at,
            failed_at: m.failed_at,
            attempts: m.attempts,
            provider_message_id: m.provider_message_id,
            metadata: m.metadata,
            error_details: m.error_details,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// `PATCH`: cancel a queued message and/or replace its metadata.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMessageRequest {
    /// Only `cancelled` (of a `queued` message).
    pub status: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
}

/// Sends one message: 201 `queued`; delivery happens asynchronously. With `Idempotency-Key`, a repeat of
/// the same request within 24 h answers the first answer again and creates nothing.
#[utoipa::path(post, path = "/v1/messages", tag = "messages", request_body = NewMessage,
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 255 characters")),
    responses((status = 201, body = Envelope<MessageDto>), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn send_message(
    messaging: web::Data<Messaging>,
    ctx: RequestCtx,
    req: HttpRequest,
    body: Json<NewMessage>,
) -> AppResult<HttpResponse> {
    ctx.require("messages:send")?;
    let key = match req.headers().get(IDEMPOTENCY_KEY) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| crate::error::AppError::bad_request("Idempotency-Key must be visible ASCII"))?
                .to_string(),
        ),
    };
    let answer = |m: &message::Model| json!({ "success": true, "data": MessageDto::from(m.clone()), "message": null });
    let sent =
        messaging.send_message(ctx.scope(), &ctx.user, body.into_inner(), key.as_deref(), &ctx.meta(), answer).await?;
    Ok(match sent {
        Sent::Created(m) => envelope::created(MessageDto::from(*m)),
        Sent::Replayed { status, body } => {
            HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::CREATED))
                .insert_header(("idempotent-replayed", "true"))
                .json(body)
        }
    })
}

/// The account's messages. Filters: status, direction, channel_id, channel_type, contact_id,
/// group_message_id, scheduled_message_id, template_id, sent_by_user_id, delivery_address, scheduled_at,
/// sent_at, delivered_at, created_at, updated_at. Sorts: created_at, sent_at, delivered_at, status.
/// `cursor=` (from `meta.next_cursor`) pages through the history by `created_at` at constant cost.
/// `meta.total` is exact up to 1,000 matches (beyond, 1,001 with `meta.total_is_lower_bound`);
/// `count=exact` counts them all (a cost that grows with the history).
#[utoipa::path(get, path = "/v1/messages", tag = "messages",
    params(("filter" = Option<Vec<String>>, Query), ("sort" = Option<Vec<String>>, Query), ("cursor" = Option<String>, Query), ("count" = Option<String>, Query, description = "`exact`: count every match"), ("skip" = Option<u64>, Query), ("limit" = Option<u64>, Query)),
    responses((status = 200, body = CursorEnvelope<MessageDto>), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_messages(messaging: web::Data<Messaging>, ctx: RequestCtx, q: ListQuery) -> AppResult<HttpResponse> {
    ctx.require("messages:read")?;
    let p = messaging.list_messages(ctx.scope(), None, &q).await?;
    Ok(envelope::cursor_list(p.page.map(MessageDto::from), p.next_cursor, p.total_is_lower_bound))
}

/// A contact's conversation: messages both ways, newest first (the same filters and cursor).
#[utoipa::path(get, path = "/v1/contacts/{id}/messages", tag = "messages",
    params(("filter" = Option<Vec<String>>, Query), ("cursor" = Option<String>, Query), ("count" = Option<String>, Query, description = "`exact`: count every match"), ("skip" = Option<u64>, Query), ("limit" = Option<u64>, Query)),
    responses((status = 200, body = CursorEnvelope<MessageDto>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn contact_messages(
    messaging: web::Data<Messaging>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
    q: ListQuery,
) -> AppResult<HttpResponse> {
    ctx.require("messages:read")?;
    let p = messaging.list_messages(ctx.scope(), Some(id.into_inner()), &q).await?;
    Ok(envelope::cursor_list(p.page.map(MessageDto::from), p.next_cursor, p.total_is_lower_bound))
}

#[utoipa::path(get, path = "/v1/messages/{id}", tag = "messages",
    responses((status = 200, body = Envelope<MessageDto>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_message(
    messaging: web::Data<Messaging>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    ctx.require("messages:read")?;
    Ok(envelope::ok(MessageDto::from(messaging.get_message(ctx.scope(), id.into_inner()).await?)))
}

#[utoipa::path(patch, path = "/v1/messages/{id}", tag = "messages", request_body = UpdateMessageRequest,
    responses((status = 200, body = Envelope<MessageDto>), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_message(
    messaging: web::Data<Messaging>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
    body: Json<UpdateMessageRequest>,
) -> AppResult<HttpResponse> {
    ctx.require("messages:send")?;
    let b = body.into_inner();
    let m =
        messaging.update_message(ctx.scope(), id.into_inner(), b.status.as_deref(), b.metadata, &ctx.meta()).await?;
    Ok(envelope::ok(MessageDto::from(m)))
}

/// Deletes a message record that is final (sent, delivered, permanently failed, cancelled, inbound).
#[utoipa::path(delete, path = "/v1/messages/{id}", tag = "messages",
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_message(
    messaging: web::Data<Messaging>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    ctx.require("messages:send")?;
    messaging.delete_message(ctx.scope(), id.into_inner(), &ctx.meta()).await?;
    Ok(envelope::no_content())
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/v1/messages").route(web::get().to(list_messages)).route(web::post().to(send_message)))
        .service(
            web::resource("/v1/messages/{id}")
                .route(web::get().to(get_message))
                .route(web::patch().to(update_message))
                .route(web::delete().to(delete_message)),
        )
        .service(web::resource("/v1/contacts/{id}/messages").route(web::get().to(contact_messages)));
}
