//! Two columns the hardening needed:
//! - `contact_imports.owner`: which process runs an import (`host:port` of the server, or
//!   `host:cli:pid`), so a restarted server fails its previous incarnation's interrupted imports at once
//!   instead of waiting out their lease;
//! - `users.tokens_valid_after`: access tokens issued before it are void (set by a password reset, so
//!   every session of a recovered account ends at once, not when its access token expires).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table(Alias::new("contact_imports")).add_column(string_null("owner")).to_owned())
            .await?;
        m.alter_table(
            Table::alter()
                .table(Alias::new("users"))
                .add_column(timestamp_with_time_zone_null("tokens_valid_after"))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter().table(Alias::new("users")).drop_column(Alias::new("tokens_valid_after")).to_owned(),
        )
        .await?;
        m.alter_table(Table::alter().table(Alias::new("contact_imports")).drop_column(Alias::new("owner")).to_owned())
            .await
    }
}
