//! Delivery channels (SPEC §5): channel CRUD, credentials sealed by the [`vault::Vault`] (AES-256-GCM,
//! rotatable keys), provider adapters behind [`adapter::ProviderAdapter`], verification, status from
//! traffic and channel health; messaging sends through the [`ChannelRegistry`].
//!
//! Public facade: [`Channels`], [`ChannelRegistry`], the adapter types in [`adapter`], [`sms`] (encoding
//! and segments), [`configure`], [`ApiDoc`]. Credentials are opened only inside this module.

pub mod adapter;
mod api;
pub mod credentials;
mod entity;
pub mod leases;
pub mod providers;
mod service;
pub mod sms;
mod store;
pub mod vault;
pub mod webhooks;

/// Routes: `/v1/channels*` and `/v1/webhooks*`.
pub fn configure(cfg: &mut actix_web::web::ServiceConfig) {
    api::configure(cfg);
    webhooks::configure(cfg);
}
pub use service::{ChannelPatch, ChannelRegistry, Channels, LoadedChannel, NewChannel};

/// The channel row as other modules see it (status, retry settings, rate limit).
pub type Channel = entity::channel::Model;

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    api::list_channels,
    api::create_channel,
    api::get_channel,
    api::update_channel,
    api::delete_channel,
    api::verify_channel,
    api::channel_health,
    api::list_sandbox_messages,
    webhooks::receive_webhook,
    webhooks::webhook_handshake,
))]
pub struct ApiDoc;
