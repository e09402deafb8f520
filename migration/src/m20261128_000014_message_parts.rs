//! The provider ids of the other parts of a multi-part SMS (SMPP gives each part its own id, and its
//! own delivery receipt): `(channel_id, provider_message_id)` of a part → its message, so a part's
//! receipt finds the message as the first part's does.

use sea_orm_migration::{prelude::*, schema::*};

use crate::util::fk;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Alias::new("message_parts"))
                .if_not_exists()
                .col(uuid("channel_id"))
                .col(string("provider_message_id"))
                .col(uuid("message_id"))
                .primary_key(Index::create().col(Alias::new("channel_id")).col(Alias::new("provider_message_id")))
                .foreign_key(&mut fk("message_parts", "message_id", "messages", ForeignKeyAction::Cascade))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Alias::new("message_parts")).if_exists().to_owned()).await
    }
}
