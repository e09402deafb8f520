//! Tenancy resolution: the caller of a bearer token, the account a request acts in (`X-Account-Id`, else
//! the default, else the only one) and the caller's access there, directly or through `accounts:manage`
//! on an ancestor account.

use uuid::Uuid;

use super::access_cache::Caller;
use super::permissions::Permissions;
use super::service::*;
use super::store;
use super::sub_accounts::Reach;
use super::tenancy::{Access, AccountScope, CurrentUser};
use crate::error::{AppError, AppResult};

impl Accounts {
    /// Verifies the access token and loads the user, who must still exist, be active and verified.
    pub async fn authenticate(&self, token: &str) -> AppResult<CurrentUser> {
        let subject = self.identity.token_subject(token).await?;
        let cache = &self.access_cache;
        let load = async { Ok(store::find_user(&self.db, subject.user_id).await?.map(Caller::from)) };
        let caller = cache.memo.remembered(&cache.callers, subject.user_id, load).await?;
        Ok(caller.filter(|c| may_sign_in(&c.user) && issued_after_stamp(c, &subject)).ok_or_else(bad_token)?.user)
    }

    /// Authenticates a tenant request and resolves its active account, in one query in the common case
    /// (a direct membership in the selected or default account); other cases take the full path. A
    /// suspended account answers 403 `account_suspended`.
    pub async fn authorize(&self, token: &str, selected: Option<Uuid>) -> AppResult<(CurrentUser, Access)> {
        let subject = self.identity.token_subject(token).await?;
        let cache = &self.access_cache;
        let load = async {
            let found = store::user_with_role(&self.db, subject.user_id, selected).await?;
            Ok(found.map(|(u, r)| (Caller::from(u), r)))
        };
        let (caller, role) = cache
            .memo
            .remembered(&cache.roles, (subject.user_id, selected), load)
            .await?
            .filter(|(c, _)| may_sign_in(&c.user) && issued_after_stamp(c, &subject))
            .ok_or_else(bad_token)?;
        let user = caller.user;
        if let (Some(r), Some(account_id)) = (role, selected.or(user.default_account_id)) {
            let access = Access {
                scope: AccountScope::checked(account_id),
                role_id: r.id,
                role_name: r.name,
                permissions: Permissions::from_json(&r.permissions),
                via_parent: false,
                granted_in: account_id,
            };
            self.ensure_active(account_id).await?;
            return Ok((user, access));
        }
        let access = self.active_access(&user, selected).await?;
        self.ensure_active(access.scope.account_id()).await?;
        Ok((user, access))
    }

    /// The caller's access to one account: a direct membership, or `accounts:manage` on an ancestor.
    pub async fn access_to(&self, user: &CurrentUser, account_id: Uuid) -> AppResult<Option<Access>> {
        let cache = &self.access_cache;
        cache.memo.remembered(&cache.access, (user.id, account_id), self.load_access(user, account_id)).await
    }

    async fn load_access(&self, user: &CurrentUser, account_id: Uuid) -> AppResult<Option<Access>> {
        if let Some((_, r)) = store::membership_with_role(&self.db, user.id, account_id).await? {
            return Ok(Some(Access {
                scope: AccountScope::checked(account_id),
                role_id: r.id,
                role_name: r.name,
                permissions: Permissions::from_json(&r.permissions),
                via_parent: false,
                granted_in: account_id,
            }));
        }
        self.access_via_ancestors(user, account_id).await
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

    /// `GET /v1/context`: every account the caller may act in (memberships and the sub-accounts they
    /// manage), and the active account (or `None` when the caller must choose).
    pub async fn context(&self, user: &CurrentUser, selected: Option<Uuid>) -> AppResult<(Vec<Reach>, Option<Uuid>)> {
        let reach = self.reachable(user).await?;
        let wanted = selected.or(user.default_account_id);
        if let Some(id) = wanted
            && reach.iter().any(|r| r.account.id == id)
        {
            return Ok((reach, Some(id)));
        }
        let active = match self.active_access(user, selected).await {
            Ok(a) => Some(a.scope.account_id()),
            Err(AppError::BadRequest { code: "account_required", .. }) => None,
            Err(e) => return Err(e),
        };
        Ok((reach, active))
    }

    /// Access to an account named in a path: 404 when the caller has none (never reveal it exists).
    pub async fn path_access(&self, user: &CurrentUser, account_id: Uuid, permission: &str) -> AppResult<Access> {
        let access = self.access_to(user, account_id).await?.ok_or(AppError::NotFound("account"))?;
        access.require(permission)?;
        Ok(access)
    }

    /// [`Self::path_access`] for a change: a suspended account only changes status (403
    /// `account_suspended` for anything else).
    pub async fn path_access_to_change(
        &self,
        user: &CurrentUser,
        account_id: Uuid,
        permission: &str,
    ) -> AppResult<Access> {
        let access = self.path_access(user, account_id, permission).await?;
        self.ensure_active(account_id).await?;
        Ok(access)
    }
}

/// A token only works while its user exists, is active and has a verified e-mail.
pub(super) fn may_sign_in(u: &CurrentUser) -> bool {
    u.is_active && u.email_verified_at.is_some()
}

/// Whether the token was issued at or after the user's `tokens_valid_after` (read with the user row
/// every request loads anyway: the check costs nothing). Tokens carry whole seconds.
fn issued_after_stamp(u: &Caller, subject: &super::identity_provider::TokenSubject) -> bool {
    u.tokens_valid_after.is_none_or(|t| subject.issued_at >= t.timestamp())
}

pub(super) fn bad_token() -> AppError {
    AppError::Unauthorized("invalid or expired token".into())
}
