//! The scheduler (roles `scheduler`, `worker`, `all`): fires scheduled messages when they are due.
//!
//! For each due schedule it builds the send exactly as `POST /v1/messages` would (outside any
//! transaction), then in ONE transaction: moves the schedule on — only if it is still at the occurrence
//! it read (`next_trigger_at` and `updated_at` unchanged, so of two schedulers racing one wins and the
//! other moves on) — records the occurrence under its unique key `(schedule_id, occurrence_at)`, and
//! inserts the message with its dispatch doorbell. A restart or a second scheduler never fires an
//! occurrence twice; an occurrence whose send cannot be made (the contact opted out, the channel was
//! disabled) is recorded `failed` with the reason, and a recurring schedule goes on to the next one.
//!
//! Misfires: an occurrence more than [`MISFIRE_GRACE_SECS`] late (no scheduler ran) fires under the
//! schedule's policy — `fire_once` fires the latest missed occurrence once, `skip` fires none — and the
//! schedule continues from now.
//!
//! Waking: it sleeps until the soonest `next_trigger_at` (at most [`IDLE_POLL`]), woken early when a
//! schedule is created or edited in this process or, with a broker, in another (`scheduled_message.*`).
//! Time is a parameter ([`Messaging::fire_due_schedules`] takes `now`), so tests drive it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set, TryIntoModel};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use super::entity::message;
use super::entity::schedule_occurrence;
use super::entity::scheduled_message::{self, MisfirePolicy, ScheduleStatus};
use super::schedules::{send_of, timing_of};
use super::service::Messaging;
use super::store;
use crate::error::{AppError, AppResult};
use crate::modules::accounts::CurrentUser;
use crate::modules::events::{EventBus, EventMeta};

/// How late an occurrence may fire before it counts as missed.
pub const MISFIRE_GRACE_SECS: i64 = 60;
/// Longest the scheduler sleeps without looking.
pub const IDLE_POLL: Duration = Duration::from_secs(30);
/// Schedules handled per look.
const DUE_BATCH: u64 = 200;

/// What one due schedule came to.
enum Fired {
    Sent(Uuid),
    Failed(String),
    Skipped,
}

impl Messaging {
    /// Fires every schedule due at `now`; returns how many due schedules it handled.
    pub async fn fire_due_schedules(&self, now: DateTime<Utc>) -> AppResult<usize> {
        let due = store::due_schedules(&self.db, now, DUE_BATCH).await?;
        let n = due.len();
        for s in due {
            let id = s.id;
            if let Err(e) = self.fire(s, now).await {
                tracing::warn!(schedule_id = %id, error = %e, "could not fire a scheduled message");
            }
        }
        Ok(n)
    }

    async fn fire(&self, s: scheduled_message::Model, now: DateTime<Utc>) -> AppResult<()> {
        let Some(due) = s.next_trigger_at else { return Ok(()) };
        let timing = timing_of(&s)?;
        let missed = (now - due).num_seconds() > MISFIRE_GRACE_SECS;
        let occurrence = match (missed, s.misfire_policy) {
            (false, _) => Some(due),
            (true, MisfirePolicy::FireOnce) => {
                Some(timing.latest_between(due - chrono::Duration::microseconds(1), now).unwrap_or(due))
            }
            (true, MisfirePolicy::Skip) => None,
        };
        let next = timing.next_after(if missed { now } else { due });
        // The send, built outside the transaction (it reads the channel, contact and template).
        let built = match occurrence {
            None => Err(Fired::Skipped),
            Some(at) => self.build_scheduled(&s, at).await.map_err(|e| Fired::Failed(reason(&e))),
        };
        let txn = crate::db::begin_write(&self.db).await?;
        let mut active: scheduled_message::ActiveModel = s.clone().into();
        let fired = match &built {
            Ok(row) => Fired::Sent(row.id.clone().unwrap()),
            Err(Fired::Failed(r)) => Fired::Failed(r.clone()),
            Err(_) => Fired::Skipped,
        };
        active.next_trigger_at = Set(next);
        active.updated_at = Set(Utc::now());
        active.status = Set(match (&fired, next, s.is_recurring) {
            (_, Some(_), _) => ScheduleStatus::Triggered,
            (Fired::Failed(_), None, false) => ScheduleStatus::Failed,
            (_, None, _) => ScheduleStatus::Completed,
        });
        if !matches!(fired, Fired::Skipped) {
            active.last_triggered_at = Set(Some(now));
            active.trigger_count = Set(s.trigger_count + 1);
        }
        match &fired {
            Fired::Sent(id) => {
                active.last_message_id = Set(Some(*id));
                active.last_error = Set(None);
            }
            Fired::Failed(r) => active.last_error = Set(Some(r.clone())),
            Fired::Skipped => {}
        }
        // Moves on only from the occurrence this scheduler read: a racing scheduler that fired it first
        // changed next_trigger_at and updated_at.
        let moved = scheduled_message::Entity::update_many()
            .set(active)
            .filter(scheduled_message::Column::Id.eq(s.id))
            .filter(scheduled_message::Column::NextTriggerAt.eq(due))
            .filter(scheduled_message::Column::UpdatedAt.eq(s.updated_at))
            .exec(&txn)
            .await?;
        if moved.rows_affected == 0 {
            txn.rollback().await?;
            return Ok(());
        }
        let mut bus = EventBus::new(EventMeta { user_id: s.created_by_user_id, request_id: None });
        if let Some(at) = occurrence {
            let (outcome, message_id, error) = match &fired {
                Fired::Sent(id) => ("sent", Some(*id), None),
                Fired::Failed(r) => ("failed", None, Some(r.clone())),
                Fired::Skipped => ("skipped", None, None),
            };
            schedule_occurrence::ActiveModel {
                id: Set(Uuid::now_v7()),
                schedule_id: Set(s.id),
                account_id: Set(s.account_id),
                occurrence_at: Set(at),
                outcome: Set(outcome.into()),
                message_id: Set(message_id),
                group_message_id: Set(None),
                error: Set(error),
                created_at: Set(Utc::now()),
            }
            .insert(&txn)
            .await?;
            if let Ok(row) = built {
                let m = row.insert(&txn).await?;
                super::messages::emit_dispatch(&mut bus, &m);
            }
        }
        bus.emit(
            "scheduled_message.triggered",
            "scheduled_message",
            s.id,
            Some(s.account_id),
            json!({ "occurrence_at": occurrence, "next_trigger_at": next }),
        );
        self.events.commit(txn, bus).await?;
        self.dispatch_wake.notify_one();
        Ok(())
    }

    /// The message an occurrence sends, on behalf of the schedule's creator.
    async fn build_scheduled(
        &self,
        s: &scheduled_message::Model,
        at: DateTime<Utc>,
    ) -> AppResult<message::ActiveModel> {
        let scope = self.accounts.operator_scope(s.account_id).await?;
        let creator = s.created_by_user_id.ok_or_else(|| AppError::conflict("the schedule has no creator"))?;
        let sender = match self.accounts.member_user(scope, creator).await {
            Ok((_, u, _)) => CurrentUser::from(u),
            Err(AppError::NotFound(_)) => {
                return Err(AppError::conflict("the schedule's creator is no longer a member of the account"));
            }
            Err(e) => return Err(e),
        };
        let mut row = self.prepare_message(scope, &sender, send_of(s)).await?;
        row.scheduled_message_id = Set(Some(s.id));
        row.scheduled_at = Set(Some(at));
        // Validated like a send; the id is fresh per occurrence.
        let _ = row.clone().try_into_model()?;
        Ok(row)
    }

    /// Runs the scheduler until `shutdown`.
    pub fn start_scheduler(&self, shutdown: &CancellationToken, tasks: &TaskTracker) {
        let me = self.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            loop {
                let handled = match me.fire_due_schedules(Utc::now()).await {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::warn!(error = %e, "the scheduler could not read due schedules");
                        0
                    }
                };
                if handled as u64 >= DUE_BATCH {
                    continue;
                }
                let wait = match store::next_due(&me.db).await {
                    Ok(Some(at)) => (at - Utc::now()).to_std().unwrap_or(Duration::ZERO).min(IDLE_POLL),
                    Ok(None) => IDLE_POLL,
                    Err(_) => IDLE_POLL,
                };
                // Never a busy loop, even if a due schedule cannot be moved on.
                let wait = wait.max(Duration::from_millis(50));
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = me.schedule_wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        });
    }
}

/// The reason an occurrence failed, in the words of the error a send would have answered.
fn reason(e: &AppError) -> String {
    match e {
        AppError::Validation(fields) => {
            fields.iter().map(|f| format!("{}: {}", f.field, f.message)).collect::<Vec<_>>().join("; ")
        }
        other => other.to_string(),
    }
}
