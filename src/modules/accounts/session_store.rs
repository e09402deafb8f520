//! Sessions: refresh tokens (stored as SHA-256 hashes, in families) and the link between a user and
//! their id at an external identity provider.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use uuid::Uuid;

use super::entity::{refresh_token, user};
use crate::error::AppResult;

pub async fn find_user_by_subject<C: ConnectionTrait>(db: &C, subject: &str) -> AppResult<Option<user::Model>> {
    Ok(user::Entity::find().filter(user::Column::ProviderSubject.eq(subject)).one(db).await?)
}

/// Access tokens of the user issued before `at` are void from now on.
pub async fn void_tokens_before<C: ConnectionTrait>(db: &C, user_id: Uuid, at: DateTime<Utc>) -> AppResult<()> {
    user::Entity::update_many()
        .col_expr(user::Column::TokensValidAfter, Expr::value(at))
        .filter(user::Column::Id.eq(user_id))
        .exec(db)
        .await?;
    Ok(())
}

/// Links a user to their provider id, unless already linked to one.
pub async fn link_subject<C: ConnectionTrait>(db: &C, user_id: Uuid, subject: &str) -> AppResult<bool> {
    let res = user::Entity::update_many()
        .col_expr(user::Column::ProviderSubject, Expr::value(subject))
        .filter(user::Column::Id.eq(user_id))
        .filter(user::Column::ProviderSubject.is_null())
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

pub async fn insert_refresh_token<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    family_id: Uuid,
    token_hash: String,
    expires_at: DateTime<Utc>,
) -> AppResult<()> {
    refresh_token::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(user_id),
        family_id: Set(family_id),
        token_hash: Set(token_hash),
        expires_at: Set(expires_at),
        revoked_at: Set(None),
        created_at: Set(Utc::now()),
    }
    .insert(db)
    .await?;
    Ok(())
}

pub async fn find_refresh_token<C: ConnectionTrait>(
    db: &C,
    token_hash: &str,
) -> AppResult<Option<refresh_token::Model>> {
    Ok(refresh_token::Entity::find().filter(refresh_token::Column::TokenHash.eq(token_hash)).one(db).await?)
}

/// Marks one token used; false when another request rotated it first.
pub async fn revoke_refresh_token_once<C: ConnectionTrait>(db: &C, id: Uuid) -> AppResult<bool> {
    let res = refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::RevokedAt, Expr::value(Utc::now()))
        .filter(refresh_token::Column::Id.eq(id))
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

pub async fn revoke_family<C: ConnectionTrait>(db: &C, family_id: Uuid) -> AppResult<()> {
    refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::RevokedAt, Expr::value(Utc::now()))
        .filter(refresh_token::Column::FamilyId.eq(family_id))
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(())
}

pub async fn revoke_all_of_user<C: ConnectionTrait>(db: &C, user_id: Uuid) -> AppResult<()> {
    refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::RevokedAt, Expr::value(Utc::now()))
        .filter(refresh_token::Column::UserId.eq(user_id))
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(())
}
