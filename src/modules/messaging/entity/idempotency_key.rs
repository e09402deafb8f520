use sea_orm::entity::prelude::*;

/// The first answer to a send made with an `Idempotency-Key`, kept 24 hours.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "idempotency_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub account_id: Uuid,
    pub key: String,
    /// SHA-256 of the request body, hex.
    pub request_hash: String,
    pub status_code: i32,
    pub response: Json,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
