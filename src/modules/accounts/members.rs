//! Memberships: who belongs to an account, with which role.

use chrono::Utc;
use sea_orm::{ActiveModelTrait, IntoActiveModel, ModelTrait, Set};
use serde_json::json;
use uuid::Uuid;

use super::entity::{membership, role, user};
use super::service::*;
use super::store;
use super::tenancy::AccountScope;
use crate::db::list::{ListQuery, Page};
use crate::domain::EmailAddress;
use crate::error::{AppError, AppResult};
use crate::modules::events::{EventBus, EventMeta};

/// A membership with its user and role.
pub type MemberRow = (membership::Model, user::Model, role::Model);

impl Accounts {
    /// The members of the account with their users and roles, filtered, sorted and paged.
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn list_members(&self, scope: AccountScope, q: &ListQuery) -> AppResult<Page<MemberRow>> {
        let page = store::list_memberships(&self.db, scope, q).await?;
        let items = self.hydrate_members(scope, page.items).await?;
        Ok(Page { items, total: page.total, skip: page.skip, limit: page.limit })
    }

    /// Adds an existing, verified user to the account (invitations cover users without an account).
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn add_member(
        &self,
        scope: AccountScope,
        email: &str,
        role_id: Uuid,
        meta: &EventMeta,
    ) -> AppResult<membership::Model> {
        let role = store::find_role(&self.db, scope, role_id)
            .await?
            .ok_or_else(|| AppError::field("role_id", "no such role in this account"))?;
        let user = store::find_user_by_email(&self.db, &EmailAddress::canonical(email))
            .await?
            .filter(|u| u.email_verified_at.is_some())
            .ok_or_else(|| AppError::field("email", "no verified user has this e-mail; invite them instead"))?;
        let txn = crate::db::begin_write(&self.db).await?;
        let m = store::insert_membership(&txn, scope.account_id(), user.id, role.id).await?;
        let mut bus = EventBus::new(meta.clone());
        emit_member(&mut bus, "member.added", &m);
        self.commit_access_change(txn, bus).await?;
        Ok(m)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn change_member_role(
        &self,
        scope: AccountScope,
        user_id: Uuid,
        role_id: Uuid,
        meta: &EventMeta,
    ) -> AppResult<membership::Model> {
        let txn = crate::db::begin_write(&self.db).await?;
        let m = store::find_membership(&txn, scope, user_id).await?.ok_or(AppError::NotFound("member"))?;
        let new_role = store::find_role(&txn, scope, role_id)
            .await?
            .ok_or_else(|| AppError::field("role_id", "no such role in this account"))?;
        let admin = store::admin_role(&txn, scope).await?;
        if m.role_id == admin.id && new_role.id != admin.id && store::count_admins(&txn, scope).await? <= 1 {
            return Err(AppError::conflict("an account must keep at least one admin"));
        }
        let mut active = m.into_active_model();
        active.role_id = Set(new_role.id);
        active.updated_at = Set(Utc::now());
        let m = active.update(&txn).await?;
        let mut bus = EventBus::new(meta.clone());
        emit_member(&mut bus, "member.updated", &m);
        self.commit_access_change(txn, bus).await?;
        Ok(m)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn remove_member(&self, scope: AccountScope, user_id: Uuid, meta: &EventMeta) -> AppResult<()> {
        let txn = crate::db::begin_write(&self.db).await?;
        let m = store::find_membership(&txn, scope, user_id).await?.ok_or(AppError::NotFound("member"))?;
        let admin = store::admin_role(&txn, scope).await?;
        if m.role_id == admin.id && store::count_admins(&txn, scope).await? <= 1 {
            return Err(AppError::conflict("an account must keep at least one admin"));
        }
        let mut bus = EventBus::new(meta.clone());
        emit_member(&mut bus, "member.removed", &m);
        m.delete(&txn).await?;
        // A removed member's default account must not keep pointing here.
        if let Some(u) = store::find_user(&txn, user_id).await?
            && u.default_account_id == Some(scope.account_id())
        {
            let mut active = u.into_active_model();
            active.default_account_id = Set(None);
            active.update(&txn).await?;
        }
        self.commit_access_change(txn, bus).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn member_user(
        &self,
        scope: AccountScope,
        user_id: Uuid,
    ) -> AppResult<(membership::Model, user::Model, role::Model)> {
        let m = store::find_membership(&self.db, scope, user_id).await?.ok_or(AppError::NotFound("user"))?;
        let u = store::find_user(&self.db, user_id).await?.ok_or(AppError::NotFound("user"))?;
        let r = store::find_role(&self.db, scope, m.role_id).await?.ok_or(AppError::NotFound("role"))?;
        Ok((m, u, r))
    }

    /// Users and roles for a page of memberships (two queries, not one per row).
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn hydrate_members(
        &self,
        scope: AccountScope,
        page: Vec<membership::Model>,
    ) -> AppResult<Vec<(membership::Model, user::Model, role::Model)>> {
        let users = store::users_by_ids(&self.db, page.iter().map(|m| m.user_id).collect()).await?;
        let roles = store::roles_by_ids(&self.db, scope, page.iter().map(|m| m.role_id).collect()).await?;
        Ok(page
            .into_iter()
            .filter_map(|m| {
                let u = users.iter().find(|u| u.id == m.user_id)?.clone();
                let r = roles.iter().find(|r| r.id == m.role_id)?.clone();
                Some((m, u, r))
            })
            .collect())
    }
}

pub(super) fn emit_member(bus: &mut EventBus, event_type: &str, m: &membership::Model) {
    bus.emit(event_type, "membership", m.id, Some(m.account_id), json!({ "user_id": m.user_id, "role_id": m.role_id }));
}
