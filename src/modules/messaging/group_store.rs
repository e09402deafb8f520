//! Group messages' queries, and their counters. A group's counters are a function of its messages'
//! statuses (SPEC §6.3: pending = queued, sending or failed awaiting a retry; sent = sent or delivered;
//! delivered; failed = permanently failed; cancelled), so every status change of a group's message
//! adds its move to a [`Tallies`], which is written in the SAME transaction as the change: one
//! atomic increment per group, never a recount. A group whose fan-out is done and whose pending count
//! reaches 0 takes its final status there too.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, LockType};
use sea_orm::{ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select};
use serde_json::json;
use uuid::Uuid;

use super::entity::group_message::{self, CHANNEL_STRATEGIES, GROUP_STATUSES, GroupStatus};
use super::entity::group_message_skip;
use super::entity::message::{self, MessageStatus};
use crate::db::list::{Field, Kind, ListQuery, Page};
use crate::error::AppResult;
use crate::modules::accounts::AccountScope;
use crate::modules::events::EventBus;

pub const GROUP_FIELDS: &[Field<group_message::Column>] = &[
    Field::new("account_id", group_message::Column::AccountId, Kind::Uuid),
    Field::new("id", group_message::Column::Id, Kind::Uuid),
    Field::sortable("name", group_message::Column::Name, Kind::Text),
    Field::sortable("status", group_message::Column::Status, Kind::Enum(GROUP_STATUSES)),
    Field::new("channel_id", group_message::Column::ChannelId, Kind::Uuid),
    Field::new("channel_strategy", group_message::Column::ChannelStrategy, Kind::Enum(CHANNEL_STRATEGIES)),
    Field::new("template_id", group_message::Column::TemplateId, Kind::Uuid),
    Field::new("scheduled_message_id", group_message::Column::ScheduledMessageId, Kind::Uuid),
    Field::new("created_by_user_id", group_message::Column::CreatedByUserId, Kind::Uuid),
    Field::sortable("total_recipients", group_message::Column::TotalRecipients, Kind::Int),
    Field::sortable("scheduled_at", group_message::Column::ScheduledAt, Kind::Timestamp),
    Field::sortable("started_at", group_message::Column::StartedAt, Kind::Timestamp),
    Field::sortable("completed_at", group_message::Column::CompletedAt, Kind::Timestamp),
    Field::sortable("created_at", group_message::Column::CreatedAt, Kind::Timestamp),
    Field::sortable("updated_at", group_message::Column::UpdatedAt, Kind::Timestamp),
];

pub const SKIP_FIELDS: &[Field<group_message_skip::Column>] = &[
    Field::new("account_id", group_message_skip::Column::AccountId, Kind::Uuid),
    Field::new("contact_id", group_message_skip::Column::ContactId, Kind::Uuid),
    Field::new("reason", group_message_skip::Column::Reason, Kind::Text),
    Field::sortable("created_at", group_message_skip::Column::CreatedAt, Kind::Timestamp),
];

pub fn groups_in(scope: AccountScope) -> Select<group_message::Entity> {
    group_message::Entity::find().filter(group_message::Column::AccountId.eq(scope.account_id()))
}

pub async fn find_group<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    id: Uuid,
) -> AppResult<Option<group_message::Model>> {
    Ok(groups_in(scope).filter(group_message::Column::Id.eq(id)).one(db).await?)
}

pub async fn list_groups<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    q: &ListQuery,
) -> AppResult<Page<group_message::Model>> {
    let select =
        q.apply(groups_in(scope), GROUP_FIELDS, group_message::Column::Id, group_message::Column::CreatedAt)?;
    q.fetch(db, select).await
}

/// The contacts a group send skipped, with their reasons (the group must be the account's: the
/// caller read it in its scope).
pub async fn list_skips<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    group_id: Uuid,
    q: &ListQuery,
) -> AppResult<Page<group_message_skip::Model>> {
    let select = group_message_skip::Entity::find()
        .filter(group_message_skip::Column::AccountId.eq(scope.account_id()))
        .filter(group_message_skip::Column::GroupMessageId.eq(group_id));
    let select =
        q.apply(select, SKIP_FIELDS, group_message_skip::Column::ContactId, group_message_skip::Column::CreatedAt)?;
    q.fetch(db, select).await
}

/// How a group's counters change.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub pending: i32,
    pub sent: i32,
    pub delivered: i32,
    pub failed: i32,
    pub cancelled: i32,
}

impl Tally {
    fn add(&mut self, status: MessageStatus, n: i32) {
        match status {
            MessageStatus::Queued | MessageStatus::Sending | MessageStatus::Failed => self.pending += n,
            MessageStatus::Sent => self.sent += n,
            MessageStatus::Delivered => {
                self.sent += n;
                self.delivered += n;
            }
            MessageStatus::PermanentlyFailed => self.failed += n,
            MessageStatus::Cancelled => self.cancelled += n,
        }
    }

    fn is_zero(&self) -> bool {
        *self == Tally::default()
    }
}

/// The counter changes of the group messages one transaction moves, by group (in id order, so two
/// transactions take the group rows' locks in the same order).
#[derive(Debug, Default)]
pub struct Tallies(BTreeMap<Uuid, Tally>);

impl Tallies {
    /// `n` messages of `group` (if the message belongs to one) moved from `from` to `to`.
    pub fn moved(&mut self, group: Option<Uuid>, from: MessageStatus, to: MessageStatus, n: i32) {
        let Some(g) = group else { return };
        if from == to || n == 0 {
            return;
        }
        let t = self.0.entry(g).or_default();
        t.add(from, -n);
        t.add(to, n);
    }

    /// Writes the changes (one increment per group) and settles the groups they touched.
    pub async fn apply<C: ConnectionTrait>(self, txn: &C, bus: &mut EventBus) -> AppResult<()> {
        use group_message::Column as G;
        let touched: Vec<Uuid> = self.0.keys().copied().collect();
        for (id, t) in self.0 {
            if t.is_zero() {
                continue;
            }
            group_message::Entity::update_many()
                .col_expr(G::PendingCount, Expr::col(G::PendingCount).add(t.pending))
                .col_expr(G::SentCount, Expr::col(G::SentCount).add(t.sent))
                .col_expr(G::DeliveredCount, Expr::col(G::DeliveredCount).add(t.delivered))
                .col_expr(G::FailedCount, Expr::col(G::FailedCount).add(t.failed))
                .col_expr(G::CancelledCount, Expr::col(G::CancelledCount).add(t.cancelled))
                .col_expr(G::UpdatedAt, Expr::val(Utc::now()))
                .filter(G::Id.eq(id))
                .exec(txn)
                .await?;
        }
        settle(txn, bus, &touched).await
    }
}

/// The final status of a group whose fan-out is done and whose messages are all final.
pub fn final_status(g: &group_message::Model) -> GroupStatus {
    if g.failed_count == 0 {
        GroupStatus::Completed
    } else if g.sent_count == 0 {
        GroupStatus::Failed
    } else {
        GroupStatus::PartiallyFailed
    }
}

/// Gives each of `ids` whose fan-out is done and whose pending count is 0 its final status (a late
/// receipt may move a finished group between completed, partially failed and failed); a group that
/// leaves `processing` emits `group_message.completed`.
pub async fn settle<C: ConnectionTrait>(txn: &C, bus: &mut EventBus, ids: &[Uuid]) -> AppResult<()> {
    use group_message::Column as G;
    if ids.is_empty() {
        return Ok(());
    }
    let done = group_message::Entity::find()
        .filter(G::Id.is_in(ids.iter().copied()))
        .filter(G::FanoutDone.eq(true))
        .filter(G::PendingCount.eq(0))
        .filter(G::Status.is_in([
            GroupStatus::Processing,
            GroupStatus::Completed,
            GroupStatus::PartiallyFailed,
            GroupStatus::Failed,
        ]))
        .all(txn)
        .await?;
    let now = Utc::now();
    for g in done {
        let status = final_status(&g);
        if status == g.status {
            continue;
        }
        let mut update = group_message::Entity::update_many()
            .col_expr(G::Status, Expr::val(status.as_str()))
            .col_expr(G::UpdatedAt, Expr::val(now))
            .filter(G::Id.eq(g.id));
        if g.status == GroupStatus::Processing {
            update = update.col_expr(G::CompletedAt, Expr::val(now));
        }
        update.exec(txn).await?;
        if g.status == GroupStatus::Processing {
            bus.emit(
                "group_message.completed",
                "group_message",
                g.id,
                Some(g.account_id),
                json!({ "status": status, "total_recipients": g.total_recipients, "sent_count": g.sent_count,
                        "failed_count": g.failed_count, "skipped_count": g.skipped_count }),
            );
        }
    }
    Ok(())
}

/// Locks the rows of `ids` (PostgreSQL; SQLite's writer is already exclusive) in id order and returns
/// those cancelled. A dispatcher records its outcomes first and takes these locks last: a cancel
/// either committed before the lock was granted (the status read here is cancelled, and the caller
/// cancels what it left queued) or waits for this transaction (and then cancels what it left queued
/// itself). The cancel skips the rows this transaction changed rather than waiting for them (their
/// committed status is `sending`, which it does not cancel), so the two cannot deadlock.
pub async fn lock_groups<C: ConnectionTrait>(txn: &C, ids: &BTreeSet<Uuid>) -> AppResult<BTreeSet<Uuid>> {
    use group_message::Column as G;
    if ids.is_empty() {
        return Ok(BTreeSet::new());
    }
    let mut select = group_message::Entity::find()
        .select_only()
        .column(G::Id)
        .column(G::Status)
        .filter(G::Id.is_in(ids.iter().copied()))
        .order_by_asc(G::Id);
    if txn.get_database_backend() == DbBackend::Postgres {
        select = select.lock(LockType::Update);
    }
    let rows: Vec<(Uuid, GroupStatus)> = select.into_tuple().all(txn).await?;
    Ok(rows.into_iter().filter(|(_, s)| *s == GroupStatus::Cancelled).map(|(id, _)| id).collect())
}

/// Cancels the group's messages not handed to a provider (queued, or failed awaiting a retry), adding
/// the moves to `tallies`; returns how many.
pub async fn cancel_unsent<C: ConnectionTrait>(txn: &C, group_id: Uuid, tallies: &mut Tallies) -> AppResult<u64> {
    use message::Column as M;
    let now = Utc::now();
    let mut total = 0;
    for from in [MessageStatus::Queued, MessageStatus::Failed] {
        let res = message::Entity::update_many()
            .col_expr(M::Status, Expr::val(MessageStatus::Cancelled.as_str()))
            .col_expr(M::NextAttemptAt, Expr::val(Option::<DateTime<Utc>>::None))
            .col_expr(M::UpdatedAt, Expr::val(now))
            .filter(M::GroupMessageId.eq(group_id))
            .filter(M::Status.eq(from))
            .exec(txn)
            .await?;
        tallies.moved(Some(group_id), from, MessageStatus::Cancelled, res.rows_affected as i32);
        total += res.rows_affected;
    }
    Ok(total)
}

/// Which of `ids` are cancelled (read outside any transaction).
pub async fn cancelled_among<C: ConnectionTrait>(db: &C, ids: &[Uuid]) -> AppResult<BTreeSet<Uuid>> {
    use group_message::Column as G;
    if ids.is_empty() {
        return Ok(BTreeSet::new());
    }
    let found: Vec<Uuid> = group_message::Entity::find()
        .select_only()
        .column(G::Id)
        .filter(G::Id.is_in(ids.iter().copied()))
        .filter(G::Status.eq(GroupStatus::Cancelled))
        .into_tuple()
        .all(db)
        .await?;
    Ok(found.into_iter().collect())
}
