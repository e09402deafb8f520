//! Routes and DTOs of the channels module: `/v1/channels*` (JWT, `channels:read|manage`).

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;
use validator::Validate;

use crate::db::list::ListQuery;
use crate::domain::channel_type::CHANNEL_TYPES;
use crate::error::{AppError, AppResult, ErrorBody};
use crate::http::Json;
use crate::http::envelope::{self, Envelope, ListEnvelope};
use crate::modules::accounts::RequestCtx;
use crate::modules::channels::entity::channel::ChannelStatus;
use crate::modules::channels::entity::sandbox_message;
use crate::modules::channels::service::{ChannelPatch, ChannelView, Channels, NewChannel};
use crate::modules::channels::status::Health;

type Patch<T> = Option<Option<T>>;

#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelDto {
    pub id: Uuid,
    pub account_id: Uuid,
    pub name: String,
    /// sms | smpp | telegram | whatsapp | messenger | email | sandbox
    pub channel_type: String,
    /// sms: twilio | africastalking | vonage; otherwise null
    pub provider: Option<String>,
    /// connected | disconnected | rate_limited | error | disabled
    pub status: String,
    pub is_enabled: bool,
    /// Masked: secrets show `••••` and at most their last four characters.
    #[schema(value_type = Object)]
    pub credentials: Value,
    pub sender_name: Option<String>,
    pub default_country_code: Option<String>,
    /// Messages per minute; null = unlimited.
    pub rate_limit: Option<i32>,
    pub priority: i32,
    pub retry_count: i32,
    /// Seconds.
    pub retry_interval: i32,
    pub last_verified_at: Option<DateTime<Utc>>,
    pub error_message: Option<String>,
    pub rate_limited_until: Option<DateTime<Utc>>,
    /// Where the provider must post (read-only).
    pub webhook_url: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<ChannelView> for ChannelDto {
    fn from(v: ChannelView) -> Self {
        let c = v.channel;
        ChannelDto {
            id: c.id,
            account_id: c.account_id,
            name: c.name,
            channel_type: c.channel_type,
            provider: c.provider,
            rate_limited_until: if c.status == ChannelStatus::RateLimited { c.rate_limited_until } else { None },
            status: c.status.to_string(),
            is_enabled: c.is_enabled,
            credentials: v.masked_credentials,
            sender_name: c.sender_name,
            default_country_code: c.default_country_code,
            rate_limit: c.rate_limit,
            priority: c.priority,
            retry_count: c.retry_count,
            retry_interval: c.retry_interval,
            last_verified_at: c.last_verified_at,
            error_message: c.error_message,
            webhook_url: v.webhook_url,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

fn channel_type(s: &str) -> Result<(), validator::ValidationError> {
    if CHANNEL_TYPES.contains(&s) {
        Ok(())
    } else {
        Err(validator::ValidationError::new("channel_type")
            .with_message(format!("must be one of {}", CHANNEL_TYPES.join(", ")).into()))
    }
}

fn country_code(s: &str) -> Result<(), validator::ValidationError> {
    if s.len() == 2 && s.chars().all(|c| c.is_ascii_alphabetic()) {
        Ok(())
    } else {
        Err(validator::ValidationError::new("country").with_message("must be a two-letter ISO country code".into()))
    }
}

/// A new channel. `credentials` has the fields of its type (SPEC §5); it is verified with the provider
/// right away.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateChannelRequest {
    #[validate(length(min = 1, max = 100), custom(function = "crate::domain::text::name"))]
    #[schema(min_length = 1, max_length = 100, pattern = r"^(?!\s+$)[^\u0000-\u001F\u007F-\u009F]*$")]
    pub name: String,
    #[validate(custom(function = "channel_type"))]
    pub channel_type: String,
    pub provider: Option<String>,
    #[schema(value_type = Object)]
    pub credentials: Value,
    #[validate(length(min = 1, max = 100))]
    #[schema(min_length = 1, max_length = 100)]
    pub sender_name: Option<String>,
    #[validate(custom(function = "country_code"))]
    pub default_country_code: Option<String>,
    #[validate(range(min = 1, max = 1_000_000))]
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub rate_limit: Option<i32>,
    #[validate(range(min = -1000, max = 1000))]
    #[schema(minimum = -1000, maximum = 1000)]
    pub priority: Option<i32>,
    #[validate(range(min = 0, max = 10))]
    #[schema(minimum = 0, maximum = 10)]
    pub retry_count: Option<i32>,
    #[validate(range(min = 1, max = 86_400))]
    #[schema(minimum = 1, maximum = 86_400)]
    pub retry_interval: Option<i32>,
    pub is_enabled: Option<bool>,
}

/// Fields present are applied; `null` clears the optional ones. `credentials` replaces only the fields
/// it names (`null` removes an optional one); the result is checked and verified again.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateChannelRequest {
    #[validate(length(min = 1, max = 100), custom(function = "crate::domain::text::name"))]
    #[schema(min_length = 1, max_length = 100, pattern = r"^(?!\s+$)[^\u0000-\u001F\u007F-\u009F]*$")]
    pub name: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub credentials: Option<Value>,
    #[serde(default, deserialize_with = "crate::http::patch")]
    #[schema(value_type = Option<String>)]
    pub sender_name: Patch<String>,
    #[serde(default, deserialize_with = "crate::http::patch")]
    #[schema(value_type = Option<String>)]
    pub default_country_code: Patch<String>,
    #[serde(default, deserialize_with = "crate::http::patch")]
    #[schema(value_type = Option<i32>)]
    pub rate_limit: Patch<i32>,
    #[validate(range(min = -1000, max = 1000))]
    #[schema(minimum = -1000, maximum = 1000)]
    pub priority: Option<i32>,
    #[validate(range(min = 0, max = 10))]
    #[schema(minimum = 0, maximum = 10)]
    pub retry_count: Option<i32>,
    #[validate(range(min = 1, max = 86_400))]
    #[schema(minimum = 1, maximum = 86_400)]
    pub retry_interval: Option<i32>,
    pub is_enabled: Option<bool>,
}

impl UpdateChannelRequest {
    /// The checks `validator` cannot express on `Option<Option<_>>` fields.
    fn check_patch_fields(&self) -> AppResult<()> {
        let mut errors = Vec::new();
        if let Some(Some(s)) = &self.sender_name
            && (s.trim().is_empty() || s.len() > 100)
        {
            errors.push(crate::error::FieldError::new("sender_name", "must be 1 to 100 characters"));
        }
        if let Some(Some(c)) = &self.default_country_code
            && country_code(c).is_err()
        {
            errors.push(crate::error::FieldError::new("default_country_code", "must be a two-letter ISO country code"));
        }
        if let Some(Some(r)) = self.rate_limit
            && !(1..=1_000_000).contains(&r)
        {
            errors.push(crate::error::FieldError::new("rate_limit", "must be between 1 and 1000000 (or null)"));
        }
        if errors.is_empty() { Ok(()) } else { Err(AppError::Validation(errors)) }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthDto {
    pub id: Uuid,
    pub status: String,
    pub is_enabled: bool,
    pub last_verified_at: Option<DateTime<Utc>>,
    /// How long the last verification took.
    pub latency_ms: Option<i32>,
    pub last_error: Option<String>,
    pub rate_limited_until: Option<DateTime<Utc>>,
    pub consecutive_failures: i32,
    /// Sends in the current and the previous clock hour.
    pub sent_last_hour: i64,
    pub failed_last_hour: i64,
}

impl From<Health> for HealthDto {
    fn from(h: Health) -> Self {
        let c = h.channel;
        HealthDto {
            id: c.id,
            rate_limited_until: if c.status == ChannelStatus::RateLimited { c.rate_limited_until } else { None },
            status: c.status.to_string(),
            is_enabled: c.is_enabled,
            last_verified_at: c.last_verified_at,
            latency_ms: c.last_latency_ms,
            last_error: c.error_message,
            consecutive_failures: c.consecutive_failures,
            sent_last_hour: h.sent_last_hour,
            failed_last_hour: h.failed_last_hour,
        }
    }
}

#[utoipa::path(get, path = "/v1/channels", tag = "channels", params(("filter" = Option<Vec<String>>, Query), ("sort" = Option<Vec<String>>, Query), ("skip" = Option<u64>, Query), ("limit" = Option<u64>, Query)),
    responses((status = 200, body = ListEnvelope<ChannelDto>), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_channels(channels: web::Data<Channels>, ctx: RequestCtx, q: ListQuery) -> AppResult<HttpResponse> {
    ctx.require("channels:read")?;
    Ok(envelope::list(channels.list_channels(ctx.scope(), &q).await?.map(ChannelDto::from)))
}

#[utoipa::path(post, path = "/v1/channels", tag = "channels", request_body = CreateChannelRequest,
    responses((status = 201, body = Envelope<ChannelDto>), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_channel(
    channels: web::Data<Channels>,
    ctx: RequestCtx,
    body: Json<CreateChannelRequest>,
) -> AppResult<HttpResponse> {
    ctx.require("channels:manage")?;
    body.validate()?;
    let b = body.into_inner();
    let new = NewChannel {
        name: b.name,
        channel_type: b.channel_type,
        provider: b.provider,
        credentials: b.credentials,
        sender_name: b.sender_name,
        default_country_code: b.default_country_code,
        rate_limit: b.rate_limit,
        priority: b.priority.unwrap_or(0),
        retry_count: b.retry_count.unwrap_or(3),
        retry_interval: b.retry_interval.unwrap_or(60),
        is_enabled: b.is_enabled.unwrap_or(true),
    };
    let c = channels.create(ctx.scope(), new, &ctx.meta()).await?;
    Ok(envelope::created(ChannelDto::from(channels.view(c)?)))
}

#[utoipa::path(get, path = "/v1/channels/{id}", tag = "channels", responses((status = 200, body = Envelope<ChannelDto>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_channel(
    channels: web::Data<Channels>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    ctx.require("channels:read")?;
    let c = channels.get(ctx.scope(), id.into_inner()).await?;
    Ok(envelope::ok(ChannelDto::from(channels.view(c)?)))
}

#[utoipa::path(patch, path = "/v1/channels/{id}", tag = "channels", request_body = UpdateChannelRequest,
    responses((status = 200, body = Envelope<ChannelDto>), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_channel(
    channels: web::Data<Channels>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
    body: Json<UpdateChannelRequest>,
) -> AppResult<HttpResponse> {
    ctx.require("channels:manage")?;
    body.validate()?;
    body.check_patch_fields()?;
    let b = body.into_inner();
    let patch = ChannelPatch {
        name: b.name,
        credentials: b.credentials,
        sender_name: b.sender_name,
        default_country_code: b.default_country_code,
        rate_limit: b.rate_limit,
        priority: b.priority,
        retry_count: b.retry_count,
        retry_interval: b.retry_interval,
        is_enabled: b.is_enabled,
    };
    let c = channels.update(ctx.scope(), id.into_inner(), patch, &ctx.meta()).await?;
    Ok(envelope::ok(ChannelDto::from(channels.view(c)?)))
}

#[utoipa::path(delete, path = "/v1/channels/{id}", tag = "channels", responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_channel(
    channels: web::Data<Channels>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    ctx.require("channels:manage")?;
    channels.delete(ctx.scope(), id.into_inner(), &ctx.meta()).await?;
    Ok(envelope::no_content())
}

/// Checks the credentials with the provider (Telegram `getMe`, …): the channel becomes `connected`, or
/// `error` with the provider's message in `error_message` (still 200: the check itself worked).
#[utoipa::path(post, path = "/v1/channels/{id}/verify", tag = "channels",
    responses((status = 200, body = Envelope<ChannelDto>), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 501, body = ErrorBody)), security(("bearer" = [])))]
pub async fn verify_channel(
    channels: web::Data<Channels>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    ctx.require("channels:manage")?;
    let c = channels.verify(ctx.scope(), id.into_inner(), &ctx.meta()).await?;
    Ok(envelope::ok(ChannelDto::from(channels.view(c)?)))
}

#[utoipa::path(get, path = "/v1/channels/{id}/health", tag = "channels",
    responses((status = 200, body = Envelope<HealthDto>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn channel_health(
    channels: web::Data<Channels>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    ctx.require("channels:read")?;
    Ok(envelope::ok(HealthDto::from(channels.health(ctx.scope(), id.into_inner()).await?)))
}

/// A message a sandbox channel "sent".
#[derive(Debug, Serialize, ToSchema)]
pub struct SandboxMessageDto {
    pub id: Uuid,
    pub channel_id: Uuid,
    /// The message it was sent for.
    pub message_id: Uuid,
    pub to: String,
    pub text: String,
    pub subject: Option<String>,
    pub segments: i32,
    /// GSM-7 | UCS-2
    pub encoding: String,
    /// delivered | failed (the channel's `failure_rate`)
    pub status: String,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<sandbox_message::Model> for SandboxMessageDto {
    fn from(m: sandbox_message::Model) -> Self {
        SandboxMessageDto {
            id: m.id,
            channel_id: m.channel_id,
            message_id: m.message_id,
            to: m.to,
            text: m.text,
            subject: m.subject,
            segments: m.segments,
            encoding: m.encoding,
            status: m.status,
            error: m.error,
            created_at: m.created_at,
        }
    }
}

/// What a sandbox channel "sent" (its last 1,000 messages), newest first unless sorted otherwise.
#[utoipa::path(get, path = "/v1/channels/{id}/sandbox/messages", tag = "channels", params(("filter" = Option<Vec<String>>, Query), ("sort" = Option<Vec<String>>, Query), ("skip" = Option<u64>, Query), ("limit" = Option<u64>, Query)),
    responses((status = 200, body = ListEnvelope<SandboxMessageDto>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_sandbox_messages(
    channels: web::Data<Channels>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
    q: ListQuery,
) -> AppResult<HttpResponse> {
    ctx.require("channels:read")?;
    let page = channels.list_sandbox_messages(ctx.scope(), id.into_inner(), &q).await?;
    Ok(envelope::list(page.map(SandboxMessageDto::from)))
}

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/v1/channels").route(web::get().to(list_channels)).route(web::post().to(create_channel)),
    )
    .service(
        web::resource("/v1/channels/{id}")
            .route(web::get().to(get_channel))
            .route(web::patch().to(update_channel))
            .route(web::delete().to(delete_channel)),
    )
    .service(web::resource("/v1/channels/{id}/verify").route(web::post().to(verify_channel)))
    .service(web::resource("/v1/channels/{id}/health").route(web::get().to(channel_health)))
    .service(web::resource("/v1/channels/{id}/sandbox/messages").route(web::get().to(list_sandbox_messages)));
}
