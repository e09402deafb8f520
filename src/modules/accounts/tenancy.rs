//! Tenancy types: who the caller is ([`CurrentUser`]), what they may do in one account ([`Access`]) and
//! the proof that they may act there ([`AccountScope`]). Only this module creates scopes, after checking
//! access; every store of tenant data takes one, which makes tenant scoping structural.

use chrono::Utc;

use uuid::Uuid;

use super::entity::{account, membership, role, user};
use super::permissions::Permissions;
use super::service::*;
use super::store;
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
    /// True when the access comes from `accounts:manage` on the parent account.
    pub via_parent: bool,
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

impl Accounts {
    /// Verifies the access token and loads the user, who must still exist, be active and verified.
    pub async fn authenticate(&self, token: &str) -> AppResult<CurrentUser> {
        let user_id = self.token_subject(token)?;
        let user = store::find_user(&self.db, user_id).await?.filter(may_sign_in).ok_or_else(bad_token)?;
        Ok(user.into())
    }

    pub(super) fn token_subject(&self, token: &str) -> AppResult<Uuid> {
        self.keys.verify(token).map(|c| c.sub).ok_or_else(bad_token)
    }

    /// Authenticates a tenant request and resolves its active account, in one query in the common case
    /// (a direct membership in the selected or default account); other cases take the full path.
    pub async fn authorize(&self, token: &str, selected: Option<Uuid>) -> AppResult<(CurrentUser, Access)> {
        let user_id = self.token_subject(token)?;
        let (user, role) = store::user_with_role(&self.db, user_id, selected)
            .await?
            .filter(|(u, _)| may_sign_in(u))
            .ok_or_else(bad_token)?;
        let user = CurrentUser::from(user);
        if let (Some(r), Some(account_id)) = (role, selected.or(user.default_account_id)) {
            let access = Access {
                scope: AccountScope::checked(account_id),
                role_id: r.id,
                role_name: r.name,
                permissions: Permissions::from_json(&r.permissions),
                via_parent: false,
            };
            return Ok((user, access));
        }
        let access = self.active_access(&user, selected).await?;
        Ok((user, access))
    }

    /// The caller's access to one account: a direct membership, or `accounts:manage` on its parent.
    pub async fn access_to(&self, user: &CurrentUser, account_id: Uuid) -> AppResult<Option<Access>> {
        if let Some((_, r)) = store::membership_with_role(&self.db, user.id, account_id).await? {
            return Ok(Some(Access {
                scope: AccountScope::checked(account_id),
                role_id: r.id,
                role_name: r.name,
                permissions: Permissions::from_json(&r.permissions),
                via_parent: false,
            }));
        }
        let Some(acc) = store::find_account(&self.db, account_id).await? else {
            return Ok(None);
        };
        let Some(parent) = acc.parent_id else {
            return Ok(None);
        };
        match store::membership_with_role(&self.db, user.id, parent).await? {
            Some((_, r)) => {
                let perms = Permissions::from_json(&r.permissions);
                Ok(perms.has("accounts:manage").then(|| Access {
                    scope: AccountScope::checked(account_id),
                    role_id: r.id,
                    role_name: r.name,
                    permissions: perms,
                    via_parent: true,
                }))
            }
            None => Ok(None),
        }
    }

    /// Active account: the `X-Account-Id` selection, else the default account, else the only one.
    pub async fn active_access(&self, user: &CurrentUser, selected: Option<Uuid>) -> AppResult<Access> {
        if let Some(id) = selected {
            return self
                .access_to(user, id)
                .await?
                .ok_or_else(|| AppError::forbidden("X-Account-Id does not name an account you can act in"));
        }
        if let Some(id) = user.default_account_id
            && let Some(access) = self.access_to(user, id).await?
        {
            return Ok(access);
        }
        let ids = store::account_ids_of_user(&self.db, user.id).await?;
        if ids.len() == 1
            && let Some(access) = self.access_to(user, ids[0]).await?
        {
            return Ok(access);
        }
        Err(AppError::BadRequest {
            code: "account_required",
            message: "select an account with the X-Account-Id header (or set a default account)".into(),
        })
    }

    /// `GET /v1/context`: every direct membership, and the active account (or `None` when the caller must
    /// choose). The common case needs no query beyond the membership list; the rest takes the full path.
    pub async fn context(
        &self,
        user: &CurrentUser,
        selected: Option<Uuid>,
    ) -> AppResult<(Vec<(membership::Model, role::Model, account::Model)>, Option<Uuid>)> {
        let memberships = store::memberships_of_user(&self.db, user.id).await?;
        let wanted = selected.or(user.default_account_id);
        if let Some(id) = wanted
            && memberships.iter().any(|(_, _, a)| a.id == id)
        {
            return Ok((memberships, Some(id)));
        }
        let active = match self.active_access(user, selected).await {
            Ok(a) => Some(a.scope.account_id()),
            Err(AppError::BadRequest { code: "account_required", .. }) => None,
            Err(e) => return Err(e),
        };
        Ok((memberships, active))
    }

    /// Access to an account named in a path: 404 when the caller has none (never reveal it exists).
    pub async fn path_access(&self, user: &CurrentUser, account_id: Uuid, permission: &str) -> AppResult<Access> {
        let access = self.access_to(user, account_id).await?.ok_or(AppError::NotFound("account"))?;
        access.require(permission)?;
        Ok(access)
    }
}

/// A token only works while its user exists, is active and has a verified e-mail.
pub(super) fn may_sign_in(u: &user::Model) -> bool {
    u.is_active && u.email_verified_at.is_some()
}

pub(super) fn bad_token() -> AppError {
    AppError::Unauthorized("invalid or expired token".into())
}
