use sea_orm::entity::prelude::*;

/// One entry of the audit log: who changed what in which account, from where.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_logs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub account_id: Option<Uuid>,
    pub actor_id: Option<Uuid>,
    /// The change, named by its first event (`channel.updated`, `message.sent`, …).
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<Uuid>,
    /// `{"before": …, "after": …}` with secrets redacted (and `events` when a write emitted several).
    pub changes: Json,
    pub request_id: Option<String>,
    pub ip: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
