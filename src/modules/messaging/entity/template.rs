use sea_orm::entity::prelude::*;

use crate::domain::channel_type::ChannelType;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "templates")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub account_id: Uuid,
    pub name: String,
    pub body: String,
    pub category: Option<String>,
    pub channel_type: Option<ChannelType>,
    pub language: Option<String>,
    /// The placeholder names of `body`, in order of first appearance (re-extracted on every body change).
    pub variables: Json,
    /// `{NAME: value}` for the `use_default` strategy.
    pub default_values: Json,
    pub fallback_strategy: FallbackStrategy,
    pub approval_status: Option<ApprovalStatus>,
    pub external_template_id: Option<String>,
    /// `[{url, kind, filename?, caption?}]`, at most 10.
    pub attachments: Json,
    pub is_active: bool,
    pub created_by_user_id: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

crate::db::text_enum! {
    /// What a placeholder nothing resolves becomes.
    pub enum FallbackStrategy / FALLBACK_STRATEGIES {
        KeepPlaceholder = "keep_placeholder",
        UseDefault = "use_default",
        SkipContact = "skip_contact",
    }
}

crate::db::text_enum! {
    /// WhatsApp's review of a template.
    pub enum ApprovalStatus / APPROVAL_STATUSES {
        Pending = "pending",
        Approved = "approved",
        Rejected = "rejected",
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
