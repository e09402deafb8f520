use sea_orm::entity::prelude::*;

/// An invitation into an account (SPEC §3.2). The token itself is never stored, only its SHA-256.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "invitations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub account_id: Uuid,
    /// Lower-case, as users are stored.
    pub email: String,
    pub role_id: Uuid,
    /// SHA-256 (hex) of the token.
    pub token_hash: String,
    pub invited_by: Option<Uuid>,
    /// `pending`, `accepted` or `revoked` (a pending one past `expires_at` reads as `expired`).
    pub status: String,
    pub expires_at: DateTimeUtc,
    pub accepted_at: Option<DateTimeUtc>,
    pub accepted_by: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
