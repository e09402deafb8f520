//! Fewer index entries written per message. On PostgreSQL an update that changes an indexed column
//! (every status change does: `status` leads `idx_messages_due`) writes a new entry into EVERY index
//! of the table whose condition the row meets; a sent message is inserted once and updated twice
//! (claimed, then recorded), so each index costs it up to three entries.
//!
//! `idx_messages_due (status, next_attempt_at)` holds only rows with a due time (`WHERE
//! next_attempt_at IS NOT NULL`): the claim clears `next_attempt_at` as it takes a message, so a
//! message being sent, sent, delivered or final is not in it (its two updates write one entry fewer
//! each, and the index stays the size of the queue, not of the history); a retry or a hand-back sets
//! the due time again. The claim's reads (`status = … AND next_attempt_at <= …`) imply the condition
//! on both databases.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const DUE_WHOLE: &str = "CREATE INDEX IF NOT EXISTS idx_messages_due ON messages (status, next_attempt_at)";
const DUE_PARTIAL: &str = "CREATE INDEX IF NOT EXISTS idx_messages_due ON messages (status, next_attempt_at) WHERE next_attempt_at IS NOT NULL";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        // Messages a dispatcher had already taken keep no due time (as the claim now leaves them).
        db.execute_unprepared(
            "UPDATE messages SET next_attempt_at = NULL \
             WHERE next_attempt_at IS NOT NULL AND status NOT IN ('queued', 'failed')",
        )
        .await?;
        db.execute_unprepared("DROP INDEX IF EXISTS idx_messages_due").await?;
        db.execute_unprepared(DUE_PARTIAL).await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        db.execute_unprepared("DROP INDEX IF EXISTS idx_messages_due").await?;
        db.execute_unprepared(DUE_WHOLE).await?;
        Ok(())
    }
}
