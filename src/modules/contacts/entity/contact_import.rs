use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "contact_imports")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub account_id: Uuid,
    pub user_id: Option<Uuid>,
    pub status: ImportStatus,
    pub file_name: Option<String>,
    /// mapping, on_duplicate, group_id, tag_ids
    pub options: Json,
    pub total_rows: i64,
    pub created: i64,
    pub updated: i64,
    pub skipped: i64,
    pub error_count: i64,
    /// The first 1,000 row errors: `[{row, field, message}]`.
    pub errors: Json,
    pub message: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub finished_at: Option<DateTimeUtc>,
    /// The process running the job (`host:port`, or `host:cli:pid`).
    pub owner: Option<String>,
}

crate::db::text_enum! {
    /// Where an import job is.
    pub enum ImportStatus / IMPORT_STATUSES {
        Queued = "queued",
        Running = "running",
        Completed = "completed",
        Failed = "failed",
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
