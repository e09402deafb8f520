//! Webhooks of a suspended account are stored but held (`webhook_inbox.status = 'held'`), with the items
//! their delivery was parsed into, and released — their events emitted — when the account is active
//! again.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table(Alias::new("webhook_inbox")).add_column(text_null("held_items")).to_owned())
            .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter().table(Alias::new("webhook_inbox")).drop_column(Alias::new("held_items")).to_owned(),
        )
        .await
    }
}
