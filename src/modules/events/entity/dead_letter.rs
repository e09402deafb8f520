use sea_orm::entity::prelude::*;

/// An event a consumer of the in-process transport gave up on (RabbitMQ keeps its own `messaging.dlq`).
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "dead_letters")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub queue: String,
    pub event_id: Uuid,
    pub event_type: String,
    pub payload: Json,
    pub error: String,
    pub attempts: i32,
    pub created_at: DateTimeUtc,
    pub replayed_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
