//! Messaging's routes: `/v1/templates*`.

use actix_web::web;

pub(super) mod templates;

/// Routes: `/v1/templates*`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    templates::configure(cfg);
}
