//! Accounts: users, accounts (and sub-accounts), roles and permissions, memberships, the local identity
//! provider, tenancy resolution (`X-Account-Id`) and the request context.
//!
//! Public facade: [`Accounts`] (the `Tenancy` of ARCHITECTURE.md: `authenticate`, `active_access`,
//! `access_to`), [`CurrentUser`], [`Access`], [`configure`] and [`ApiDoc`]. Invitations, the audit log
//! and the Cognito provider come in a later issue; the schema leaves room for them (`accounts.parent_id`).

mod api;
mod entity;
mod password;
pub mod permissions;
mod service;
mod store;
mod tokens;

pub use api::configure;
pub use service::{Access, Accounts, CurrentUser, valid_timezone};
pub use tokens::JwtKeys;

/// Whitelisted list fields per resource (SPEC §2 filters).
mod list_fields {
    use super::entity::{account, membership, role};
    use crate::http::list::{Field, Kind};

    pub const ACCOUNT_FIELDS: &[Field<account::Column>] = &[
        Field::new("id", account::Column::Id, Kind::Uuid),
        Field::sortable("name", account::Column::Name, Kind::Text),
        Field::new("status", account::Column::Status, Kind::Enum(&["active", "suspended"])),
        Field::new("parent_id", account::Column::ParentId, Kind::Uuid),
        Field::sortable("created_at", account::Column::CreatedAt, Kind::Timestamp),
        Field::sortable("updated_at", account::Column::UpdatedAt, Kind::Timestamp),
    ];

    pub const ROLE_FIELDS: &[Field<role::Column>] = &[
        Field::new("id", role::Column::Id, Kind::Uuid),
        Field::sortable("name", role::Column::Name, Kind::Text),
        Field::new("is_system", role::Column::IsSystem, Kind::Bool),
        Field::sortable("created_at", role::Column::CreatedAt, Kind::Timestamp),
        Field::sortable("updated_at", role::Column::UpdatedAt, Kind::Timestamp),
    ];

    pub const MEMBER_FIELDS: &[Field<membership::Column>] = &[
        Field::new("user_id", membership::Column::UserId, Kind::Uuid),
        Field::new("role_id", membership::Column::RoleId, Kind::Uuid),
        Field::sortable("created_at", membership::Column::CreatedAt, Kind::Timestamp),
        Field::sortable("updated_at", membership::Column::UpdatedAt, Kind::Timestamp),
    ];
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    api::register,
    api::verify_email,
    api::resend_verification,
    api::login,
    api::refresh,
    api::logout,
    api::forgot_password,
    api::reset_password,
    api::change_password,
    api::jwks,
    api::get_me,
    api::update_me,
    api::list_users,
    api::get_user,
    api::get_context,
    api::list_accounts,
    api::create_account,
    api::get_account,
    api::update_account,
    api::delete_account,
    api::list_members,
    api::add_member,
    api::update_member,
    api::remove_member,
    api::list_roles,
    api::create_role,
    api::get_role,
    api::update_role,
    api::delete_role,
))]
pub struct ApiDoc;
