//! The audit log (SPEC §3.2): one row per write a request made, written in the transaction of that
//! write; kept `TURUMBA_ACCOUNTS__AUDIT_RETENTION_DAYS` days.

use sea_orm_migration::{prelude::*, schema::*};

use crate::util::index;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // No foreign keys: an entry outlives the user, resource (and, until purged, account) it names.
        m.create_table(
            Table::create()
                .table(Alias::new("audit_logs"))
                .if_not_exists()
                .col(uuid("id").primary_key())
                .col(uuid_null("account_id"))
                .col(uuid_null("actor_id"))
                .col(string("action"))
                .col(string("resource_type"))
                .col(uuid_null("resource_id"))
                .col(json_binary("changes"))
                .col(string_null("request_id"))
                .col(string_null("ip"))
                .col(timestamp_with_time_zone("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("audit_logs", "idx_audit_logs_account_created", &["account_id", "created_at"], false))
            .await?;
        m.create_index(index(
            "audit_logs",
            "idx_audit_logs_resource",
            &["account_id", "resource_type", "resource_id"],
            false,
        ))
        .await?;
        m.create_index(index("audit_logs", "idx_audit_logs_created", &["created_at"], false)).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Alias::new("audit_logs")).if_exists().to_owned()).await
    }
}
