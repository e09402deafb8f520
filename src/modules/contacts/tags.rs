//! Tags (`#rrggbb`, unique name per account) and tagging contacts, one by one or many at once.

use chrono::Utc;
use sea_orm::{ActiveModelTrait, IntoActiveModel, ModelTrait, Set};
use serde_json::json;
use uuid::Uuid;

use super::entity::tag;
use super::service::*;
use super::store;
use crate::db::list::{ListQuery, Page};
use crate::error::{AppError, AppResult};
use crate::modules::accounts::AccountScope;
use crate::modules::events::{EventBus, EventMeta};

impl Contacts {
    /// The account's tags, filtered, sorted and paged.
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn list_tags(&self, scope: AccountScope, q: &ListQuery) -> AppResult<Page<tag::Model>> {
        store::list_tags(&self.db, scope, q).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn create_tag(
        &self,
        scope: AccountScope,
        name: &str,
        color: Option<&str>,
        meta: &EventMeta,
    ) -> AppResult<tag::Model> {
        let now = Utc::now();
        let txn = crate::db::begin_write(&self.db).await?;
        let t = tag::ActiveModel {
            id: Set(Uuid::now_v7()),
            account_id: Set(scope.account_id()),
            name: Set(name.trim().to_string()),
            color: Set(color.unwrap_or(DEFAULT_TAG_COLOR).to_lowercase()),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&txn)
        .await
        .map_err(|e| name_conflict(e, "tag"))?;
        self.commit_tag(txn, "tag.created", &t, None, meta).await?;
        Ok(t)
    }

    /// Commits a tag's change with its event (and the audit entry of the request).
    async fn commit_tag(
        &self,
        txn: sea_orm::DatabaseTransaction,
        event: &str,
        t: &tag::Model,
        before: Option<&tag::Model>,
        meta: &EventMeta,
    ) -> AppResult<()> {
        let mut bus = EventBus::new(meta.clone());
        if let Some(b) = before {
            bus.before(json!({ "name": b.name, "color": b.color }));
        }
        bus.emit(event, "tag", t.id, Some(t.account_id), json!({ "name": t.name, "color": t.color }));
        Ok(self.events.commit(txn, bus).await?)
    }

    pub async fn get_tag(&self, scope: AccountScope, id: Uuid) -> AppResult<tag::Model> {
        store::find_tag(&self.db, scope, id).await?.ok_or(AppError::NotFound("tag"))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn update_tag(
        &self,
        scope: AccountScope,
        id: Uuid,
        name: Option<String>,
        color: Option<String>,
        meta: &EventMeta,
    ) -> AppResult<tag::Model> {
        let before = self.get_tag(scope, id).await?;
        let mut active = before.clone().into_active_model();
        if let Some(n) = name {
            active.name = Set(n.trim().to_string());
        }
        if let Some(c) = color {
            active.color = Set(c.to_lowercase());
        }
        active.updated_at = Set(Utc::now());
        let txn = crate::db::begin_write(&self.db).await?;
        let t = active.update(&txn).await.map_err(|e| name_conflict(e, "tag"))?;
        self.commit_tag(txn, "tag.updated", &t, Some(&before), meta).await?;
        Ok(t)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn delete_tag(&self, scope: AccountScope, id: Uuid, meta: &EventMeta) -> AppResult<()> {
        let t = self.get_tag(scope, id).await?;
        let txn = crate::db::begin_write(&self.db).await?;
        t.clone().delete(&txn).await?;
        self.commit_tag(txn, "tag.deleted", &t, None, meta).await
    }

    /// Tags (`add`) or untags every contact matching `cond` (ids or a filter); returns how many changed.
    /// The tag must be this account's (404), then the target is checked (422).
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn tag_contacts(
        &self,
        scope: AccountScope,
        tag_id: Uuid,
        target: Target<'_>,
        add: bool,
        meta: &EventMeta,
    ) -> AppResult<u64> {
        self.get_tag(scope, tag_id).await?;
        let cond = self.target(scope, target).await?;
        let txn = crate::db::begin_write(&self.db).await?;
        let n = if add {
            store::tag_matching(&txn, scope, tag_id, cond).await?
        } else {
            store::untag_matching(&txn, scope, tag_id, cond).await?
        };
        let mut bus = EventBus::new(meta.clone());
        let kind = if add { "tag.contacts_added" } else { "tag.contacts_removed" };
        bus.emit(kind, "tag", tag_id, Some(scope.account_id()), json!({ "count": n }));
        self.events.commit(txn, bus).await?;
        Ok(n)
    }
}
