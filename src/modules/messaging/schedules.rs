//! Scheduled messages (SPEC §6.4): a single send at a wall-clock time in an IANA zone, once or by a
//! recurrence rule ([`super::recurrence`]). Creating or editing one validates the send it will make
//! exactly as `POST /v1/messages` would (channel, recipient, template or body) and computes its first
//! occurrence; the scheduler ([`super::scheduler`]) fires it. Edits only while `pending` or `paused`;
//! `PATCH {status}` pauses, resumes (the next occurrence recomputed from now) or cancels.
//!
//! A group schedule (`send_type: group`) creates a queued group message at each occurrence; its
//! recipients are validated as a group send's are, and a `message_body` becomes an auto-generated
//! template when the schedule is saved (each occurrence's group message uses it).
//!
//! `timezone_mode: recipient` (group schedules): each recipient gets the send at the schedule's wall time
//! in their own zone (the account's when unknown). The schedule fires when the first zone on Earth
//! (UTC+14) reaches the wall time, creating one group message that carries the wall time; the fan-out
//! makes each message due at that wall time in its contact's zone, so the dispatcher sends the send in
//! per-zone waves.

use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};
use chrono_tz::Tz;
use sea_orm::{ActiveModelTrait, IntoActiveModel, ModelTrait, Set, TryIntoModel};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use super::entity::scheduled_message::{self, MisfirePolicy, ScheduleStatus, SendType, TimezoneMode};
use super::entity::template;
use super::groups::{NewGroupMessage, json_ids};
use super::messages::NewMessage;
use super::recurrence::{Recurrence, Timing, time_zone};
use super::schedule_store;
use super::service::Messaging;
use super::templates::auto_template;
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
    /// `single` (default) or `group`.
    pub send_type: Option<String>,
    /// `single`: the recipient (an address, or a contact).
    pub delivery_address: Option<String>,
    pub contact_id: Option<Uuid>,
    /// `group`: the recipients, as a group message names them.
    pub contact_group_ids: Option<Vec<Uuid>>,
    pub segment_ids: Option<Vec<Uuid>>,
    pub contact_ids: Option<Vec<Uuid>>,
    pub exclude_contact_ids: Option<Vec<Uuid>>,
    /// Local wall time in `timezone` (`2026-12-01T09:00`), or an RFC 3339 instant (turned into the
    /// wall time it is in `timezone`).
    pub scheduled_at: Option<String>,
    /// IANA zone; default the account's.
    pub timezone: Option<String>,
    /// `fixed` (default): everyone at `scheduled_at` in `timezone`; `recipient` (group schedules): each
    /// recipient at that wall time in their own zone.
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
    group: bool,
    mode: TimezoneMode,
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

/// The zone a schedule's occurrences are reckoned in: its own, or for recipient time zones the first
/// zone to reach a wall time (UTC+14; each recipient's own instant comes in the fan-out).
pub(super) fn firing_zone(tz: Tz, mode: TimezoneMode) -> Tz {
    match mode {
        TimezoneMode::Fixed => tz,
        TimezoneMode::Recipient => chrono_tz::Etc::GMTMinus14,
    }
}

/// The timing a stored schedule fires by.
pub(super) fn timing_of(s: &scheduled_message::Model) -> AppResult<Timing> {
    let tz = firing_zone(time_zone(&s.timezone).map_err(AppError::internal)?, s.timezone_mode);
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
        let group = match s.send_type.as_deref().unwrap_or("single") {
            "single" => false,
            "group" => true,
            _ => return Err(field("send_type", "give single or group")),
        };
        let mode = match s.timezone_mode.as_deref() {
            None => TimezoneMode::Fixed,
            Some(m) => TimezoneMode::parse(m).ok_or_else(|| field("timezone_mode", "give fixed or recipient"))?,
        };
        if mode == TimezoneMode::Recipient && !group {
            return Err(field("timezone_mode", "recipient time zones need send_type group"));
        }
        let name = s.name.as_deref().map(str::trim).unwrap_or_default();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(field("name", "give a name of 1 to 200 characters"));
        }
        if s.metadata.as_ref().is_some_and(|m| serde_json::to_vec(m).map_or(0, |b| b.len()) > 16 * 1024) {
            return Err(field("metadata", "must be at most 16 KiB of JSON"));
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
        let fires_in = firing_zone(tz, mode);
        let timing = Timing { start: wall, tz: fires_in, recurrence: rule.clone(), end: s.recurrence_end_at };
        let first = super::recurrence::resolve(fires_in, wall);
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
        if group {
            for (name, given) in
                [("contact_id", s.contact_id.is_some()), ("delivery_address", s.delivery_address.is_some())]
            {
                if given {
                    return Err(field(name, "a group schedule names contact_group_ids, segment_ids or contact_ids"));
                }
            }
            self.check_group(scope, &group_of_input(s)).await?;
        } else {
            let lists = [&s.contact_group_ids, &s.segment_ids, &s.contact_ids, &s.exclude_contact_ids];
            if lists.iter().any(|l| l.as_ref().is_some_and(|l| !l.is_empty())) {
                return Err(field("send_type", "give send_type group to name groups, segments or several contacts"));
            }
            self.prepare_message(scope, sender, send_of_input(s)).await?;
        }
        Ok(Settled { group, mode, wall, tz, rule, misfire, next })
    }

    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn create_schedule(
        &self,
        scope: AccountScope,
        sender: &CurrentUser,
        new: NewSchedule,
        now: DateTime<Utc>,
        meta: &EventMeta,
    ) -> AppResult<scheduled_message::Model> {
        if new.status.is_some() {
            return Err(field("status", "a schedule starts pending; pause it with PATCH"));
        }
        let settled = self.settle(scope, sender, &new, now).await?;
        let now = now.trunc_subsecs(6);
        let id = Uuid::now_v7();
        let (template_id, new_template) = group_template(scope, sender, &settled, &new, None)?;
        let txn = crate::db::begin_write(&self.db).await?;
        if let Some(t) = new_template {
            t.insert(&txn).await?;
        }
        let row = scheduled_message::ActiveModel {
            id: Set(id),
            account_id: Set(scope.account_id()),
            name: Set(new.name.clone().unwrap_or_default().trim().to_string()),
            channel_id: Set(new.channel_id.unwrap_or_default()),
            template_id: Set(template_id),
            message_body: Set(new.message_body),
            custom_values: Set(Value::Object(new.custom_values.unwrap_or_default())),
            send_type: Set(if settled.group { SendType::Group } else { SendType::Single }),
            delivery_address: Set(new.delivery_address),
            contact_id: Set(new.contact_id),
            contact_group_ids: Set(json_ids(&new.contact_group_ids)),
            segment_ids: Set(json_ids(&new.segment_ids)),
            contact_ids: Set(json_ids(&new.contact_ids)),
            exclude_contact_ids: Set(json_ids(&new.exclude_contact_ids)),
            scheduled_at: Set(settled.wall),
            timezone: Set(settled.tz.name().to_string()),
            timezone_mode: Set(settled.mode),
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
        let created = row.insert(&txn).await?;
        self.commit_changed(txn, &created, "scheduled_message.created", None, meta).await?;
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
        meta: &EventMeta,
    ) -> AppResult<scheduled_message::Model> {
        let current = self.get_schedule(scope, id).await?;
        let mut active = current.clone().into_active_model();
        let edits = NewSchedule { status: None, ..patch.clone() };
        let editing =
            serde_json::to_value(&edits).map(|v| v.as_object().is_some_and(|o| o.values().any(|v| !v.is_null())));
        let mut status = current.status;
        // A group schedule's new auto-generated template, written with the schedule (not before it).
        let mut new_template = None;
        if editing.unwrap_or(false) {
            if !current.status.editable() {
                return Err(AppError::conflict(format!(
                    "a {} schedule cannot be edited; only pending or paused ones",
                    current.status
                )));
            }
            let merged = merge(&current, edits);
            let settled = self.settle(scope, sender, &merged, now).await?;
            let (template_id, template) = group_template(scope, sender, &settled, &merged, Some(&current))?;
            new_template = template;
            active.name = Set(merged.name.clone().unwrap_or_default().trim().to_string());
            active.channel_id = Set(merged.channel_id.unwrap_or_default());
            active.template_id = Set(template_id);
            active.message_body = Set(merged.message_body.clone());
            active.send_type = Set(if settled.group { SendType::Group } else { SendType::Single });
            active.contact_group_ids = Set(json_ids(&merged.contact_group_ids));
            active.segment_ids = Set(json_ids(&merged.segment_ids));
            active.contact_ids = Set(json_ids(&merged.contact_ids));
            active.exclude_contact_ids = Set(json_ids(&merged.exclude_contact_ids));
            active.custom_values = Set(Value::Object(merged.custom_values.unwrap_or_default()));
            active.delivery_address = Set(merged.delivery_address);
            active.contact_id = Set(merged.contact_id);
            active.scheduled_at = Set(settled.wall);
            active.timezone = Set(settled.tz.name().to_string());
            active.timezone_mode = Set(settled.mode);
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
                // From now, and never at or before an occurrence already fired.
                let from = s.last_triggered_at.map_or(now, |last| Ord::max(last, now));
                let next = timing_of(&s)?.next_after(from);
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
        if let Some(t) = new_template {
            t.insert(&txn).await?;
        }
        let Some(updated) = schedule_store::update_schedule_if_unchanged(&txn, active, &current).await? else {
            return Err(AppError::conflict("the schedule fired meanwhile; read it again and retry"));
        };
        self.commit_changed(txn, &updated, "scheduled_message.updated", Some(&current), meta).await?;
        Ok(updated)
    }

    /// Commits a created or edited schedule with `scheduled_message.changed`, which wakes the schedulers
    /// of other processes (this process's at once).
    async fn commit_changed(
        &self,
        txn: sea_orm::DatabaseTransaction,
        s: &scheduled_message::Model,
        action: &str,
        before: Option<&scheduled_message::Model>,
        meta: &EventMeta,
    ) -> AppResult<()> {
        let shown = |s: &scheduled_message::Model| {
            json!({ "status": s.status, "send_type": s.send_type, "channel_id": s.channel_id,
                    "recurrence_rule": s.recurrence_rule, "timezone": s.timezone,
                    "scheduled_at": s.scheduled_at, "next_trigger_at": s.next_trigger_at })
        };
        let mut bus = EventBus::new(meta.clone());
        if let Some(b) = before {
            bus.before(shown(b));
        }
        bus.emit(action, "scheduled_message", s.id, Some(s.account_id), shown(s));
        let data = json!({ "status": s.status, "next_trigger_at": s.next_trigger_at });
        bus.emit("scheduled_message.changed", "scheduled_message", s.id, Some(s.account_id), data);
        self.events.commit(txn, bus).await?;
        self.schedule_wake.notify_one();
        Ok(())
    }

    pub async fn delete_schedule(&self, scope: AccountScope, id: Uuid, meta: &EventMeta) -> AppResult<()> {
        let s = self.get_schedule(scope, id).await?;
        let txn = crate::db::begin_write(&self.db).await?;
        s.clone().delete(&txn).await?;
        self.commit_changed(txn, &s, "scheduled_message.deleted", None, meta).await
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

/// The group send of a group schedule being created or edited.
fn group_of_input(s: &NewSchedule) -> NewGroupMessage {
    NewGroupMessage {
        name: s.name.clone(),
        channel_id: s.channel_id,
        channel_strategy: None,
        template_id: s.template_id,
        message_body: s.message_body.clone(),
        custom_values: s.custom_values.clone(),
        contact_group_ids: s.contact_group_ids.clone(),
        segment_ids: s.segment_ids.clone(),
        contact_ids: s.contact_ids.clone(),
        exclude_contact_ids: s.exclude_contact_ids.clone(),
        scheduled_at: None,
        metadata: None,
        status: None,
    }
}

/// The template a schedule stores — the one it names, or for a group schedule given a body an
/// auto-generated template of that body (the current one while the body is unchanged) — and the new
/// template to insert with the schedule, if one is needed.
fn group_template(
    scope: AccountScope,
    sender: &CurrentUser,
    settled: &Settled,
    s: &NewSchedule,
    current: Option<&scheduled_message::Model>,
) -> AppResult<(Option<Uuid>, Option<template::ActiveModel>)> {
    let (true, Some(body)) = (settled.group, &s.message_body) else { return Ok((s.template_id, None)) };
    if let Some(c) = current
        && c.message_body.as_ref() == Some(body)
        && c.template_id.is_some()
    {
        return Ok((c.template_id, None));
    }
    let name = s.name.as_deref().unwrap_or_default().trim();
    let t = auto_template(scope, Some(sender.id), Uuid::now_v7(), name, body.clone(), "message_body")?;
    Ok((t.id.clone().take(), Some(t)))
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
        // A group schedule made from a body holds the body and its auto-generated template: the body.
        (None, None) if s.message_body.is_some() => (None, s.message_body.clone()),
        (None, None) => (s.template_id, s.message_body.clone()),
        given => given,
    };
    let list = |given: Option<Vec<Uuid>>, stored: &Value| given.or_else(|| Some(super::fanout::ids(stored)));
    NewSchedule {
        name: p.name.or(Some(s.name.clone())),
        channel_id: p.channel_id.or(Some(s.channel_id)),
        template_id,
        message_body,
        custom_values: p.custom_values.or(s.custom_values.as_object().cloned()),
        send_type: p.send_type.or(Some(s.send_type.as_str().into())),
        delivery_address: p.delivery_address.or(s.delivery_address.clone()),
        contact_id: p.contact_id.or(s.contact_id),
        contact_group_ids: list(p.contact_group_ids, &s.contact_group_ids),
        segment_ids: list(p.segment_ids, &s.segment_ids),
        contact_ids: list(p.contact_ids, &s.contact_ids),
        exclude_contact_ids: list(p.exclude_contact_ids, &s.exclude_contact_ids),
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
