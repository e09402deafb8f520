//! SMPP bind leases: one row per channel naming the process that holds its bind, until `expires_at`,
//! so that only one dispatcher binds a channel when several run.

use sea_orm_migration::{prelude::*, schema::*};

use crate::util::fk;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Alias::new("channel_bind_leases"))
                .if_not_exists()
                .col(uuid("channel_id").primary_key())
                .col(string("owner"))
                .col(timestamp_with_time_zone("expires_at"))
                .foreign_key(&mut fk("channel_bind_leases", "channel_id", "channels", ForeignKeyAction::Cascade))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Alias::new("channel_bind_leases")).if_exists().to_owned()).await
    }
}
