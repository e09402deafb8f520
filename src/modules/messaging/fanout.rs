//! The group fan-out (roles `dispatcher`, `worker`, `all`): turns a queued group message into one
//! message per recipient.
//!
//! A worker claims a queued (or abandoned) group message with a lease, then streams its audience from
//! `Directory` in batches of [`FANOUT_BATCH`] contacts in id order. Each contact is composed once (the
//! template parsed once per send): a message on the send's channel — or, with `channel_strategy:
//! preferred`, on the contact's preferred channel type among the account's enabled channels, else the
//! highest-priority channel that reaches them — or a skip with its reason (`opted_out`, `no_address`,
//! `missing_variable:NAME`). Each batch is ONE transaction: the messages and skips are inserted with
//! `(group_message_id, contact_id)` unique (a batch written twice writes nothing the second time),
//! then the group's row moves on only from the position this worker read (so two workers can never
//! both write a batch), its counters growing by what was inserted, and ONE dispatch doorbell per
//! channel names the batch. A crash or a kill halfway loses the uncommitted batch only; the lease runs
//! out and a worker resumes after the stored position. A cancel stops the fan-out at its next batch.
//!
//! Waking: `group_message.queued` (in this process directly, from another through the broker), and a
//! poll every [`FANOUT_POLL`] (a send scheduled for later, a lease that ran out).

use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Func, OnConflict};
use sea_orm::{ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, Set, TryIntoModel};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use super::entity::group_message::{self, ChannelStrategy, GroupStatus};
use super::entity::group_message_skip;
use super::entity::message::{self, Direction};
use super::entity::template::{self, FallbackStrategy};
use super::group_store;
use super::messages::{MAX_BODY_CHARS, emit_dispatch};
use super::render::{Parsed, Variables};
use super::service::Messaging;
use super::store;
use super::templates::{fallback_of, recipient_zone};
use crate::domain::channel_type::ChannelType;
use crate::error::{AppError, AppResult};
use crate::modules::accounts::{AccountScope, CurrentUser};
use crate::modules::channels::{Channel, analyse_sms};
use crate::modules::contacts::{Audience, DirectoryContact};
use crate::modules::events::{EventBus, EventMeta};

/// Contacts read, composed and written per transaction.
pub const FANOUT_BATCH: u64 = 1_000;
/// How long a claim holds a group message between two batches, unless configured
/// (`TURUMBA_DISPATCH__FANOUT_LEASE_SECS`).
pub const FANOUT_LEASE_SECS: i64 = 60;
/// How often an idle fan-out worker looks for work nobody rang for.
pub const FANOUT_POLL: Duration = Duration::from_secs(1);
/// Messages per insert statement (28 columns each: inside either database's bound on parameters).
const INSERT_CHUNK: usize = 256;

/// What a group send turns one contact into.
pub(super) enum Composed {
    Message(Box<message::Model>),
    Skipped { contact_id: Uuid, reason: String },
}

/// Everything a group send reads once to compose each of its recipients.
pub(super) struct Composer {
    scope: AccountScope,
    group_id: Uuid,
    template: template::Model,
    parsed: Parsed,
    defaults: Map<String, Value>,
    custom: Map<String, Value>,
    account_name: String,
    account_zone: String,
    sender: CurrentUser,
    /// The send's channel (`fixed`), or the account's enabled channels, highest priority first.
    channels: Vec<(Channel, ChannelType)>,
    preferred: bool,
    scheduled_at: Option<DateTime<Utc>>,
    /// Each message due at this wall time in its contact's zone (else the account's).
    local_send_time: Option<chrono::NaiveDateTime>,
}

/// The audience a group message names.
pub(super) fn audience_of(g: &group_message::Model) -> Audience {
    Audience {
        group_ids: ids(&g.contact_group_ids),
        segment_ids: ids(&g.segment_ids),
        contact_ids: ids(&g.contact_ids),
        exclude_contact_ids: ids(&g.exclude_contact_ids),
        exclude_group_ids: Vec::new(),
    }
}

pub(super) fn ids(v: &Value) -> Vec<Uuid> {
    v.as_array()
        .map(|a| a.iter().filter_map(|x| x.as_str().and_then(|s| Uuid::parse_str(s).ok())).collect())
        .unwrap_or_default()
}

impl Composer {
    /// The channel and address a contact is sent to, or why it is skipped.
    fn route(&self, c: &DirectoryContact) -> Result<(&Channel, ChannelType, String), String> {
        let mut first_reason: Option<&'static str> = None;
        let preferred = c.preferred_channel.as_deref().filter(|_| self.preferred);
        let by_preference = self.channels.iter().filter(|(_, t)| Some(t.as_str()) == preferred);
        for (ch, t) in by_preference.chain(self.channels.iter()) {
            match c.address_on(t.as_str()) {
                Ok(address) => return Ok((ch, *t, address)),
                Err(reason) => {
                    first_reason.get_or_insert(reason);
                }
            }
        }
        Err(first_reason.unwrap_or("no_channel").to_string())
    }

    pub(super) fn compose(&self, c: DirectoryContact, now: DateTime<Utc>) -> Composed {
        let skip = |reason: String| Composed::Skipped { contact_id: c.id, reason };
        let (channel, channel_type, address) = match self.route(&c) {
            Ok(found) => found,
            Err(reason) => return skip(reason),
        };
        let vars = Variables {
            recipient: None,
            custom: Some(&self.custom),
            contact: Some(&c),
            account_name: Some(&self.account_name),
            sender_name: Some(channel.sender_name.as_deref().unwrap_or(&self.sender.full_name)),
            sender_email: Some(&self.sender.email),
            timezone: recipient_zone(Some(&c), &self.account_zone),
            now: None,
        };
        let fallback = fallback_of(self.template.fallback_strategy, &self.defaults);
        let rendered = self.parsed.render(|name| vars.get(name), fallback);
        if self.template.fallback_strategy == FallbackStrategy::SkipContact
            && let Some(reason) = rendered.skip_reason()
        {
            return skip(reason);
        }
        if rendered.text.trim().is_empty() {
            return skip("empty_message".into());
        }
        if rendered.text.chars().count() > MAX_BODY_CHARS {
            return skip("message_too_long".into());
        }
        let mut metadata = Map::new();
        if matches!(channel_type, ChannelType::Sms | ChannelType::Smpp | ChannelType::Sandbox) {
            let sms = analyse_sms(&rendered.text);
            metadata.insert("segments".into(), json!(sms.segments));
            metadata.insert("encoding".into(), json!(sms.encoding.as_str()));
        }
        let mut row =
            store::new_message(self.scope, channel.id, channel_type, Direction::Outbound, address, rendered.text, now);
        row.contact_id = Set(Some(c.id));
        row.sent_by_user_id = Set(Some(self.sender.id));
        row.group_message_id = Set(Some(self.group_id));
        row.template_id = Set(Some(self.template.id));
        row.original_template = Set(Some(self.template.body.clone()));
        row.attachments = Set(self.template.attachments.clone());
        row.metadata = Set(Value::Object(metadata));
        row.scheduled_at = Set(self.scheduled_at);
        if let Some(wall) = self.local_send_time {
            // The contact's wave: the wall time in their zone (a time the clocks skip: when the gap ends).
            let zone = recipient_zone(Some(&c), &self.account_zone).unwrap_or(chrono_tz::UTC);
            let due = super::recurrence::resolve(zone, wall);
            row.scheduled_at = Set(Some(due));
            row.next_attempt_at = Set(Some(Ord::max(due, now)));
        }
        match row.try_into_model() {
            Ok(m) => Composed::Message(Box::new(m)),
            Err(e) => skip(format!("internal: {e}")),
        }
    }
}

/// What became of a batch's transaction.
enum Wrote {
    Written,
    /// The send was cancelled, or another worker moved its position on: this worker stops.
    Stopped,
}

impl Messaging {
    /// What composing a group send needs, read once; an error names why the send cannot be made.
    /// `template`, when given, stands in for the send's stored one (a preview's unsaved body).
    pub(super) async fn composer_with(
        &self,
        scope: AccountScope,
        g: &group_message::Model,
        template: Option<template::Model>,
    ) -> AppResult<Composer> {
        let template = match template {
            Some(t) => t,
            None => match self.get_template(scope, g.template_id).await {
                Ok(t) => t,
                Err(AppError::NotFound(_)) => {
                    return Err(AppError::field("template_id", "the template no longer exists"));
                }
                Err(e) => return Err(e),
            },
        };
        if !template.is_active {
            return Err(AppError::field("template_id", "the template is not active"));
        }
        let account = self.accounts.get_account(scope).await?;
        let creator = g.created_by_user_id.ok_or_else(|| AppError::conflict("the group message has no creator"))?;
        let sender = match self.accounts.member_user(scope, creator).await {
            Ok((_, u, _)) => CurrentUser::from(u),
            Err(AppError::NotFound(_)) => {
                return Err(AppError::conflict("the group message's creator is no longer a member of the account"));
            }
            Err(e) => return Err(e),
        };
        let channels: Vec<Channel> = match (g.channel_strategy, g.channel_id) {
            (ChannelStrategy::Fixed, Some(id)) => {
                let c = self.channel_for_send(scope, id).await?;
                if !c.is_enabled {
                    return Err(AppError::field("channel_id", "the channel is disabled"));
                }
                vec![c]
            }
            (ChannelStrategy::Fixed, None) => return Err(AppError::field("channel_id", "required")),
            (ChannelStrategy::Preferred, _) => self.channels.enabled_channels(scope).await?,
        };
        if channels.is_empty() {
            return Err(AppError::field("channel_strategy", "the account has no enabled channel"));
        }
        let channels = channels
            .into_iter()
            .filter_map(|c| ChannelType::parse(&c.channel_type).map(|t| (c, t)))
            .collect::<Vec<_>>();
        Ok(Composer {
            scope,
            group_id: g.id,
            parsed: Parsed::parse(&template.body),
            defaults: template.default_values.as_object().cloned().unwrap_or_default(),
            template,
            custom: g.custom_values.as_object().cloned().unwrap_or_default(),
            account_name: account.name,
            account_zone: account.timezone,
            sender,
            channels,
            preferred: g.channel_strategy == ChannelStrategy::Preferred,
            scheduled_at: g.scheduled_at,
            local_send_time: g.local_send_time,
        })
    }

    /// Runs the fan-out worker until `shutdown`.
    pub fn start_fanout(&self, shutdown: &CancellationToken, tasks: &TaskTracker) {
        let me = self.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            loop {
                let worked = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    r = me.fan_out_next(Utc::now()) => r.unwrap_or_else(|e| {
                        tracing::warn!(error = %e, "the group fan-out failed; it resumes when its claim runs out");
                        false
                    }),
                };
                if worked {
                    continue;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = me.fanout_wake.notified() => {}
                    _ = tokio::time::sleep(FANOUT_POLL) => {}
                }
            }
        });
    }

    /// Claims one group message waiting for its fan-out at `now` (queued and due, or processing with a
    /// lapsed claim) and writes all its recipients. False when none was waiting.
    pub async fn fan_out_next(&self, now: DateTime<Utc>) -> AppResult<bool> {
        let Some(g) = self.claim_fanout(now).await? else { return Ok(false) };
        let scope = self.accounts.operator_scope(g.account_id).await?;
        let composer = match self.composer_with(scope, &g, None).await {
            Ok(c) => c,
            Err(e @ (AppError::Validation(_) | AppError::Conflict { .. } | AppError::NotFound(_))) => {
                self.fail_fanout(&g, &super::scheduler::reason(&e)).await?;
                return Ok(true);
            }
            Err(e) => return Err(e),
        };
        let audience = audience_of(&g);
        let mut stream = match self.directory.members(scope, &audience, FANOUT_BATCH, g.fanout_after).await {
            Ok(s) => s,
            Err(AppError::NotFound(what)) => {
                self.fail_fanout(&g, &format!("a {what} of the audience no longer exists")).await?;
                return Ok(true);
            }
            Err(e) => return Err(e),
        };
        let mut position = g.fanout_after;
        let started = std::time::Instant::now();
        while let Some(contacts) = stream.next_batch().await? {
            let Some(last) = contacts.last().map(|c| c.id) else { break };
            let stamp = Utc::now().trunc_subsecs(6);
            let composed: Vec<Composed> = contacts.into_iter().map(|c| composer.compose(c, stamp)).collect();
            // The claim is renewed on the caller's clock, moved on by the time spent.
            let clock = now + chrono::Duration::from_std(started.elapsed()).unwrap_or_default();
            match self.write_batch(&g, position, last, composed, clock).await? {
                Wrote::Written => position = Some(last),
                Wrote::Stopped => return Ok(true),
            }
        }
        self.finish_fanout(&g, position).await?;
        Ok(true)
    }

    /// Claims a group message whose fan-out is due (none of a suspended account).
    async fn claim_fanout(&self, now: DateTime<Utc>) -> AppResult<Option<group_message::Model>> {
        use group_message::Column as G;
        let held: Vec<Uuid> = self.accounts.suspended_accounts().await?.iter().copied().collect();
        let waiting = || {
            sea_orm::Condition::all()
                .add_option((!held.is_empty()).then(|| G::AccountId.is_not_in(held.iter().copied())))
                .add(G::Status.is_in([GroupStatus::Queued, GroupStatus::Processing]))
                .add(G::FanoutDone.eq(false))
                .add(sea_orm::Condition::any().add(G::FanoutLeaseUntil.is_null()).add(G::FanoutLeaseUntil.lt(now)))
                .add(sea_orm::Condition::any().add(G::ScheduledAt.is_null()).add(G::ScheduledAt.lte(now)))
        };
        let candidates: Vec<Uuid> = group_message::Entity::find()
            .select_only()
            .column(G::Id)
            .filter(waiting())
            .order_by_asc(G::CreatedAt)
            .limit(8)
            .into_tuple()
            .all(&self.db)
            .await?;
        for id in candidates {
            let res = group_message::Entity::update_many()
                .col_expr(G::Status, Expr::val(GroupStatus::Processing.as_str()))
                .col_expr(G::FanoutLeaseUntil, Expr::val(now + self.fanout_lease))
                .col_expr(G::StartedAt, Func::coalesce([Expr::col(G::StartedAt), Expr::val(now)]).into())
                .col_expr(G::UpdatedAt, Expr::val(Utc::now()))
                .filter(G::Id.eq(id))
                .filter(waiting())
                .exec(&self.db)
                .await?;
            if res.rows_affected == 1 {
                return Ok(group_message::Entity::find_by_id(id).one(&self.db).await?);
            }
        }
        Ok(None)
    }

    /// Writes one batch (see the module documentation).
    async fn write_batch(
        &self,
        g: &group_message::Model,
        position: Option<Uuid>,
        last: Uuid,
        composed: Vec<Composed>,
        now: DateTime<Utc>,
    ) -> AppResult<Wrote> {
        use group_message::Column as G;
        let mut rows = Vec::with_capacity(composed.len());
        let mut skips = Vec::new();
        for c in composed {
            match c {
                Composed::Message(m) => rows.push(*m),
                Composed::Skipped { contact_id, reason } => skips.push(group_message_skip::ActiveModel {
                    group_message_id: Set(g.id),
                    contact_id: Set(contact_id),
                    account_id: Set(g.account_id),
                    reason: Set(reason),
                    created_at: Set(Utc::now()),
                }),
            }
        }
        let txn = crate::db::begin_write(&self.db).await?;
        let mut inserted = 0u64;
        for chunk in rows.chunks(INSERT_CHUNK) {
            inserted += message::Entity::insert_many(chunk.iter().map(|m| m.clone().into_active_model()))
                .on_conflict(
                    // The unique index is partial (only messages of a group): the target names its predicate.
                    OnConflict::columns([message::Column::GroupMessageId, message::Column::ContactId])
                        .target_and_where(Expr::col(message::Column::GroupMessageId).is_not_null())
                        .do_nothing()
                        .to_owned(),
                )
                .exec_without_returning(&txn)
                .await?;
        }
        let mut skipped = 0u64;
        for chunk in skips.chunks(INSERT_CHUNK * 4) {
            skipped += group_message_skip::Entity::insert_many(chunk.iter().cloned())
                .on_conflict(
                    OnConflict::columns([
                        group_message_skip::Column::GroupMessageId,
                        group_message_skip::Column::ContactId,
                    ])
                    .do_nothing()
                    .to_owned(),
                )
                .exec_without_returning(&txn)
                .await?;
        }
        // The group's row last (held only for the end of the transaction): the batch counts, and the
        // position moves on, only if the send is still processing from the position this worker read;
        // else nothing of the batch is kept. A cancel that commits first makes this fail; one that
        // comes after waits, then cancels what the batch wrote.
        let at = match position {
            Some(p) => G::FanoutAfter.eq(p),
            None => G::FanoutAfter.is_null(),
        };
        let (inserted, skipped) = (inserted as i32, skipped as i32);
        let moved = group_message::Entity::update_many()
            .col_expr(G::FanoutAfter, Expr::val(last))
            .col_expr(G::FanoutLeaseUntil, Expr::val(now + self.fanout_lease))
            .col_expr(G::TotalRecipients, Expr::col(G::TotalRecipients).add(inserted))
            .col_expr(G::PendingCount, Expr::col(G::PendingCount).add(inserted))
            .col_expr(G::SkippedCount, Expr::col(G::SkippedCount).add(skipped))
            .col_expr(G::UpdatedAt, Expr::val(Utc::now()))
            .filter(G::Id.eq(g.id))
            .filter(G::Status.eq(GroupStatus::Processing))
            .filter(G::FanoutDone.eq(false))
            .filter(at)
            .exec(&txn)
            .await?;
        if moved.rows_affected != 1 {
            txn.rollback().await?;
            return Ok(Wrote::Stopped);
        }
        let mut bus = EventBus::new(EventMeta::default());
        emit_dispatch(&mut bus, &rows);
        self.events.commit(txn, bus).await?;
        self.dispatch_wake.notify_one();
        metrics::counter!("group_fanout_messages_total").increment(inserted as u64);
        Ok(Wrote::Written)
    }

    /// The fan-out wrote every recipient: the send completes when its messages do (at once when none
    /// is pending).
    async fn finish_fanout(&self, g: &group_message::Model, position: Option<Uuid>) -> AppResult<()> {
        use group_message::Column as G;
        let at = match position {
            Some(p) => G::FanoutAfter.eq(p),
            None => G::FanoutAfter.is_null(),
        };
        let txn = crate::db::begin_write(&self.db).await?;
        let res = group_message::Entity::update_many()
            .col_expr(G::FanoutDone, Expr::val(true))
            .col_expr(G::FanoutLeaseUntil, Expr::val(Option::<DateTime<Utc>>::None))
            .col_expr(G::UpdatedAt, Expr::val(Utc::now()))
            .filter(G::Id.eq(g.id))
            .filter(G::Status.eq(GroupStatus::Processing))
            .filter(G::FanoutDone.eq(false))
            .filter(at)
            .exec(&txn)
            .await?;
        let mut bus = EventBus::new(EventMeta::default());
        if res.rows_affected == 1 {
            group_store::settle(&txn, &mut bus, &[g.id]).await?;
        }
        self.events.commit(txn, bus).await?;
        Ok(())
    }

    /// The send cannot be made (its template, channel or an audience list is gone): the fan-out stops
    /// with the reason; what it wrote goes on, and a send that wrote nothing is `failed`.
    async fn fail_fanout(&self, g: &group_message::Model, reason: &str) -> AppResult<()> {
        use group_message::Column as G;
        tracing::warn!(group_message_id = %g.id, reason, "a group message cannot be fanned out");
        let txn = crate::db::begin_write(&self.db).await?;
        let now = Utc::now();
        let res = group_message::Entity::update_many()
            .col_expr(G::FanoutDone, Expr::val(true))
            .col_expr(G::FanoutLeaseUntil, Expr::val(Option::<DateTime<Utc>>::None))
            .col_expr(G::LastError, Expr::val(reason))
            .col_expr(G::UpdatedAt, Expr::val(now))
            .filter(G::Id.eq(g.id))
            .filter(G::Status.eq(GroupStatus::Processing))
            .exec(&txn)
            .await?;
        let mut bus = EventBus::new(EventMeta::default());
        if res.rows_affected == 1 {
            let wrote_nothing = group_message::Entity::update_many()
                .col_expr(G::Status, Expr::val(GroupStatus::Failed.as_str()))
                .col_expr(G::CompletedAt, Expr::val(now))
                .filter(G::Id.eq(g.id))
                .filter(G::TotalRecipients.eq(0))
                .exec(&txn)
                .await?;
            if wrote_nothing.rows_affected == 1 {
                bus.emit(
                    "group_message.completed",
                    "group_message",
                    g.id,
                    Some(g.account_id),
                    json!({ "status": GroupStatus::Failed, "error": reason }),
                );
            } else {
                group_store::settle(&txn, &mut bus, &[g.id]).await?;
            }
        }
        self.events.commit(txn, bus).await?;
        Ok(())
    }
}
