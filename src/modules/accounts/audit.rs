//! The audit log (SPEC §3.2): this module owns the `audit_logs` table and the `GET /v1/audit-logs` view
//! (`audit:read`); the entries come from the event pipeline, which derives one from every write a
//! request commits and hands it to [`AuditWriter`] inside that write's transaction.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, QueryFilter, Set, Statement};
use uuid::Uuid;

use super::entity::audit_log;
use super::service::*;
use super::tenancy::AccountScope;
use crate::db::list::{Field, Kind, ListQuery, Page};
use crate::error::AppResult;
use crate::modules::events::{AuditEntry, AuditLog};

pub const AUDIT_FIELDS: &[Field<audit_log::Column>] = &[
    Field::new("account_id", audit_log::Column::AccountId, Kind::Uuid),
    Field::new("id", audit_log::Column::Id, Kind::Uuid),
    Field::new("actor_id", audit_log::Column::ActorId, Kind::Uuid),
    Field::sortable("action", audit_log::Column::Action, Kind::Text),
    Field::sortable("resource_type", audit_log::Column::ResourceType, Kind::Text),
    Field::new("resource_id", audit_log::Column::ResourceId, Kind::Uuid),
    Field::new("request_id", audit_log::Column::RequestId, Kind::Text),
    Field::sortable("created_at", audit_log::Column::CreatedAt, Kind::Timestamp),
];

/// Writes the pipeline's audit entries into `audit_logs` (one multi-row insert per write).
pub struct AuditWriter;

#[async_trait]
impl AuditLog for AuditWriter {
    fn statements(&self, backend: DbBackend, entries: Vec<AuditEntry>) -> Vec<Statement> {
        // Chunks inside both databases' bound on parameters (10 columns a row), in few shapes.
        let rows = entries.into_iter().map(|e| audit_log::ActiveModel {
            id: Set(Uuid::now_v7()),
            account_id: Set(e.account_id),
            actor_id: Set(e.actor_id),
            action: Set(e.action),
            resource_type: Set(e.resource_type),
            resource_id: Set(e.resource_id),
            changes: Set(e.changes),
            request_id: Set(e.request_id),
            ip: Set(e.ip),
            created_at: Set(e.created_at),
        });
        crate::db::chunks::insert_statements(backend, rows, 512)
    }

    async fn purge(&self, db: &DatabaseConnection, older_than: DateTime<Utc>) -> Result<u64, DbErr> {
        let res = audit_log::Entity::delete_many().filter(audit_log::Column::CreatedAt.lt(older_than)).exec(db).await?;
        Ok(res.rows_affected)
    }
}

impl Accounts {
    /// The account's audit log, newest first unless sorted otherwise.
    pub async fn list_audit_logs(&self, scope: AccountScope, q: &ListQuery) -> AppResult<Page<audit_log::Model>> {
        let select = audit_log::Entity::find().filter(audit_log::Column::AccountId.eq(scope.account_id()));
        let select = q.apply(select, AUDIT_FIELDS, audit_log::Column::Id, audit_log::Column::CreatedAt)?;
        q.fetch(&self.db, select).await
    }
}
