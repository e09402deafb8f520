//! Group commit of accepted sends. `POST /v1/messages` validates and builds its row on the request's own
//! task, then hands it to the intake; the intake writes every row waiting at that moment in ONE
//! transaction — the rows (multi-row inserts of a few fixed sizes), their idempotency keys, and one
//! `message.dispatch.*` doorbell per channel — with one commit and one flush, and answers each request
//! when it is durable. A batch without idempotency keys goes to the database as one statement list
//! ([`crate::db::script`]: on SQLite the writer is held only while SQLite works).
//! While one batch commits, the next gathers; under load a batch holds the requests that arrived during
//! the previous commit, so the cost of a commit (a WAL flush, SQLite's single writer) is shared instead
//! of paid per message. Alone, a request waits for nothing but its own commit.
//!
//! A 201 still means exactly what it did: the row and its doorbell were committed. A batch that fails
//! as a whole (a row that cannot be written) is written again one request at a time, so one bad row
//! fails only its own request.
//!
//! Idempotency keys are written in a savepoint each: a key another request holds already (another batch
//! or process committed it first, or an earlier request of the same batch) leaves its request out of the
//! batch, which then answers with the stored answer.

use sea_orm::{DatabaseConnection, DbErr, IntoActiveModel, TransactionTrait};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, oneshot};

use super::entity::message;
use super::messages::emit_dispatch;
use super::store;
use crate::db::script::Script;
use crate::error::{AppError, AppResult};
use crate::modules::accounts::AccountScope;
use crate::modules::events::{AuditEntry, EventBus, EventMeta, Events};

/// Most rows in one batch (28 columns each: well inside either database's bound on parameters).
const MAX_BATCH: usize = 256;
/// Requests that may wait for the intake before a sender waits for room.
const QUEUE: usize = 4 * MAX_BATCH;

/// One send ready to be written.
pub(super) struct Accepted {
    pub row: message::Model,
    pub key: Option<Keyed>,
    pub meta: EventMeta,
}

/// The idempotency key of a send and the answer it replays.
pub(super) struct Keyed {
    pub scope: AccountScope,
    pub key: String,
    pub hash: String,
    pub answer: Value,
}

/// What became of an accepted send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Written {
    Created,
    /// Its idempotency key was taken first: nothing of it was written.
    KeyTaken,
}

struct Job {
    accepted: Accepted,
    done: oneshot::Sender<Result<Written, AppError>>,
}

/// The sending side of the intake (cheap to clone; the writer stops when the last clone is dropped).
#[derive(Clone)]
pub(super) struct Intake {
    tx: mpsc::Sender<Job>,
}

impl Intake {
    /// Starts the writer on the current runtime.
    pub fn start(db: DatabaseConnection, events: Events, wake: std::sync::Arc<Notify>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(db, events, wake, rx));
        Intake { tx }
    }

    /// Writes one send with whatever else is waiting, and answers when it is committed.
    pub async fn write(&self, accepted: Accepted) -> AppResult<Written> {
        let (done, answer) = oneshot::channel();
        self.tx
            .send(Job { accepted, done })
            .await
            .map_err(|_| AppError::ServiceUnavailable("the server is stopping".into()))?;
        answer.await.map_err(|_| AppError::ServiceUnavailable("the server is stopping".into()))?
    }
}

async fn run(db: DatabaseConnection, events: Events, wake: std::sync::Arc<Notify>, mut rx: mpsc::Receiver<Job>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let batch: Vec<Job> = std::mem::take(&mut jobs);
        metrics::histogram!("message_accept_batch_size").record(batch.len() as f64);
        let accepted: Vec<&Accepted> = batch.iter().map(|j| &j.accepted).collect();
        let started = std::time::Instant::now();
        let result = write_batch(&db, &events, &accepted).await;
        metrics::histogram!("message_accept_write_seconds").record(started.elapsed().as_secs_f64());
        match result {
            Ok(written) => {
                for (job, w) in batch.into_iter().zip(written) {
                    let _ = job.done.send(Ok(w));
                }
            }
            Err(e) if batch.len() == 1 => {
                let job = batch.into_iter().next().expect("one job");
                let _ = job.done.send(Err(error_of(e)));
            }
            Err(e) => {
                tracing::warn!(error = %e, rows = batch.len(), "a batch of sends failed; writing them one at a time");
                for job in batch {
                    let result = write_batch(&db, &events, &[&job.accepted]).await;
                    let _ = job.done.send(result.map(|w| w[0]).map_err(error_of));
                }
            }
        }
        wake.notify_one();
    }
}

/// A row whose account, channel or contact was deleted after the request read it is a conflict, not a
/// server error.
fn error_of(e: DbErr) -> AppError {
    match e.sql_err() {
        Some(sea_orm::SqlErr::ForeignKeyConstraintViolation(_)) => {
            AppError::conflict("the account, channel or contact of this message was deleted meanwhile")
        }
        _ => e.into(),
    }
}

/// One transaction for the whole batch; what became of each send, in order.
async fn write_batch(db: &DatabaseConnection, events: &Events, batch: &[&Accepted]) -> Result<Vec<Written>, DbErr> {
    if batch.iter().all(|a| a.key.is_none()) {
        return write_unkeyed(db, events, batch).await;
    }
    let txn = crate::db::begin_write(db).await?;
    let mut written = Vec::with_capacity(batch.len());
    let mut rows = Vec::with_capacity(batch.len());
    for a in batch {
        if let Some(k) = &a.key {
            let savepoint = txn.begin().await?;
            match store::insert_idempotency_key(&savepoint, k.scope, &k.key, &k.hash, 201, k.answer.clone()).await {
                Ok(()) => savepoint.commit().await?,
                Err(e) if crate::db::is_unique_violation(&e) => {
                    savepoint.rollback().await?;
                    written.push(Written::KeyTaken);
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        rows.push(a.row.clone().into_active_model());
        written.push(Written::Created);
    }
    crate::db::chunks::insert_all(&txn, rows, MAX_BATCH).await?;
    let created: Vec<&Accepted> =
        batch.iter().zip(&written).filter(|(_, w)| **w == Written::Created).map(|(a, _)| *a).collect();
    // Who sent what, when, to whom: one audit entry per send, in this transaction.
    events.audit(&txn, created.iter().filter_map(|a| audit_entry(a)).collect()).await?;
    let mut bus = EventBus::new(shared_meta(batch));
    emit_dispatch(&mut bus, created.iter().map(|a| &a.row));
    events.commit(txn, bus).await?;
    Ok(written)
}

/// A batch without idempotency keys: nothing in it depends on what the database answers, so it goes
/// over as one statement list (see [`crate::db::script`]).
async fn write_unkeyed(db: &DatabaseConnection, events: &Events, batch: &[&Accepted]) -> Result<Vec<Written>, DbErr> {
    let backend = db.get_database_backend();
    let mut script = Script::new(backend);
    script.extend(crate::db::chunks::insert_statements(
        backend,
        batch.iter().map(|a| a.row.clone().into_active_model()),
        MAX_BATCH,
    ));
    script.extend(events.audit_statements(backend, batch.iter().filter_map(|a| audit_entry(a)).collect()));
    let mut bus = EventBus::new(shared_meta(batch));
    emit_dispatch(&mut bus, batch.iter().map(|a| &a.row));
    events.commit_script(db, script, bus).await?;
    Ok(vec![Written::Created; batch.len()])
}

/// The audit entry of one send made by a request.
fn audit_entry(a: &Accepted) -> Option<AuditEntry> {
    let m = &a.row;
    let body: String = m.message_body.chars().take(1000).collect();
    Some(AuditEntry {
        account_id: Some(m.account_id),
        actor_id: a.meta.user_id,
        action: "message.sent".into(),
        resource_type: "message".into(),
        resource_id: Some(m.id),
        changes: json!({ "after": {
            "channel_id": m.channel_id, "channel_type": m.channel_type, "contact_id": m.contact_id,
            "delivery_address": m.delivery_address, "template_id": m.template_id, "message_body": body,
            "scheduled_at": m.scheduled_at,
        }}),
        request_id: a.meta.request_id.clone(),
        ip: Some(a.meta.ip.clone()?),
        created_at: m.created_at,
    })
}

/// The events' metadata: the request's own when the batch is one request; the user when all are one
/// user's; else none (each message keeps its `sent_by_user_id`). Never a client address: the sends'
/// own audit entries are written beside the rows.
fn shared_meta(batch: &[&Accepted]) -> EventMeta {
    match batch {
        [one] => one.meta.for_job(),
        [first, rest @ ..] if rest.iter().all(|a| a.meta.user_id == first.meta.user_id) => {
            EventMeta { user_id: first.meta.user_id, request_id: None, ip: None }
        }
        _ => EventMeta { user_id: None, request_id: None, ip: None },
    }
}
