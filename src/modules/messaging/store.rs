//! Messaging's queries. Every tenant query takes the account scope.

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Select};
use uuid::Uuid;

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
