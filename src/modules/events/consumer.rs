//! The consumer framework: a consumer names its queue and bindings and handles one event inside a
//! database transaction. [`process`] makes every handler idempotent: it records `(consumer, event_id)`
//! in `processed_events` in the same transaction as the handler's effects, so a redelivered event is
//! acknowledged without running the handler again.
//!
//! A consumer whose handlers only touch the database may take deliveries in batches
//! ([`Consumer::batch_size`]): [`process_batch`] then records and handles a whole batch in ONE
//! transaction (one commit, one fsync, instead of one per event). When any handler of the batch fails,
//! or the commit does, the batch is rolled back and handled again event by event, so a failing event
//! fails alone and never takes its neighbours' effects with it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use sea_orm::sea_query::{OnConflict, Query};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait,
    IdenStatic, QueryFilter, QueryOrder, QuerySelect, Set,
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
    /// Applies the event. Runs inside `txn`; an `Err` rolls back, and its kind says what happens next
    /// (see [`HandlerError`]): retried with backoff, retried not before a given time, or dead-lettered
    /// at once.
    async fn handle(&self, txn: &DatabaseTransaction, event: &EventEnvelope) -> Result<(), HandlerError>;
    /// How many deliveries the transport may hand over together (see [`process_batch`]). Only a
    /// consumer whose handler has no effect outside its transaction (no provider call, no e-mail)
    /// should raise it: a batch that fails is handled again event by event.
    fn batch_size(&self) -> usize {
        1
    }
}

pub type SharedConsumer = Arc<dyn Consumer>;

/// The most deliveries taken together, whatever a consumer asks for: three bound values per event
/// keep the processed-event INSERT far below the databases' parameter limits.
pub const MAX_BATCH: usize = 1000;

/// A consumer's batch size, within `1..=MAX_BATCH` and `limit` (the RabbitMQ prefetch).
pub fn batch_size(consumer: &dyn Consumer, limit: usize) -> usize {
    consumer.batch_size().clamp(1, MAX_BATCH.min(limit.max(1)))
}

/// Why a handler could not apply an event; the transports settle each kind differently.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// May work on another try (a database hiccup, a provider's 5xx or timeout): retried with backoff,
    /// dead-lettered after the last attempt. A plain `String` error converts to this.
    #[error("{0}")]
    Transient(String),
    /// May work, but not before `after` (a provider's rate limit with its `Retry-After`): retried no
    /// sooner (the wait holds this consumer's next deliveries, as the backoff does), dead-lettered after
    /// the last attempt.
    #[error("{error} (retry after {after:?})")]
    RetryAfter { error: String, after: Duration },
    /// Can never work (an event it cannot read, a recipient the provider refuses for good): dead-lettered
    /// at once, without retries.
    #[error("{0}")]
    Permanent(String),
}

impl From<String> for HandlerError {
    fn from(error: String) -> Self {
        HandlerError::Transient(error)
    }
}

impl From<&str> for HandlerError {
    fn from(error: &str) -> Self {
        HandlerError::Transient(error.to_string())
    }
}

impl From<DbErr> for HandlerError {
    fn from(e: DbErr) -> Self {
        HandlerError::Transient(format!("database: {e}"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Handled,
    /// Already handled before (a redelivery): nothing was done.
    Duplicate,
    /// Failed for now ([`HandlerError::Transient`]): retry with backoff.
    Failed(String),
    /// Failed, retry not before `after` ([`HandlerError::RetryAfter`]).
    Deferred {
        error: String,
        after: Duration,
    },
    /// Failed for good ([`HandlerError::Permanent`]): dead-letter without retrying.
    Rejected(String),
}

impl From<HandlerError> for Outcome {
    fn from(e: HandlerError) -> Self {
        match e {
            HandlerError::Transient(error) => Outcome::Failed(error),
            HandlerError::RetryAfter { error, after } => Outcome::Deferred { error, after },
            HandlerError::Permanent(error) => Outcome::Rejected(error),
        }
    }
}

/// What a transport does with an event whose handling failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement<'a> {
    /// Try again after `wait`.
    Retry { error: &'a str, wait: Duration },
    /// Dead-letter it with this error.
    DeadLetter { error: &'a str },
}

impl Outcome {
    pub fn is_failure(&self) -> bool {
        !matches!(self, Outcome::Handled | Outcome::Duplicate)
    }

    /// For a failure after `attempt` attempts of at most `max_attempts`: retry (after the exponential
    /// backoff, or the handler's own wait when longer) or dead-letter. `None` for a success.
    pub fn settlement(&self, attempt: i64, max_attempts: i64) -> Option<Settlement<'_>> {
        let backoff = Duration::from_millis(50 * (1 << attempt.clamp(0, 6)));
        let (error, wait) = match self {
            Outcome::Handled | Outcome::Duplicate => return None,
            Outcome::Rejected(error) => return Some(Settlement::DeadLetter { error }),
            Outcome::Failed(error) => (error, backoff),
            Outcome::Deferred { error, after } => (error, backoff.max(*after)),
        };
        Some(if attempt >= max_attempts { Settlement::DeadLetter { error } } else { Settlement::Retry { error, wait } })
    }
}

/// Counts an outcome in the consumer metrics (`consumer_handled_total`, `consumer_duplicates_total`,
/// `consumer_failed_total` by queue); both transports call it for every handling.
pub(crate) fn count(queue: &str, outcome: &Outcome) {
    let name = match outcome {
        Outcome::Handled => "consumer_handled_total",
        Outcome::Duplicate => "consumer_duplicates_total",
        Outcome::Failed(_) | Outcome::Deferred { .. } | Outcome::Rejected(_) => "consumer_failed_total",
    };
    metrics::counter!(name, "queue" => queue.to_string()).increment(1);
}

/// Handles one delivery exactly once in effect.
#[tracing::instrument(level = "debug", skip_all, fields(consumer = consumer.name(), event_id = %event.event_id, event_type = %event.event_type))]
pub async fn process(db: &DatabaseConnection, consumer: &dyn Consumer, event: &EventEnvelope) -> Outcome {
    match process_inner(db, consumer, event).await {
        Ok(outcome) => outcome,
        Err(e) => Outcome::Failed(format!("database: {e}")),
    }
}

/// Handles deliveries taken together, one outcome per event in order. Several events are recorded and
/// handled in one transaction; if a handler fails or the transaction cannot commit, nothing of it
/// stays and every event is handled again on its own by [`process`], so the outcomes are exactly
/// those of handling the events one by one.
#[tracing::instrument(level = "debug", skip_all, fields(consumer = consumer.name(), events = events.len()))]
pub async fn process_batch(db: &DatabaseConnection, consumer: &dyn Consumer, events: &[EventEnvelope]) -> Vec<Outcome> {
    if events.len() > 1 {
        match process_together(db, consumer, events).await {
            Ok(Some(outcomes)) => return outcomes,
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(consumer = consumer.name(), error = %e, "batch failed; handling its events one by one")
            }
        }
    }
    let mut outcomes = Vec::with_capacity(events.len());
    for event in events {
        outcomes.push(process(db, consumer, event).await);
    }
    outcomes
}

/// The batch in one transaction: one INSERT … ON CONFLICT DO NOTHING RETURNING of the processed-event
/// records tells which events are new; the handlers run for those. `None` when a handler failed (the
/// transaction is rolled back).
async fn process_together(
    db: &DatabaseConnection,
    consumer: &dyn Consumer,
    events: &[EventEnvelope],
) -> Result<Option<Vec<Outcome>>, DbErr> {
    use processed_event::Column;
    let txn = crate::db::begin_write(db).await?;
    let now = Utc::now();
    let mut insert = Query::insert();
    insert.into_table(processed_event::Entity).columns([Column::Consumer, Column::EventId, Column::ProcessedAt]);
    for e in events {
        insert.values_panic([consumer.name().into(), e.event_id.into(), now.into()]);
    }
    insert
        .on_conflict(OnConflict::columns([Column::Consumer, Column::EventId]).do_nothing().to_owned())
        .returning_col(Column::EventId);
    let mut new: HashSet<Uuid> = HashSet::with_capacity(events.len());
    for row in txn.query_all(&insert).await? {
        new.insert(row.try_get::<Uuid>("", Column::EventId.as_str())?);
    }
    let mut outcomes = Vec::with_capacity(events.len());
    for e in events {
        // `remove`: an event delivered twice in the same batch is handled once.
        if !new.remove(&e.event_id) {
            outcomes.push(Outcome::Duplicate);
            continue;
        }
        if let Err(err) = consumer.handle(&txn, e).await {
            tracing::debug!(consumer = consumer.name(), event_id = %e.event_id, error = %err, "handler failed inside a batch");
            txn.rollback().await.ok();
            return Ok(None);
        }
        outcomes.push(Outcome::Handled);
    }
    txn.commit().await?;
    Ok(Some(outcomes))
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
            Ok(e.into())
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

#[cfg(test)]
mod tests {
    use super::*;

    struct Wants(usize);

    #[async_trait]
    impl Consumer for Wants {
        fn name(&self) -> &str {
            "wants"
        }
        fn bindings(&self) -> Vec<String> {
            Vec::new()
        }
        async fn handle(&self, _: &DatabaseTransaction, _: &EventEnvelope) -> Result<(), HandlerError> {
            Ok(())
        }
        fn batch_size(&self) -> usize {
            self.0
        }
    }

    #[test]
    fn each_failure_kind_is_settled_its_own_way() {
        let ms = Duration::from_millis;
        let transient = Outcome::from(HandlerError::from("down"));
        assert_eq!(transient.settlement(1, 5), Some(Settlement::Retry { error: "down", wait: ms(100) }));
        assert_eq!(transient.settlement(5, 5), Some(Settlement::DeadLetter { error: "down" }));
        let later = Outcome::from(HandlerError::RetryAfter { error: "429".into(), after: ms(2000) });
        assert_eq!(later.settlement(1, 5), Some(Settlement::Retry { error: "429", wait: ms(2000) }));
        let soon = Outcome::from(HandlerError::RetryAfter { error: "429".into(), after: ms(1) });
        assert_eq!(soon.settlement(2, 5), Some(Settlement::Retry { error: "429", wait: ms(200) }));
        assert_eq!(later.settlement(5, 5), Some(Settlement::DeadLetter { error: "429" }));
        let never = Outcome::from(HandlerError::Permanent("no such chat".into()));
        assert_eq!(never.settlement(1, 5), Some(Settlement::DeadLetter { error: "no such chat" }));
        assert_eq!(Outcome::Handled.settlement(1, 5), None);
        assert!(never.is_failure() && !Outcome::Duplicate.is_failure());
    }

    #[test]
    fn batch_sizes_stay_within_the_prefetch_and_the_maximum() {
        assert_eq!(batch_size(&Wants(0), 32), 1);
        assert_eq!(batch_size(&Wants(16), 32), 16);
        assert_eq!(batch_size(&Wants(64), 32), 32);
        assert_eq!(batch_size(&Wants(64), 0), 1);
        assert_eq!(batch_size(&Wants(5000), 65535), MAX_BATCH);
    }
}
