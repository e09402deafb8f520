//! What the dispatcher needs on a message: when its next attempt is due (a retry is a row with a due
//! time, so it survives a restart) and until when the dispatcher that claimed it holds it (a dispatcher
//! that dies mid-send loses the message to the next one when the lease runs out).

use sea_orm_migration::{prelude::*, schema::*};

use crate::util::index;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Alias::new("messages"))
                .add_column(timestamp_with_time_zone_null("next_attempt_at"))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Alias::new("messages"))
                .add_column(timestamp_with_time_zone_null("lease_until"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("messages", "idx_messages_due", &["status", "next_attempt_at"], false)).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(Index::drop().name("idx_messages_due").table(Alias::new("messages")).to_owned()).await?;
        m.alter_table(Table::alter().table(Alias::new("messages")).drop_column(Alias::new("lease_until")).to_owned())
            .await?;
        m.alter_table(
            Table::alter().table(Alias::new("messages")).drop_column(Alias::new("next_attempt_at")).to_owned(),
        )
        .await
    }
}
