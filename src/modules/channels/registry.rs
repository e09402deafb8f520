//! The [`ChannelRegistry`]: what messaging sends through. It loads a channel with its credentials opened
//! and its adapter, sends, and reports the outcome on the channel's status and usage.

use std::sync::Arc;

use uuid::Uuid;

use super::adapter::{ChannelContext, ErrorClass, ProviderAdapter, ProviderError};
use super::entity::channel;
use crate::error::AppResult;
use crate::modules::accounts::AccountScope;

use super::service::Channels;

impl Channels {
    pub fn registry(&self) -> ChannelRegistry {
        ChannelRegistry { channels: self.clone() }
    }
}

/// What messaging uses to send: a channel with its credentials opened and its adapter. Credentials never
/// leave this value except into the adapter.
#[derive(Clone)]
pub struct ChannelRegistry {
    channels: Channels,
}

/// A channel ready to send.
pub struct LoadedChannel {
    pub model: channel::Model,
    /// The decrypted credentials: used by the adapter inside this module, never handed out.
    context: ChannelContext,
    adapter: Arc<dyn ProviderAdapter>,
}

impl ChannelRegistry {
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn load(&self, scope: AccountScope, id: Uuid) -> AppResult<LoadedChannel> {
        let model = self.channels.get(scope, id).await?;
        let context = self.channels.context(&model)?;
        let adapter = self.channels.adapter(&model)?;
        Ok(LoadedChannel { model, context, adapter })
    }

    /// The channels whose sends belong to another process (it holds their SMPP bind): a dispatcher
    /// leaves their messages to it. Empty when this process takes no bind leases or they cannot be read
    /// (the adapter still refuses to bind a channel held elsewhere).
    pub async fn bound_elsewhere(&self) -> Vec<Uuid> {
        let Some(leases) = &self.channels.leases else { return Vec::new() };
        leases.held_elsewhere().await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the SMPP bind leases");
            Vec::new()
        })
    }

    /// Sends one message and reports the outcome on the channel's status and usage.
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn send(
        &self,
        scope: AccountScope,
        channel: &LoadedChannel,
        message: &super::adapter::OutboundMessage,
    ) -> AppResult<Result<super::adapter::SendReceipt, ProviderError>> {
        let result = self.send_unreported(channel, message).await;
        if channel.model.is_enabled {
            self.report(scope, channel.model.id, &[result.as_ref().map(|_| ()).map_err(|e| e.clone())]).await;
        }
        Ok(result)
    }

    /// Sends one message without touching the channel's status and usage: the caller reports a batch
    /// of outcomes with [`ChannelRegistry::report`] (a dispatcher, once per channel per pass).
    pub async fn send_unreported(
        &self,
        channel: &LoadedChannel,
        message: &super::adapter::OutboundMessage,
    ) -> Result<super::adapter::SendReceipt, ProviderError> {
        if !channel.model.is_enabled {
            return Err(ProviderError::new(ErrorClass::Permanent, "the channel is disabled"));
        }
        channel.adapter.send(&channel.context, message).await
    }

    /// Records the outcomes of sends on one channel, in order, on its status and usage. The provider
    /// has answered by now: a bookkeeping failure is logged, never returned (losing a provider's
    /// answer would make the messages be sent again).
    pub async fn report(&self, scope: AccountScope, channel_id: Uuid, outcomes: &[Result<(), ProviderError>]) {
        let outcomes: Vec<Result<(), &ProviderError>> = outcomes.iter().map(|o| o.as_ref().map(|_| ())).collect();
        if let Err(e) = self.channels.report_outcomes(scope, channel_id, &outcomes).await {
            tracing::warn!(%channel_id, error = %e, "cannot record sends on the channel's status");
        }
    }
}
