//! The sandbox channel: accepts every message, waits `latency_ms`, fails a `failure_rate` share of them
//! (transiently), and reports the rest delivered; what it "sent" is kept (the last
//! [`KEEP`] per channel) and listed by `GET /v1/channels/{id}/sandbox/messages`. For trying Turumba and
//! for benchmarks.

use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;

use crate::modules::channels::adapter::{
    ChannelContext, ErrorClass, OutboundMessage, ProviderAdapter, ProviderError, SendReceipt, WebhookItem,
    WebhookRequest,
};
use crate::modules::channels::credentials::Credentials;
use crate::modules::channels::entity::sandbox_message;
use crate::modules::channels::sms;

/// Messages kept per sandbox channel.
pub const KEEP: u64 = 1000;

#[derive(Default)]
pub struct Sandbox {
    db: Option<sea_orm::DatabaseConnection>,
    writes: std::sync::atomic::AtomicU64,
}

impl Sandbox {
    pub fn new(db: Option<sea_orm::DatabaseConnection>) -> Self {
        Sandbox { db, writes: Default::default() }
    }

    async fn keep(
        &self,
        channel: &ChannelContext,
        message: &OutboundMessage,
        info: &sms::SmsInfo,
        error: Option<&str>,
    ) -> Result<(), ProviderError> {
        use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};
        let Some(db) = &self.db else { return Ok(()) };
        let store_err = |e: sea_orm::DbErr| ProviderError::new(ErrorClass::Transient, format!("sandbox: {e}"));
        sandbox_message::ActiveModel {
            id: Set(uuid::Uuid::now_v7()),
            account_id: Set(channel.account_id),
            channel_id: Set(channel.id),
            message_id: Set(message.message_id),
            to: Set(message.to.clone()),
            text: Set(message.text.clone()),
            subject: Set(message.subject.clone()),
            segments: Set(info.segments as i32),
            encoding: Set(info.encoding.as_str().to_string()),
            status: Set(if error.is_some() { "failed" } else { "delivered" }.to_string()),
            error: Set(error.map(str::to_string)),
            created_at: Set(chrono::Utc::now()),
        }
        .insert(db)
        .await
        .map_err(store_err)?;
        // Now and then, trim the channel to its last KEEP messages.
        if self.writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 100 == 99 {
            let cutoff = sandbox_message::Entity::find()
                .filter(sandbox_message::Column::ChannelId.eq(channel.id))
                .order_by_desc(sandbox_message::Column::Id)
                .offset(KEEP)
                .limit(1)
                .one(db)
                .await
                .map_err(store_err)?;
            if let Some(c) = cutoff {
                sandbox_message::Entity::delete_many()
                    .filter(sandbox_message::Column::ChannelId.eq(channel.id))
                    .filter(sandbox_message::Column::Id.lte(c.id))
                    .exec(db)
                    .await
                    .map_err(store_err)?;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl ProviderAdapter for Sandbox {
    fn key(&self) -> (&'static str, Option<&'static str>) {
        ("sandbox", None)
    }

    async fn send(&self, channel: &ChannelContext, message: &OutboundMessage) -> Result<SendReceipt, ProviderError> {
        let Credentials::Sandbox(c) = &channel.credentials else {
            return Err(ProviderError::new(ErrorClass::Permanent, "not a sandbox channel"));
        };
        if let Some(ms) = c.latency_ms.filter(|ms| *ms > 0) {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let info = sms::analyse(&message.text);
        let rate = c.failure_rate.unwrap_or(0.0);
        if rate > 0.0 && rand::rng().random::<f64>() < rate {
            let e = ProviderError::new(ErrorClass::Transient, "sandbox: simulated failure (failure_rate)");
            self.keep(channel, message, &info, Some(&e.message)).await?;
            return Err(e);
        }
        self.keep(channel, message, &info, None).await?;
        Ok(SendReceipt {
            part_ids: Vec::new(),
            provider_message_id: Some(format!("sandbox-{}", message.message_id)),
            status: "delivered",
            segments: Some(info.segments),
            encoding: Some(info.encoding.as_str()),
        })
    }

    /// Takes every message, files included (it keeps the text only).
    fn sends_attachments(&self) -> bool {
        true
    }

    async fn verify(&self, _channel: &ChannelContext) -> Result<String, ProviderError> {
        Ok("sandbox".into())
    }

    fn verify_signature(&self, _channel: &ChannelContext, _request: &WebhookRequest) -> bool {
        false
    }

    fn parse_webhook(&self, _channel: &ChannelContext, _request: &WebhookRequest) -> Result<Vec<WebhookItem>, String> {
        Err("the sandbox channel has no webhooks".into())
    }
}
