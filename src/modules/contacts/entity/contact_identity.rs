use sea_orm::entity::prelude::*;

/// One `(channel_type, identity)` of a contact, unique per account: the index behind inbound lookups.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "contact_identities")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub account_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub channel_type: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub identity: String,
    pub contact_id: Uuid,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
