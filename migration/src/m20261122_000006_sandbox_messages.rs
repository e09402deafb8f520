//! What sandbox channels "sent": the sandbox provider keeps every message it accepted or failed, so
//! users trying Turumba (and benchmarks) can see them through `GET /v1/channels/{id}/sandbox/messages`.

use sea_orm_migration::{prelude::*, schema::*};

use crate::util::{fk, index};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Alias::new("sandbox_messages"))
                .if_not_exists()
                .col(uuid("id").primary_key())
                .col(uuid("account_id"))
                .col(uuid("channel_id"))
                .col(uuid("message_id"))
                .col(string("to"))
                .col(text("text"))
                .col(string_null("subject"))
                .col(integer("segments"))
                .col(string("encoding"))
                .col(string("status"))
                .col(text_null("error"))
                .col(timestamp_with_time_zone("created_at"))
                .foreign_key(&mut fk("sandbox_messages", "channel_id", "channels", ForeignKeyAction::Cascade))
                .to_owned(),
        )
        .await?;
        m.create_index(index("sandbox_messages", "idx_sandbox_messages_channel", &["channel_id", "created_at"], false))
            .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Alias::new("sandbox_messages")).if_exists().to_owned()).await
    }
}
