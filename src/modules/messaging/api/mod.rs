//! Messaging's routes: `/v1/templates*`, `/v1/messages*`, `/v1/contacts/{id}/messages` and
//! `/v1/group-messages*` and
//! `/v1/scheduled-messages*`.

use actix_web::web;

pub(super) mod groups;
pub(super) mod messages;
pub(super) mod schedules;
pub(super) mod templates;

/// Routes: `/v1/templates*`, `/v1/messages*`, `/v1/contacts/{id}/messages`, `/v1/scheduled-messages*`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    templates::configure(cfg);
    messages::configure(cfg);
    groups::configure(cfg);
    schedules::configure(cfg);
}
