//! Sub-accounts: an agency's account holds its clients' accounts (at most `accounts.max_depth` levels).
//! Members of an account whose role grants `accounts:manage` act in every account below it with that
//! role; a sub-account's own members never reach upwards.

use uuid::Uuid;

use super::account::AccountInput;
use super::entity::{account, role};
use super::permissions::Permissions;
use super::service::*;
use super::store;
use super::tenancy::{Access, AccountScope, CurrentUser};
use crate::db::list::{ListQuery, Page};
use crate::error::{AppError, AppResult};
use crate::modules::events::EventMeta;

/// An account the caller may act in, with the role they act with there.
#[derive(Debug, Clone)]
pub struct Reach {
    pub account: account::Model,
    pub role: role::Model,
    /// True when the role is a membership of an ancestor (`accounts:manage` there).
    pub via_parent: bool,
}

impl Accounts {
    /// Access through an ancestor: the nearest ancestor where the user's role grants `accounts:manage`.
    pub(super) async fn access_via_ancestors(&self, user: &CurrentUser, account_id: Uuid) -> AppResult<Option<Access>> {
        let chain = store::account_chain(&self.db, account_id, self.max_depth).await?;
        if chain.len() < 2 {
            return Ok(None);
        }
        let ancestors: Vec<Uuid> = chain[1..].iter().map(|a| a.id).collect();
        let roles = store::roles_in_accounts(&self.db, user.id, &ancestors).await?;
        for ancestor in &ancestors {
            let Some((_, r)) = roles.iter().find(|(m, _)| m.account_id == *ancestor) else { continue };
            let permissions = Permissions::from_json(&r.permissions);
            if permissions.has("accounts:manage") {
                return Ok(Some(Access {
                    scope: AccountScope::checked(account_id),
                    role_id: r.id,
                    role_name: r.name.clone(),
                    permissions,
                    via_parent: true,
                    granted_in: *ancestor,
                }));
            }
        }
        Ok(None)
    }

    /// Every account the user may act in: their memberships, then (level by level) the sub-accounts
    /// below those where their role grants `accounts:manage`. A direct membership wins over a role
    /// reached through a parent.
    pub async fn reachable(&self, user: &CurrentUser) -> AppResult<Vec<Reach>> {
        let cache = &self.access_cache;
        let load = async { Ok(std::sync::Arc::new(self.load_reach(user).await?)) };
        Ok(cache.memo.remembered(&cache.reach, user.id, load).await?.as_ref().clone())
    }

    async fn load_reach(&self, user: &CurrentUser) -> AppResult<Vec<Reach>> {
        let mut out: Vec<Reach> = store::memberships_of_user(&self.db, user.id)
            .await?
            .into_iter()
            .map(|(_, role, account)| Reach { account, role, via_parent: false })
            .collect();
        let manages = |r: &role::Model| Permissions::from_json(&r.permissions).has("accounts:manage");
        // Only accounts that have sub-accounts are looked below (one query fewer for most managers).
        let mut frontier: Vec<(Uuid, role::Model)> = out
            .iter()
            .filter(|r| r.account.has_sub_accounts && manages(&r.role))
            .map(|r| (r.account.id, r.role.clone()))
            .collect();
        for _ in 1..self.max_depth {
            if frontier.is_empty() {
                break;
            }
            let parents: Vec<Uuid> = frontier.iter().map(|(id, _)| *id).collect();
            let mut next = Vec::new();
            for child in store::children_of(&self.db, &parents).await? {
                if out.iter().any(|r| r.account.id == child.id) {
                    continue;
                }
                let Some((_, role)) = frontier.iter().find(|(id, _)| Some(*id) == child.parent_id) else { continue };
                if child.has_sub_accounts {
                    next.push((child.id, role.clone()));
                }
                out.push(Reach { account: child, role: role.clone(), via_parent: true });
            }
            frontier = next;
        }
        Ok(out)
    }

    /// `GET /v1/accounts`: the accounts the caller may act in, filtered, sorted and paged.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn list_accounts_of(&self, user: &CurrentUser, q: &ListQuery) -> AppResult<Page<account::Model>> {
        let ids = self.reachable(user).await?.into_iter().map(|r| r.account.id).collect();
        store::list_accounts_among(&self.db, ids, q).await
    }

    pub async fn list_sub_accounts(&self, scope: AccountScope, q: &ListQuery) -> AppResult<Page<account::Model>> {
        store::list_sub_accounts(&self.db, scope, q).await
    }

    /// A new sub-account of `parent`, with its system roles and no members: the parent's managers
    /// reach it, its own people are invited. 409 past the depth limit.
    #[tracing::instrument(level = "debug", skip_all, fields(parent_id = %parent.account_id()))]
    pub async fn create_sub_account(
        &self,
        user: &CurrentUser,
        parent: AccountScope,
        input: AccountInput<'_>,
        meta: &EventMeta,
    ) -> AppResult<account::Model> {
        let levels = store::account_chain(&self.db, parent.account_id(), self.max_depth).await?.len();
        if levels >= self.max_depth as usize {
            return Err(AppError::conflict(format!(
                "accounts nest at most {} levels deep (TURUMBA_ACCOUNTS__MAX_DEPTH)",
                self.max_depth
            )));
        }
        self.insert_account(user, input, Some(parent), meta).await
    }
}
