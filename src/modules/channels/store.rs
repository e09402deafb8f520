//! Queries of the channels module. Tenant data is reached only through an [`AccountScope`].

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Select};
use uuid::Uuid;

use super::entity::{channel, sandbox_message};
use crate::db::list::{Field, Kind, ListQuery, Page};
use crate::domain::channel_type::CHANNEL_TYPES;
use crate::error::AppResult;
use crate::modules::accounts::AccountScope;

/// The channel statuses of SPEC §5.
pub const STATUSES: &[&str] = &["connected", "disconnected", "rate_limited", "error", "disabled"];

// Whitelisted list fields (SPEC §2 filters).

pub const CHANNEL_FIELDS: &[Field<channel::Column>] = &[
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
