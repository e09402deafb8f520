//! Groups with exact member counts (changed by the rows a write really touched) and their members.

use chrono::Utc;
use sea_orm::sea_query::Condition;
use sea_orm::{ActiveModelTrait, ColumnTrait, IntoActiveModel, ModelTrait, Set};
use serde_json::json;
use uuid::Uuid;

use super::entity::{contact, group};
use super::filter;
use super::service::*;
use super::store;
use crate::db::list::{ListQuery, Page};
use crate::error::{AppError, AppResult, FieldError};
use crate::modules::accounts::AccountScope;
use crate::modules::events::{EventBus, EventMeta};

impl Contacts {
    /// The account's groups, filtered, sorted and paged.
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn list_groups(&self, scope: AccountScope, q: &ListQuery) -> AppResult<Page<group::Model>> {
        store::list_groups(&self.db, scope, q).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn create_group(
        &self,
        scope: AccountScope,
        name: &str,
        description: Option<String>,
        meta: &EventMeta,
    ) -> AppResult<group::Model> {
        let now = Utc::now();
        let txn = crate::db::begin_write(&self.db).await?;
        let g = group::ActiveModel {
            id: Set(Uuid::now_v7()),
            account_id: Set(scope.account_id()),
            name: Set(name.trim().to_string()),
            description: Set(description),
            contact_count: Set(0),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&txn)
        .await
        .map_err(|e| name_conflict(e, "group"))?;
        let mut bus = EventBus::new(meta.clone());
        bus.emit("group.created", "group", g.id, Some(scope.account_id()), json!({ "name": g.name }));
        self.events.commit(txn, bus).await?;
        Ok(g)
    }

    pub async fn get_group(&self, scope: AccountScope, id: Uuid) -> AppResult<group::Model> {
        store::find_group(&self.db, scope, id).await?.ok_or(AppError::NotFound("group"))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn update_group(
        &self,
        scope: AccountScope,
        id: Uuid,
        name: Option<String>,
        description: Option<Option<String>>,
        meta: &EventMeta,
    ) -> AppResult<group::Model> {
        let mut active = self.get_group(scope, id).await?.into_active_model();
        if let Some(n) = name {
            active.name = Set(n.trim().to_string());
        }
        if let Some(d) = description {
            active.description = Set(d);
        }
        active.updated_at = Set(Utc::now());
        let txn = crate::db::begin_write(&self.db).await?;
        let g = active.update(&txn).await.map_err(|e| name_conflict(e, "group"))?;
        let mut bus = EventBus::new(meta.clone());
        bus.emit("group.updated", "group", g.id, Some(scope.account_id()), json!({ "name": g.name }));
        self.events.commit(txn, bus).await?;
        Ok(g)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn delete_group(&self, scope: AccountScope, id: Uuid, meta: &EventMeta) -> AppResult<()> {
        let g = self.get_group(scope, id).await?;
        let txn = crate::db::begin_write(&self.db).await?;
        let mut bus = EventBus::new(meta.clone());
        bus.emit("group.deleted", "group", g.id, Some(scope.account_id()), json!({ "name": g.name }));
        g.delete(&txn).await?;
        Ok(self.events.commit(txn, bus).await?)
    }

    /// Adds (or removes) the contacts matching `cond` to (from) a group; returns the count changed and
    /// the group after the change.
    /// The group must be this account's (404), then the target is checked (422).
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn change_members(
        &self,
        scope: AccountScope,
        group_id: Uuid,
        target: Target<'_>,
        add: bool,
        meta: &EventMeta,
    ) -> AppResult<(u64, group::Model)> {
        self.get_group(scope, group_id).await?;
        let cond = self.target(scope, target).await?;
        let txn = crate::db::begin_write(&self.db).await?;
        let n = if add {
            store::add_members_matching(&txn, scope, group_id, cond).await?
        } else {
            store::remove_members_matching(&txn, scope, group_id, cond).await?
        };
        let mut bus = EventBus::new(meta.clone());
        if n > 0 {
            let kind = if add { "group.members_added" } else { "group.members_removed" };
            bus.emit(kind, "group", group_id, Some(scope.account_id()), json!({ "count": n }));
        }
        self.events.commit(txn, bus).await?;
        Ok((n, self.get_group(scope, group_id).await?))
    }

    /// The condition for a body that names `contact_ids` (all must be this account's: 422 otherwise)
    /// or a `filter`.
    pub(super) async fn target(&self, scope: AccountScope, target: Target<'_>) -> AppResult<Condition> {
        match (target.contact_ids, target.filter) {
            (Some(ids), None) => {
                if ids.is_empty() {
                    return Err(AppError::field("contact_ids", "must not be empty"));
                }
                if ids.len() > 10_000 {
                    return Err(AppError::field(
                        "contact_ids",
                        "at most 10,000 ids per request; use a filter for more",
                    ));
                }
                let own = store::own_contact_ids(&self.db, scope, ids).await?;
                let missing: Vec<FieldError> = ids
                    .iter()
                    .enumerate()
                    .filter(|(_, id)| !own.contains(id))
                    .take(20)
                    .map(|(i, id)| {
                        FieldError::new(format!("contact_ids[{i}]"), format!("no contact {id} in this account"))
                    })
                    .collect();
                if !missing.is_empty() {
                    return Err(AppError::Validation(missing));
                }
                Ok(Condition::all().add(contact::Column::Id.is_in(ids.to_vec())))
            }
            (None, Some(f)) => {
                let filters = filter::parse_body_filter(f, "filter")?;
                self.compile(&filters).map_err(filter::as_422("filter"))
            }
            _ => Err(AppError::field("contact_ids", "give exactly one of contact_ids or filter")),
        }
    }
}
