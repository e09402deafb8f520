use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "contacts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub account_id: Uuid,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub display_name: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    /// `{"telegram": "<chat id>", "messenger": "<psid>", ...}`
    pub channel_identities: Json,
    pub preferred_channel: Option<String>,
    pub language: Option<String>,
    pub timezone: Option<String>,
    /// Free JSON object; keys match `[a-z0-9_]+`.
    pub attributes: Json,
    /// JSON array of channel types.
    pub opted_out_channels: Json,
    pub last_inbound_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
