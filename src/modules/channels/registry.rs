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

    /// Sends one message and reports the outcome on the channel's status and usage.
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn send(
        &self,
        scope: AccountScope,
        channel: &LoadedChannel,
        message: &super::adapter::OutboundMessage,
    ) -> AppResult<Result<super::adapter::SendReceipt, ProviderError>> {
        if !channel.model.is_enabled {
            return Ok(Err(ProviderError::new(ErrorClass::Permanent, "the channel is disabled")));
        }
        let result = channel.adapter.send(&channel.context, message).await;
        // The provider has answered: its answer is returned even if the channel's bookkeeping cannot be
        // written (losing a receipt would make the message be sent again).
        if let Err(e) = self.channels.report_outcome(scope, channel.model.id, result.as_ref().map(|_| ())).await {
            tracing::warn!(channel_id = %channel.model.id, error = %e, "cannot record a send on the channel's status");
        }
        Ok(result)
    }
}
