//! The send-rate bucket of each rate-limited channel, shared by every dispatcher through the database:
//! the tokens left and when they were last refilled.

use sea_orm_migration::{prelude::*, schema::*};

use crate::util::fk;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Alias::new("dispatch_rate_buckets"))
                .if_not_exists()
                .col(uuid("channel_id").primary_key())
                .col(double("tokens"))
                .col(timestamp_with_time_zone("refilled_at"))
                .foreign_key(&mut fk("dispatch_rate_buckets", "channel_id", "channels", ForeignKeyAction::Cascade))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Alias::new("dispatch_rate_buckets")).if_exists().to_owned()).await
    }
}
