//! The scheduled messages' queries: the account's schedules (list, find, edit only if unchanged) and
//! the scheduler's view across accounts (what is due, when to look next, moving a look on).

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select};
use uuid::Uuid;

use super::entity::scheduled_message::{
    self, MISFIRE_POLICIES, SCHEDULE_STATUSES, SEND_TYPES, ScheduleStatus, TIMEZONE_MODES,
};
use crate::db::list::{Field, Kind, ListQuery, Page};
use crate::error::AppResult;
use crate::modules::accounts::AccountScope;

pub const SCHEDULE_FIELDS: &[Field<scheduled_message::Column>] = &[
    Field::new("account_id", scheduled_message::Column::AccountId, Kind::Uuid),
    Field::new("id", scheduled_message::Column::Id, Kind::Uuid),
    Field::sortable("name", scheduled_message::Column::Name, Kind::Text),
    Field::new("channel_id", scheduled_message::Column::ChannelId, Kind::Uuid),
    Field::new("contact_id", scheduled_message::Column::ContactId, Kind::Uuid),
    Field::new("template_id", scheduled_message::Column::TemplateId, Kind::Uuid),
    Field::new("send_type", scheduled_message::Column::SendType, Kind::Enum(SEND_TYPES)),
    Field::new("status", scheduled_message::Column::Status, Kind::Enum(SCHEDULE_STATUSES)),
    Field::new("is_recurring", scheduled_message::Column::IsRecurring, Kind::Bool),
    Field::new("timezone_mode", scheduled_message::Column::TimezoneMode, Kind::Enum(TIMEZONE_MODES)),
    Field::new("misfire_policy", scheduled_message::Column::MisfirePolicy, Kind::Enum(MISFIRE_POLICIES)),
    Field::new("timezone", scheduled_message::Column::Timezone, Kind::Text),
    Field::sortable("next_trigger_at", scheduled_message::Column::NextTriggerAt, Kind::Timestamp),
    Field::sortable("last_triggered_at", scheduled_message::Column::LastTriggeredAt, Kind::Timestamp),
    Field::new("created_by_user_id", scheduled_message::Column::CreatedByUserId, Kind::Uuid),
    Field::sortable("created_at", scheduled_message::Column::CreatedAt, Kind::Timestamp),
    Field::sortable("updated_at", scheduled_message::Column::UpdatedAt, Kind::Timestamp),
];

fn schedules_in(scope: AccountScope) -> Select<scheduled_message::Entity> {
    scheduled_message::Entity::find().filter(scheduled_message::Column::AccountId.eq(scope.account_id()))
}

pub async fn list_schedules<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    q: &ListQuery,
) -> AppResult<Page<scheduled_message::Model>> {
    let select = q.apply(
        schedules_in(scope),
        SCHEDULE_FIELDS,
        scheduled_message::Column::Id,
        scheduled_message::Column::CreatedAt,
    )?;
    q.fetch(db, select).await
}

pub async fn find_schedule<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    id: Uuid,
) -> AppResult<Option<scheduled_message::Model>> {
    Ok(schedules_in(scope).filter(scheduled_message::Column::Id.eq(id)).one(db).await?)
}

/// Writes `active` only if the row is still as `seen` was read (its `updated_at`, which the scheduler
/// moves when it fires): `None` when it changed meanwhile.
pub async fn update_schedule_if_unchanged<C: ConnectionTrait>(
    db: &C,
    active: scheduled_message::ActiveModel,
    seen: &scheduled_message::Model,
) -> Result<Option<scheduled_message::Model>, DbErr> {
    let id = seen.id;
    let moved = scheduled_message::Entity::update_many()
        .set(active)
        .filter(scheduled_message::Column::Id.eq(id))
        .filter(scheduled_message::Column::UpdatedAt.eq(seen.updated_at))
        .exec(db)
        .await?;
    if moved.rows_affected == 0 {
        return Ok(None);
    }
    scheduled_message::Entity::find_by_id(id).one(db).await
}

/// Schedules due at `now` (active, `next_trigger_at` passed), soonest first, in any account but the
/// `held` (suspended) ones (the scheduler's view).
pub async fn due_schedules<C: ConnectionTrait>(
    db: &C,
    now: DateTime<Utc>,
    limit: u64,
    held: &[Uuid],
) -> Result<Vec<scheduled_message::Model>, DbErr> {
    due_schedules_after(db, now, None, limit, held).await
}

/// [`due_schedules`] continued after `after` (the last `(next_trigger_at, id)` of the previous page),
/// in `(next_trigger_at, id)` order: the scheduler reads a whole instant's schedules a page at a time
/// while it prepares them, before any of them moves on.
pub async fn due_schedules_after<C: ConnectionTrait>(
    db: &C,
    at: DateTime<Utc>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: u64,
    held: &[Uuid],
) -> Result<Vec<scheduled_message::Model>, DbErr> {
    use scheduled_message::Column;
    use sea_orm::sea_query::ExprTrait;
    let mut q = scheduled_message::Entity::find()
        .filter(not_held(held))
        .filter(Column::NextTriggerAt.lte(at))
        .filter(Column::Status.is_in([ScheduleStatus::Pending, ScheduleStatus::Triggered]));
    if let Some((t, id)) = after {
        q = q.filter(Column::NextTriggerAt.gt(t).or(Column::NextTriggerAt.eq(t).and(Column::Id.gt(id))));
    }
    q.order_by_asc(Column::NextTriggerAt).order_by_asc(Column::Id).limit(limit).all(db).await
}

/// The soonest `next_trigger_at` of any active schedule of an account not `held`: when the scheduler
/// must look next.
pub async fn next_due<C: ConnectionTrait>(db: &C, held: &[Uuid]) -> Result<Option<DateTime<Utc>>, DbErr> {
    Ok(scheduled_message::Entity::find()
        .filter(not_held(held))
        .filter(scheduled_message::Column::NextTriggerAt.is_not_null())
        .filter(scheduled_message::Column::Status.is_in([ScheduleStatus::Pending, ScheduleStatus::Triggered]))
        .order_by_asc(scheduled_message::Column::NextTriggerAt)
        .one(db)
        .await?
        .and_then(|s| s.next_trigger_at))
}

fn not_held(held: &[Uuid]) -> sea_orm::Condition {
    let mut c = sea_orm::Condition::all();
    if !held.is_empty() {
        c = c.add(scheduled_message::Column::AccountId.is_not_in(held.iter().copied()));
    }
    c
}

/// How the scheduler moves one schedule on from the occurrence it read (`due`, `seen` = its
/// `updated_at` then).
pub struct MoveOn {
    pub id: Uuid,
    pub due: DateTime<Utc>,
    pub seen: DateTime<Utc>,
    pub next: Option<DateTime<Utc>>,
    pub status: ScheduleStatus,
    pub updated_at: DateTime<Utc>,
    pub last_triggered_at: Option<DateTime<Utc>>,
    pub trigger_count: i32,
    pub last_message_id: Option<Uuid>,
    pub last_group_message_id: Option<Uuid>,
    pub last_error: Option<String>,
}

/// Moves every schedule of `moves` on in ONE statement (`UPDATE … FROM` a list of values), each only
/// if it is still at the occurrence it was read at; the ids that moved.
pub async fn move_schedules_on<C: ConnectionTrait>(
    db: &C,
    moves: &[MoveOn],
) -> Result<std::collections::HashSet<Uuid>, DbErr> {
    if moves.is_empty() {
        return Ok(Default::default());
    }
    let backend = db.get_database_backend();
    const CASTS: [&str; 11] = [
        "uuid",
        "timestamptz",
        "timestamptz",
        "timestamptz",
        "text",
        "timestamptz",
        "timestamptz",
        "int",
        "uuid",
        "uuid",
        "text",
    ];
    let mut values: Vec<sea_orm::Value> = Vec::with_capacity(moves.len() * CASTS.len());
    let rows = moves.iter().map(|m| {
        vec![
            m.id.into(),
            m.due.into(),
            m.seen.into(),
            m.next.into(),
            m.status.as_str().to_string().into(),
            m.updated_at.into(),
            m.last_triggered_at.into(),
            m.trigger_count.into(),
            m.last_message_id.into(),
            m.last_group_message_id.into(),
            m.last_error.clone().into(),
        ]
    });
    let rows = crate::db::values_rows(backend, &CASTS, rows, &mut values);
    let sql = format!(
        "WITH v(id, due, seen, next, status, updated_at, last_triggered_at, trigger_count, last_message_id, \
         last_group_message_id, last_error) \
         AS (VALUES {rows}) \
         UPDATE scheduled_messages SET next_trigger_at = v.next, status = v.status, updated_at = v.updated_at, \
         last_triggered_at = v.last_triggered_at, trigger_count = v.trigger_count, \
         last_message_id = v.last_message_id, last_group_message_id = v.last_group_message_id, \
         last_error = v.last_error \
         FROM v WHERE scheduled_messages.id = v.id AND scheduled_messages.next_trigger_at = v.due \
         AND scheduled_messages.updated_at = v.seen RETURNING scheduled_messages.id"
    );
    let moved = db.query_all_raw(sea_orm::Statement::from_sql_and_values(backend, sql, values)).await?;
    moved.iter().map(|r| r.try_get::<Uuid>("", "id")).collect()
}
