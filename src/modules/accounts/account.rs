//! Accounts: creation of top-level accounts (the creator becomes admin; sub-accounts in `sub_accounts`), settings, deletion, and the operator's scope for CLI
//! commands.

use chrono::Utc;
use sea_orm::{ActiveModelTrait, ConnectionTrait, IntoActiveModel, ModelTrait, Set};
use serde_json::{Value, json};
use uuid::Uuid;

use super::entity::account;
use super::service::*;
use super::store;
use super::tenancy::{AccountScope, CurrentUser};
use crate::error::{AppError, AppResult};
use crate::modules::events::{EventBus, EventMeta};

pub struct AccountInput<'a> {
    pub name: &'a str,
    pub timezone: Option<&'a str>,
    pub default_country_code: Option<&'a str>,
    pub settings: Option<Value>,
}

#[derive(Default)]
pub struct AccountPatch {
    pub name: Patch<String>,
    pub timezone: Patch<String>,
    pub default_country_code: Patch<String>,
    pub settings: Patch<Value>,
}

impl AccountPatch {
    pub fn is_empty(&self) -> bool {
        self.name.is_none() && self.timezone.is_none() && self.default_country_code.is_none() && self.settings.is_none()
    }
}

impl Accounts {
    /// A top-level account; the caller becomes its admin.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn create_account(
        &self,
        user: &CurrentUser,
        input: AccountInput<'_>,
        meta: &EventMeta,
    ) -> AppResult<account::Model> {
        self.insert_account(user, input, None, meta).await
    }

    /// An account with its system roles: top-level with the caller as its admin, or (given a parent) a
    /// sub-account without members.
    pub(super) async fn insert_account(
        &self,
        user: &CurrentUser,
        input: AccountInput<'_>,
        parent: Option<AccountScope>,
        meta: &EventMeta,
    ) -> AppResult<account::Model> {
        let tz = input.timezone.unwrap_or("UTC");
        if !valid_timezone(tz) {
            return Err(AppError::field("timezone", "must be an IANA time zone such as Africa/Addis_Ababa"));
        }
        let txn = crate::db::begin_write(&self.db).await?;
        let (acc, _) = store::create_account(
            &txn,
            store::NewAccount {
                name: input.name.trim(),
                parent_id: parent.map(|p| p.account_id()),
                timezone: tz,
                default_country_code: input.default_country_code,
                settings: input.settings.unwrap_or_else(|| json!({})),
            },
            parent.is_none().then_some(user.id),
        )
        .await?;
        let mut bus = EventBus::new(meta.clone());
        emit_account_created(&mut bus, &acc, user.id);
        self.commit_access_change(txn, bus).await?;
        Ok(acc)
    }

    /// A scope for an operator acting from the command line (who has the database anyway): the account
    /// must exist. Never used for HTTP requests, whose scope comes from the caller's membership.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn operator_scope(&self, account_id: Uuid) -> AppResult<AccountScope> {
        self.operator_scope_in(&self.db, account_id).await
    }

    /// [`Self::operator_scope`] read through `conn`: an event handler passes its own transaction, so it
    /// never waits for a second pooled connection while it holds one.
    pub async fn operator_scope_in<C: ConnectionTrait>(&self, conn: &C, account_id: Uuid) -> AppResult<AccountScope> {
        store::find_account(conn, account_id).await?.ok_or(AppError::NotFound("account"))?;
        Ok(AccountScope::checked(account_id))
    }

    pub async fn get_account(&self, scope: AccountScope) -> AppResult<account::Model> {
        self.get_account_in(&self.db, scope).await
    }

    /// [`Self::get_account`] read through `conn` (an event handler's transaction).
    pub async fn get_account_in<C: ConnectionTrait>(&self, conn: &C, scope: AccountScope) -> AppResult<account::Model> {
        store::find_account(conn, scope.account_id()).await?.ok_or(AppError::NotFound("account"))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn update_account(
        &self,
        scope: AccountScope,
        patch: AccountPatch,
        meta: &EventMeta,
    ) -> AppResult<account::Model> {
        let current = self.get_account(scope).await?;
        let before = account_event(&current);
        let mut active = current.into_active_model();
        if let Some(name) = required_name("name", patch.name)? {
            active.name = Set(name);
        }
        if let Some(tz) = required("timezone", patch.timezone)? {
            if !valid_timezone(&tz) {
                return Err(AppError::field("timezone", "must be an IANA time zone such as Africa/Addis_Ababa"));
            }
            active.timezone = Set(tz);
        }
        if let Some(cc) = patch.default_country_code {
            active.default_country_code = Set(cc);
        }
        if let Some(settings) = patch.settings {
            let settings = settings.unwrap_or_else(|| json!({}));
            if !settings.is_object() {
                return Err(AppError::field("settings", "must be an object"));
            }
            active.settings = Set(settings);
        }
        active.updated_at = Set(Utc::now());
        let txn = crate::db::begin_write(&self.db).await?;
        let acc = active.update(&txn).await?;
        let mut bus = EventBus::new(meta.clone());
        bus.before(before);
        bus.emit("account.updated", "account", acc.id, Some(acc.id), account_event(&acc));
        self.commit_access_change(txn, bus).await?;
        Ok(acc)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn delete_account(&self, scope: AccountScope, meta: &EventMeta) -> AppResult<()> {
        if store::has_sub_accounts(&self.db, scope).await? {
            return Err(AppError::conflict("delete the sub-accounts of this account first"));
        }
        let acc = self.get_account(scope).await?;
        let txn = crate::db::begin_write(&self.db).await?;
        // Memberships reference roles with RESTRICT; remove them first, then the account (roles cascade).
        store::delete_memberships_of(&txn, scope).await?;
        let (id, name) = (acc.id, acc.name.clone());
        acc.delete(&txn).await?;
        let mut bus = EventBus::new(meta.clone());
        bus.emit("account.deleted", "account", id, Some(id), json!({ "name": name }));
        self.commit_access_change(txn, bus).await?;
        Ok(())
    }
}

pub(super) fn emit_account_created(bus: &mut EventBus, acc: &account::Model, owner: Uuid) {
    bus.emit(
        "account.created",
        "account",
        acc.id,
        Some(acc.id),
        json!({ "name": acc.name, "parent_id": acc.parent_id, "owner_user_id": owner, "timezone": acc.timezone }),
    );
}

/// An account's settings as its events and audit entries show them.
fn account_event(a: &account::Model) -> Value {
    json!({ "name": a.name, "timezone": a.timezone, "status": a.status,
            "default_country_code": a.default_country_code, "settings": a.settings })
}
