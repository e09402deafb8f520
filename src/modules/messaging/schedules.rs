//! Scheduled messages (SPEC §6.4): a single send at a wall-clock time in an IANA zone, once or by a
//! recurrence rule ([`super::recurrence`]). Creating or editing one validates the send it will make
//! exactly as `POST /v1/messages` would (channel, recipient, template or body) and computes its first
//! occurrence; the scheduler ([`super::scheduler`]) fires it. Edits only while `pending` or `paused`;
//! `PATCH {status}` pauses, resumes (the next occurrence recomputed from now) or cancels.
//!
//! Not yet (501): group schedules (`send_type: group`, which need group messages) and
//! `timezone_mode: recipient`.

use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};
use chrono_tz::Tz;
use sea_orm::{ActiveModelTrait, IntoActiveModel, ModelTrait, Set, TryIntoModel};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use super::entity::scheduled_message::{self, MisfirePolicy, ScheduleStatus, SendType, TimezoneMode};
use super::messages::NewMessage;
use super::recurrence::{Recurrence, Timing, time_zone};
use super::schedule_store;
use super::service::Messaging;
use crate::db::list::{ListQuery, Page};
use crate::error::{AppError, AppResult};
use crate::modules::accounts::{AccountScope, CurrentUser};
use crate::modules::events::{EventBus, EventMeta};

/// Most occurrences `GET …/occurrences` lists.
pub const MAX_OCCURRENCES: usize = 100;

/// The body of `POST /v1/scheduled-messages`; every field of a `PATCH` too (all optional there).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSchedule {
    pub name: Option<String>,
    pub channel_id: Option<Uuid>,
    pub template_id: Option<Uuid>,
    pub message_body: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub custom_values: Option<Map<String, Value>>,
    /// `single` (default); `group` is not available yet (501).
    pub send_type: Option<String>,
    pub delivery_address: Option<String>,
    pub contact_id: Option<Uuid>,
    /// Local wall time in `timezone` (`2026-12-01T09:00`), or an RFC 3339 instant (turned into the
    /// wall time it is in `timezone`).
    pub scheduled_at: Option<String>,
    /// IANA zone; default the account's.
    pub timezone: Option<String>,
    /// `fixed` (default); `recipient` is not available yet (501).
    pub timezone_mode: Option<String>,
    pub is_recurring: Option<bool>,
    /// `daily`, `weekly:mon,wed,fri`, `monthly:1,15` or `cron:<expression>` (5 fields accepted).
    pub recurrence_rule: Option<String>,
    pub recurrence_end_at: Option<DateTime<Utc>>,
    /// `fire_once` (default) or `skip`: what a recurring schedule does with occurrences missed while
    /// no scheduler ran.
    pub misfire_policy: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
    /// `PATCH` only: `paused`, `pending` (resume) or `cancelled`.
    pub status: Option<String>,
}

/// A schedule's validated timing and the occurrence it fires next.
struct Settled {
    wall: NaiveDateTime,
    tz: Tz,
    rule: Option<Recurrence>,
    misfire: MisfirePolicy,
    next: Option<DateTime<Utc>>,
}

fn field(name: &str, message: impl Into<String>) -> AppError {
    AppError::field(name, message)
}

/// The wall time `raw` names in `tz`.
fn wall_time(raw: &str, tz: Tz) -> Result<NaiveDateTime, String> {
    let raw = raw.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&tz).naive_local().trunc_subsecs(0));
    }
    ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(raw, f).ok())
        .ok_or_else(|| "give a local time such as 2026-12-01T09:00, or an RFC 3339 instant".into())
}

/// The timing a stored schedule fires by.
pub(super) fn timing_of(s: &scheduled_message::Model) -> AppResult<Timing> {
    let tz = time_zone(&s.timezone).map_err(AppError::internal)?;
    let recurrence = match (&s.recurrence_rule, s.is_recurring) {
        (Some(r), true) => Some(Recurrence::parse(r).map_err(AppError::internal)?),
        _ => None,
    };
    Ok(Timing { start: s.scheduled_at, tz, recurrence, end: s.recurrence_end_at })
}

/// The send a stored schedule makes, as `POST /v1/messages` takes it.
pub(super) fn send_of(s: &scheduled_message::Model) -> NewMessage {
    send_of_input(&merge(s, NewSchedule::default()))
}

impl Messaging {
    /// Validates a whole schedule (as it will be after a create or an edit) against `now`.
    async fn settle(
        &self,
        scope: AccountScope,
        sender: &CurrentUser,
        s: &NewSchedule,
        now: DateTime<Utc>,
    ) -> AppResult<Settled> {
        match s.send_type.as_deref().unwrap_or("single") {
            "single" => {}
            "group" => return Err(AppError::NotImplemented("group schedules come with group messages".into())),
            _ => return Err(field("send_type", "give single or group")),
        }
        match s.timezone_mode.as_deref().unwrap_or("fixed") {
            "fixed" => {}
            "recipient" => {
                return Err(AppError::NotImplemented("timezone_mode recipient comes with group schedules".into()));
            }
            _ => return Err(field("timezone_mode", "give fixed or recipient")),
        }
        let name = s.name.as_deref().map(str::trim).unwrap_or_default();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(field("name", "give a name of 1 to 200 characters"));
        }
        if s.channel_id.is_none() {
            return Err(field("channel_id", "required"));
        }
        let zone_name = match &s.timezone {
            Some(z) => z.clone(),
            None => self.accounts.get_account(scope).await?.timezone,
        };
        let tz = time_zone(&zone_name).map_err(|m| field("timezone", m))?;
        let raw = s.scheduled_at.as_deref().ok_or_else(|| field("scheduled_at", "required"))?;
        let wall = wall_time(raw, tz).map_err(|m| field("scheduled_at", m))?;
        let rule = match (s.is_recurring.unwrap_or(false), s.recurrence_rule.as_deref()) {
            (true, Some(r)) => Some(Recurrence::parse(r).map_err(|m| field("recurrence_rule", m))?),
            (true, None) => return Err(field("recurrence_rule", "a recurring schedule needs a rule")),
            (false, Some(_)) => return Err(field("is_recurring", "set is_recurring to give a recurrence_rule")),
            (false, None) => None,
        };
        let misfire = match s.misfire_policy.as_deref() {
            None => MisfirePolicy::FireOnce,
            Some(p) => MisfirePolicy::parse(p).ok_or_else(|| field("misfire_policy", "give fire_once or skip"))?,
        };
        let timing = Timing { start: wall, tz, recurrence: rule.clone(), end: s.recurrence_end_at };
        let first = super::recurrence::resolve(tz, wall);
        if let Some(end) = s.recurrence_end_at
            && end < first
        {
            return Err(field("recurrence_end_at", "must not be before scheduled_at"));
        }
        if rule.is_none() && first <= now {
            return Err(field("scheduled_at", "a one-time schedule must be in the future"));
        }
        let next = timing.next_after(now);
        if next.is_none() {
            return Err(field("recurrence_rule", "no occurrence is left after now"));
        }
        // The send it will make, validated as a send now (nothing written).
        self.prepare_message(scope, sender, send_of_input(s)).await?;
        Ok(Settled { wall, tz, rule, misfire, next })
    }

    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn create_schedule(
        &self,
        scope: AccountScope,
        sender: &CurrentUser,
        new: NewSchedule,
        now: DateTime<Utc>,
    ) -> AppResult<scheduled_message::Model> {
        if new.status.is_some() {
            return Err(field("status", "a schedule starts pending; pause it with PATCH"));
        }
        let settled = self.settle(scope, sender, &new, now).await?;
        let now = now.trunc_subsecs(6);
        let row = scheduled_message::ActiveModel {
            id: Set(Uuid::now_v7()),
            account_id: Set(scope.account_id()),
            name: Set(new.name.unwrap_or_default().trim().to_string()),
            channel_id: Set(new.channel_id.unwrap_or_default()),
            template_id: Set(new.template_id),
            message_body: Set(new.message_body),
            custom_values: Set(Value::Object(new.custom_values.unwrap_or_default())),
            send_type: Set(SendType::Single),
            delivery_address: Set(new.delivery_address),
            contact_id: Set(new.contact_id),
            contact_group_ids: Set(json!([])),
            segment_ids: Set(json!([])),
            contact_ids: Set(json!([])),
            exclude_contact_ids: Set(json!([])),
            scheduled_at: Set(settled.wall),
            timezone: Set(settled.tz.name().to_string()),
            timezone_mode: Set(TimezoneMode::Fixed),
            is_recurring: Set(settled.rule.is_some()),
            recurrence_rule: Set(settled.rule.as_ref().map(Recurrence::normalised)),
            recurrence_end_at: Set(new.recurrence_end_at),
            misfire_policy: Set(settled.misfire),
            status: Set(ScheduleStatus::Pending),
            last_triggered_at: Set(None),
            next_trigger_at: Set(settled.next),
            trigger_count: Set(0),
            last_message_id: Set(None),
            last_group_message_id: Set(None),
            last_error: Set(None),
            metadata: Set(Value::Object(new.metadata.unwrap_or_default())),
            created_by_user_id: Set(Some(sender.id)),
            created_at: Set(now),
            updated_at: Set(now),
        };
        let txn = crate::db::begin_write(&self.db).await?;
        let created = row.insert(&txn).await?;
        self.commit_changed(txn, &created).await?;
        Ok(created)
    }

    pub async fn list_schedules(
        &self,
        scope: AccountScope,
        q: &ListQuery,
    ) -> AppResult<Page<scheduled_message::Model>> {
        schedule_store::list_schedules(&self.db, scope, q).await
    }

    pub async fn get_schedule(&self, scope: AccountScope, id: Uuid) -> AppResult<scheduled_message::Model> {
        schedule_store::find_schedule(&self.db, scope, id).await?.ok_or(AppError::NotFound("scheduled message"))
    }

    /// Edits (only while pending or paused) and/or moves the status: `paused`, `pending` (resume: the
    /// next occurrence is recomputed from now) or `cancelled`.
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn update_schedule(
        &self,
        scope: AccountScope,
        sender: &CurrentUser,
        id: Uuid,
        patch: NewSchedule,
        now: DateTime<Utc>,
    ) -> AppResult<scheduled_message::Model> {
        let current = self.get_schedule(scope, id).await?;
        let mut active = current.clone().into_active_model();
        let edits = NewSchedule { status: None, ..patch.clone() };
        let editing =
            serde_json::to_value(&edits).map(|v| v.as_object().is_some_and(|o| o.values().any(|v| !v.is_null())));
        let mut status = current.status;
        if editing.unwrap_or(false) {
            if !current.status.editable() {
                return Err(AppError::conflict(format!(
                    "a {} schedule cannot be edited; only pending or paused ones",
                    current.status
                )));
            }
            let merged = merge(&current, edits);
            let settled = self.settle(scope, sender, &merged, now).await?;
            active.name = Set(merged.name.unwrap_or_default().trim().to_string());
            active.channel_id = Set(merged.channel_id.unwrap_or_default());
            active.template_id = Set(merged.template_id);
            active.message_body = Set(merged.message_body);
            active.custom_values = Set(Value::Object(merged.custom_values.unwrap_or_default()));
            active.delivery_address = Set(merged.delivery_address);
            active.contact_id = Set(merged.contact_id);
            active.scheduled_at = Set(settled.wall);
            active.timezone = Set(settled.tz.name().to_string());
            active.is_recurring = Set(settled.rule.is_some());
            active.recurrence_rule = Set(settled.rule.as_ref().map(Recurrence::normalised));
            active.recurrence_end_at = Set(merged.recurrence_end_at);
            active.misfire_policy = Set(settled.misfire);
            active.metadata = Set(Value::Object(merged.metadata.unwrap_or_default()));
            if current.status == ScheduleStatus::Pending {
                active.next_trigger_at = Set(settled.next);
            }
        }
        match patch.status.as_deref() {
            None => {}
            Some("paused") if matches!(status, ScheduleStatus::Pending | ScheduleStatus::Triggered) => {
                status = ScheduleStatus::Paused;
            }
            Some("pending") if status == ScheduleStatus::Paused => {
                let s = active.clone().try_into_model()?;
                let next = timing_of(&s)?.next_after(now);
                if next.is_none() && !s.is_recurring {
                    return Err(AppError::conflict(
                        "its time passed while it was paused; give a new scheduled_at to resume it",
                    ));
                }
                active.next_trigger_at = Set(next);
                status = match (next, s.trigger_count) {
                    (None, _) => ScheduleStatus::Completed,
                    (Some(_), 0) => ScheduleStatus::Pending,
                    (Some(_), _) => ScheduleStatus::Triggered,
                };
            }
            Some("cancelled") if !matches!(status, ScheduleStatus::Completed | ScheduleStatus::Cancelled) => {
                status = ScheduleStatus::Cancelled;
            }
            Some(s @ ("paused" | "pending" | "cancelled")) => {
                return Err(AppError::conflict(format!("a {} schedule cannot become {s}", current.status)));
            }
            Some(_) => return Err(field("status", "give paused, pending (resume) or cancelled")),
        }
        active.status = Set(status);
        active.updated_at = Set(Utc::now());
        // Only if the scheduler did not fire it meanwhile (it moves next_trigger_at when it does).
        let txn = crate::db::begin_write(&self.db).await?;
        let Some(updated) = schedule_store::update_schedule_if_unchanged(&txn, active, &current).await? else {
            return Err(AppError::conflict("the schedule fired meanwhile; read it again and retry"));
        };
        self.commit_changed(txn, &updated).await?;
        Ok(updated)
    }

    /// Commits a created or edited schedule with `scheduled_message.changed`, which wakes the schedulers
    /// of other processes (this process's at once).
    async fn commit_changed(&self, txn: sea_orm::DatabaseTransaction, s: &scheduled_message::Model) -> AppResult<()> {
        let meta = EventMeta { user_id: s.created_by_user_id, request_id: None };
        let mut bus = EventBus::new(meta);
        let data = json!({ "status": s.status, "next_trigger_at": s.next_trigger_at });
        bus.emit("scheduled_message.changed", "scheduled_message", s.id, Some(s.account_id), data);
        self.events.commit(txn, bus).await?;
        self.schedule_wake.notify_one();
        Ok(())
    }

    pub async fn delete_schedule(&self, scope: AccountScope, id: Uuid) -> AppResult<()> {
        let s = self.get_schedule(scope, id).await?;
        s.delete(&self.db).await?;
        Ok(())
    }

    /// The next `count` occurrences after `now` (none for a paused, cancelled or finished schedule).
    pub async fn schedule_occurrences(
        &self,
        scope: AccountScope,
        id: Uuid,
        count: usize,
        now: DateTime<Utc>,
    ) -> AppResult<Vec<DateTime<Utc>>> {
        let s = self.get_schedule(scope, id).await?;
        if !matches!(s.status, ScheduleStatus::Pending | ScheduleStatus::Triggered) {
            return Ok(Vec::new());
        }
        let from = s.next_trigger_at.map_or(now, |n| n - chrono::Duration::microseconds(1));
        Ok(timing_of(&s)?.occurrences(from, count.min(MAX_OCCURRENCES)))
    }
}

/// The send of a schedule being created or edited.
fn send_of_input(s: &NewSchedule) -> NewMessage {
    NewMessage {
        channel_id: s.channel_id.unwrap_or_default(),
        contact_id: s.contact_id,
        delivery_address: s.delivery_address.clone(),
        template_id: s.template_id,
        custom_values: s.custom_values.clone(),
        message_body: s.message_body.clone(),
        attachments: None,
        metadata: None,
    }
}

/// A stored schedule with the fields of an edit laid over it. A template given replaces the stored
/// body and a body given replaces the stored template (a send has exactly one of them).
fn merge(s: &scheduled_message::Model, p: NewSchedule) -> NewSchedule {
    let (template_id, message_body) = match (p.template_id, p.message_body) {
        (None, None) => (s.template_id, s.message_body.clone()),
        given => given,
    };
    NewSchedule {
        name: p.name.or(Some(s.name.clone())),
        channel_id: p.channel_id.or(Some(s.channel_id)),
        template_id,
        message_body,
        custom_values: p.custom_values.or(s.custom_values.as_object().cloned()),
        send_type: p.send_type.or(Some(s.send_type.as_str().into())),
        delivery_address: p.delivery_address.or(s.delivery_address.clone()),
        contact_id: p.contact_id.or(s.contact_id),
        scheduled_at: p.scheduled_at.or(Some(s.scheduled_at.format("%Y-%m-%dT%H:%M:%S").to_string())),
        timezone: p.timezone.or(Some(s.timezone.clone())),
        timezone_mode: p.timezone_mode.or(Some(s.timezone_mode.as_str().into())),
        is_recurring: p.is_recurring.or(Some(s.is_recurring)),
        recurrence_rule: match p.is_recurring {
            Some(false) => p.recurrence_rule,
            _ => p.recurrence_rule.or(s.recurrence_rule.clone()),
        },
        recurrence_end_at: p.recurrence_end_at.or(s.recurrence_end_at),
        misfire_policy: p.misfire_policy.or(Some(s.misfire_policy.as_str().into())),
        metadata: p.metadata.or(s.metadata.as_object().cloned()),
        status: None,
    }
}
