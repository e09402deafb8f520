use sea_orm::entity::prelude::*;

/// A message the sandbox provider accepted (or failed on purpose).
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "sandbox_messages")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub account_id: Uuid,
    pub channel_id: Uuid,
    pub message_id: Uuid,
    pub to: String,
    pub text: String,
    pub subject: Option<String>,
    pub segments: i32,
    pub encoding: String,
    /// delivered | failed
    pub status: String,
    pub error: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
