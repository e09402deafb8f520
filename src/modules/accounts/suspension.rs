//! Account status (SPEC §3.2): `active` or `suspended`. A suspended account — and every account below
//! it — answers 403 `account_suspended` to tenant requests, and its work waits: queued messages, group
//! sends and due schedules are not picked up, and provider webhooks are stored but held, until the
//! account is active again. Nothing is cancelled: a suspension (an unpaid bill, an abuse report under
//! review) is usually lifted, and cancelling would throw away the customer's work; an admin who wants it
//! gone cancels it through the API.
//!
//! The set of suspended accounts is read from the database at most every [`REFRESH`] per process (a
//! change made through this process applies at once; other processes see it within that time).

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use sea_orm::{ActiveModelTrait, ConnectionTrait, IntoActiveModel, Set};
use serde_json::json;
use uuid::Uuid;

use super::entity::account;
use super::service::*;
use super::store;
use super::tenancy::{Access, AccountScope};
use crate::error::{AppError, AppResult};
use crate::modules::events::{EventBus, EventMeta};

/// How stale this process's view of the suspended accounts may be.
pub const REFRESH: Duration = Duration::from_secs(2);

pub const ACTIVE: &str = "active";
pub const SUSPENDED: &str = "suspended";

/// The suspended accounts (each suspended one and everything below it), cached per process.
#[derive(Default)]
pub struct Suspensions {
    snapshot: RwLock<Option<(Instant, Arc<HashSet<Uuid>>)>>,
    refreshing: tokio::sync::Mutex<()>,
}

impl Suspensions {
    fn fresh(&self) -> Option<Arc<HashSet<Uuid>>> {
        let guard = self.snapshot.read().unwrap_or_else(|e| e.into_inner());
        guard.as_ref().filter(|(at, _)| at.elapsed() < REFRESH).map(|(_, set)| set.clone())
    }

    pub(super) fn forget(&self) {
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl Accounts {
    /// Every account that is suspended or lies below a suspended one (at most [`REFRESH`] old).
    pub async fn suspended_accounts(&self) -> AppResult<Arc<HashSet<Uuid>>> {
        if let Some(set) = self.suspensions.fresh() {
            return Ok(set);
        }
        let _one = self.suspensions.refreshing.lock().await;
        if let Some(set) = self.suspensions.fresh() {
            return Ok(set);
        }
        self.suspended_accounts_in(&self.db).await
    }

    /// [`Self::suspended_accounts`] read now through `conn` (an event handler's transaction), after a
    /// change another process made.
    pub async fn suspended_accounts_in<C: ConnectionTrait>(&self, conn: &C) -> AppResult<Arc<HashSet<Uuid>>> {
        let mut all: HashSet<Uuid> = store::suspended_account_ids(conn).await?.into_iter().collect();
        let mut frontier: Vec<Uuid> = all.iter().copied().collect();
        for _ in 1..self.max_depth {
            if frontier.is_empty() {
                break;
            }
            frontier = store::children_of(conn, &frontier)
                .await?
                .into_iter()
                .map(|a| a.id)
                .filter(|id| all.insert(*id))
                .collect();
        }
        let set = Arc::new(all);
        *self.suspensions.snapshot.write().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), set.clone()));
        Ok(set)
    }

    /// 403 `account_suspended` when the account (or one above it) is suspended.
    pub async fn ensure_active(&self, account_id: Uuid) -> AppResult<()> {
        if self.suspended_accounts().await?.contains(&account_id) {
            return Err(AppError::Forbidden {
                code: "account_suspended",
                message: "this account is suspended; its data is kept and its work waits until it is active again"
                    .into(),
            });
        }
        Ok(())
    }

    /// `PATCH /v1/accounts/{id} {status}`: only a manager of an ancestor account may change it (an
    /// account's own admins cannot lift their own suspension); the operator uses the command line.
    pub async fn set_status_as(&self, access: &Access, status: &str, meta: &EventMeta) -> AppResult<account::Model> {
        self.check_status_change(access, status).await?;
        self.set_status(access.scope, status, meta).await
    }

    /// Whether `access` may set the account's status to `status` (403 / 422), without writing.
    pub async fn check_status_change(&self, access: &Access, status: &str) -> AppResult<()> {
        if !matches!(status, ACTIVE | SUSPENDED) {
            return Err(AppError::field("status", "must be `active` or `suspended`"));
        }
        if !access.via_parent {
            return Err(AppError::forbidden(
                "an account's status is changed by an admin of its parent account or by the operator",
            ));
        }
        // A manager whose own account is suspended cannot lift anything below it.
        self.ensure_active(access.granted_in).await
    }

    /// Sets the status and emits `account.suspended` or `account.activated` (the channels module
    /// releases held webhooks on the latter).
    pub async fn set_status(&self, scope: AccountScope, status: &str, meta: &EventMeta) -> AppResult<account::Model> {
        if !matches!(status, ACTIVE | SUSPENDED) {
            return Err(AppError::field("status", "must be `active` or `suspended`"));
        }
        let acc = self.get_account(scope).await?;
        if acc.status == status {
            return Ok(acc);
        }
        let mut active = acc.into_active_model();
        active.status = Set(status.to_string());
        active.updated_at = Set(Utc::now());
        let txn = crate::db::begin_write(&self.db).await?;
        let acc = active.update(&txn).await?;
        let mut bus = EventBus::new(meta.clone());
        let name = if status == SUSPENDED { "account.suspended" } else { "account.activated" };
        bus.emit(name, "account", acc.id, Some(acc.id), json!({ "name": acc.name, "status": acc.status }));
        self.commit_access_change(txn, bus).await?;
        self.suspensions.forget();
        Ok(acc)
    }
}
