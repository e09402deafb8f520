//! The HTTP side of the channels module: `channels` (`/v1/channels*`, JWT, `channels:read|manage`) and
//! `webhooks` (`/v1/webhooks*`, signed per provider).

pub(super) mod channels;
pub(super) mod webhooks;

use actix_web::web;

/// Routes: `/v1/channels*` and `/v1/webhooks*`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    channels::configure(cfg);
    webhooks::configure(cfg);
}
