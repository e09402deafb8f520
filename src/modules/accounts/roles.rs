//! Roles of an account and their permissions (system roles cannot be changed or deleted).

use chrono::Utc;
use sea_orm::{ActiveModelTrait, IntoActiveModel, ModelTrait, Set};
use serde_json::{Value, json};
use uuid::Uuid;

use super::entity::role;
use super::permissions::{self};
use super::service::*;
use super::store;
use super::tenancy::AccountScope;
use crate::db::list::{ListQuery, Page};
use crate::error::{AppError, AppResult};
use crate::modules::events::{EventBus, EventMeta};

#[derive(Default)]
pub struct RolePatch {
    pub name: Patch<String>,
    pub description: Patch<String>,
    pub permissions: Patch<Value>,
}

impl Accounts {
    /// The roles of the account, filtered, sorted and paged.
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn list_roles(&self, scope: AccountScope, q: &ListQuery) -> AppResult<Page<role::Model>> {
        store::list_roles(&self.db, scope, q).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn create_role(
        &self,
        scope: AccountScope,
        name: &str,
        description: Option<String>,
        perms: &Value,
        meta: &EventMeta,
    ) -> AppResult<role::Model> {
        let perms = permissions::validate(perms, "permissions")?;
        let now = Utc::now();
        let txn = crate::db::begin_write(&self.db).await?;
        let role = role::ActiveModel {
            id: Set(Uuid::now_v7()),
            account_id: Set(scope.account_id()),
            name: Set(name.trim().to_string()),
            description: Set(description),
            permissions: Set(perms),
            is_system: Set(false),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&txn)
        .await
        .map_err(role_conflict)?;
        let mut bus = EventBus::new(meta.clone());
        emit_role(&mut bus, "role.created", &role);
        self.commit_access_change(txn, bus).await?;
        Ok(role)
    }

    pub async fn get_role(&self, scope: AccountScope, id: Uuid) -> AppResult<role::Model> {
        store::find_role(&self.db, scope, id).await?.ok_or(AppError::NotFound("role"))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn update_role(
        &self,
        scope: AccountScope,
        id: Uuid,
        patch: RolePatch,
        meta: &EventMeta,
    ) -> AppResult<role::Model> {
        let role = self.get_role(scope, id).await?;
        if role.is_system {
            return Err(AppError::conflict("system roles cannot be changed; create a custom role instead"));
        }
        let before = json!({ "name": role.name, "permissions": role.permissions });
        let mut active = role.into_active_model();
        if let Some(name) = required_name("name", patch.name)? {
            active.name = Set(name);
        }
        if let Some(d) = patch.description {
            active.description = Set(d);
        }
        if let Some(p) = required("permissions", patch.permissions)? {
            active.permissions = Set(permissions::validate(&p, "permissions")?);
        }
        active.updated_at = Set(Utc::now());
        let txn = crate::db::begin_write(&self.db).await?;
        let role = active.update(&txn).await.map_err(role_conflict)?;
        let mut bus = EventBus::new(meta.clone());
        bus.before(before);
        emit_role(&mut bus, "role.updated", &role);
        self.commit_access_change(txn, bus).await?;
        Ok(role)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn delete_role(&self, scope: AccountScope, id: Uuid, meta: &EventMeta) -> AppResult<()> {
        let role = self.get_role(scope, id).await?;
        if role.is_system {
            return Err(AppError::conflict("system roles cannot be deleted"));
        }
        if store::role_in_use(&self.db, scope, id).await? {
            return Err(AppError::conflict("the role is assigned to members; give them another role first"));
        }
        let txn = crate::db::begin_write(&self.db).await?;
        let mut bus = EventBus::new(meta.clone());
        emit_role(&mut bus, "role.deleted", &role);
        role.delete(&txn).await?;
        self.commit_access_change(txn, bus).await
    }
}

pub(super) fn role_conflict(e: sea_orm::DbErr) -> AppError {
    if crate::db::is_unique_violation(&e) {
        AppError::conflict("a role with this name already exists")
    } else {
        e.into()
    }
}

pub(super) fn emit_role(bus: &mut EventBus, event_type: &str, r: &role::Model) {
    bus.emit(event_type, "role", r.id, Some(r.account_id), json!({ "name": r.name, "permissions": r.permissions }));
}
