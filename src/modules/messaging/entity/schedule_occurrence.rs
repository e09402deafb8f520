use sea_orm::entity::prelude::*;

/// One fired occurrence of a schedule: unique per `(schedule_id, occurrence_at)`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "schedule_occurrences")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub schedule_id: Uuid,
    pub account_id: Uuid,
    pub occurrence_at: DateTimeUtc,
    /// `sent` (its message was queued) or `failed` (see `error`).
    pub outcome: String,
    pub message_id: Option<Uuid>,
    pub group_message_id: Option<Uuid>,
    pub error: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
