//! What the status and inbound consumer needs:
//! - `parked_receipts`: delivery receipts that arrived before the send they report on was recorded (the
//!   provider's webhook came faster than the dispatcher wrote the provider's answer down), kept until
//!   that send's record matches them by `(channel_id, provider_message_id)`;
//! - `webhook_inbox.processed_items`: how many items of a delivery were handled; the row is
//!   `processed` when all were.

use sea_orm_migration::{prelude::*, schema::*};

use crate::util::{fk, index};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Alias::new("parked_receipts"))
                .if_not_exists()
                .col(uuid("id").primary_key())
                .col(uuid("account_id"))
                .col(uuid("channel_id"))
                .col(string("provider_message_id"))
                .col(string("status"))
                .col(text_null("error"))
                .col(timestamp_with_time_zone_null("reported_at"))
                .col(timestamp_with_time_zone("parked_at"))
                .foreign_key(&mut fk("parked_receipts", "channel_id", "channels", ForeignKeyAction::Cascade))
                .foreign_key(&mut fk("parked_receipts", "account_id", "accounts", ForeignKeyAction::Cascade))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "parked_receipts",
            "idx_parked_receipts_channel_provider_id",
            &["channel_id", "provider_message_id"],
            false,
        ))
        .await?;
        m.create_index(index("parked_receipts", "idx_parked_receipts_parked_at", &["parked_at"], false)).await?;
        m.alter_table(
            Table::alter()
                .table(Alias::new("webhook_inbox"))
                .add_column(integer("processed_items").default(0))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter().table(Alias::new("webhook_inbox")).drop_column(Alias::new("processed_items")).to_owned(),
        )
        .await?;
        m.drop_table(Table::drop().table(Alias::new("parked_receipts")).if_exists().to_owned()).await
    }
}
