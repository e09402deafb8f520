//! The record of a dispatcher pass: its outcomes and their `message.status.<status>` events, written
//! together. On SQLite a pass that holds no group send's messages goes over as one statement list
//! ([`crate::db::script`]): the status changes, each guarded so the list fails whole if any message was
//! taken over by another claim meanwhile, then the send parts and the events — the writer held only
//! while SQLite works. A list that fails (that guard, or anything else) is written again the usual way,
//! in a transaction that reads which messages are still this claim's. Receipts that arrived before
//! the record (parked) are looked for after the list, and matched in a transaction of their own:
//! a receipt is parked only by a writer that found no message with its provider id, so every receipt
//! parked before the list committed is seen by that look.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::json;
use uuid::Uuid;

use super::super::entity::message::{self, MessageStatus};
use super::super::group_store::{self, Tallies};
use super::super::store::{self, Outcome};
use super::super::{messages, receipts};
use super::{BIND_OWNED_ELSEWHERE, DEFAULT_THROTTLE_WAIT, Decided, Dispatcher, MAX_BACKOFF_SECS};
use crate::db::script::Script;
use crate::error::AppResult;
use crate::modules::channels::ErrorClass;
use crate::modules::events::{EventBus, EventMeta};

impl Dispatcher {
    /// Writes a pass's outcomes and their events together (see the module's text).
    pub(super) async fn record(&self, outcomes: Vec<(message::Model, Outcome)>) -> AppResult<()> {
        let now = Utc::now();
        let groups: std::collections::BTreeSet<Uuid> =
            outcomes.iter().filter_map(|(m, _)| m.group_message_id).collect();
        let decided = decide(outcomes, now);
        let db = &self.messaging.db;
        if groups.is_empty() && db.get_database_backend() == DbBackend::Sqlite {
            match self.record_in_one_list(&decided).await {
                // Committed: what remains is the parked receipts' match, never the record again.
                Ok(identified) => return self.match_parked_after(identified).await,
                Err(e) => {
                    tracing::debug!(error = %e, "a pass's record as one list failed; writing it in a transaction")
                }
            }
        }
        self.record_in_transaction(decided, groups).await
    }

    /// The record as one statement list (SQLite, no group sends): see the module's text.
    /// Returns the sends it identified by provider id, for [`Self::match_parked_after`].
    async fn record_in_one_list(&self, decided: &[Decided]) -> AppResult<Vec<(message::Model, String)>> {
        let backend = DbBackend::Sqlite;
        let pairs: Vec<(&message::Model, &store::Change)> = decided.iter().map(|d| (&d.m, &d.change)).collect();
        let mut script = Script::new(backend);
        for (statement, rows) in store::change_statements(backend, &pairs, false) {
            script.push(statement);
            // Every message of the chunk moved, or the list fails here and is rolled back whole
            // (`json` of text that is not JSON raises an error; evaluated only when the count differs).
            script.push(Statement::from_string(
                backend,
                format!(
                    "SELECT 1 FROM (SELECT CASE WHEN changes() = {rows} THEN 0 \
                     ELSE json('claim taken over: ' || changes()) END AS ok) WHERE ok = 1"
                ),
            ));
        }
        let mut bus = EventBus::new(EventMeta::default());
        let (parts, identified) = recorded(backend, decided.iter().filter(|d| !d.deferred), &mut bus);
        script.extend(parts);
        self.messaging.events.commit_script(&self.messaging.db, script, bus).await?;
        Ok(identified)
    }

    /// After a record written as one list: the receipts parked for its sends, matched in a
    /// transaction of their own.
    async fn match_parked_after(&self, identified: Vec<(message::Model, String)>) -> AppResult<()> {
        if !identified.is_empty() && receipts::any_parked(&self.messaging.db, &identified).await? {
            let txn = crate::db::begin_write(&self.messaging.db).await?;
            let (mut bus, mut tallies) = (EventBus::new(EventMeta::default()), Tallies::default());
            receipts::match_parked(&txn, &mut bus, &identified, &mut tallies).await?;
            tallies.apply(&txn, &mut bus).await?;
            self.messaging.events.commit(txn, bus).await?;
        }
        Ok(())
    }

    /// The record in a transaction: each message moves only if this claim still holds it.
    async fn record_in_transaction(
        &self,
        decided: Vec<Decided>,
        groups: std::collections::BTreeSet<Uuid>,
    ) -> AppResult<()> {
        let txn = crate::db::begin_write(&self.messaging.db).await?;
        let mut tallies = Tallies::default();
        let mut bus = EventBus::new(EventMeta::default());
        let pairs: Vec<(&message::Model, &store::Change)> = decided.iter().map(|d| (&d.m, &d.change)).collect();
        let applied = store::apply_changes(&txn, &pairs).await?;
        let moved = || decided.iter().filter(|d| applied.contains(&d.m.id));
        for d in moved() {
            tallies.moved(d.m.group_message_id, MessageStatus::Sending, d.change.status, 1);
        }
        let (parts, identified) = recorded(txn.get_database_backend(), moved().filter(|d| !d.deferred), &mut bus);
        for statement in parts {
            txn.execute_raw(statement).await?;
        }
        receipts::match_parked(&txn, &mut bus, &identified, &mut tallies).await?;
        // The group sends' rows last, so each is held only for the end of this transaction (every
        // dispatcher pass and fan-out batch of a send takes it): see `group_store::lock_groups`. A
        // send cancelled while these were with the provider: what this pass left to retry or to send
        // later is cancelled too.
        let cancelled_groups = group_store::lock_groups(&txn, &groups).await?;
        for g in cancelled_groups {
            group_store::cancel_unsent(&txn, g, &mut tallies).await?;
        }
        tallies.apply(&txn, &mut bus).await?;
        self.messaging.events.commit(txn, bus).await?;
        Ok(())
    }
}

/// What the sends a record moved (not those handed back) add: one `message.status.<status>` event per
/// account, channel and status of the pass into `bus`, naming its messages (not one outbox row and one
/// broker message per message); the statements that record their parts; and the sends now known by a
/// provider id, for the receipts that beat the record.
fn recorded<'a>(
    backend: DbBackend,
    sends: impl Iterator<Item = &'a Decided>,
    bus: &mut EventBus,
) -> (Vec<Statement>, Vec<(message::Model, String)>) {
    let mut by_status: std::collections::BTreeMap<(Uuid, Uuid, &'static str), Vec<Uuid>> = Default::default();
    let (mut parts, mut identified) = (Vec::new(), Vec::new());
    for d in sends {
        let status = d.change.status;
        by_status.entry((d.m.account_id, d.m.channel_id, status.as_str())).or_default().push(d.m.id);
        let sent = message::Model { status, ..d.m.clone() };
        parts.extend(receipts::parts_statement(backend, &sent, &d.part_ids));
        for id in d.provider_id.iter().chain(&d.part_ids) {
            identified.push((sent.clone(), id.clone()));
        }
    }
    for ((account_id, channel_id, status), ids) in by_status {
        messages::emit_status(bus, status, account_id, &ids, json!({ "channel_id": channel_id }));
    }
    (parts, identified)
}

/// What each outcome changes (and the pass's metrics).
fn decide(outcomes: Vec<(message::Model, Outcome)>, now: DateTime<Utc>) -> Vec<Decided> {
    let mut decided: Vec<Decided> = Vec::with_capacity(outcomes.len());
    for (m, outcome) in outcomes {
        let change = match &outcome {
            Outcome::Deferred(due) => store::Change::deferred(*due),
            Outcome::Released => store::Change::deferred(now),
            Outcome::Cancelled => store::Change::cancelled(),
            Outcome::Sent(receipt) => {
                let status = if receipt.status == "delivered" { MessageStatus::Delivered } else { MessageStatus::Sent };
                // From when the message was due (accepted, or scheduled) to the provider's answer.
                let due = m.scheduled_at.unwrap_or(m.created_at);
                metrics::histogram!("message_dispatch_delay_seconds", "channel_type" => m.channel_type.as_str())
                    .record((now - due).to_std().unwrap_or_default().as_secs_f64());
                store::Change::sent(status, receipt.provider_message_id.clone(), now)
            }
            Outcome::Failed { error, retry_count, retry_interval } => {
                let details =
                    json!({ "code": error.class.as_str(), "message": error.message, "provider_code": error.code });
                match error.class {
                    // Another process took the channel's bind since this pass began: its
                    // dispatcher sends the message; no attempt spent here.
                    ErrorClass::Transient if error.code.as_deref() == Some(BIND_OWNED_ELSEWHERE) => {
                        store::Change::deferred(now + chrono::Duration::seconds(1))
                    }
                    ErrorClass::Throttled => {
                        let wait = error.retry_after.unwrap_or(DEFAULT_THROTTLE_WAIT);
                        let due = now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::seconds(5));
                        store::Change::throttled(due, details)
                    }
                    ErrorClass::Transient if m.attempts <= *retry_count => {
                        let doubling = 2i64.saturating_pow((m.attempts - 1).clamp(0, 20) as u32);
                        let wait = (i64::from(*retry_interval).max(1) * doubling).min(MAX_BACKOFF_SECS);
                        store::Change::retry(now + chrono::Duration::seconds(wait), details, now)
                    }
                    _ => store::Change::failed_for_good(details, now),
                }
            }
        };
        let status = change.status;
        let deferred = matches!(outcome, Outcome::Deferred(_) | Outcome::Released);
        let kind = match (&outcome, status) {
            (Outcome::Deferred(_), _) => "rate_limited",
            (Outcome::Released, _) => "released",
            (Outcome::Failed { .. }, MessageStatus::Queued) => "throttled",
            (Outcome::Failed { .. }, MessageStatus::Failed) => "retry_scheduled",
            _ => status.as_str(),
        };
        metrics::counter!(
            "messages_dispatched_total",
            "channel_type" => m.channel_type.as_str(),
            "outcome" => kind
        )
        .increment(1);
        let (provider_id, part_ids) = match &outcome {
            Outcome::Sent(receipt) => (receipt.provider_message_id.clone(), receipt.part_ids.clone()),
            _ => (None, Vec::new()),
        };
        decided.push(Decided { m, change, deferred, provider_id, part_ids });
    }
    decided
}
