//! Channels: delivery channels with their credentials sealed by the vault (key id ‖ nonce ‖ ciphertext),
//! hourly send counters for channel health, and the webhook inbox (raw provider events stored before the
//! provider gets its 200, unique per channel and provider event id).

use sea_orm_migration::{prelude::*, schema::*};

use crate::util::{fk, index};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Alias::new("channels"))
                .if_not_exists()
                .col(uuid("id").primary_key())
                .col(uuid("account_id"))
                .col(string("name"))
                .col(string("channel_type"))
                .col(string_null("provider"))
                .col(string("status"))
                .col(boolean("is_enabled"))
                .col(blob("credentials"))
                .col(blob_null("webhook_secret"))
                .col(string_null("sender_name"))
                .col(string_null("default_country_code"))
                .col(integer_null("rate_limit"))
                .col(integer("priority"))
                .col(integer("retry_count"))
                .col(integer("retry_interval"))
                .col(timestamp_with_time_zone_null("last_verified_at"))
                .col(integer_null("last_latency_ms"))
                .col(text_null("error_message"))
                .col(timestamp_with_time_zone_null("rate_limited_until"))
                .col(integer("consecutive_failures"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .foreign_key(&mut fk("channels", "account_id", "accounts", ForeignKeyAction::Cascade))
                .to_owned(),
        )
        .await?;
        m.create_index(index("channels", "uq_channels_account_name", &["account_id", "name"], true)).await?;
        m.create_index(index("channels", "idx_channels_account_type", &["account_id", "channel_type"], false)).await?;
        m.create_index(index("channels", "idx_channels_account_created", &["account_id", "created_at"], false)).await?;

        m.create_table(
            Table::create()
                .table(Alias::new("channel_usage"))
                .if_not_exists()
                .col(uuid("channel_id"))
                .col(timestamp_with_time_zone("hour"))
                .col(big_integer("sent"))
                .col(big_integer("failed"))
                .primary_key(Index::create().col(Alias::new("channel_id")).col(Alias::new("hour")))
                .foreign_key(&mut fk("channel_usage", "channel_id", "channels", ForeignKeyAction::Cascade))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Alias::new("webhook_inbox"))
                .if_not_exists()
                .col(uuid("id").primary_key())
                .col(uuid("account_id"))
                .col(uuid("channel_id"))
                .col(string("channel_type"))
                .col(string("provider_event_id"))
                // received | processed | failed | ignored (disabled channel: stored, flagged, not processed)
                .col(string("status"))
                .col(text("payload"))
                .col(string_null("content_type"))
                .col(integer("item_count"))
                .col(text_null("error"))
                .col(timestamp_with_time_zone("received_at"))
                .col(timestamp_with_time_zone_null("processed_at"))
                .foreign_key(&mut fk("webhook_inbox", "channel_id", "channels", ForeignKeyAction::Cascade))
                .to_owned(),
        )
        .await?;
        m.create_index(index("webhook_inbox", "uq_webhook_inbox_event", &["channel_id", "provider_event_id"], true))
            .await?;
        m.create_index(index("webhook_inbox", "idx_webhook_inbox_account", &["account_id", "received_at"], false))
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in ["webhook_inbox", "channel_usage", "channels"] {
            m.drop_table(Table::drop().table(Alias::new(t)).if_exists().to_owned()).await?;
        }
        Ok(())
    }
}
