//! `/v1/group-messages*`: group sends, their live counters (also as Server-Sent Events), their skipped
//! contacts and previews.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::db::list::ListQuery;
use crate::error::{AppError, AppResult, ErrorBody};
use crate::http::Json;
use crate::http::envelope::{self, Envelope, ListEnvelope};
use crate::modules::accounts::{AccountScope, RequestCtx, StreamCtx};
use crate::modules::messaging::entity::group_message::{self, GroupStatus};
use crate::modules::messaging::entity::group_message_skip;
use crate::modules::messaging::groups::{GroupPreview, NewGroupMessage};
use crate::modules::messaging::service::Messaging;

/// How often a progress stream looks at the counters (so at most this many events a second).
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// A comment line this often keeps proxies from closing a quiet stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct GroupCounters {
    pub total_recipients: i32,
    /// queued, sending, or failed awaiting a retry.
    pub pending_count: i32,
    /// sent or delivered.
    pub sent_count: i32,
    pub delivered_count: i32,
    /// permanently failed.
    pub failed_count: i32,
    pub cancelled_count: i32,
    pub skipped_count: i32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GroupMessageDto {
    pub id: Uuid,
    pub account_id: Uuid,
    pub name: String,
    pub channel_id: Option<Uuid>,
    /// `fixed` or `preferred`.
    pub channel_strategy: String,
    pub template_id: Uuid,
    pub message_body: Option<String>,
    #[schema(value_type = Object)]
    pub custom_values: Value,
    pub contact_group_ids: Vec<Uuid>,
    pub segment_ids: Vec<Uuid>,
    pub contact_ids: Vec<Uuid>,
    pub exclude_contact_ids: Vec<Uuid>,
    /// `draft`, `queued`, `processing`, `completed`, `partially_failed`, `failed` or `cancelled`.
    pub status: String,
    pub counters: GroupCounters,
    /// Every recipient has its message or its skip.
    pub fanout_done: bool,
    pub scheduled_at: Option<DateTime<Utc>>,
    /// A recipient-time-zone schedule's wall time (`2026-12-01T09:00:00`): each message is due then in
    /// its contact's zone.
    pub local_send_time: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub scheduled_message_id: Option<Uuid>,
    /// Why the send stopped, when it could not be made.
    pub last_error: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: Value,
    pub created_by_user_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn counters(g: &group_message::Model) -> GroupCounters {
    GroupCounters {
        total_recipients: g.total_recipients,
        pending_count: g.pending_count,
        sent_count: g.sent_count,
        delivered_count: g.delivered_count,
        failed_count: g.failed_count,
        cancelled_count: g.cancelled_count,
        skipped_count: g.skipped_count,
    }
}

impl From<group_message::Model> for GroupMessageDto {
    fn from(g: group_message::Model) -> Self {
        let ids = |v: &Value| super::super::fanout::ids(v);
        GroupMessageDto {
            counters: counters(&g),
            contact_group_ids: ids(&g.contact_group_ids),
            segment_ids: ids(&g.segment_ids),
            contact_ids: ids(&g.contact_ids),
            exclude_contact_ids: ids(&g.exclude_contact_ids),
            id: g.id,
            account_id: g.account_id,
            name: g.name,
            channel_id: g.channel_id,
            channel_strategy: g.channel_strategy.as_str().into(),
            template_id: g.template_id,
            message_body: g.message_body,
            custom_values: g.custom_values,
            status: g.status.as_str().into(),
            fanout_done: g.fanout_done,
            scheduled_at: g.scheduled_at,
            local_send_time: g.local_send_time.map(|t| t.format("%Y-%m-%dT%H:%M:%S").to_string()),
            started_at: g.started_at,
            completed_at: g.completed_at,
            scheduled_message_id: g.scheduled_message_id,
            last_error: g.last_error,
            metadata: g.metadata,
            created_by_user_id: g.created_by_user_id,
            created_at: g.created_at,
            updated_at: g.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SkipDto {
    pub contact_id: Uuid,
    /// `opted_out`, `no_address`, `missing_variable:NAME`, `empty_message` or `message_too_long`.
    pub reason: String,
    pub created_at: DateTime<Utc>,
}

impl From<group_message_skip::Model> for SkipDto {
    fn from(s: group_message_skip::Model) -> Self {
        SkipDto { contact_id: s.contact_id, reason: s.reason, created_at: s.created_at }
    }
}

/// Group messages of the active account. Filters: name, status, channel_id, channel_strategy,
/// template_id, scheduled_message_id, created_by_user_id, total_recipients, scheduled_at, started_at,
/// completed_at, created_at, updated_at.
#[utoipa::path(get, path = "/v1/group-messages", tag = "group-messages",
    params(("filter" = Option<Vec<String>>, Query), ("sort" = Option<Vec<String>>, Query), ("skip" = Option<u64>, Query), ("limit" = Option<u64>, Query)),
    responses((status = 200, body = ListEnvelope<GroupMessageDto>), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_group_messages(
    messaging: web::Data<Messaging>,
    ctx: RequestCtx,
    q: ListQuery,
) -> AppResult<HttpResponse> {
    ctx.require("messages:read")?;
    Ok(envelope::list(messaging.list_group_messages(ctx.scope(), &q).await?.map(GroupMessageDto::from)))
}

/// Creates a group send: `status: draft` (default; edit it, then `PATCH {status: queued}`) or
/// `queued` (sent now, or at `scheduled_at`).
#[utoipa::path(post, path = "/v1/group-messages", tag = "group-messages", request_body = NewGroupMessage,
    responses((status = 201, body = Envelope<GroupMessageDto>), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_group_message(
    messaging: web::Data<Messaging>,
    ctx: RequestCtx,
    body: Json<NewGroupMessage>,
) -> AppResult<HttpResponse> {
    ctx.require("group_messages:send")?;
    let g = messaging.create_group_message(ctx.scope(), &ctx.user, body.into_inner(), &ctx.meta()).await?;
    Ok(envelope::created(GroupMessageDto::from(g)))
}

/// What a send would do (same body as create): recipients, skips by reason, three rendered samples
/// and the SMS segments in all; nothing is written.
#[utoipa::path(post, path = "/v1/group-messages/preview", tag = "group-messages", request_body = NewGroupMessage,
    responses((status = 200, body = Envelope<GroupPreview>), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn preview_group_message(
    messaging: web::Data<Messaging>,
    ctx: RequestCtx,
    body: Json<NewGroupMessage>,
) -> AppResult<HttpResponse> {
    ctx.require("group_messages:send")?;
    Ok(envelope::ok(messaging.preview_group_message(ctx.scope(), &ctx.user, body.into_inner()).await?))
}

/// A group send with its live counters.
#[utoipa::path(get, path = "/v1/group-messages/{id}", tag = "group-messages",
    responses((status = 200, body = Envelope<GroupMessageDto>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_group_message(
    messaging: web::Data<Messaging>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    ctx.require("messages:read")?;
    Ok(envelope::ok(GroupMessageDto::from(messaging.get_group_message(ctx.scope(), id.into_inner()).await?)))
}

/// Edits a draft (the fields present), submits it (`status: queued`), or cancels a draft, queued or
/// processing send (`status: cancelled`: every message not yet handed to a provider is cancelled).
#[utoipa::path(patch, path = "/v1/group-messages/{id}", tag = "group-messages", request_body = NewGroupMessage,
    responses((status = 200, body = Envelope<GroupMessageDto>), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_group_message(
    messaging: web::Data<Messaging>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
    body: Json<NewGroupMessage>,
) -> AppResult<HttpResponse> {
    ctx.require("group_messages:send")?;
    let g =
        messaging.update_group_message(ctx.scope(), &ctx.user, id.into_inner(), body.into_inner(), &ctx.meta()).await?;
    Ok(envelope::ok(GroupMessageDto::from(g)))
}

/// Deletes a draft or a finished send (its messages stay in the history).
#[utoipa::path(delete, path = "/v1/group-messages/{id}", tag = "group-messages",
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_group_message(
    messaging: web::Data<Messaging>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    ctx.require("group_messages:send")?;
    messaging.delete_group_message(ctx.scope(), id.into_inner(), &ctx.meta()).await?;
    Ok(envelope::no_content())
}

/// The contacts the send skipped, with their reasons. Filters: contact_id, reason; sort: created_at.
#[utoipa::path(get, path = "/v1/group-messages/{id}/skipped", tag = "group-messages",
    params(("filter" = Option<Vec<String>>, Query), ("sort" = Option<Vec<String>>, Query), ("skip" = Option<u64>, Query), ("limit" = Option<u64>, Query)),
    responses((status = 200, body = ListEnvelope<SkipDto>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_skipped(
    messaging: web::Data<Messaging>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
    q: ListQuery,
) -> AppResult<HttpResponse> {
    ctx.require("messages:read")?;
    Ok(envelope::list(messaging.list_group_skips(ctx.scope(), id.into_inner(), &q).await?.map(SkipDto::from)))
}

/// The counters as Server-Sent Events (`text/event-stream`): a `progress` event at once and whenever
/// they change (at most four a second), then one `complete` event when the send is final, and the
/// stream ends. For a browser's `EventSource`, the token may be given as `?access_token=` and the
/// account as `?account_id=`. Each event's data is the group message as `GET` shows it.
#[utoipa::path(get, path = "/v1/group-messages/{id}/progress", tag = "group-messages",
    params(("access_token" = Option<String>, Query), ("account_id" = Option<Uuid>, Query)),
    responses((status = 200, description = "text/event-stream of `progress` events and a final `complete` event"), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn group_progress(
    messaging: web::Data<Messaging>,
    ctx: StreamCtx,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    let ctx = ctx.0;
    ctx.require("messages:read")?;
    let first = messaging.get_group_message(ctx.scope(), id.into_inner()).await?;
    let state = Progress {
        messaging: messaging.into_inner(),
        scope: ctx.scope(),
        id: first.id,
        first: Some(first),
        last: None,
        done: false,
        quiet_since: tokio::time::Instant::now(),
    };
    let stream = futures_util::stream::unfold(state, |mut p| async move {
        let chunk = p.next().await?;
        Some((Ok::<_, actix_web::Error>(chunk), p))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream))
}

struct Progress {
    messaging: std::sync::Arc<Messaging>,
    scope: AccountScope,
    id: Uuid,
    first: Option<group_message::Model>,
    last: Option<(String, GroupCounters, bool)>,
    done: bool,
    quiet_since: tokio::time::Instant,
}

/// A send is final for its stream when its status is and, unless cancelled, its fan-out finished.
fn finished(g: &group_message::Model) -> bool {
    g.status == GroupStatus::Cancelled || (g.status.is_final() && g.fanout_done)
}

fn event(name: &str, g: group_message::Model) -> Bytes {
    let data = serde_json::to_string(&GroupMessageDto::from(g)).unwrap_or_else(|_| "{}".into());
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

impl Progress {
    /// The next chunk of the stream, or `None` when it ends.
    async fn next(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        loop {
            let g = match self.first.take() {
                Some(g) => g,
                None => {
                    tokio::time::sleep(PROGRESS_EVERY).await;
                    match self.messaging.get_group_message(self.scope, self.id).await {
                        Ok(g) => g,
                        Err(AppError::NotFound(_)) => {
                            self.done = true;
                            return Some(Bytes::from("event: deleted\ndata: {}\n\n"));
                        }
                        // A database hiccup: the stream goes on and looks again.
                        Err(e) => {
                            tracing::debug!(error = %e, "a progress stream could not read its group message");
                            continue;
                        }
                    }
                }
            };
            if finished(&g) {
                self.done = true;
                return Some(event("complete", g));
            }
            let seen = (g.status.as_str().to_string(), counters(&g), g.fanout_done);
            if self.last.as_ref() != Some(&seen) {
                self.last = Some(seen);
                self.quiet_since = tokio::time::Instant::now();
                return Some(event("progress", g));
            }
            if self.quiet_since.elapsed() >= KEEP_ALIVE {
                self.quiet_since = tokio::time::Instant::now();
                return Some(Bytes::from_static(b": keep-alive\n\n"));
            }
        }
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/v1/group-messages")
            .route(web::get().to(list_group_messages))
            .route(web::post().to(create_group_message)),
    )
    .service(web::resource("/v1/group-messages/preview").route(web::post().to(preview_group_message)))
    .service(
        web::resource("/v1/group-messages/{id}")
            .route(web::get().to(get_group_message))
            .route(web::patch().to(update_group_message))
            .route(web::delete().to(delete_group_message)),
    )
    .service(web::resource("/v1/group-messages/{id}/skipped").route(web::get().to(list_skipped)))
    .service(web::resource("/v1/group-messages/{id}/progress").route(web::get().to(group_progress)));
}
