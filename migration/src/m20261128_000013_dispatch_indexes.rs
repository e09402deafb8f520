//! The dispatcher's claim reads only the rows that are due: partial indexes on `next_attempt_at`
//! (queued and failed messages; NULL once a message is sent, cancelled or final, and for inbound ones)
//! and on `lease_until` (messages being sent). Without them every pass scanned the whole history.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        // The same statements on both databases (partial indexes: PostgreSQL and SQLite ≥ 3.8).
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS idx_messages_due ON messages (next_attempt_at) WHERE next_attempt_at IS NOT NULL",
        )
        .await?;
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS idx_messages_leased ON messages (lease_until) WHERE lease_until IS NOT NULL",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        db.execute_unprepared("DROP INDEX IF EXISTS idx_messages_due").await?;
        db.execute_unprepared("DROP INDEX IF EXISTS idx_messages_leased").await?;
        Ok(())
    }
}
