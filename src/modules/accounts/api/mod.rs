//! The HTTP side of the accounts module: one file per resource, each with its DTOs, handlers and
//! `configure`, plus [`context`], the extractors that turn a request into the caller's tenancy.

pub(super) mod accounts;
pub(super) mod audit;
pub(super) mod auth;
pub mod context;
pub(super) mod invitations;
pub(super) mod roles;
pub(super) mod users;

use actix_web::web;

/// Routes: `/.well-known/jwks.json`, `/v1/auth/*`, `/v1/users*`, `/v1/context`, `/v1/accounts*`, `/v1/invitations/*`, `/v1/audit-logs`, `/v1/roles*`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    auth::configure(cfg);
    users::configure(cfg);
    accounts::configure(cfg);
    invitations::configure(cfg);
    audit::configure(cfg);
    roles::configure(cfg);
}
