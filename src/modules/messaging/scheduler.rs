//! The scheduler (roles `scheduler`, `worker`, `all`): fires scheduled messages when they are due.
//!
//! A look takes the due schedules (up to 1,000, soonest first) and builds each one's send exactly as
//! `POST /v1/messages` would, outside any transaction and a few at a time (the account and creator read
//! once per look). Then ONE transaction records the whole look: each schedule moves on only if it is
//! still at the occurrence the look read (`next_trigger_at` and `updated_at` unchanged, so of two
//! schedulers racing one wins and the other leaves it out), each fired occurrence is recorded under its
//! unique key `(schedule_id, occurrence_at)`, the messages are inserted with one dispatch doorbell per
//! channel and one `scheduled_message.triggered` per account naming the schedules fired. A restart or a
//! second scheduler never fires an occurrence twice; an occurrence whose send
//! cannot be made (the contact opted out, the channel was disabled) is recorded `failed` with the
//! reason, and a recurring schedule goes on to the next one. A look that cannot be recorded whole is
//! recorded one schedule at a time.
//!
//! Misfires: an occurrence more than [`MISFIRE_GRACE_SECS`] late (no scheduler ran) fires under the
//! schedule's policy — `fire_once` fires the latest missed occurrence once, `skip` fires none — and the
//! schedule continues from now.
//!
//! Waking: it sleeps until the soonest `next_trigger_at` (at most [`IDLE_POLL`]), woken early when a
//! schedule is created or edited in this process or, with a broker, in another (`scheduled_message.*`).
//! [`LEAD`] before an instant it builds the sends due then and waits; at the instant it only records
//! them (see `prepare_instant`).
//! Time is a parameter ([`Messaging::fire_due_schedules`] takes `now`), so tests drive it.

use std::time::Duration;

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use chrono::{DateTime, SubsecRound, Utc};
use futures_util::StreamExt;
use sea_orm::{EntityTrait, IntoActiveModel, Set, TryIntoModel};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use super::entity::group_message;
use super::entity::message;
use super::entity::schedule_occurrence;
use super::entity::scheduled_message::{self, MisfirePolicy, ScheduleStatus, SendType, TimezoneMode};
use super::messages::emit_dispatch;
use super::schedule_store;
use super::schedules::{send_of, timing_of};
use super::service::Messaging;
use crate::error::{AppError, AppResult};
use crate::modules::accounts::{AccountScope, CurrentUser};
use crate::modules::channels::Channel;
use crate::modules::events::{EventBus, EventMeta};

/// How late an occurrence may fire before it counts as missed.
pub const MISFIRE_GRACE_SECS: i64 = 60;
/// Longest the scheduler sleeps without looking.
pub const IDLE_POLL: Duration = Duration::from_secs(30);
/// Schedules handled per look.
const DUE_BATCH: u64 = 1000;
/// How long before an instant the scheduler builds the sends due then.
pub const LEAD: Duration = Duration::from_secs(2);
/// How long a wake-up waits for the wake-ups right behind it (schedules created in a burst).
const WAKE_COALESCE: Duration = Duration::from_millis(25);
/// Most schedules built ahead for one instant (ten looks); more are fired as they come due.
const PREPARED_MAX: usize = 10 * DUE_BATCH as usize;
/// Messages (28 columns each) or group messages (33) per insert statement: inside either database's
/// bound on parameters (SQLite's 32,766; PostgreSQL's 65,535).
const MESSAGE_CHUNK: usize = 256;

/// What one due schedule comes to.
enum Fired {
    Sent(Box<message::Model>),
    /// A group schedule's occurrence: a queued group message.
    Group(Box<group_message::Model>),
    Failed(String),
    Skipped,
}

/// One due schedule, decided: the occurrence it fires (if any), the next one, and its send.
struct Plan {
    s: scheduled_message::Model,
    due: DateTime<Utc>,
    occurrence: Option<DateTime<Utc>>,
    next: Option<DateTime<Utc>>,
    fired: Fired,
}

/// What a look reads once, by account: who sends for a schedule (its account's scope and its creator,
/// or why nobody can), and the channels the look's sends go through.
#[derive(Default)]
struct LookContext {
    senders: HashMap<(Uuid, Uuid), Result<(AccountScope, CurrentUser), String>>,
    channels: HashMap<(Uuid, Uuid), Result<Channel, String>>,
}

/// Sends built at once while a look plans its batch.
const BUILD_CONCURRENCY: usize = 4;
/// Prepared looks written at once on PostgreSQL when their instant comes.
const RECORD_CONCURRENCY: usize = 3;

impl Messaging {
    /// Fires every schedule due at `now` (a look takes up to 1,000, soonest first); returns how many due
    /// schedules it handled. The sends are built outside any transaction, a few at a time, then the
    /// whole look is recorded in one transaction (written one schedule at a time if that fails).
    pub async fn fire_due_schedules(&self, now: DateTime<Utc>) -> AppResult<usize> {
        let held: Vec<Uuid> = self.accounts.suspended_accounts().await?.iter().copied().collect();
        let due = schedule_store::due_schedules(&self.db, now, DUE_BATCH, &held).await?;
        let n = due.len();
        if n == 0 {
            return Ok(0);
        }
        let plans = self.plan_look(due, now).await;
        self.record_look(&plans, now).await;
        Ok(n)
    }

    /// Builds the sends of a look (outside any transaction, a few at a time).
    async fn plan_look(&self, due: Vec<scheduled_message::Model>, now: DateTime<Utc>) -> Vec<Plan> {
        let started = std::time::Instant::now();
        let cx = self.look_context(&due).await;
        let plans: Vec<Plan> = futures_util::stream::iter(due)
            .map(|s| self.plan(s, now, &cx))
            .buffered(BUILD_CONCURRENCY)
            .filter_map(|p| async move { p.map_err(|e| tracing::warn!(error = %e, "could not plan a schedule")).ok() })
            .collect()
            .await;
        metrics::histogram!("scheduler_look_plan_seconds").record(started.elapsed().as_secs_f64());
        plans
    }

    /// Records a look in one transaction, or one schedule at a time if that fails.
    async fn record_look(&self, plans: &[Plan], now: DateTime<Utc>) {
        let started = std::time::Instant::now();
        let recorded = self.record(plans, now).await;
        metrics::histogram!("scheduler_look_record_seconds").record(started.elapsed().as_secs_f64());
        tracing::debug!(schedules = plans.len(), record_ms = started.elapsed().as_millis() as u64, "a look fired");
        if let Err(e) = recorded {
            tracing::warn!(error = %e, schedules = plans.len(), "could not record a look; recording one schedule at a time");
            for plan in plans {
                if let Err(e) = self.record(std::slice::from_ref(plan), now).await {
                    tracing::warn!(schedule_id = %plan.s.id, error = %e, "could not fire a scheduled message");
                }
            }
        }
    }

    /// Builds, ahead of time, the sends of the schedules due at the instant `at` (up to
    /// [`PREPARED_MAX`], a look at a time): nothing is written, so what changes before `at` is
    /// caught when the looks are recorded (a schedule edited, paused or cancelled meanwhile no longer
    /// matches what its look read and is left out; the next look reads it again).
    async fn prepare_instant(&self, at: DateTime<Utc>, held: &[Uuid]) -> AppResult<Vec<Vec<Plan>>> {
        let mut looks = Vec::new();
        let (mut after, mut prepared) = (None, 0);
        while prepared < PREPARED_MAX {
            let page = schedule_store::due_schedules_after(&self.db, at, after, DUE_BATCH, held).await?;
            let Some(last) = page.last() else { break };
            after = Some((last.next_trigger_at.unwrap_or(at), last.id));
            let full = page.len() as u64 == DUE_BATCH;
            prepared += page.len();
            looks.push(self.plan_look(page, at).await);
            if !full {
                break;
            }
        }
        Ok(looks)
    }

    /// Builds the sends due at the instant `at`, waits for it and records them; `None` when nothing
    /// was built (nothing due then, or the database could not be read).
    async fn fire_prepared(&self, at: DateTime<Utc>, held: &[Uuid], shutdown: &CancellationToken) -> Option<Waited> {
        let looks = match self.prepare_instant(at, held).await {
            Ok(looks) if !looks.is_empty() => looks,
            Ok(_) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "the scheduler could not prepare the next instant");
                return None;
            }
        };
        let waited = self.await_instant(at, held, shutdown).await;
        // `Sooner`: what was built is dropped; the next turn starts from the sooner one.
        if matches!(waited, Waited::Reached) {
            self.record_prepared(looks).await;
        }
        Some(waited)
    }

    /// Records the looks built for an instant that has come. An account suspended meanwhile keeps its
    /// schedules (read again next turn).
    /// PostgreSQL writes [`RECORD_CONCURRENCY`] looks at once (their schedules are disjoint, so their
    /// transactions never wait on each other's rows); SQLite's one writer takes them in turn.
    async fn record_prepared(&self, looks: Vec<Vec<Plan>>) {
        let held = self.accounts.suspended_accounts().await.ok();
        let at_once = match self.db.get_database_backend() {
            sea_orm::DbBackend::Postgres => RECORD_CONCURRENCY,
            _ => 1,
        };
        let looks = looks.into_iter().map(|mut look| {
            if let Some(held) = &held {
                look.retain(|p| !held.contains(&p.s.account_id));
            }
            look
        });
        futures_util::stream::iter(looks.filter(|look| !look.is_empty()))
            .for_each_concurrent(at_once, |look| async move { self.record_look(&look, Utc::now()).await })
            .await;
    }

    /// Waits for the instant `at`; returns early when a schedule due sooner was created meanwhile.
    async fn await_instant(&self, at: DateTime<Utc>, held: &[Uuid], shutdown: &CancellationToken) -> Waited {
        loop {
            let left = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            tokio::select! {
                _ = shutdown.cancelled() => return Waited::Shutdown,
                _ = tokio::time::sleep(left) => return Waited::Reached,
                _ = self.schedule_wake.notified() => {
                    if let Ok(Some(next)) = schedule_store::next_due(&self.db, held).await && next < at {
                        return Waited::Sooner;
                    }
                }
            }
        }
    }

    /// What a look reads once: the scope and creator of every account and creator among `due`, and
    /// every channel they send through.
    async fn look_context(&self, due: &[scheduled_message::Model]) -> LookContext {
        let mut cx = LookContext::default();
        for s in due {
            let Some(creator) = s.created_by_user_id else { continue };
            if let Entry::Vacant(vacant) = cx.senders.entry((s.account_id, creator)) {
                let sender = async {
                    let scope = self.accounts.operator_scope(s.account_id).await?;
                    match self.accounts.member_user(scope, creator).await {
                        Ok((_, u, _)) => Ok((scope, CurrentUser::from(u))),
                        Err(AppError::NotFound(_)) => {
                            Err(AppError::conflict("the schedule's creator is no longer a member of the account"))
                        }
                        Err(e) => Err(e),
                    }
                }
                .await;
                vacant.insert(sender.map_err(|e| reason(&e)));
            }
            if let Some(Ok((scope, _))) = cx.senders.get(&(s.account_id, creator))
                && !cx.channels.contains_key(&(s.account_id, s.channel_id))
            {
                let channel = self.channel_for_send(*scope, s.channel_id).await.map_err(|e| reason(&e));
                cx.channels.insert((s.account_id, s.channel_id), channel);
            }
        }
        cx
    }

    /// Decides what a due schedule does now: fire its occurrence, the latest missed one (`fire_once`),
    /// or none (`skip`); and builds the send.
    async fn plan(&self, s: scheduled_message::Model, now: DateTime<Utc>, cx: &LookContext) -> AppResult<Plan> {
        let due = s.next_trigger_at.ok_or_else(|| AppError::internal("a due schedule without a due time"))?;
        let timing = match timing_of(&s) {
            Ok(t) => t,
            // A rule or zone that no longer reads (a row edited by hand, a zone a newer tz database
            // dropped): the schedule fails with the reason instead of staying due forever.
            Err(e) => {
                let fired = Fired::Failed(format!("the schedule's timing cannot be read: {e}"));
                return Ok(Plan { s, due, occurrence: None, next: None, fired });
            }
        };
        let missed = (now - due).num_seconds() > MISFIRE_GRACE_SECS;
        let occurrence = match (missed, s.misfire_policy) {
            (false, _) => Some(due),
            (true, MisfirePolicy::FireOnce) => {
                Some(timing.latest_between(due - chrono::Duration::microseconds(1), now).unwrap_or(due))
            }
            (true, MisfirePolicy::Skip) => None,
        };
        let next = timing.next_after(if missed { now } else { due });
        let fired = match occurrence {
            None => Fired::Skipped,
            Some(at) if s.send_type == SendType::Group => match self.build_group_occurrence(&s, at, cx).await {
                Ok(row) => Fired::Group(Box::new(row)),
                Err(e) => Fired::Failed(e),
            },
            Some(at) => match self.build_scheduled(&s, at, cx).await {
                Ok(row) => Fired::Sent(Box::new(row)),
                Err(e) => Fired::Failed(e),
            },
        };
        Ok(Plan { s, due, occurrence, next, fired })
    }

    /// Records a look in one transaction: the schedules move on in one statement, each only from the
    /// occurrence this look read (a racing scheduler that fired it first changed `next_trigger_at` and
    /// `updated_at`; the schedule is then left out), their occurrences are recorded, their messages
    /// inserted, one doorbell rung per channel.
    async fn record(&self, plans: &[Plan], now: DateTime<Utc>) -> Result<(), sea_orm::DbErr> {
        // What each schedule becomes, decided before the transaction.
        let mut moves = Vec::with_capacity(plans.len());
        for p in plans {
            let s = &p.s;
            // An occurrence fired (sent or failed); a skipped one or an unreadable schedule did not.
            let fired = p.occurrence.is_some() && !matches!(p.fired, Fired::Skipped);
            moves.push(schedule_store::MoveOn {
                id: s.id,
                due: p.due,
                seen: s.updated_at,
                next: p.next,
                status: match (&p.fired, p.next, s.is_recurring) {
                    (Fired::Failed(_), None, _) if p.occurrence.is_none() => ScheduleStatus::Failed,
                    (_, Some(_), _) => ScheduleStatus::Triggered,
                    (Fired::Failed(_), None, false) => ScheduleStatus::Failed,
                    (_, None, _) => ScheduleStatus::Completed,
                },
                updated_at: Utc::now(),
                last_triggered_at: if fired { Some(now) } else { s.last_triggered_at },
                trigger_count: s.trigger_count + i32::from(fired),
                last_message_id: match &p.fired {
                    Fired::Sent(m) => Some(m.id),
                    _ => s.last_message_id,
                },
                last_group_message_id: match &p.fired {
                    Fired::Group(g) => Some(g.id),
                    _ => s.last_group_message_id,
                },
                last_error: match &p.fired {
                    Fired::Sent(_) | Fired::Group(_) => None,
                    Fired::Failed(r) => Some(r.clone()),
                    Fired::Skipped => s.last_error.clone(),
                },
            });
        }
        // The sends were built before (a prepared look: before they were due); they are created now.
        let written_at = Utc::now().trunc_subsecs(6);
        let txn = crate::db::begin_write(&self.db).await?;
        // The look's schedules by id, never a scan of every schedule (stale statistics asked for one).
        crate::db::prefer_index_walks(&txn).await?;
        // Moves on only the schedules still at the occurrence this look read.
        let moved = schedule_store::move_schedules_on(&txn, &moves).await?;
        let mut occurrences = Vec::new();
        let mut messages = Vec::new();
        let mut groups = Vec::new();
        let mut bus = EventBus::new(EventMeta { user_id: None, request_id: None, ip: None });
        let mut triggered: std::collections::BTreeMap<Uuid, (Uuid, Vec<serde_json::Value>)> = Default::default();
        for p in plans.iter().filter(|p| moved.contains(&p.s.id)) {
            let s = &p.s;
            let (outcome, message_id, error) = match &p.fired {
                Fired::Sent(m) => ("sent", Some(m.id), None),
                Fired::Group(_) => ("sent", None, None),
                Fired::Failed(r) => ("failed", None, Some(r.clone())),
                Fired::Skipped => ("skipped", None, None),
            };
            let group_message_id = match &p.fired {
                Fired::Group(g) => Some(g.id),
                _ => None,
            };
            if let Some(at) = p.occurrence {
                occurrences.push(schedule_occurrence::ActiveModel {
                    id: Set(Uuid::now_v7()),
                    schedule_id: Set(s.id),
                    account_id: Set(s.account_id),
                    occurrence_at: Set(at),
                    outcome: Set(outcome.into()),
                    message_id: Set(message_id),
                    group_message_id: Set(group_message_id),
                    error: Set(error),
                    created_at: Set(Utc::now()),
                });
            }
            match &p.fired {
                Fired::Sent(m) => {
                    messages.push(message::Model { created_at: written_at, updated_at: written_at, ..(**m).clone() })
                }
                Fired::Group(g) => {
                    for topic in ["group_message.created", "group_message.queued"] {
                        bus.emit(
                            topic,
                            "group_message",
                            g.id,
                            Some(g.account_id),
                            json!({ "scheduled_message_id": s.id }),
                        );
                    }
                    let g = group_message::Model { created_at: written_at, updated_at: written_at, ..(**g).clone() };
                    groups.push(g.into_active_model());
                }
                _ => {}
            }
            triggered
                .entry(s.account_id)
                .or_insert_with(|| (s.id, Vec::new()))
                .1
                .push(json!({ "scheduled_message_id": s.id,
                "occurrence_at": p.occurrence, "next_trigger_at": p.next, "outcome": outcome }));
        }
        // One `scheduled_message.triggered` per account and look, naming its schedules (as the status
        // events name their messages): not one outbox row and one broker message per schedule.
        for (account_id, (first, fired)) in triggered {
            bus.emit(
                "scheduled_message.triggered",
                "scheduled_message",
                first,
                Some(account_id),
                json!({ "schedules": fired }),
            );
        }
        if !occurrences.is_empty() {
            schedule_occurrence::Entity::insert_many(occurrences).exec_without_returning(&txn).await?;
        }
        // The doorbells first (nothing leaves before the commit), so the rows need no copy to insert.
        emit_dispatch(&mut bus, messages.iter());
        crate::db::chunks::insert_all(
            &txn,
            messages.into_iter().map(IntoActiveModel::into_active_model),
            MESSAGE_CHUNK,
        )
        .await?;
        let fans_out = !groups.is_empty();
        crate::db::chunks::insert_all(&txn, groups, MESSAGE_CHUNK).await?;
        self.events.commit(txn, bus).await?;
        self.dispatch_wake.notify_one();
        if fans_out {
            self.fanout_wake.notify_one();
        }
        Ok(())
    }

    /// The message an occurrence sends, on behalf of the schedule's creator.
    async fn build_scheduled(
        &self,
        s: &scheduled_message::Model,
        at: DateTime<Utc>,
        cx: &LookContext,
    ) -> Result<message::Model, String> {
        let creator = s.created_by_user_id.ok_or("the schedule has no creator")?;
        let (scope, sender) = match cx.senders.get(&(s.account_id, creator)) {
            Some(Ok(found)) => found,
            Some(Err(reason)) => return Err(reason.clone()),
            None => return Err("the schedule's creator could not be read".into()),
        };
        let channel = match cx.channels.get(&(s.account_id, s.channel_id)) {
            Some(Ok(c)) => c.clone(),
            Some(Err(reason)) => return Err(reason.clone()),
            None => return Err("the schedule's channel could not be read".into()),
        };
        let mut row = self.prepare_message_on(*scope, sender, send_of(s), channel).await.map_err(|e| reason(&e))?;
        row.scheduled_message_id = Set(Some(s.id));
        row.scheduled_at = Set(Some(at));
        row.try_into_model().map_err(|e| e.to_string())
    }

    /// The group message an occurrence of a group schedule creates, on behalf of the schedule's creator
    /// (its recipients are resolved by the fan-out).
    async fn build_group_occurrence(
        &self,
        s: &scheduled_message::Model,
        at: DateTime<Utc>,
        cx: &LookContext,
    ) -> Result<group_message::Model, String> {
        let creator = s.created_by_user_id.ok_or("the schedule has no creator")?;
        let (scope, sender) = match cx.senders.get(&(s.account_id, creator)) {
            Some(Ok(found)) => found,
            Some(Err(reason)) => return Err(reason.clone()),
            None => return Err("the schedule's creator could not be read".into()),
        };
        match cx.channels.get(&(s.account_id, s.channel_id)) {
            Some(Ok(c)) if c.is_enabled => {}
            Some(Ok(_)) => return Err("channel_id: the channel is disabled".into()),
            Some(Err(reason)) => return Err(reason.clone()),
            None => return Err("the schedule's channel could not be read".into()),
        }
        if let Some(t) = s.template_id {
            match self.get_template(*scope, t).await {
                Ok(t) if t.is_active => {}
                Ok(_) => return Err("template_id: the template is not active".into()),
                Err(e) => return Err(format!("template_id: {}", reason(&e))),
            }
        }
        // Recipient time zones: the occurrence's wall time travels with the send (see `schedules`).
        let local = (s.timezone_mode == TimezoneMode::Recipient)
            .then(|| at.with_timezone(&super::schedules::firing_zone(chrono_tz::UTC, s.timezone_mode)).naive_local());
        super::groups::occurrence_group(*scope, sender, s, at, local).map_err(|e| reason(&e))
    }

    /// Runs the scheduler until `shutdown`. When the next instant is less than [`LEAD`] away, the
    /// sends due then are built before it comes, so that only writing them waits for it.
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
                let held: Vec<Uuid> = match me.accounts.suspended_accounts().await {
                    Ok(set) => set.iter().copied().collect(),
                    Err(_) => Vec::new(),
                };
                let next = schedule_store::next_due(&me.db, &held).await.ok().flatten();
                // How long until the next instant (zero when it has passed).
                let until = next.map(|at| (at - Utc::now()).to_std().unwrap_or(Duration::ZERO));
                if let (Some(at), Some(u)) = (next, until)
                    && !u.is_zero()
                    && u <= LEAD
                {
                    match me.fire_prepared(at, &held, &shutdown).await {
                        Some(Waited::Shutdown) => break,
                        Some(_) => continue,
                        None => {}
                    }
                }
                // Sleep until the next instant is LEAD away (then until it comes, if it is nearer).
                let wait = match until {
                    Some(u) if u > LEAD => u - LEAD,
                    Some(u) => u,
                    None => IDLE_POLL,
                };
                let wait = wait.min(IDLE_POLL);
                // Never a busy loop, even if a due schedule cannot be moved on.
                let wait = wait.max(Duration::from_millis(50));
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = me.schedule_wake.notified() => {
                        // Schedules created in a burst wake it once per WAKE_COALESCE, not once each
                        // (every turn reads the schedules table twice).
                        tokio::time::sleep(WAKE_COALESCE).await;
                    }
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        });
    }
}

/// How waiting for a prepared instant ended.
enum Waited {
    Reached,
    /// A schedule due sooner was created meanwhile.
    Sooner,
    Shutdown,
}

/// The reason an occurrence failed, in the words of the error a send would have answered.
pub(super) fn reason(e: &AppError) -> String {
    match e {
        AppError::Validation(fields) => {
            fields.iter().map(|f| format!("{}: {}", f.field, f.message)).collect::<Vec<_>>().join("; ")
        }
        other => other.to_string(),
    }
}
