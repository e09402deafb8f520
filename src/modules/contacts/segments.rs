//! Segments: saved filters, validated when saved, evaluated whenever they are used.

use chrono::Utc;
use sea_orm::sea_query::Condition;
use sea_orm::{ActiveModelTrait, IntoActiveModel, ModelTrait, QueryFilter, Set};
use serde_json::{Value, json};
use uuid::Uuid;

use super::entity::segment;
use super::filter;
use super::service::*;
use super::store;
use crate::db::list::{ListQuery, Page};
use crate::error::{AppError, AppResult};
use crate::modules::accounts::AccountScope;
use crate::modules::events::{EventBus, EventMeta};

impl Contacts {
    /// The account's segments, filtered, sorted and paged.
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn list_segments(&self, scope: AccountScope, q: &ListQuery) -> AppResult<Page<segment::Model>> {
        store::list_segments(&self.db, scope, q).await
    }

    /// Parses and compiles a segment filter: an invalid one is a 422 when saved, not when used.
    pub fn check_segment_filter(&self, value: &Value) -> AppResult<Vec<String>> {
        let filters = filter::parse_body_filter(value, "filter")?;
        self.compile(&filters).map_err(filter::as_422("filter"))?;
        Ok(match value {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
            _ => vec![],
        })
    }

    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn create_segment(
        &self,
        scope: AccountScope,
        name: &str,
        description: Option<String>,
        filter: &Value,
        meta: &EventMeta,
    ) -> AppResult<segment::Model> {
        let filters = self.check_segment_filter(filter)?;
        let now = Utc::now();
        let txn = crate::db::begin_write(&self.db).await?;
        let s = segment::ActiveModel {
            id: Set(Uuid::now_v7()),
            account_id: Set(scope.account_id()),
            name: Set(name.trim().to_string()),
            description: Set(description),
            filter: Set(json!(filters)),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&txn)
        .await
        .map_err(|e| name_conflict(e, "segment"))?;
        self.commit_segment(txn, "segment.created", &s, None, meta).await?;
        Ok(s)
    }

    /// Commits a segment's change with its event (and the audit entry of the request).
    async fn commit_segment(
        &self,
        txn: sea_orm::DatabaseTransaction,
        event: &str,
        s: &segment::Model,
        before: Option<&segment::Model>,
        meta: &EventMeta,
    ) -> AppResult<()> {
        let shown = |s: &segment::Model| json!({ "name": s.name, "description": s.description, "filter": s.filter });
        let mut bus = EventBus::new(meta.clone());
        if let Some(b) = before {
            bus.before(shown(b));
        }
        bus.emit(event, "segment", s.id, Some(s.account_id), shown(s));
        Ok(self.events.commit(txn, bus).await?)
    }

    pub async fn get_segment(&self, scope: AccountScope, id: Uuid) -> AppResult<segment::Model> {
        store::find_segment(&self.db, scope, id).await?.ok_or(AppError::NotFound("segment"))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn update_segment(
        &self,
        scope: AccountScope,
        id: Uuid,
        name: Option<String>,
        description: Option<Option<String>>,
        filter: Option<Value>,
        meta: &EventMeta,
    ) -> AppResult<segment::Model> {
        let before = self.get_segment(scope, id).await?;
        let mut active = before.clone().into_active_model();
        if let Some(n) = name {
            active.name = Set(n.trim().to_string());
        }
        if let Some(d) = description {
            active.description = Set(d);
        }
        if let Some(f) = filter {
            active.filter = Set(json!(self.check_segment_filter(&f)?));
        }
        active.updated_at = Set(Utc::now());
        let txn = crate::db::begin_write(&self.db).await?;
        let s = active.update(&txn).await.map_err(|e| name_conflict(e, "segment"))?;
        self.commit_segment(txn, "segment.updated", &s, Some(&before), meta).await?;
        Ok(s)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn delete_segment(&self, scope: AccountScope, id: Uuid, meta: &EventMeta) -> AppResult<()> {
        let s = self.get_segment(scope, id).await?;
        let txn = crate::db::begin_write(&self.db).await?;
        s.clone().delete(&txn).await?;
        self.commit_segment(txn, "segment.deleted", &s, None, meta).await
    }

    /// How many contacts the segment has now.
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn count_segment(&self, scope: AccountScope, id: Uuid) -> AppResult<u64> {
        use sea_orm::PaginatorTrait;
        let s = self.get_segment(scope, id).await?;
        let cond = self.segment_condition(&s)?;
        Ok(store::contacts_in(scope).filter(cond).count(&self.db).await?)
    }

    /// The stored filter of a segment, compiled.
    pub fn segment_condition(&self, s: &segment::Model) -> AppResult<Condition> {
        let filters = filter::parse_body_filter(&s.filter, "filter")?;
        self.compile(&filters)
    }
}
