//! - `users.provider_subject`: the user's id at an external identity provider (the Cognito `sub`), by
//!   which a verified token is linked to our user. Unique; NULL for users of the local provider.
//! - `users.pending_invitation_id`: the invitation a user registered through while their e-mail still
//!   awaits the provider's code (Cognito); verifying the e-mail accepts it.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table(Alias::new("users")).add_column(string_null("provider_subject")).to_owned())
            .await?;
        m.alter_table(
            Table::alter().table(Alias::new("users")).add_column(uuid_null("pending_invitation_id")).to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_users_provider_subject")
                .table(Alias::new("users"))
                .col(Alias::new("provider_subject"))
                .unique()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(Index::drop().name("ux_users_provider_subject").table(Alias::new("users")).to_owned()).await?;
        m.alter_table(
            Table::alter().table(Alias::new("users")).drop_column(Alias::new("pending_invitation_id")).to_owned(),
        )
        .await?;
        m.alter_table(Table::alter().table(Alias::new("users")).drop_column(Alias::new("provider_subject")).to_owned())
            .await
    }
}
