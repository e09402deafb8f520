//! Queries on the outbox: write events in the caller's transaction, claim due rows for the relay,
//! record publish outcomes, purge, and the operator views.

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, LockBehavior, LockType};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    QueryTrait, Set, Statement,
};
use uuid::Uuid;

use super::entity::outbox_event;
use super::envelope::EventEnvelope;

pub const PENDING: &str = "pending";
pub const PUBLISHED: &str = "published";
pub const FAILED: &str = "failed";

/// PostgreSQL channel the relays LISTEN on; a NOTIFY sent in the writing transaction arrives at commit.
pub const NOTIFY_CHANNEL: &str = "turumba_outbox";

/// Inserts the events in the caller's transaction (and wakes PostgreSQL relays when it commits).
pub async fn insert_events<C: ConnectionTrait>(db: &C, events: &[EventEnvelope]) -> Result<(), DbErr> {
    if let Some(statement) = insert_statement(db.get_database_backend(), events) {
        db.execute_raw(statement).await?;
    }
    Ok(())
}

/// The statement of [`insert_events`] (none for no events).
pub fn insert_statement(backend: DbBackend, events: &[EventEnvelope]) -> Option<Statement> {
    if events.is_empty() {
        return None;
    }
    let now = Utc::now();
    let rows = events.iter().map(|e| outbox_event::ActiveModel {
        id: Set(Uuid::now_v7()),
        event_id: Set(e.event_id),
        event_type: Set(e.event_type.clone()),
        aggregate_type: Set(e.aggregate_type.clone()),
        aggregate_id: Set(e.aggregate_id),
        account_id: Set(e.account_id),
        payload: Set(serde_json::to_value(e).expect("envelopes serialise")),
        status: Set(PENDING.into()),
        attempts: Set(0),
        next_attempt_at: Set(now),
        published_at: Set(None),
        last_error: Set(None),
        created_at: Set(now),
    });
    let insert = outbox_event::Entity::insert_many(rows);
    if backend != DbBackend::Postgres {
        return Some(insert.build(backend));
    }
    // The rows and the doorbell in one statement (one round trip fewer for every transaction that
    // emits events): a data-modifying `WITH` runs to completion whether or not the query reads it.
    let Statement { sql, values, .. } = insert.build(DbBackend::Postgres);
    let sql = format!("WITH written AS ({sql}) SELECT pg_notify('{NOTIFY_CHANNEL}', '')");
    let values = values.map(|v| v.0).unwrap_or_default();
    Some(Statement::from_sql_and_values(DbBackend::Postgres, sql, values))
}

/// Due pending rows, oldest first. On PostgreSQL the rows are locked (`FOR UPDATE SKIP LOCKED`) for the
/// caller's transaction, so concurrent relays never claim the same row.
pub async fn claim_due<C: ConnectionTrait>(db: &C, limit: u64) -> Result<Vec<outbox_event::Model>, DbErr> {
    let mut q = outbox_event::Entity::find()
        .filter(outbox_event::Column::Status.eq(PENDING))
        .filter(outbox_event::Column::NextAttemptAt.lte(Utc::now()))
        .order_by_asc(outbox_event::Column::CreatedAt)
        .order_by_asc(outbox_event::Column::Id)
        .limit(limit);
    if db.get_database_backend() == DbBackend::Postgres {
        q = q.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    q.all(db).await
}

pub async fn mark_published<C: ConnectionTrait>(db: &C, ids: &[Uuid]) -> Result<(), DbErr> {
    if ids.is_empty() {
        return Ok(());
    }
    outbox_event::Entity::update_many()
        .col_expr(outbox_event::Column::Status, Expr::value(PUBLISHED))
        .col_expr(outbox_event::Column::PublishedAt, Expr::value(Utc::now()))
        .col_expr(outbox_event::Column::Attempts, Expr::col(outbox_event::Column::Attempts).add(1))
        .col_expr(outbox_event::Column::LastError, Expr::value(Option::<String>::None))
        .filter(outbox_event::Column::Id.is_in(ids.to_vec()))
        .exec(db)
        .await?;
    Ok(())
}

/// Exponential backoff for a row that failed `attempts` times: 1 s, 2 s, 4 s … capped at 5 minutes.
pub fn backoff(attempts: i32) -> Duration {
    let secs = 1i64 << attempts.clamp(0, 20);
    Duration::seconds(std::cmp::min(secs, 300))
}

/// Records one failed publish of a row: backs off, or gives up (`failed`) after `max_attempts`.
pub async fn record_failure<C: ConnectionTrait>(
    db: &C,
    row: &outbox_event::Model,
    error: &str,
    max_attempts: i32,
) -> Result<(), DbErr> {
    let attempts = row.attempts + 1;
    let status = if attempts >= max_attempts { FAILED } else { PENDING };
    outbox_event::Entity::update_many()
        .col_expr(outbox_event::Column::Attempts, Expr::value(attempts))
        .col_expr(outbox_event::Column::Status, Expr::value(status))
        .col_expr(outbox_event::Column::LastError, Expr::value(error.chars().take(2000).collect::<String>()))
        .col_expr(outbox_event::Column::NextAttemptAt, Expr::value(Utc::now() + backoff(attempts)))
        .filter(outbox_event::Column::Id.eq(row.id))
        .exec(db)
        .await?;
    Ok(())
}

/// Deletes published rows older than the retention; returns how many.
pub async fn purge_published<C: ConnectionTrait>(db: &C, older_than: DateTime<Utc>) -> Result<u64, DbErr> {
    let res = outbox_event::Entity::delete_many()
        .filter(outbox_event::Column::Status.eq(PUBLISHED))
        .filter(outbox_event::Column::PublishedAt.lt(older_than))
        .exec(db)
        .await?;
    Ok(res.rows_affected)
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxStatus {
    pub pending: u64,
    pub published: u64,
    pub failed: u64,
    pub oldest_pending_at: Option<DateTime<Utc>>,
}

/// Counts by status and the oldest pending row (for `turumba outbox status`).
pub async fn status<C: ConnectionTrait>(db: &C) -> Result<OutboxStatus, DbErr> {
    let mut s = backlog(db).await?;
    s.published = outbox_event::Entity::find().filter(outbox_event::Column::Status.eq(PUBLISHED)).count(db).await?;
    Ok(s)
}

/// Pending and failed counts and the oldest pending row, without counting the published history (the
/// relay's gauges; cheap through the status index).
pub async fn backlog<C: ConnectionTrait>(db: &C) -> Result<OutboxStatus, DbErr> {
    let count = |s: &'static str| outbox_event::Entity::find().filter(outbox_event::Column::Status.eq(s)).count(db);
    let oldest = outbox_event::Entity::find()
        .filter(outbox_event::Column::Status.eq(PENDING))
        .order_by_asc(outbox_event::Column::CreatedAt)
        .one(db)
        .await?
        .map(|r| r.created_at);
    Ok(OutboxStatus {
        pending: count(PENDING).await?,
        published: 0,
        failed: count(FAILED).await?,
        oldest_pending_at: oldest,
    })
}

/// Puts failed rows (all, or one) back to pending with a fresh attempt budget.
pub async fn retry_failed<C: ConnectionTrait>(db: &C, id: Option<Uuid>) -> Result<u64, DbErr> {
    let mut q = outbox_event::Entity::update_many()
        .col_expr(outbox_event::Column::Status, Expr::value(PENDING))
        .col_expr(outbox_event::Column::Attempts, Expr::value(0))
        .col_expr(outbox_event::Column::NextAttemptAt, Expr::value(Utc::now()))
        .filter(outbox_event::Column::Status.eq(FAILED));
    if let Some(id) = id {
        q = q.filter(outbox_event::Column::Id.eq(id));
    }
    Ok(q.exec(db).await?.rows_affected)
}

pub async fn list_failed<C: ConnectionTrait>(db: &C, limit: u64) -> Result<Vec<outbox_event::Model>, DbErr> {
    outbox_event::Entity::find()
        .filter(outbox_event::Column::Status.eq(FAILED))
        .order_by_asc(outbox_event::Column::CreatedAt)
        .limit(limit)
        .all(db)
        .await
}

/// Writes one row (used by DLQ replay: the same event, a new outbox row).
pub async fn insert_one<C: ConnectionTrait>(db: &C, event: &EventEnvelope) -> Result<(), DbErr> {
    insert_events(db, std::slice::from_ref(event)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(0), Duration::seconds(1));
        assert_eq!(backoff(3), Duration::seconds(8));
        assert_eq!(backoff(9), Duration::seconds(300));
        assert_eq!(backoff(50), Duration::seconds(300));
    }
}
