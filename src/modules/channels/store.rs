//! Queries of the channels module. Tenant data is reached only through an [`AccountScope`].

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QueryTrait, Select, Set, Statement,
};
use uuid::Uuid;

use super::entity::channel::{ChannelStatus, STATUSES};
use super::entity::{channel, channel_usage, sandbox_message, webhook_inbox};
use crate::db::list::{Field, Kind, ListQuery, Page};
use crate::domain::channel_type::CHANNEL_TYPES;
use crate::error::AppResult;
use crate::modules::accounts::AccountScope;

// Whitelisted list fields (SPEC §2 filters).

pub const CHANNEL_FIELDS: &[Field<channel::Column>] = &[
    Field::new("account_id", channel::Column::AccountId, Kind::Uuid),
    Field::new("id", channel::Column::Id, Kind::Uuid),
    Field::sortable("name", channel::Column::Name, Kind::Text),
    Field::sortable("channel_type", channel::Column::ChannelType, Kind::Enum(CHANNEL_TYPES)),
    Field::new("provider", channel::Column::Provider, Kind::Enum(super::credentials::SMS_PROVIDERS)),
    Field::sortable("status", channel::Column::Status, Kind::Enum(STATUSES)),
    Field::new("is_enabled", channel::Column::IsEnabled, Kind::Bool),
    Field::sortable("priority", channel::Column::Priority, Kind::Int),
    Field::sortable("created_at", channel::Column::CreatedAt, Kind::Timestamp),
    Field::sortable("updated_at", channel::Column::UpdatedAt, Kind::Timestamp),
];

pub const SANDBOX_MESSAGE_FIELDS: &[Field<sandbox_message::Column>] = &[
    Field::new("account_id", sandbox_message::Column::AccountId, Kind::Uuid),
    Field::new("to", sandbox_message::Column::To, Kind::Text),
    Field::new("message_id", sandbox_message::Column::MessageId, Kind::Uuid),
    Field::sortable("status", sandbox_message::Column::Status, Kind::Enum(&["delivered", "failed"])),
    Field::sortable("created_at", sandbox_message::Column::CreatedAt, Kind::Timestamp),
];

/// A page of the account's channels.
pub async fn list_channels<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    q: &ListQuery,
) -> AppResult<Page<channel::Model>> {
    let select = q.apply(channels_in(scope), CHANNEL_FIELDS, channel::Column::Id, channel::Column::CreatedAt)?;
    q.fetch(db, select).await
}

/// A page of what a sandbox channel of the account "sent".
pub async fn list_sandbox_messages<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    channel_id: Uuid,
    q: &ListQuery,
) -> AppResult<Page<sandbox_message::Model>> {
    let select = q.apply(
        sandbox_messages_of(scope, channel_id),
        SANDBOX_MESSAGE_FIELDS,
        sandbox_message::Column::Id,
        sandbox_message::Column::CreatedAt,
    )?;
    q.fetch(db, select).await
}

pub fn channels_in(scope: AccountScope) -> Select<channel::Entity> {
    channel::Entity::find().filter(channel::Column::AccountId.eq(scope.account_id()))
}

pub async fn find_channel<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    id: Uuid,
) -> AppResult<Option<channel::Model>> {
    Ok(channels_in(scope).filter(channel::Column::Id.eq(id)).one(db).await?)
}

pub fn sandbox_messages_of(scope: AccountScope, channel_id: Uuid) -> Select<sandbox_message::Entity> {
    sandbox_message::Entity::find()
        .filter(sandbox_message::Column::AccountId.eq(scope.account_id()))
        .filter(sandbox_message::Column::ChannelId.eq(channel_id))
}

pub async fn delete_channel<C: ConnectionTrait>(db: &C, scope: AccountScope, id: Uuid) -> AppResult<()> {
    channel::Entity::delete_many()
        .filter(channel::Column::Id.eq(id))
        .filter(channel::Column::AccountId.eq(scope.account_id()))
        .exec(db)
        .await?;
    Ok(())
}

pub async fn set_webhook_secret<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    id: Uuid,
    sealed: Vec<u8>,
) -> AppResult<()> {
    channel::Entity::update_many()
        .col_expr(channel::Column::WebhookSecret, Expr::val(sealed))
        .filter(channel::Column::Id.eq(id))
        .filter(channel::Column::AccountId.eq(scope.account_id()))
        .exec(db)
        .await?;
    Ok(())
}

/// Stores `connected` for the account's enabled channels whose rate limit ended by `now`.
pub async fn lift_rate_limits_ended<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    now: DateTime<Utc>,
) -> AppResult<()> {
    channel::Entity::update_many()
        .col_expr(channel::Column::Status, Expr::val(ChannelStatus::Connected.as_str()))
        .col_expr(channel::Column::RateLimitedUntil, Expr::val(Option::<DateTime<Utc>>::None))
        .filter(channel::Column::AccountId.eq(scope.account_id()))
        .filter(channel::Column::Status.eq(ChannelStatus::RateLimited))
        .filter(channel::Column::IsEnabled.eq(true))
        .filter(channel::Column::RateLimitedUntil.lte(now))
        .exec(db)
        .await?;
    Ok(())
}

/// The statement that adds a channel's sends and failures to its hourly usage bucket.
pub fn usage_statement(backend: DbBackend, channel_id: Uuid, hour: DateTime<Utc>, sent: i64, failed: i64) -> Statement {
    channel_usage::Entity::insert(channel_usage::ActiveModel {
        channel_id: Set(channel_id),
        hour: Set(hour),
        sent: Set(sent),
        failed: Set(failed),
    })
    .on_conflict(
        OnConflict::columns([channel_usage::Column::ChannelId, channel_usage::Column::Hour])
            .value(
                channel_usage::Column::Sent,
                Expr::col((channel_usage::Entity, channel_usage::Column::Sent)).add(sent),
            )
            .value(
                channel_usage::Column::Failed,
                Expr::col((channel_usage::Entity, channel_usage::Column::Failed)).add(failed),
            )
            .to_owned(),
    )
    .build(backend)
}

/// The channel's usage buckets from `since` on.
pub async fn usage_since<C: ConnectionTrait>(
    db: &C,
    channel_id: Uuid,
    since: DateTime<Utc>,
) -> AppResult<Vec<channel_usage::Model>> {
    Ok(channel_usage::Entity::find()
        .filter(channel_usage::Column::ChannelId.eq(channel_id))
        .filter(channel_usage::Column::Hour.gte(since))
        .all(db)
        .await?)
}

pub async fn find_inbox_entry<C: ConnectionTrait>(
    db: &C,
    channel_id: Uuid,
    provider_event_id: &str,
) -> AppResult<Option<webhook_inbox::Model>> {
    Ok(webhook_inbox::Entity::find()
        .filter(webhook_inbox::Column::ChannelId.eq(channel_id))
        .filter(webhook_inbox::Column::ProviderEventId.eq(provider_event_id))
        .one(db)
        .await?)
}

// System paths across accounts (documented where they are used): each result is then handled in its
// own account's scope.

/// The channel a webhook's path names (the channel id is what names the tenant there).
pub async fn find_channel_for_webhook<C: ConnectionTrait>(
    db: &C,
    channel_type: &str,
    id: Uuid,
) -> AppResult<Option<channel::Model>> {
    Ok(channel::Entity::find()
        .filter(channel::Column::Id.eq(id))
        .filter(channel::Column::ChannelType.eq(channel_type))
        .one(db)
        .await?)
}

/// Every enabled channel of a type, in every account (the mailbox poller).
pub async fn enabled_channels_of_type<C: ConnectionTrait>(
    db: &C,
    channel_type: &str,
) -> AppResult<Vec<channel::Model>> {
    Ok(channel::Entity::find()
        .filter(channel::Column::ChannelType.eq(channel_type))
        .filter(channel::Column::IsEnabled.eq(true))
        .all(db)
        .await?)
}

/// Every channel, in every account (key rotation).
pub async fn all_channels<C: ConnectionTrait>(db: &C) -> AppResult<Vec<channel::Model>> {
    Ok(channel::Entity::find().all(db).await?)
}

/// Replaces a channel's sealed credentials and webhook secret (key rotation).
pub async fn reseal_channel<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    credentials: Vec<u8>,
    webhook_secret: Option<Vec<u8>>,
) -> AppResult<()> {
    channel::Entity::update_many()
        .col_expr(channel::Column::Credentials, Expr::val(credentials))
        .col_expr(channel::Column::WebhookSecret, Expr::val(webhook_secret))
        .filter(channel::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// One more item of the account's inbox row handled; `processed` (with the time) when it was the last.
pub async fn count_inbox_item<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    inbox_id: Uuid,
    now: DateTime<Utc>,
) -> AppResult<()> {
    use webhook_inbox::Column as C;
    let last = Expr::col(C::ProcessedItems).add(1).gte(Expr::col(C::ItemCount));
    webhook_inbox::Entity::update_many()
        .col_expr(C::ProcessedItems, Expr::col(C::ProcessedItems).add(1))
        .col_expr(C::Status, Expr::case(last.clone(), Expr::val("processed")).finally(Expr::col(C::Status)).into())
        .col_expr(C::ProcessedAt, Expr::case(last, Expr::val(now)).finally(Expr::col(C::ProcessedAt)).into())
        .filter(C::Id.eq(inbox_id))
        .filter(C::AccountId.eq(scope.account_id()))
        .exec(db)
        .await?;
    Ok(())
}

/// Held inbox rows of every account, oldest first (a system path: the release checks each row's account
/// against the suspended ones and writes it in that account's name).
pub async fn held_inbox_entries<C: ConnectionTrait>(db: &C) -> AppResult<Vec<webhook_inbox::Model>> {
    Ok(webhook_inbox::Entity::find()
        .filter(webhook_inbox::Column::Status.eq("held"))
        .order_by_asc(webhook_inbox::Column::ReceivedAt)
        .all(db)
        .await?)
}

/// A held row becomes `received` (false when another process released it first).
pub async fn unhold_inbox_entry<C: ConnectionTrait>(db: &C, inbox_id: Uuid) -> AppResult<bool> {
    use webhook_inbox::Column as C;
    let moved = webhook_inbox::Entity::update_many()
        .col_expr(C::Status, Expr::val("received"))
        .col_expr(C::HeldItems, Expr::val(Option::<String>::None))
        .filter(C::Id.eq(inbox_id))
        .filter(C::Status.eq("held"))
        .exec(db)
        .await?;
    Ok(moved.rows_affected == 1)
}
