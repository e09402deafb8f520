//! Queries of the channels module. Tenant data is reached only through an [`AccountScope`].

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Select};
use uuid::Uuid;

use super::entity::{channel, sandbox_message};
use crate::http::ctx::AccountScope;
use crate::http::error::AppResult;

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
