//! Two indexes of `messages` hold only the rows they are searched for. A message has a group only when a
//! group send made it, and a provider's id only once it was sent; yet every single send wrote a NULL
//! entry into `uq_messages_group_contact` and into `idx_messages_channel_provider_id` when it was
//! accepted. As partial indexes (`… WHERE column IS NOT NULL`) an accept writes neither, and every query
//! that used them still can: each compares the column with a value, which implies it is not NULL (the
//! rule PostgreSQL's planner and SQLite's both apply). The group's uniqueness still holds where it
//! meant something: one message per contact per group send.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Each index as it was, and as it is now. The same statements on both databases.
const INDEXES: [(&str, &str, &str); 2] = [
    (
        "uq_messages_group_contact",
        "CREATE UNIQUE INDEX IF NOT EXISTS uq_messages_group_contact ON messages (group_message_id, contact_id)",
        "CREATE UNIQUE INDEX IF NOT EXISTS uq_messages_group_contact ON messages (group_message_id, contact_id) \
         WHERE group_message_id IS NOT NULL",
    ),
    (
        "idx_messages_channel_provider_id",
        "CREATE INDEX IF NOT EXISTS idx_messages_channel_provider_id ON messages (channel_id, provider_message_id)",
        "CREATE INDEX IF NOT EXISTS idx_messages_channel_provider_id ON messages (channel_id, provider_message_id) \
         WHERE provider_message_id IS NOT NULL",
    ),
];

async fn replace(m: &SchemaManager<'_>, name: &str, create: &str) -> Result<(), DbErr> {
    let db = m.get_connection();
    db.execute_unprepared(&format!("DROP INDEX IF EXISTS {name}")).await?;
    db.execute_unprepared(create).await?;
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for (name, _, partial) in INDEXES {
            replace(m, name, partial).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for (name, whole, _) in INDEXES {
            replace(m, name, whole).await?;
        }
        Ok(())
    }
}
