//! Messaging's queries. Every tenant query takes the account scope.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Condition;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect, Select, Set,
};
use serde_json::Value;
use uuid::Uuid;

use super::entity::idempotency_key;
use super::entity::message::{self, DIRECTIONS, MESSAGE_STATUSES, MessageStatus};
use super::entity::template::{self, APPROVAL_STATUSES, FALLBACK_STRATEGIES};
use crate::db::list::{Field, Kind, ListQuery, Page};
use crate::domain::channel_type::CHANNEL_TYPES;
use crate::error::AppResult;
use crate::modules::accounts::AccountScope;

pub const TEMPLATE_FIELDS: &[Field<template::Column>] = &[
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

/// A position in the history ordered by `(created_at, id)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Position {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
    pub descending: bool,
}

/// A page of the account's messages (of one contact when given). After `position`, the page continues
/// the `(created_at, id)` order from there (keyset: a deep page costs what the first does).
pub async fn list_messages<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    contact_id: Option<Uuid>,
    q: &ListQuery,
    position: Option<Position>,
) -> AppResult<Page<message::Model>> {
    let mut select = messages_in(scope);
    if let Some(c) = contact_id {
        select = select.filter(message::Column::ContactId.eq(c));
    }
    let select = q.apply(select, MESSAGE_FIELDS, message::Column::Id, message::Column::CreatedAt)?;
    let Some(p) = position else { return q.fetch(db, select).await };
    let mut counter = messages_in(scope);
    if let Some(c) = contact_id {
        counter = counter.filter(message::Column::ContactId.eq(c));
    }
    let counter = q.apply(counter, MESSAGE_FIELDS, message::Column::Id, message::Column::CreatedAt)?;
    let total = sea_orm::PaginatorTrait::count(counter, db).await?;
    let (at, id) = (message::Column::CreatedAt, message::Column::Id);
    let after = if p.descending {
        Condition::any().add(at.lt(p.created_at)).add(Condition::all().add(at.eq(p.created_at)).add(id.lt(p.id)))
    } else {
        Condition::any().add(at.gt(p.created_at)).add(Condition::all().add(at.eq(p.created_at)).add(id.gt(p.id)))
    };
    let items = select.filter(after).limit(q.limit).all(db).await?;
    Ok(Page { items, total, skip: 0, limit: q.limit })
}

pub async fn find_message<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    id: Uuid,
) -> AppResult<Option<message::Model>> {
    Ok(messages_in(scope).filter(message::Column::Id.eq(id)).one(db).await?)
}

/// Whether the message is still `queued` (read inside the transaction that cancels it).
pub async fn still_queued<C: ConnectionTrait>(db: &C, id: Uuid) -> AppResult<bool> {
    let status: Option<MessageStatus> =
        message::Entity::find_by_id(id).select_only().column(message::Column::Status).into_tuple().one(db).await?;
    Ok(status == Some(MessageStatus::Queued))
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
