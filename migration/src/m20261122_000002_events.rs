//! The event pipeline: the transactional outbox, per-consumer processed-event records (idempotent
//! handlers) and the dead letters of the in-process transport.

use sea_orm_migration::{prelude::*, schema::*};

use crate::util::index;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Alias::new("outbox_events"))
                .if_not_exists()
                .col(uuid("id").primary_key())
                .col(uuid("event_id"))
                .col(string("event_type"))
                .col(string("aggregate_type"))
                .col(uuid("aggregate_id"))
                .col(uuid_null("account_id"))
                .col(json_binary("payload"))
                .col(string("status"))
                .col(integer("attempts"))
                .col(timestamp_with_time_zone("next_attempt_at"))
                .col(timestamp_with_time_zone_null("published_at"))
                .col(text_null("last_error"))
                .col(timestamp_with_time_zone("created_at"))
                .to_owned(),
        )
        .await?;
        // The relay's claim walks pending rows in (created_at, id) order and stops after one batch; due-ness
        // (next_attempt_at) is a filter on that walk. An index leading with next_attempt_at would make
        // every claim sort the whole backlog (measured: throughput fell as the backlog grew).
        m.create_index(index("outbox_events", "idx_outbox_status_order", &["status", "created_at", "id"], false))
            .await?;
        // Retention purge of published rows.
        m.create_index(index("outbox_events", "idx_outbox_published_at", &["published_at"], false)).await?;

        m.create_table(
            Table::create()
                .table(Alias::new("processed_events"))
                .if_not_exists()
                .col(string("consumer"))
                .col(uuid("event_id"))
                .col(timestamp_with_time_zone("processed_at"))
                .primary_key(Index::create().col(Alias::new("consumer")).col(Alias::new("event_id")))
                .to_owned(),
        )
        .await?;
        m.create_index(index("processed_events", "idx_processed_events_at", &["processed_at"], false)).await?;

        m.create_table(
            Table::create()
                .table(Alias::new("dead_letters"))
                .if_not_exists()
                .col(uuid("id").primary_key())
                .col(string("queue"))
                .col(uuid("event_id"))
                .col(string("event_type"))
                .col(json_binary("payload"))
                .col(text("error"))
                .col(integer("attempts"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone_null("replayed_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("dead_letters", "idx_dead_letters_pending", &["replayed_at", "created_at"], false))
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in ["dead_letters", "processed_events", "outbox_events"] {
            m.drop_table(Table::drop().table(Alias::new(t)).if_exists().to_owned()).await?;
        }
        Ok(())
    }
}
