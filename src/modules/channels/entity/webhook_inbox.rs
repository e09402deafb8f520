use sea_orm::entity::prelude::*;

/// A raw provider webhook, stored before the provider is answered.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_inbox")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub account_id: Uuid,
    pub channel_id: Uuid,
    pub channel_type: String,
    pub provider_event_id: String,
    /// received | processed | failed | ignored | held (the account is suspended)
    pub status: String,
    pub payload: String,
    pub content_type: Option<String>,
    pub item_count: i32,
    /// Items handled by the status and inbound consumer; `processed` when it reaches `item_count`.
    pub processed_items: i32,
    pub error: Option<String>,
    pub received_at: DateTimeUtc,
    pub processed_at: Option<DateTimeUtc>,
    /// While `held`: the items the delivery was parsed into (a JSON array), emitted on release.
    pub held_items: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
