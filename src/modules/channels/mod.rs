//! Delivery channels (SPEC §5): channel CRUD, credentials sealed by the vault (AES-256-GCM, rotatable
//! keys, bound to the channel id), provider adapters behind [`ProviderAdapter`], verification, webhooks,
//! status from traffic and channel health; messaging sends through the [`ChannelRegistry`].
//!
//! Public facade: [`Channels`] and [`ChannelRegistry`]; the adapter types messaging and the adapter
//! tests need ([`OutboundMessage`], [`SendReceipt`], [`ProviderError`], [`ErrorClass`], [`ChannelContext`]);
//! what the composition root needs to build it ([`Vault`], [`all_adapters`], [`http_client`],
//! [`BindLeases`], [`MediaFetcher`]); the SMS encoders; [`configure`] and [`ApiDoc`]. Credentials are opened only inside
//! this module, and a [`LoadedChannel`] keeps them to itself.
//!
//! Inside: `service` (channel rules, the registry), `webhooks` (the inbox), `credentials` (per-type
//! credential checks), `vault`, `adapter` (the trait), `providers/` (one file per provider), `leases`
//! (SMPP bind ownership), `fetch` (files by URL for e-mail), `sms` (GSM-7/UCS-2, segments), `store`, `api/`.

mod adapter;
mod api;
mod credentials;
mod entity;
mod fetch;
mod leases;
mod providers;
mod registry;
mod service;
mod sms;
mod status;
mod store;
mod vault;
mod webhooks;

pub use adapter::{
    AdapterSet, BIND_OWNED_ELSEWHERE, ChannelContext, ErrorClass, MediaAttachment, OutboundMessage, ProviderAdapter,
    ProviderError, SendReceipt, WebhookItem,
};
pub use api::configure;
pub use credentials::{Credentials, SmppCredentials, TelegramCredentials};
pub use fetch::MediaFetcher;
pub use leases::BindLeases;
pub use providers::smpp::{Smpp, WINDOW as SMPP_WINDOW};
pub use providers::telegram::Telegram;
pub use providers::{all as all_adapters, http_client, http_client_with_timeout};
pub use registry::{ChannelRegistry, LoadedChannel};
pub use service::{ChannelPatch, Channels, NewChannel};
pub use sms::{Encoding, SmsInfo, analyse as analyse_sms, decode_ucs2, encode_gsm7, encode_ucs2};
pub use vault::Vault;
pub use webhooks::QUEUES as CONSUMER_QUEUES;

/// The channel row as other modules see it (status, retry settings, rate limit).
pub type Channel = entity::channel::Model;

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    api::channels::list_channels,
    api::channels::create_channel,
    api::channels::get_channel,
    api::channels::update_channel,
    api::channels::delete_channel,
    api::channels::verify_channel,
    api::channels::channel_health,
    api::channels::list_sandbox_messages,
    api::webhooks::receive_webhook,
    api::webhooks::webhook_handshake,
))]
pub struct ApiDoc;
