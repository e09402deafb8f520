use sea_orm::entity::prelude::*;

/// A delivery receipt waiting for the send it reports on to be recorded (see `receipts`).
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "parked_receipts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub account_id: Uuid,
    pub channel_id: Uuid,
    pub provider_message_id: String,
    /// sent | delivered | read | failed
    pub status: String,
    pub error: Option<String>,
    /// When the provider says it happened.
    pub reported_at: Option<DateTimeUtc>,
    pub parked_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
