//! The consumer framework: a consumer names its queue and bindings and handles one event inside a
//! database transaction. [`process`] makes every handler idempotent: it records `(consumer, event_id)`
//! in `processed_events` in the same transaction as the handler's effects, so a redelivered event is
//! acknowledged without running the handler again.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Set,
};
use uuid::Uuid;

use super::entity::{dead_letter, processed_event};
use super::envelope::EventEnvelope;

#[async_trait]
pub trait Consumer: Send + Sync + 'static {
    /// Queue name (before the configured prefix) and the key of its processed-event records.
    fn name(&self) -> &str;
    /// Topic patterns (`group_message.*`, `message.dispatch.sms`, `#`).
    fn bindings(&self) -> Vec<String>;
    /// Applies the event. Runs inside `txn`; an `Err` rolls back and the event is retried, then
    /// dead-lettered after the configured number of attempts.
    async fn handle(&self, txn: &DatabaseTransaction, event: &EventEnvelope) -> Result<(), String>;
}

pub type SharedConsumer = Arc<dyn Consumer>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Handled,
    /// Already handled before (a redelivery): nothing was done.
    Duplicate,
    Failed(String),
}

/// Handles one delivery exactly once in effect.
pub async fn process(db: &DatabaseConnection, consumer: &dyn Consumer, event: &EventEnvelope) -> Outcome {
    match process_inner(db, consumer, event).await {
        Ok(outcome) => outcome,
        Err(e) => Outcome::Failed(format!("database: {e}")),
    }
}

async fn process_inner(
    db: &DatabaseConnection,
    consumer: &dyn Consumer,
    event: &EventEnvelope,
) -> Result<Outcome, DbErr> {
    let txn = crate::db::begin_write(db).await?;
    let mark = processed_event::ActiveModel {
        consumer: Set(consumer.name().to_string()),
        event_id: Set(event.event_id),
        processed_at: Set(Utc::now()),
    };
    if let Err(e) = mark.insert(&txn).await {
        txn.rollback().await.ok();
        return if crate::db::is_unique_violation(&e) { Ok(Outcome::Duplicate) } else { Err(e) };
    }
    match consumer.handle(&txn, event).await {
        Ok(()) => {
            txn.commit().await?;
            Ok(Outcome::Handled)
        }
        Err(e) => {
            txn.rollback().await.ok();
            Ok(Outcome::Failed(e))
        }
    }
}

/// Whether a consumer has recorded an event as handled.
pub async fn was_processed<C: ConnectionTrait>(db: &C, consumer: &str, event_id: Uuid) -> Result<bool, DbErr> {
    Ok(processed_event::Entity::find_by_id((consumer.to_string(), event_id)).one(db).await?.is_some())
}

/// Stores a dead letter of the in-process transport.
pub async fn insert_dead_letter<C: ConnectionTrait>(
    db: &C,
    queue: &str,
    event: &EventEnvelope,
    error: &str,
    attempts: i32,
) -> Result<(), DbErr> {
    dead_letter::ActiveModel {
        id: Set(Uuid::now_v7()),
        queue: Set(queue.to_string()),
        event_id: Set(event.event_id),
        event_type: Set(event.event_type.clone()),
        payload: Set(serde_json::to_value(event).expect("envelopes serialise")),
        error: Set(error.to_string()),
        attempts: Set(attempts),
        created_at: Set(Utc::now()),
        replayed_at: Set(None),
    }
    .insert(db)
    .await?;
    Ok(())
}

pub async fn list_dead_letters<C: ConnectionTrait>(db: &C, limit: u64) -> Result<Vec<dead_letter::Model>, DbErr> {
    dead_letter::Entity::find()
        .filter(dead_letter::Column::ReplayedAt.is_null())
        .order_by_asc(dead_letter::Column::CreatedAt)
        .limit(limit)
        .all(db)
        .await
}
