//! `/v1/webhooks/{channel_type}/{channel_id}`: a provider's deliveries (`POST`, signed per provider) and
//! the Meta subscription handshake (`GET`). The body is read here (bounded); the inbox does the rest.

use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{AppError, AppResult, ErrorBody};
use crate::http::envelope::{self, Envelope};
use crate::modules::accounts::request_meta;
use crate::modules::channels::Channels;
use crate::modules::channels::adapter::WebhookRequest;
use crate::modules::channels::webhooks::WEBHOOK_BODY_LIMIT;

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAck {
    /// The inbox entry (the existing one for a redelivery).
    pub inbox_id: Uuid,
    /// True when this delivery was seen before: nothing changed.
    pub duplicate: bool,
    /// received | failed | ignored (the channel is disabled: stored, flagged, not processed)
    pub status: String,
    /// Items found in the payload (each became one event).
    pub items: i32,
}

async fn read_body(mut payload: web::Payload) -> AppResult<bytes::Bytes> {
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| AppError::bad_request(format!("body interrupted: {e}")))?;
        if body.len() + chunk.len() > WEBHOOK_BODY_LIMIT {
            return Err(AppError::PayloadTooLarge { limit: WEBHOOK_BODY_LIMIT });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn parse_id(raw: &str) -> AppResult<Uuid> {
    Uuid::parse_str(raw).map_err(|_| AppError::NotFound("channel"))
}

/// A provider's delivery (inbound messages, delivery statuses). Signed per provider; answered 200 once
/// stored (also for redeliveries and unreadable payloads).
#[utoipa::path(post, path = "/v1/webhooks/{channel_type}/{channel_id}", tag = "webhooks",
    request_body(content = String, description = "the provider's own payload (JSON or form)"),
    responses((status = 200, body = Envelope<WebhookAck>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn receive_webhook(
    channels: web::Data<Channels>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> AppResult<HttpResponse> {
    let (channel_type, raw_id) = path.into_inner();
    let id = parse_id(&raw_id)?;
    let body = read_body(payload).await?;
    let headers: HashMap<String, String> = req
        .headers()
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_ascii_lowercase(), v.to_string())))
        .collect();
    let public = channels.public_base_url().map(str::to_string).unwrap_or_else(|| {
        let info = req.connection_info();
        format!("{}://{}", info.scheme(), info.host())
    });
    let request = WebhookRequest {
        url: format!("{public}{}", req.uri()),
        content_type: headers.get("content-type").cloned(),
        headers,
        body,
    };
    let accepted = channels.accept_webhook(&channel_type, id, &request, &request_meta(&req)).await?;
    Ok(envelope::ok(WebhookAck {
        inbox_id: accepted.inbox.id,
        duplicate: accepted.duplicate,
        status: accepted.inbox.status,
        items: accepted.inbox.item_count,
    }))
}

#[derive(Debug, Deserialize)]
pub struct Handshake {
    #[serde(rename = "hub.mode")]
    mode: Option<String>,
    #[serde(rename = "hub.verify_token")]
    verify_token: Option<String>,
    #[serde(rename = "hub.challenge")]
    challenge: Option<String>,
}

/// The Meta (WhatsApp, Messenger) subscription handshake: echoes `hub.challenge` when
/// `hub.verify_token` matches the channel's `verify_token`, else 403.
#[utoipa::path(get, path = "/v1/webhooks/{channel_type}/{channel_id}", tag = "webhooks",
    params(("hub.mode" = Option<String>, Query), ("hub.verify_token" = Option<String>, Query), ("hub.challenge" = Option<String>, Query)),
    responses((status = 200, body = String, content_type = "text/plain"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn webhook_handshake(
    channels: web::Data<Channels>,
    path: web::Path<(String, String)>,
    q: web::Query<Handshake>,
) -> AppResult<HttpResponse> {
    let (channel_type, raw_id) = path.into_inner();
    let id = parse_id(&raw_id)?;
    let ok = channels.webhook_handshake(&channel_type, id, q.mode.as_deref(), q.verify_token.as_deref()).await?;
    if !ok {
        return Err(AppError::forbidden("the verify token does not match"));
    }
    Ok(HttpResponse::Ok().content_type("text/plain").body(q.challenge.clone().unwrap_or_default()))
}

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/v1/webhooks/{channel_type}/{channel_id}")
            .route(web::post().to(receive_webhook))
            .route(web::get().to(webhook_handshake)),
    );
}
