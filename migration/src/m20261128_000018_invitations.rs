//! Invitations (SPEC §3.2): `{email, role_id}` into an account, a single-use token (only its SHA-256 is
//! stored) valid 7 days, accepted by the user with that e-mail — existing, or registering through it.

use sea_orm_migration::{prelude::*, schema::*};

use crate::util::{fk, index};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Alias::new("invitations"))
                .if_not_exists()
                .col(uuid("id").primary_key())
                .col(uuid("account_id"))
                .col(string("email"))
                .col(uuid("role_id"))
                .col(string("token_hash"))
                .col(uuid_null("invited_by"))
                .col(string("status"))
                .col(timestamp_with_time_zone("expires_at"))
                .col(timestamp_with_time_zone_null("accepted_at"))
                .col(uuid_null("accepted_by"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .foreign_key(&mut fk("invitations", "account_id", "accounts", ForeignKeyAction::Cascade))
                .foreign_key(&mut fk("invitations", "role_id", "roles", ForeignKeyAction::Cascade))
                .foreign_key(&mut fk("invitations", "invited_by", "users", ForeignKeyAction::SetNull))
                .foreign_key(&mut fk("invitations", "accepted_by", "users", ForeignKeyAction::SetNull))
                .to_owned(),
        )
        .await?;
        m.create_index(index("invitations", "idx_invitations_token_hash", &["token_hash"], true)).await?;
        m.create_index(index("invitations", "idx_invitations_account_email", &["account_id", "email"], false)).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Alias::new("invitations")).if_exists().to_owned()).await
    }
}
