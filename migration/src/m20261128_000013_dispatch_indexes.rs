//! The dispatcher's claim reads only rows that are due: messages due by time come from
//! `idx_messages_due (status, next_attempt_at)` (migration 000010); lapsed claims from this partial
//! index on `lease_until` (set only while a message is being sent). Each is its own query: the single
//! `OR` of both conditions could not use either index and scanned the history on every pass.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // The same statement on both databases (partial indexes: PostgreSQL, and SQLite since 3.8).
        m.get_connection()
            .execute_unprepared(
                "CREATE INDEX IF NOT EXISTS idx_messages_leased ON messages (lease_until) WHERE lease_until IS NOT NULL",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.get_connection().execute_unprepared("DROP INDEX IF EXISTS idx_messages_leased").await?;
        Ok(())
    }
}
