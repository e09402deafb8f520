//! Messages (SPEC §6.2) and the idempotency keys of the sends that create them. Indexes serve the list
//! filters on a table that grows to millions of rows: the account's history by time (keyset paging on
//! `(created_at, id)`), by status, by contact, by group message, and receipts by the provider's id.

use sea_orm_migration::{prelude::*, schema::*};

use crate::util::{fk, index};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Alias::new("messages"))
                .if_not_exists()
                .col(uuid("id").primary_key())
                .col(uuid("account_id"))
                .col(uuid("channel_id"))
                .col(uuid_null("contact_id"))
                .col(uuid_null("sent_by_user_id"))
                .col(uuid_null("group_message_id"))
                .col(uuid_null("scheduled_message_id"))
                .col(uuid_null("template_id"))
                .col(string("channel_type"))
                .col(string("direction"))
                .col(string("status"))
                .col(string("delivery_address"))
                .col(text("message_body"))
                .col(text_null("original_template"))
                .col(json_binary("attachments"))
                .col(timestamp_with_time_zone_null("scheduled_at"))
                .col(timestamp_with_time_zone_null("sent_at"))
                .col(timestamp_with_time_zone_null("delivered_at"))
                .col(timestamp_with_time_zone_null("read_at"))
                .col(timestamp_with_time_zone_null("failed_at"))
                .col(integer("attempts"))
                .col(string_null("provider_message_id"))
                .col(json_binary("metadata"))
                .col(json_binary_null("error_details"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .foreign_key(&mut fk("messages", "account_id", "accounts", ForeignKeyAction::Cascade))
                .to_owned(),
        )
        .await?;
        for (name, cols) in [
            ("idx_messages_account_created", &["account_id", "created_at", "id"][..]),
            ("idx_messages_account_status", &["account_id", "status", "created_at"]),
            ("idx_messages_account_contact", &["account_id", "contact_id", "created_at"]),
            ("idx_messages_group", &["group_message_id"]),
            ("idx_messages_channel_status", &["channel_id", "status"]),
            ("idx_messages_channel_provider_id", &["channel_id", "provider_message_id"]),
        ] {
            m.create_index(index("messages", name, cols, false)).await?;
        }
        m.create_table(
            Table::create()
                .table(Alias::new("idempotency_keys"))
                .if_not_exists()
                .col(uuid("id").primary_key())
                .col(uuid("account_id"))
                .col(string("key"))
                .col(string("request_hash"))
                .col(integer("status_code"))
                .col(json_binary("response"))
                .col(timestamp_with_time_zone("created_at"))
                .foreign_key(&mut fk("idempotency_keys", "account_id", "accounts", ForeignKeyAction::Cascade))
                .to_owned(),
        )
        .await?;
        m.create_index(index("idempotency_keys", "uq_idempotency_keys_account_key", &["account_id", "key"], true)).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Alias::new("idempotency_keys")).if_exists().to_owned()).await?;
        m.drop_table(Table::drop().table(Alias::new("messages")).if_exists().to_owned()).await
    }
}
