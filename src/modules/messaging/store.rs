//! Messaging's queries. Every tenant query takes the account scope.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Condition, Expr, ExprTrait, LockBehavior, LockType};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, FromQueryResult,
    QueryFilter, QueryOrder, QuerySelect, QueryTrait, Select, Set, Statement,
};
use serde_json::Value;
use uuid::Uuid;

use super::entity::idempotency_key;
use super::entity::message::{self, DIRECTIONS, MESSAGE_STATUSES, MessageStatus};
use super::entity::template::{self, APPROVAL_STATUSES, FALLBACK_STRATEGIES};
use crate::db::list::{Field, Kind, ListQuery, Page};
use crate::db::script::Script;
use crate::domain::channel_type::CHANNEL_TYPES;
use crate::error::AppResult;
use crate::modules::accounts::AccountScope;

pub const TEMPLATE_FIELDS: &[Field<template::Column>] = &[
    Field::new("account_id", template::Column::AccountId, Kind::Uuid),
    Field::new("id", template::Column::Id, Kind::Uuid),
    Field::sortable("name", template::Column::Name, Kind::Text),
    Field::sortable("category", template::Column::Category, Kind::Text),
    Field::new("channel_type", template::Column::ChannelType, Kind::Enum(CHANNEL_TYPES)),
    Field::sortable("language", template::Column::Language, Kind::Text),
    Field::new("is_active", template::Column::IsActive, Kind::Bool),
    Field::new("approval_status", template::Column::ApprovalStatus, Kind::Enum(APPROVAL_STATUSES)),
    Field::new("fallback_strategy", template::Column::FallbackStrategy, Kind::Enum(FALLBACK_STRATEGIES)),
    Field::new("created_by_user_id", template::Column::CreatedByUserId, Kind::Uuid),
    Field::sortable("created_at", template::Column::CreatedAt, Kind::Timestamp),
    Field::sortable("updated_at", template::Column::UpdatedAt, Kind::Timestamp),
];

pub fn templates_in(scope: AccountScope) -> Select<template::Entity> {
    template::Entity::find().filter(template::Column::AccountId.eq(scope.account_id()))
}

pub async fn list_templates<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    q: &ListQuery,
) -> AppResult<Page<template::Model>> {
    let select = q.apply(templates_in(scope), TEMPLATE_FIELDS, template::Column::Id, template::Column::CreatedAt)?;
    q.fetch(db, select).await
}

pub async fn find_template<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    id: Uuid,
) -> AppResult<Option<template::Model>> {
    Ok(templates_in(scope).filter(template::Column::Id.eq(id)).one(db).await?)
}

pub const MESSAGE_FIELDS: &[Field<message::Column>] = &[
    Field::new("account_id", message::Column::AccountId, Kind::Uuid),
    Field::new("id", message::Column::Id, Kind::Uuid),
    Field::sortable("status", message::Column::Status, Kind::Enum(MESSAGE_STATUSES)),
    Field::new("direction", message::Column::Direction, Kind::Enum(DIRECTIONS)),
    Field::new("channel_id", message::Column::ChannelId, Kind::Uuid),
    Field::new("channel_type", message::Column::ChannelType, Kind::Enum(CHANNEL_TYPES)),
    Field::new("contact_id", message::Column::ContactId, Kind::Uuid),
    Field::new("group_message_id", message::Column::GroupMessageId, Kind::Uuid),
    Field::new("scheduled_message_id", message::Column::ScheduledMessageId, Kind::Uuid),
    Field::new("template_id", message::Column::TemplateId, Kind::Uuid),
    Field::new("sent_by_user_id", message::Column::SentByUserId, Kind::Uuid),
    Field::new("delivery_address", message::Column::DeliveryAddress, Kind::Text),
    Field::new("scheduled_at", message::Column::ScheduledAt, Kind::Timestamp),
    Field::sortable("sent_at", message::Column::SentAt, Kind::Timestamp),
    Field::sortable("delivered_at", message::Column::DeliveredAt, Kind::Timestamp),
    Field::sortable("created_at", message::Column::CreatedAt, Kind::Timestamp),
    Field::new("updated_at", message::Column::UpdatedAt, Kind::Timestamp),
];

pub fn messages_in(scope: AccountScope) -> Select<message::Entity> {
    message::Entity::find().filter(message::Column::AccountId.eq(scope.account_id()))
}

/// The history is counted up to this many matches: `meta.total` is exact below it; above, it reads
/// `MAX_COUNTED + 1` and `meta.total_is_lower_bound` is true (counting a million rows on every page
/// would cost more than the page: 10,000 index entries cost PostgreSQL 3 ms, three times the page).
/// `count=exact` asks for the whole count.
pub const MAX_COUNTED: u64 = 1_000;

/// A position in the history ordered by `(created_at, id)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Position {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
    pub descending: bool,
}

/// A page of the account's messages (of one contact when given). After `position`, the page continues
/// the `(created_at, id)` order from there (keyset: a deep page costs what the first does). `total`
/// is counted up to [`MAX_COUNTED`] + 1, or whole when `exact`.
pub async fn list_messages<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    contact_id: Option<Uuid>,
    q: &ListQuery,
    position: Option<Position>,
    exact: bool,
) -> AppResult<Page<message::Model>> {
    let mut select = messages_in(scope);
    if let Some(c) = contact_id {
        select = select.filter(message::Column::ContactId.eq(c));
    }
    let select = q.apply(select, MESSAGE_FIELDS, message::Column::Id, message::Column::CreatedAt)?;
    let count = |select: Select<message::Entity>| async move {
        match exact {
            true => ListQuery::count(db, select).await,
            false => ListQuery::count_up_to(db, select, MAX_COUNTED).await,
        }
    };
    let Some(p) = position else {
        // One row past the page: when it is not there, the page tells the total (see `ListQuery::fetch`).
        let mut items = select.clone().offset(q.skip).limit(q.limit + 1).all(db).await?;
        let total = match q.total_from_page(items.len()) {
            Some(total) if exact => total,
            Some(total) => std::cmp::Ord::min(total, MAX_COUNTED + 1),
            None => count(select).await?,
        };
        items.truncate(q.limit as usize);
        return Ok(Page { items, total, skip: q.skip, limit: q.limit });
    };
    let total = count(select.clone()).await?;
    // One row-value comparison, `(created_at, id) < (t, i)`: both databases read it as a range of the
    // `(account_id, created_at, id)` index (the equivalent OR of two conditions made SQLite scan).
    let (at, id) = (message::Column::CreatedAt, message::Column::Id);
    let key = Expr::tuple([Expr::col(at), Expr::col(id)]);
    let from = Expr::tuple([Expr::val(p.created_at), Expr::val(p.id)]);
    let after = if p.descending { key.lt(from) } else { key.gt(from) };
    let items = select.filter(after).limit(q.limit).all(db).await?;
    Ok(Page { items, total, skip: 0, limit: q.limit })
}

/// A message row with nothing but its channel, direction, address and body: outbound and system
/// messages are `queued` and due at once, inbound ones `delivered` now.
pub fn new_message(
    scope: AccountScope,
    channel_id: Uuid,
    channel_type: crate::domain::channel_type::ChannelType,
    direction: message::Direction,
    address: String,
    body: String,
    now: DateTime<Utc>,
) -> message::ActiveModel {
    let inbound = direction == message::Direction::Inbound;
    message::ActiveModel {
        id: Set(Uuid::now_v7()),
        account_id: Set(scope.account_id()),
        channel_id: Set(channel_id),
        contact_id: Set(None),
        sent_by_user_id: Set(None),
        group_message_id: Set(None),
        scheduled_message_id: Set(None),
        template_id: Set(None),
        channel_type: Set(channel_type),
        direction: Set(direction),
        status: Set(if inbound { MessageStatus::Delivered } else { MessageStatus::Queued }),
        delivery_address: Set(address),
        message_body: Set(body),
        original_template: Set(None),
        attachments: Set(serde_json::json!([])),
        scheduled_at: Set(None),
        sent_at: Set(None),
        delivered_at: Set(inbound.then_some(now)),
        read_at: Set(None),
        failed_at: Set(None),
        attempts: Set(0),
        provider_message_id: Set(None),
        metadata: Set(serde_json::json!({})),
        error_details: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        next_attempt_at: Set((!inbound).then_some(now)),
        lease_until: Set(None),
    }
}

pub async fn find_message<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    id: Uuid,
) -> AppResult<Option<message::Model>> {
    Ok(messages_in(scope).filter(message::Column::Id.eq(id)).one(db).await?)
}

/// Cancels the message if it is still `queued`, in one conditional statement (a dispatcher's claim and
/// a cancel can never both win); false when it is not queued any more.
pub async fn cancel_if_queued<C: ConnectionTrait>(db: &C, id: Uuid) -> AppResult<bool> {
    let res = message::Entity::update_many()
        .col_expr(message::Column::Status, Expr::val(MessageStatus::Cancelled.as_str()))
        .col_expr(message::Column::NextAttemptAt, Expr::val(Option::<DateTime<Utc>>::None))
        .col_expr(message::Column::UpdatedAt, Expr::val(Utc::now()))
        .filter(message::Column::Id.eq(id))
        .filter(message::Column::Status.eq(MessageStatus::Queued))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// The stored answer for an idempotency key used since `since`.
pub async fn find_idempotency_key<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    key: &str,
    since: DateTime<Utc>,
) -> AppResult<Option<idempotency_key::Model>> {
    Ok(idempotency_key::Entity::find()
        .filter(idempotency_key::Column::AccountId.eq(scope.account_id()))
        .filter(idempotency_key::Column::Key.eq(key))
        .filter(idempotency_key::Column::CreatedAt.gte(since))
        .one(db)
        .await?)
}

/// Records the answer of a send made with an idempotency key. A key older than 24 h is replaced; a
/// younger one is a unique violation (another request with this key won).
pub async fn insert_idempotency_key<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    key: &str,
    request_hash: &str,
    status_code: u16,
    response: Value,
) -> Result<(), DbErr> {
    let expired = Utc::now() - chrono::Duration::hours(super::messages::IDEMPOTENCY_HOURS);
    idempotency_key::Entity::delete_many()
        .filter(idempotency_key::Column::AccountId.eq(scope.account_id()))
        .filter(idempotency_key::Column::Key.eq(key))
        .filter(idempotency_key::Column::CreatedAt.lt(expired))
        .exec(db)
        .await?;
    idempotency_key::ActiveModel {
        id: Set(Uuid::now_v7()),
        account_id: Set(scope.account_id()),
        key: Set(key.to_string()),
        request_hash: Set(request_hash.to_string()),
        status_code: Set(i32::from(status_code)),
        response: Set(response),
        created_at: Set(Utc::now()),
    }
    .insert(db)
    .await?;
    Ok(())
}

/// What a send came to (the dispatcher's view).
pub enum Outcome {
    Sent(crate::modules::channels::SendReceipt),
    /// Not sent: the channel's rate limit allows the next send then.
    Deferred(DateTime<Utc>),
    /// Not sent: its turn in the pass came too late for the claim's lease to cover the send; handed
    /// back, due at once, no attempt spent.
    Released,
    /// Not sent: its group send was cancelled after the message was claimed.
    Cancelled,
    Failed {
        error: crate::modules::channels::ProviderError,
        retry_count: i32,
        retry_interval: i32,
    },
}

/// The columns an outcome sets on a claimed message.
pub struct Change {
    pub status: MessageStatus,
    provider_message_id: Option<String>,
    sent_at: Option<DateTime<Utc>>,
    delivered_at: Option<DateTime<Utc>>,
    failed_at: Option<DateTime<Utc>>,
    next_attempt_at: Option<DateTime<Utc>>,
    error_details: Option<Value>,
    /// A throttled attempt is given back.
    refund_attempt: bool,
}

impl Change {
    fn to(status: MessageStatus) -> Self {
        Change {
            status,
            provider_message_id: None,
            sent_at: None,
            delivered_at: None,
            failed_at: None,
            next_attempt_at: None,
            error_details: None,
            refund_attempt: false,
        }
    }
    pub fn sent(status: MessageStatus, provider_message_id: Option<String>, now: DateTime<Utc>) -> Self {
        Change {
            provider_message_id,
            sent_at: Some(now),
            delivered_at: (status == MessageStatus::Delivered).then_some(now),
            ..Change::to(status)
        }
    }
    /// Its group send was cancelled before the provider got it: the attempt given back.
    pub fn cancelled() -> Self {
        Change { refund_attempt: true, ..Change::to(MessageStatus::Cancelled) }
    }
    /// The provider asked to wait: queued again after it, the attempt given back.
    pub fn throttled(due: DateTime<Utc>, details: Value) -> Self {
        Change { error_details: Some(details), ..Change::deferred(due) }
    }
    /// The channel's send rate is spent: queued again when the next token is due, no attempt spent.
    pub fn deferred(due: DateTime<Utc>) -> Self {
        Change { next_attempt_at: Some(due), refund_attempt: true, ..Change::to(MessageStatus::Queued) }
    }
    pub fn retry(due: DateTime<Utc>, details: Value, now: DateTime<Utc>) -> Self {
        Change { next_attempt_at: Some(due), ..Change::failed(MessageStatus::Failed, details, now) }
    }
    pub fn failed_for_good(details: Value, now: DateTime<Utc>) -> Self {
        Change::failed(MessageStatus::PermanentlyFailed, details, now)
    }
    fn failed(status: MessageStatus, details: Value, now: DateTime<Utc>) -> Self {
        Change { failed_at: Some(now), error_details: Some(details), ..Change::to(status) }
    }
}

/// Claims up to `limit` due messages: `sending`, the attempt counted, held for `lease`; committed before
/// the caller sends anything. On PostgreSQL concurrent dispatchers skip each other's rows
/// (`FOR UPDATE SKIP LOCKED`); on SQLite the single writer serialises them.
/// Messages of the channels in `skip` (another process sends for them) and of the accounts in `held`
/// (suspended) are left alone.
pub async fn claim_due(
    db: &DatabaseConnection,
    limit: u64,
    lease: std::time::Duration,
    skip: &[Uuid],
    held: &[Uuid],
) -> AppResult<Vec<message::Model>> {
    use message::Column as C;
    let now = Utc::now();
    let lease_until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(120));
    // Index range reads that stop at the limit, never a scan of the history: queued and then failed
    // messages due by time, oldest first (`idx_messages_due (status, next_attempt_at)`, holding only rows
    // with a due time, which `next_attempt_at <= now` implies: one status per read, so the index order is
    // the wanted order — with both statuses in one `IN` PostgreSQL read every due row and sorted them,
    // 34 ms a pass with 100,000 queued); then lapsed claims
    // (`idx_messages_leased`). One query with the OR of these could use no index at all.
    let by_time = |status: MessageStatus| Condition::all().add(C::Status.eq(status)).add(C::NextAttemptAt.lte(now));
    let lapsed = Condition::all().add(C::LeaseUntil.lt(now)).add(C::Status.eq(MessageStatus::Sending));
    let read = |condition: Condition, order: C, n: u64| {
        let mut select =
            message::Entity::find().select_only().column(C::Id).filter(condition).order_by_asc(order).limit(n);
        if !skip.is_empty() {
            select = select.filter(C::ChannelId.is_not_in(skip.iter().copied()));
        }
        if !held.is_empty() {
            select = select.filter(C::AccountId.is_not_in(held.iter().copied()));
        }
        select
    };
    let reads = [
        (by_time(MessageStatus::Queued), C::NextAttemptAt),
        (by_time(MessageStatus::Failed), C::NextAttemptAt),
        (lapsed, C::LeaseUntil),
    ];
    if db.get_database_backend() == DbBackend::Sqlite {
        let reads = reads.into_iter().map(|(condition, order)| read(condition, order, limit)).collect();
        return claim_in_one_statement(db, limit, reads, lease_until, now).await;
    }
    let txn = crate::db::begin_write(db).await?;
    crate::db::prefer_index_walks(&txn).await?;
    let mut ids: Vec<Uuid> = Vec::new();
    for (condition, order) in reads {
        let left = limit.saturating_sub(ids.len() as u64);
        if left == 0 {
            break;
        }
        let select = read(condition, order, left).lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        let found: Vec<Uuid> = select.into_tuple().all(&txn).await?;
        ids.extend(found);
    }
    if ids.is_empty() {
        txn.commit().await?;
        return Ok(Vec::new());
    }
    // The rows were read in this write transaction (locked on PostgreSQL; SQLite's writer is ours), so
    // the ids alone select them: a re-check of "due" here (an OR over status and times) led
    // PostgreSQL's planner into bitmap scans of every due row, 76 ms a pass with 100,000 queued.
    let claimed = message::Entity::update_many()
        .col_expr(C::Status, Expr::val(MessageStatus::Sending.as_str()))
        .col_expr(C::Attempts, Expr::col(C::Attempts).add(1))
        .col_expr(C::LeaseUntil, Expr::val(lease_until))
        // Out of `idx_messages_due` while it is being sent (the index holds rows with a due time only).
        .col_expr(C::NextAttemptAt, Expr::val(Option::<DateTime<Utc>>::None))
        .col_expr(C::UpdatedAt, Expr::val(now))
        .filter(C::Id.is_in(ids))
        .exec_with_returning(&txn)
        .await?;
    txn.commit().await?;
    Ok(claimed)
}

/// [`claim_due`] on SQLite: the three reads and the claim in ONE statement (`UPDATE … WHERE id IN (the
/// reads, each still an index walk that stops at its limit) RETURNING *`), sent as a statement list
/// ([`crate::db::script`]): the writer is held only while SQLite works, not across five hand-offs to
/// the connection's thread.
async fn claim_in_one_statement(
    db: &DatabaseConnection,
    limit: u64,
    reads: Vec<Select<message::Entity>>,
    lease_until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> AppResult<Vec<message::Model>> {
    let mut values: Vec<sea_orm::Value> = vec![MessageStatus::Sending.as_str().into(), lease_until.into(), now.into()];
    let mut union = Vec::with_capacity(reads.len());
    for read in reads {
        let Statement { sql, values: read_values, .. } = read.build(DbBackend::Sqlite);
        union.push(format!("SELECT * FROM ({sql})"));
        values.extend(read_values.map(|v| v.0).unwrap_or_default());
    }
    let sql = format!(
        r#"UPDATE "messages" SET "status" = ?, "attempts" = "attempts" + 1, "lease_until" = ?, "next_attempt_at" = NULL, "updated_at" = ? WHERE "id" IN (SELECT "id" FROM ({}) LIMIT {limit}) RETURNING *"#,
        union.join(" UNION ALL ")
    );
    let mut script = Script::new(DbBackend::Sqlite);
    script.push_returning(Statement::from_sql_and_values(DbBackend::Sqlite, sql, values));
    let rows = script.run(db).await?;
    Ok(rows.iter().map(|row| message::Model::from_query_result(row, "")).collect::<Result<_, _>>()?)
}

/// Applies a pass's outcomes to its claimed messages in ONE statement per 500 (`UPDATE … FROM (VALUES
/// …)`; one statement per message cost PostgreSQL a round trip each): each message moves only if its
/// claim still holds it (still `sending`, same attempt; another claim that took it over meanwhile
/// keeps it, and this outcome is dropped). Returns the ids that moved. Each message is found by its id
/// ([`crate::db::prefer_index_walks`] for these statements), never by a scan of the messages being sent.
pub async fn apply_changes<C: ConnectionTrait>(
    db: &C,
    changes: &[(&message::Model, &Change)],
) -> AppResult<std::collections::HashSet<Uuid>> {
    crate::db::prefer_index_walks(db).await?;
    let mut moved = std::collections::HashSet::with_capacity(changes.len());
    for (statement, _) in change_statements(db.get_database_backend(), changes, true) {
        for r in db.query_all_raw(statement).await? {
            moved.insert(r.try_get::<Uuid>("", "id")?);
        }
    }
    crate::db::plan_freely(db).await?;
    Ok(moved)
}

/// The statements of [`apply_changes`] (one per 500 messages, with how many each names), returning the
/// ids that moved or nothing.
pub fn change_statements(
    backend: DbBackend,
    changes: &[(&message::Model, &Change)],
    returning: bool,
) -> Vec<(Statement, usize)> {
    const CASTS: [&str; 10] =
        ["uuid", "int", "text", "timestamptz", "int", "text", "timestamptz", "timestamptz", "timestamptz", "jsonb"];
    let now = Utc::now();
    let mut statements = Vec::new();
    for chunk in changes.chunks(500) {
        let mut values: Vec<sea_orm::Value> = Vec::with_capacity(chunk.len() * CASTS.len() + 2);
        let rows = chunk.iter().map(|(m, c)| {
            vec![
                m.id.into(),
                m.attempts.into(),
                c.status.as_str().to_string().into(),
                c.next_attempt_at.into(),
                i32::from(c.refund_attempt).into(),
                c.provider_message_id.clone().into(),
                c.sent_at.into(),
                c.delivered_at.into(),
                c.failed_at.into(),
                c.error_details.clone().into(),
            ]
        });
        let rows = crate::db::values_rows(backend, &CASTS, rows, &mut values);
        let (updated_at, sending) = match backend {
            DbBackend::Postgres => {
                (format!("${}::timestamptz", values.len() + 1), format!("${}::text", values.len() + 2))
            }
            _ => ("?".to_string(), "?".to_string()),
        };
        values.push(now.into());
        values.push(MessageStatus::Sending.as_str().to_string().into());
        let returning = if returning { " RETURNING messages.id" } else { "" };
        let sql = format!(
            "WITH v(id, attempts, status, next_attempt_at, refund, provider_message_id, sent_at, delivered_at, \
             failed_at, error_details) AS (VALUES {rows}) \
             UPDATE messages SET status = v.status, lease_until = NULL, next_attempt_at = v.next_attempt_at, \
             updated_at = {updated_at}, attempts = messages.attempts - v.refund, \
             provider_message_id = COALESCE(v.provider_message_id, messages.provider_message_id), \
             sent_at = COALESCE(v.sent_at, messages.sent_at), \
             delivered_at = COALESCE(v.delivered_at, messages.delivered_at), \
             failed_at = COALESCE(v.failed_at, messages.failed_at), error_details = v.error_details \
             FROM v WHERE messages.id = v.id AND messages.status = {sending} AND messages.attempts = v.attempts\
             {returning}"
        );
        statements.push((Statement::from_sql_and_values(backend, sql, values), chunk.len()));
    }
    statements
}

/// Takes up to `want` send tokens of a channel limited to `per_minute` sends, in one transaction on the
/// channel's bucket row (locked on PostgreSQL; the single writer on SQLite), so the limit holds across
/// every dispatcher. The bucket holds at most one second's worth of sends (at least one), which smooths
/// bursts. Returns the tokens granted and, when fewer than wanted, how long until the next one.
pub async fn take_send_tokens(
    db: &DatabaseConnection,
    channel_id: Uuid,
    per_minute: i32,
    want: u32,
) -> AppResult<(u32, std::time::Duration)> {
    use super::entity::rate_bucket::{self, Column as B};
    let rate = f64::from(Ord::max(per_minute, 1)) / 60.0;
    let capacity = rate.max(1.0);
    let now = Utc::now();
    let txn = crate::db::begin_write(db).await?;
    let mut insert = sea_orm::sea_query::Query::insert();
    insert
        .into_table(rate_bucket::Entity)
        .columns([B::ChannelId, B::Tokens, B::RefilledAt])
        .values_panic([channel_id.into(), capacity.into(), now.into()])
        .on_conflict(sea_orm::sea_query::OnConflict::column(B::ChannelId).do_nothing().to_owned());
    txn.execute(&insert).await?;
    let mut select = rate_bucket::Entity::find_by_id(channel_id);
    if db.get_database_backend() == DbBackend::Postgres {
        select = select.lock(LockType::Update);
    }
    let bucket = select.one(&txn).await?.ok_or_else(|| crate::error::AppError::internal("the rate bucket vanished"))?;
    let elapsed = Ord::max((now - bucket.refilled_at).num_microseconds().unwrap_or(0), 0) as f64 / 1e6;
    let tokens = (bucket.tokens + elapsed * rate).min(capacity);
    let granted = Ord::min(tokens.floor().max(0.0) as u32, want);
    let left = tokens - f64::from(granted);
    let wait = if granted < want {
        std::time::Duration::from_secs_f64(((1.0 - left).max(0.0) / rate).max(0.001))
    } else {
        std::time::Duration::ZERO
    };
    rate_bucket::Entity::update_many()
        .col_expr(B::Tokens, Expr::val(left))
        .col_expr(B::RefilledAt, Expr::val(now))
        .filter(B::ChannelId.eq(channel_id))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok((granted, wait))
}
