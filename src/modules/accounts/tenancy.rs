//! Tenancy types: who the caller is ([`CurrentUser`]), what they may do in one account ([`Access`]) and
//! the proof that they may act there ([`AccountScope`]). Only this module creates scopes, after checking
//! access; every store of tenant data takes one, which makes tenant scoping structural.

use chrono::Utc;
use uuid::Uuid;

use super::entity::user;
use super::permissions::Permissions;
use crate::error::{AppError, AppResult};

/// Proof that the caller may act in this account. Stores take it instead of a bare account id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountScope(Uuid);

impl AccountScope {
    /// Only tenancy resolution (the accounts module) creates scopes, after checking access.
    pub(super) fn checked(account_id: Uuid) -> Self {
        AccountScope(account_id)
    }
    pub fn account_id(&self) -> Uuid {
        self.0
    }
}

/// The authenticated caller (never carries the password hash).
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub id: Uuid,
    pub email: String,
    pub full_name: String,
    pub phone: Option<String>,
    pub is_active: bool,
    pub email_verified_at: Option<chrono::DateTime<Utc>>,
    pub default_account_id: Option<Uuid>,
    pub locale: Option<String>,
    pub timezone: Option<String>,
    pub created_at: chrono::DateTime<Utc>,
    pub updated_at: chrono::DateTime<Utc>,
}

impl From<user::Model> for CurrentUser {
    fn from(u: user::Model) -> Self {
        CurrentUser {
            id: u.id,
            email: u.email,
            full_name: u.full_name,
            phone: u.phone,
            is_active: u.is_active,
            email_verified_at: u.email_verified_at,
            default_account_id: u.default_account_id,
            locale: u.locale,
            timezone: u.timezone,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

/// What the caller may do in one account.
#[derive(Debug, Clone)]
pub struct Access {
    pub scope: AccountScope,
    pub role_id: Uuid,
    pub role_name: String,
    pub permissions: Permissions,
    /// True when the access comes from `accounts:manage` on an ancestor account.
    pub via_parent: bool,
    /// The account whose membership grants the role (the account itself, or that ancestor).
    pub granted_in: Uuid,
}

impl Access {
    pub fn require(&self, permission: &str) -> AppResult<()> {
        if self.permissions.has(permission) {
            Ok(())
        } else {
            Err(AppError::Forbidden {
                code: "forbidden",
                message: format!("your role lacks the `{permission}` permission"),
            })
        }
    }
}
