use sea_orm::entity::prelude::*;

/// A contact a group send did not write a message for, and why: `opted_out`, `no_address`,
/// `missing_variable:NAME`. One row per (group message, contact).
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "group_message_skips")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub group_message_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub contact_id: Uuid,
    pub account_id: Uuid,
    pub reason: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
