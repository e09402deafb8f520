//! Accounts: users, accounts (and sub-accounts), roles and permissions, memberships, the local identity
//! provider, tenancy resolution (`X-Account-Id`) and the request context.
//!
//! Public facade: [`Accounts`] (the `Tenancy` of ARCHITECTURE.md: `authenticate`, `authorize`,
//! `access_to`, `operator_scope`), the tenancy types [`AccountScope`], [`Access`] and [`CurrentUser`],
//! the request extractors [`RequestCtx`] and [`AuthUser`], [`JwtKeys`], [`configure`] and [`ApiDoc`].
//! The audit log's entries come from the event pipeline (`audit`). Passwords, codes and tokens belong to
//! an [`identity_provider::IdentityProvider`]: `local_identity` (the default) or `cognito` (with
//! `cognito_jwks`, which verifies the pool's tokens).
//!
//! Inside: `service` (the shared state) with one file per concern (`tenancy` types and their
//! `resolution`, `identity`, `profile`, `account`, `sub_accounts`, `suspension`, `roles`, `members`, `invitations`), `store` (every query), `api/` (one file per resource).

mod access_cache;
mod account;
mod api;
mod audit;
mod cognito;
mod cognito_jwks;
mod entity;
mod identity;
mod identity_provider;
mod invitation_store;
mod invitations;
mod local_identity;
mod members;
mod password;
mod permissions;
mod profile;
mod resolution;
mod roles;
mod service;
mod session_store;
mod store;
mod sub_accounts;
mod suspension;
mod tenancy;
mod tokens;

pub use api::configure;
pub use api::context::{AuthUser, RequestCtx, StreamCtx, request_meta, selected_account};
pub use cognito_jwks::{CognitoClaims, CognitoVerifier, TokenUse};
pub use service::{Accounts, valid_timezone};
pub use sub_accounts::Reach;
pub use tenancy::{Access, AccountScope, CurrentUser};
pub use tokens::JwtKeys;

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    api::auth::register,
    api::auth::verify_email,
    api::auth::resend_verification,
    api::auth::login,
    api::auth::refresh,
    api::auth::logout,
    api::auth::forgot_password,
    api::auth::reset_password,
    api::auth::change_password,
    api::auth::jwks,
    api::users::get_me,
    api::users::update_me,
    api::users::list_users,
    api::users::get_user,
    api::users::get_context,
    api::accounts::list_accounts,
    api::accounts::create_account,
    api::accounts::get_account,
    api::accounts::update_account,
    api::accounts::delete_account,
    api::accounts::list_sub_accounts,
    api::accounts::create_sub_account,
    api::accounts::list_members,
    api::accounts::add_member,
    api::accounts::update_member,
    api::accounts::remove_member,
    api::invitations::create_invitation,
    api::invitations::list_invitations,
    api::invitations::revoke_invitation,
    api::invitations::preview_invitation,
    api::invitations::accept_invitation,
    api::audit::list_audit_logs,
    api::roles::list_roles,
    api::roles::create_role,
    api::roles::get_role,
    api::roles::update_role,
    api::roles::delete_role,
))]
pub struct ApiDoc;
