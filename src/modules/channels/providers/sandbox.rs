//! The sandbox channel: accepts every message, waits `latency_ms`, fails a `failure_rate` share of them
//! (transiently), and reports the rest delivered. For trying Turumba and for benchmarks.

use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;

use crate::modules::channels::adapter::{
    ChannelContext, ErrorClass, OutboundMessage, ProviderAdapter, ProviderError, SendReceipt, WebhookItem,
    WebhookRequest,
};
use crate::modules::channels::credentials::Credentials;
use crate::modules::channels::sms;

pub struct Sandbox;

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
        let rate = c.failure_rate.unwrap_or(0.0);
        if rate > 0.0 && rand::rng().random::<f64>() < rate {
            return Err(ProviderError::new(ErrorClass::Transient, "sandbox: simulated failure (failure_rate)"));
        }
        let info = sms::analyse(&message.text);
        Ok(SendReceipt {
            provider_message_id: Some(format!("sandbox-{}", message.message_id)),
            status: "delivered",
            segments: Some(info.segments),
            encoding: Some(info.encoding.as_str()),
        })
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
