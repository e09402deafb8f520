//! Message templates (SPEC §6.1): a body with `{NAME}` placeholders, the variables extracted from it, the
//! defaults and fallback strategy for missing values, WhatsApp approval and URL attachments.

use sea_orm_migration::{prelude::*, schema::*};

use crate::util::{fk, index};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Alias::new("templates"))
                .if_not_exists()
                .col(uuid("id").primary_key())
                .col(uuid("account_id"))
                .col(string("name"))
                .col(text("body"))
                .col(string_null("category"))
                .col(string_null("channel_type"))
                .col(string_null("language"))
                .col(json_binary("variables"))
                .col(json_binary("default_values"))
                .col(string("fallback_strategy"))
                .col(string_null("approval_status"))
                .col(string_null("external_template_id"))
                .col(json_binary("attachments"))
                .col(boolean("is_active"))
                .col(uuid_null("created_by_user_id"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .foreign_key(&mut fk("templates", "account_id", "accounts", ForeignKeyAction::Cascade))
                .to_owned(),
        )
        .await?;
        m.create_index(index("templates", "uq_templates_account_name", &["account_id", "name"], true)).await?;
        m.create_index(index("templates", "idx_templates_account_created", &["account_id", "created_at"], false)).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Alias::new("templates")).if_exists().to_owned()).await
    }
}
