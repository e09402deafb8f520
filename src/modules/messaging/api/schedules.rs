//! `/v1/scheduled-messages*`: scheduled single sends, their edits, pauses and next occurrences.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::db::list::ListQuery;
use crate::error::{AppResult, ErrorBody};
use crate::http::Json;
use crate::http::envelope::{self, Envelope, ListEnvelope};
use crate::modules::accounts::RequestCtx;
use crate::modules::messaging::entity::scheduled_message;
use crate::modules::messaging::schedules::{MAX_OCCURRENCES, NewSchedule};
use crate::modules::messaging::service::Messaging;

#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleDto {
    pub id: Uuid,
    pub account_id: Uuid,
    pub name: String,
    pub channel_id: Uuid,
    pub template_id: Option<Uuid>,
    pub message_body: Option<String>,
    #[schema(value_type = Object)]
    pub custom_values: Value,
    pub send_type: String,
    pub delivery_address: Option<String>,
    pub contact_id: Option<Uuid>,
    pub contact_group_ids: Vec<Uuid>,
    pub segment_ids: Vec<Uuid>,
    pub contact_ids: Vec<Uuid>,
    pub exclude_contact_ids: Vec<Uuid>,
    /// The first occurrence, a wall-clock time in `timezone` (no offset).
    pub scheduled_at: String,
    pub timezone: String,
    pub timezone_mode: String,
    pub is_recurring: bool,
    pub recurrence_rule: Option<String>,
    pub recurrence_end_at: Option<DateTime<Utc>>,
    pub misfire_policy: String,
    /// `pending`, `triggered` (recurring, more to come), `completed`, `failed`, `cancelled` or `paused`.
    pub status: String,
    pub last_triggered_at: Option<DateTime<Utc>>,
    pub next_trigger_at: Option<DateTime<Utc>>,
    pub trigger_count: i32,
    pub last_message_id: Option<Uuid>,
    /// The group message the last occurrence of a group schedule created.
    pub last_group_message_id: Option<Uuid>,
    pub last_error: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: Value,
    pub created_by_user_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<scheduled_message::Model> for ScheduleDto {
    fn from(s: scheduled_message::Model) -> Self {
        ScheduleDto {
            id: s.id,
            account_id: s.account_id,
            name: s.name,
            channel_id: s.channel_id,
            template_id: s.template_id,
            message_body: s.message_body,
            custom_values: s.custom_values,
            send_type: s.send_type.as_str().into(),
            delivery_address: s.delivery_address,
            contact_id: s.contact_id,
            contact_group_ids: crate::modules::messaging::fanout::ids(&s.contact_group_ids),
            segment_ids: crate::modules::messaging::fanout::ids(&s.segment_ids),
            contact_ids: crate::modules::messaging::fanout::ids(&s.contact_ids),
            exclude_contact_ids: crate::modules::messaging::fanout::ids(&s.exclude_contact_ids),
            scheduled_at: s.scheduled_at.format("%Y-%m-%dT%H:%M:%S").to_string(),
            timezone: s.timezone,
            timezone_mode: s.timezone_mode.as_str().into(),
            is_recurring: s.is_recurring,
            recurrence_rule: s.recurrence_rule,
            recurrence_end_at: s.recurrence_end_at,
            misfire_policy: s.misfire_policy.as_str().into(),
            status: s.status.as_str().into(),
            last_triggered_at: s.last_triggered_at,
            next_trigger_at: s.next_trigger_at,
            trigger_count: s.trigger_count,
            last_message_id: s.last_message_id,
            last_group_message_id: s.last_group_message_id,
            last_error: s.last_error,
            metadata: s.metadata,
            created_by_user_id: s.created_by_user_id,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct OccurrencesQuery {
    /// How many (1 to 100, default 10).
    pub count: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Occurrences {
    pub occurrences: Vec<DateTime<Utc>>,
}

/// Scheduled messages of the active account. Filters: name, channel_id, contact_id, template_id,
/// send_type, status, is_recurring, timezone, timezone_mode, misfire_policy, next_trigger_at, last_triggered_at, created_by_user_id, created_at,
/// updated_at.
#[utoipa::path(get, path = "/v1/scheduled-messages", tag = "scheduled-messages",
    params(("filter" = Option<Vec<String>>, Query), ("sort" = Option<Vec<String>>, Query), ("skip" = Option<u64>, Query), ("limit" = Option<u64>, Query)),
    responses((status = 200, body = ListEnvelope<ScheduleDto>), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_schedules(messaging: web::Data<Messaging>, ctx: RequestCtx, q: ListQuery) -> AppResult<HttpResponse> {
    ctx.require("messages:read")?;
    Ok(envelope::list(messaging.list_schedules(ctx.scope(), &q).await?.map(ScheduleDto::from)))
}

/// Schedules a single or group send: once at `scheduled_at` (local time in `timezone`) or by `recurrence_rule`.
#[utoipa::path(post, path = "/v1/scheduled-messages", tag = "scheduled-messages", request_body = NewSchedule,
    responses((status = 201, body = Envelope<ScheduleDto>), (status = 422, body = ErrorBody), (status = 501, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_schedule(
    messaging: web::Data<Messaging>,
    ctx: RequestCtx,
    body: Json<NewSchedule>,
) -> AppResult<HttpResponse> {
    ctx.require("scheduled_messages:manage")?;
    let s = messaging.create_schedule(ctx.scope(), &ctx.user, body.into_inner(), Utc::now(), &ctx.meta()).await?;
    Ok(envelope::created(ScheduleDto::from(s)))
}

#[utoipa::path(get, path = "/v1/scheduled-messages/{id}", tag = "scheduled-messages",
    responses((status = 200, body = Envelope<ScheduleDto>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_schedule(
    messaging: web::Data<Messaging>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    ctx.require("messages:read")?;
    Ok(envelope::ok(ScheduleDto::from(messaging.get_schedule(ctx.scope(), id.into_inner()).await?)))
}

/// Edits a pending or paused schedule, and/or sets `status`: `paused`, `pending` (resume) or `cancelled`.
#[utoipa::path(patch, path = "/v1/scheduled-messages/{id}", tag = "scheduled-messages", request_body = NewSchedule,
    responses((status = 200, body = Envelope<ScheduleDto>), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_schedule(
    messaging: web::Data<Messaging>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
    body: Json<NewSchedule>,
) -> AppResult<HttpResponse> {
    ctx.require("scheduled_messages:manage")?;
    let s = messaging
        .update_schedule(ctx.scope(), &ctx.user, id.into_inner(), body.into_inner(), Utc::now(), &ctx.meta())
        .await?;
    Ok(envelope::ok(ScheduleDto::from(s)))
}

#[utoipa::path(delete, path = "/v1/scheduled-messages/{id}", tag = "scheduled-messages",
    responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_schedule(
    messaging: web::Data<Messaging>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    ctx.require("scheduled_messages:manage")?;
    messaging.delete_schedule(ctx.scope(), id.into_inner(), &ctx.meta()).await?;
    Ok(envelope::no_content())
}

/// The next occurrences (none once paused, cancelled or finished).
#[utoipa::path(get, path = "/v1/scheduled-messages/{id}/occurrences", tag = "scheduled-messages", params(OccurrencesQuery),
    responses((status = 200, body = Envelope<Occurrences>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_occurrences(
    messaging: web::Data<Messaging>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
    q: web::Query<OccurrencesQuery>,
) -> AppResult<HttpResponse> {
    ctx.require("messages:read")?;
    let count = q.count.unwrap_or(10);
    if !(1..=MAX_OCCURRENCES).contains(&count) {
        return Err(crate::error::AppError::bad_request(format!("count: 1 to {MAX_OCCURRENCES}")));
    }
    let occurrences = messaging.schedule_occurrences(ctx.scope(), id.into_inner(), count, Utc::now()).await?;
    Ok(envelope::ok(Occurrences { occurrences }))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/v1/scheduled-messages")
            .route(web::get().to(list_schedules))
            .route(web::post().to(create_schedule)),
    )
    .service(
        web::resource("/v1/scheduled-messages/{id}")
            .route(web::get().to(get_schedule))
            .route(web::patch().to(update_schedule))
            .route(web::delete().to(delete_schedule)),
    )
    .service(web::resource("/v1/scheduled-messages/{id}/occurrences").route(web::get().to(list_occurrences)));
}
