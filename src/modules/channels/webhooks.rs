//! The webhook inbox (SPEC §5.2): what happens to a provider's delivery once `api/webhooks.rs` has read
//! it (`POST /v1/webhooks/{channel_type}/{channel_id}`, no JWT: the channel id in the path names the
//! tenant) and the Meta `GET` handshake. The signature is checked first (401 and
//! nothing stored when it fails); the raw delivery is then stored in the inbox, unique per channel and
//! provider event id, together with one `webhook.inbound.<type>` outbox event per item, in ONE
//! transaction, before the provider gets its 200. A redelivery answers 200 and changes nothing; a payload
//! that cannot be read is kept as `failed` and still answered 200 (the provider would only retry it).

use chrono::Utc;
use sea_orm::{ActiveModelTrait, Set};
use serde_json::json;
use sha2::Digest;
use uuid::Uuid;

use super::adapter::WebhookRequest;
use super::entity::{channel, webhook_inbox};
use super::service::Channels;
use super::store;
use crate::error::{AppError, AppResult};
use crate::modules::events::EventBus;

/// The largest webhook body accepted (providers send a few KiB).
pub const WEBHOOK_BODY_LIMIT: usize = 1024 * 1024;

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
        store::find_channel_for_webhook(&self.db, channel_type, id).await?.ok_or(AppError::NotFound("channel"))
    }

    /// Checks, stores and emits one webhook delivery.
    #[tracing::instrument(level = "debug", skip_all)]
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
        scope: crate::modules::accounts::AccountScope,
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
        let held = self.accounts().suspended_accounts().await?.contains(&scope.account_id());
        let (status, items, error) = match (&parsed, c.is_enabled) {
            (Err(e), _) => ("failed", &[][..], Some(e.clone())),
            (Ok(items), false) => ("ignored", &items[..], Some("the channel is disabled".to_string())),
            (Ok(items), true) if held => ("held", &items[..], None),
            (Ok(items), true) => ("received", &items[..], None),
        };
        let items: Vec<serde_json::Value> =
            items.iter().map(|item| json!({ "item_event_id": item.event_id(), "item": item })).collect();
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
            processed_items: Set(0),
            held_items: Set((status == "held").then(|| serde_json::Value::from(items.clone()).to_string())),
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
            emit_items(&mut bus, &inbox, &items);
        }
        self.events.commit(txn, bus).await?;
        Ok(Accepted { inbox, duplicate: false })
    }

    /// Polls an e-mail channel's IMAP INBOX once: every unseen mail is stored in the inbox (with its
    /// `webhook.inbound.email` event) before it is flagged seen. Returns how many mails were taken.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn poll_mailbox(&self, scope: crate::modules::accounts::AccountScope, id: Uuid) -> AppResult<u64> {
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
                // The mailbox is read outside the adapter set: its errors are scrubbed the same way.
                let e = self.context(&c)?.scrub(e);
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
                let due = store::enabled_channels_of_type(&channels.db, "email").await;
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
    #[tracing::instrument(level = "debug", skip_all)]
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

    /// Counts one item of an inbox delivery as handled, inside the consumer's transaction (each item
    /// once: the consumer framework drops a redelivered event); the row becomes `processed` with its
    /// last item.
    pub async fn inbox_item_processed(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        scope: crate::modules::accounts::AccountScope,
        inbox_id: Uuid,
    ) -> AppResult<()> {
        store::count_inbox_item(txn, scope, inbox_id, Utc::now()).await
    }

    /// Releases the held webhooks of every account that is no longer suspended, in `txn` (the consumer's
    /// transaction of an `account.activated` event): each row becomes `received` and its items' events
    /// are written. Returns how many rows moved.
    pub async fn release_held_webhooks(&self, txn: &sea_orm::DatabaseTransaction) -> AppResult<usize> {
        let suspended = self.accounts().suspended_accounts_in(txn).await?;
        let mut bus = EventBus::new(crate::modules::events::EventMeta::default());
        let mut released = 0;
        for inbox in store::held_inbox_entries(txn).await? {
            if suspended.contains(&inbox.account_id) || !store::unhold_inbox_entry(txn, inbox.id).await? {
                continue;
            }
            let items: Vec<serde_json::Value> =
                inbox.held_items.as_deref().and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default();
            emit_items(&mut bus, &inbox, &items);
            released += 1;
        }
        bus.flush(txn).await?;
        self.events.committed();
        Ok(released)
    }

    async fn inbox_entry(&self, channel_id: Uuid, event_id: &str) -> AppResult<Option<webhook_inbox::Model>> {
        store::find_inbox_entry(&self.db, channel_id, event_id).await
    }

    /// The Meta subscription handshake: the challenge when `verify_token` matches the channel's.
    #[tracing::instrument(level = "debug", skip_all)]
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
            && token.is_some_and(|t| crate::secret::constant_time_eq(t.as_bytes(), expected.as_bytes())))
    }
}

/// One `webhook.inbound.<type>` event per item of an inbox row (`items`: `{item_event_id, item}`).
fn emit_items(bus: &mut EventBus, inbox: &webhook_inbox::Model, items: &[serde_json::Value]) {
    for (index, item) in items.iter().enumerate() {
        bus.emit(
            &format!("webhook.inbound.{}", inbox.channel_type),
            "webhook_inbox",
            inbox.id,
            Some(inbox.account_id),
            json!({
                "inbox_id": inbox.id,
                "channel_id": inbox.channel_id,
                "channel_type": inbox.channel_type,
                "index": index,
                "item_event_id": item["item_event_id"],
                "item": item["item"],
            }),
        );
    }
}

/// Releases held webhooks when an account becomes active again (`account.activated`; the release
/// itself reads which accounts are still suspended, so an account below a still-suspended one keeps its
/// webhooks held).
/// The durable queue of [`HeldWebhooks`].
pub const HELD_WEBHOOKS_QUEUE: &str = "channels.held_webhooks";
/// The durable queues of the channels module's consumers, for tearing a broker's topology down.
pub const QUEUES: [&str; 1] = [HELD_WEBHOOKS_QUEUE];

pub struct HeldWebhooks {
    channels: Channels,
}

impl Channels {
    /// The consumers the channels module runs in the dispatcher roles.
    pub fn consumers(&self) -> Vec<crate::modules::events::SharedConsumer> {
        vec![std::sync::Arc::new(HeldWebhooks { channels: self.clone() })]
    }
}

#[async_trait::async_trait]
impl crate::modules::events::Consumer for HeldWebhooks {
    fn name(&self) -> &str {
        HELD_WEBHOOKS_QUEUE
    }

    fn bindings(&self) -> Vec<String> {
        vec!["account.activated".into()]
    }

    async fn handle(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        _event: &crate::modules::events::EventEnvelope,
    ) -> Result<(), crate::modules::events::HandlerError> {
        let n = self
            .channels
            .release_held_webhooks(txn)
            .await
            .map_err(|e| crate::modules::events::HandlerError::Transient(e.to_string()))?;
        if n > 0 {
            tracing::info!(released = n, "released held webhooks");
        }
        Ok(())
    }
}
