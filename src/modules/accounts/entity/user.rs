use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub email: String,
    pub password_hash: Option<String>,
    pub full_name: String,
    pub phone: Option<String>,
    pub is_active: bool,
    pub email_verified_at: Option<DateTimeUtc>,
    pub default_account_id: Option<Uuid>,
    pub locale: Option<String>,
    pub timezone: Option<String>,
    /// The account to create when the e-mail is verified (set at registration).
    pub pending_account_name: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// Access tokens issued before this instant are void (a password reset sets it).
    pub tokens_valid_after: Option<DateTimeUtc>,
    /// The user's id at an external identity provider (the Cognito `sub`); unique.
    pub provider_subject: Option<String>,
    /// The invitation this user registered through, accepted when the e-mail is verified (Cognito).
    pub pending_invitation_id: Option<Uuid>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::membership::Entity")]
    Membership,
}

impl Related<super::membership::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Membership.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
