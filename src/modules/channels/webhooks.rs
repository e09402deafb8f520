//! Provider webhooks (SPEC §5.2): `POST /v1/webhooks/{channel_type}/{channel_id}` (no JWT: the channel id
//! in the path names the tenant) and the Meta `GET` handshake. The signature is checked first (401 and
//! nothing stored when it fails); the raw delivery is then stored in the inbox, unique per channel and
//! provider event id, together with one `webhook.inbound.<type>` outbox event per item, in ONE
//! transaction, before the provider gets its 200. A redelivery answers 200 and changes nothing; a payload
//! that cannot be read is kept as `failed` and still answered 200 (the provider would only retry it).

use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use futures_util::StreamExt;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Digest;
use utoipa::ToSchema;
use uuid::Uuid;

use super::adapter::WebhookRequest;
use super::entity::{channel, webhook_inbox};
use super::service::Channels;
use crate::app::AppState;
use crate::http::ctx::request_meta;
use crate::http::envelope::{self, Envelope};
use crate::http::error::{AppError, AppResult, ErrorBody};
use crate::modules::events::EventBus;

/// The largest webhook body accepted (providers send a few KiB).
pub const WEBHOOK_BODY_LIMIT: usize = 1024 * 1024;

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

/// What happened to one delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    pub inbox: webhook_inbox::Model,
    pub duplicate: bool,
}

impl Channels {
    /// The channel a webhook names. This is the one lookup without a request's account scope: the
    /// channel id in the path is what names the tenant; everything after it runs in that account's scope.
    async fn webhook_channel(&self, channel_type: &str, id: Uuid) -> AppResult<channel::Model> {
        channel::Entity::find()
            .filter(channel::Column::Id.eq(id))
            .filter(channel::Column::ChannelType.eq(channel_type))
            .one(&self.db)
            .await?
            .ok_or(AppError::NotFound("channel"))
    }

    /// Checks, stores and emits one webhook delivery.
    pub async fn accept_webhook(
        &self,
        channel_type: &str,
        id: Uuid,
        request: &WebhookRequest,
        meta: &crate::modules::events::EventMeta,
    ) -> AppResult<Accepted> {
        let c = self.webhook_channel(channel_type, id).await?;
        let scope = self.accounts().operator_scope(c.account_id).await?;
        let adapter = self.adapter(&c)?;
        let ctx = self.context(&c)?;
        if !adapter.verify_signature(&ctx, request) {
            return Err(AppError::Unauthorized("the webhook signature is missing or does not match".into()));
        }
        let event_id = adapter
            .event_id(request)
            .unwrap_or_else(|| format!("sha256:{}", hex::encode(sha2::Sha256::digest(&request.body))));
        let parsed = adapter.parse_webhook(&ctx, request);
        let payload = String::from_utf8_lossy(&request.body).into_owned();
        self.record_delivery(&c, scope, event_id, payload, request.content_type.clone(), parsed, meta).await
    }

    /// Stores one provider delivery in the inbox (unique per channel and provider event id) with one
    /// `webhook.inbound.<type>` event per item, in one transaction; a delivery already stored is
    /// answered as a duplicate. Webhooks, SMPP `deliver_sm` and IMAP mail all end here.
    #[allow(clippy::too_many_arguments)]
    async fn record_delivery(
        &self,
        c: &channel::Model,
        scope: crate::http::ctx::AccountScope,
        event_id: String,
        payload: String,
        content_type: Option<String>,
        parsed: Result<Vec<super::adapter::WebhookItem>, String>,
        meta: &crate::modules::events::EventMeta,
    ) -> AppResult<Accepted> {
        // A redelivery changes nothing (a concurrent one is caught by the unique index below).
        if let Some(existing) = self.inbox_entry(c.id, &event_id).await? {
            return Ok(Accepted { inbox: existing, duplicate: true });
        }
        let (status, items, error) = match (&parsed, c.is_enabled) {
            (Err(e), _) => ("failed", &[][..], Some(e.clone())),
            (Ok(items), false) => ("ignored", &items[..], Some("the channel is disabled".to_string())),
            (Ok(items), true) => ("received", &items[..], None),
        };
        let now = Utc::now();
        let inbox = webhook_inbox::ActiveModel {
            id: Set(Uuid::now_v7()),
            account_id: Set(scope.account_id()),
            channel_id: Set(c.id),
            channel_type: Set(c.channel_type.clone()),
            provider_event_id: Set(event_id.clone()),
            status: Set(status.into()),
            payload: Set(payload),
            content_type: Set(content_type),
            item_count: Set(items.len() as i32),
            error: Set(error),
            received_at: Set(now),
            processed_at: Set(None),
        };
        let txn = crate::db::begin_write(&self.db).await?;
        let inbox = match inbox.insert(&txn).await {
            Ok(m) => m,
            // The same delivery arriving twice at once: the other request stored it.
            Err(e) if crate::db::is_unique_violation(&e) => {
                drop(txn);
                let existing = self.inbox_entry(c.id, &event_id).await?.ok_or(AppError::NotFound("webhook"))?;
                return Ok(Accepted { inbox: existing, duplicate: true });
            }
            Err(e) => return Err(e.into()),
        };
        let mut bus = EventBus::new(meta.clone());
        if status == "received" {
            for (index, item) in items.iter().enumerate() {
                bus.emit(
                    &format!("webhook.inbound.{}", c.channel_type),
                    "webhook_inbox",
                    inbox.id,
                    Some(scope.account_id()),
                    json!({
                        "inbox_id": inbox.id,
                        "channel_id": c.id,
                        "channel_type": c.channel_type,
                        "index": index,
                        "item_event_id": item.event_id(),
                        "item": item,
                    }),
                );
            }
        }
        self.commit(txn, bus).await?;
        Ok(Accepted { inbox, duplicate: false })
    }

    /// Polls an e-mail channel's IMAP INBOX once: every unseen mail is stored in the inbox (with its
    /// `webhook.inbound.email` event) before it is flagged seen. Returns how many mails were taken.
    pub async fn poll_mailbox(&self, scope: crate::http::ctx::AccountScope, id: Uuid) -> AppResult<u64> {
        let c = self.get(scope, id).await?;
        let super::credentials::Credentials::Email(creds) = self.open(&c)? else {
            return Err(AppError::field("channel_type", "only e-mail channels have a mailbox"));
        };
        if creds.imap_host.is_none() {
            return Ok(0);
        }
        let channels = self.clone();
        let channel = c.clone();
        let store = move |mail: super::providers::imap::ReceivedMail| {
            let (channels, channel) = (channels.clone(), channel.clone());
            let fut: futures_util::future::BoxFuture<'static, bool> = Box::pin(async move {
                let meta = crate::modules::events::EventMeta::default();
                channels
                    .record_delivery(
                        &channel,
                        scope,
                        mail.event_id,
                        mail.raw,
                        Some("message/rfc822".into()),
                        Ok(vec![mail.item]),
                        &meta,
                    )
                    .await
                    .is_ok()
            });
            fut
        };
        match super::providers::imap::poll(&creds, &store).await {
            Ok(n) => Ok(n),
            Err(e) => {
                self.report_outcome(scope, id, Err(&e)).await?;
                Err(AppError::ServiceUnavailable(e.message))
            }
        }
    }

    /// Polls every enabled e-mail channel with an IMAP host every `every` (worker roles).
    pub fn start_mailbox_poller(
        &self,
        every: std::time::Duration,
        shutdown: &tokio_util::sync::CancellationToken,
        tracker: &tokio_util::task::TaskTracker,
    ) {
        let channels = self.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            loop {
                // A system job across accounts: each channel is then handled in its own account's scope.
                let due = channel::Entity::find()
                    .filter(channel::Column::ChannelType.eq("email"))
                    .filter(channel::Column::IsEnabled.eq(true))
                    .all(&channels.db)
                    .await;
                match due {
                    Ok(list) => {
                        for c in list {
                            let Ok(scope) = channels.accounts().operator_scope(c.account_id).await else { continue };
                            if let Err(e) = channels.poll_mailbox(scope, c.id).await {
                                tracing::warn!(channel_id = %c.id, error = %e, "mailbox poll failed");
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot list e-mail channels to poll"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = shutdown.cancelled() => break,
                }
            }
        });
    }

    /// Records an SMPP `deliver_sm` (receipt or inbound message) like a webhook delivery.
    pub async fn record_smpp_delivery(&self, d: &super::providers::smpp::SmppDelivery) -> AppResult<Accepted> {
        let c = self.webhook_channel("smpp", d.channel_id).await?;
        let scope = self.accounts().operator_scope(c.account_id).await?;
        let meta = crate::modules::events::EventMeta::default();
        self.record_delivery(
            &c,
            scope,
            d.event_id.clone(),
            d.raw.clone(),
            Some("application/json".into()),
            Ok(d.items.clone()),
            &meta,
        )
        .await
    }

    /// Stores SMPP deliveries as they arrive from the binds (runs for the life of the process).
    pub fn start_smpp_recorder(
        &self,
        mut deliveries: tokio::sync::mpsc::Receiver<super::providers::smpp::SmppDelivery>,
        shutdown: &tokio_util::sync::CancellationToken,
        tracker: &tokio_util::task::TaskTracker,
    ) {
        let channels = self.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            loop {
                let mut d = tokio::select! {
                    d = deliveries.recv() => match d { Some(d) => d, None => break },
                    _ = shutdown.cancelled() => break,
                };
                let ok = match channels.record_smpp_delivery(&d).await {
                    Ok(_) => true,
                    Err(e) => {
                        tracing::error!(channel_id = %d.channel_id, error = %e, "cannot store an SMPP delivery; the SMSC will resend it");
                        false
                    }
                };
                if let Some(tx) = d.stored.take() {
                    let _ = tx.send(ok);
                }
            }
        });
    }

    async fn inbox_entry(&self, channel_id: Uuid, event_id: &str) -> AppResult<Option<webhook_inbox::Model>> {
        Ok(webhook_inbox::Entity::find()
            .filter(webhook_inbox::Column::ChannelId.eq(channel_id))
            .filter(webhook_inbox::Column::ProviderEventId.eq(event_id))
            .one(&self.db)
            .await?)
    }

    /// The Meta subscription handshake: the challenge when `verify_token` matches the channel's.
    pub async fn webhook_handshake(
        &self,
        channel_type: &str,
        id: Uuid,
        mode: Option<&str>,
        token: Option<&str>,
    ) -> AppResult<bool> {
        let c = self.webhook_channel(channel_type, id).await?;
        let expected = match self.open(&c)? {
            super::credentials::Credentials::WhatsApp(w) => w.verify_token,
            super::credentials::Credentials::Messenger(m) => m.verify_token,
            _ => return Err(AppError::NotFound("webhook handshake")),
        };
        Ok(mode == Some("subscribe")
            && token.is_some_and(|t| super::adapter::constant_time_eq(t.as_bytes(), expected.as_bytes())))
    }
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
    state: web::Data<AppState>,
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
    let public = state.settings.public_base_url.clone().unwrap_or_else(|| {
        let info = req.connection_info();
        format!("{}://{}", info.scheme(), info.host())
    });
    let request = WebhookRequest {
        url: format!("{public}{}", req.uri()),
        content_type: headers.get("content-type").cloned(),
        headers,
        body,
    };
    let accepted = state.channels.accept_webhook(&channel_type, id, &request, &request_meta(&req)).await?;
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
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    q: web::Query<Handshake>,
) -> AppResult<HttpResponse> {
    let (channel_type, raw_id) = path.into_inner();
    let id = parse_id(&raw_id)?;
    let ok = state.channels.webhook_handshake(&channel_type, id, q.mode.as_deref(), q.verify_token.as_deref()).await?;
    if !ok {
        return Err(AppError::forbidden("the verify token does not match"));
    }
    Ok(HttpResponse::Ok().content_type("text/plain").body(q.challenge.clone().unwrap_or_default()))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/v1/webhooks/{channel_type}/{channel_id}")
            .route(web::post().to(receive_webhook))
            .route(web::get().to(webhook_handshake)),
    );
}
