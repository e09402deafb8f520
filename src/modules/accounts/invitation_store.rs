//! Queries of invitations. Listing, revoking and reading one go through the account's scope; the token
//! lookup is the one path without it (the token is what names the invitation, as a channel id names a
//! webhook's tenant).

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use super::entity::invitation;
use super::invitations::{PENDING, REVOKED};
use super::tenancy::AccountScope;
use crate::db::list::{Field, Kind, ListQuery, Page};
use crate::error::AppResult;

pub const INVITATION_FIELDS: &[Field<invitation::Column>] = &[
    Field::new("account_id", invitation::Column::AccountId, Kind::Uuid),
    Field::new("id", invitation::Column::Id, Kind::Uuid),
    Field::sortable("email", invitation::Column::Email, Kind::Text),
    Field::new("role_id", invitation::Column::RoleId, Kind::Uuid),
    Field::new("status", invitation::Column::Status, Kind::Enum(&["pending", "accepted", "revoked"])),
    Field::sortable("expires_at", invitation::Column::ExpiresAt, Kind::Timestamp),
    Field::sortable("created_at", invitation::Column::CreatedAt, Kind::Timestamp),
    Field::sortable("updated_at", invitation::Column::UpdatedAt, Kind::Timestamp),
];

fn invitations_in(scope: AccountScope) -> sea_orm::Select<invitation::Entity> {
    invitation::Entity::find().filter(invitation::Column::AccountId.eq(scope.account_id()))
}

pub async fn list<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    q: &ListQuery,
) -> AppResult<Page<invitation::Model>> {
    let select =
        q.apply(invitations_in(scope), INVITATION_FIELDS, invitation::Column::Id, invitation::Column::CreatedAt)?;
    q.fetch(db, select).await
}

pub async fn find<C: ConnectionTrait>(db: &C, scope: AccountScope, id: Uuid) -> AppResult<Option<invitation::Model>> {
    Ok(invitations_in(scope).filter(invitation::Column::Id.eq(id)).one(db).await?)
}

pub async fn by_id<C: ConnectionTrait>(db: &C, id: Uuid) -> AppResult<Option<invitation::Model>> {
    Ok(invitation::Entity::find_by_id(id).one(db).await?)
}

pub async fn by_token_hash<C: ConnectionTrait>(db: &C, hash: &str) -> AppResult<Option<invitation::Model>> {
    Ok(invitation::Entity::find().filter(invitation::Column::TokenHash.eq(hash)).one(db).await?)
}

/// Revokes the account's pending invitations of `email` (a new one replaces them).
pub async fn revoke_pending<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    email: &str,
    now: DateTime<Utc>,
) -> AppResult<()> {
    invitation::Entity::update_many()
        .col_expr(invitation::Column::Status, Expr::val(REVOKED))
        .col_expr(invitation::Column::UpdatedAt, Expr::val(now))
        .filter(invitation::Column::AccountId.eq(scope.account_id()))
        .filter(invitation::Column::Email.eq(email))
        .filter(invitation::Column::Status.eq(PENDING))
        .exec(db)
        .await?;
    Ok(())
}

/// Moves a pending invitation to `status` (accepted by `by`, or revoked); false when it was no longer
/// pending.
pub async fn settle<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    status: &str,
    by: Option<Uuid>,
    now: DateTime<Utc>,
) -> AppResult<bool> {
    let mut update = invitation::Entity::update_many()
        .col_expr(invitation::Column::Status, Expr::val(status))
        .col_expr(invitation::Column::UpdatedAt, Expr::val(now));
    if let Some(user_id) = by {
        update = update
            .col_expr(invitation::Column::AcceptedBy, Expr::val(user_id))
            .col_expr(invitation::Column::AcceptedAt, Expr::val(now));
    }
    let res =
        update.filter(invitation::Column::Id.eq(id)).filter(invitation::Column::Status.eq(PENDING)).exec(db).await?;
    Ok(res.rows_affected == 1)
}
