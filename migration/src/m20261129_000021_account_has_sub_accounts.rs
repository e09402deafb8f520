//! `accounts.has_sub_accounts`: set when a sub-account is created under the account (and never cleared:
//! it means "may have"), so that resolving who may act where looks for sub-accounts only below
//! accounts that have some — one query fewer on every request of a manager without sub-accounts.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Alias::new("accounts"))
                .add_column(boolean("has_sub_accounts").default(false))
                .to_owned(),
        )
        .await?;
        m.get_connection()
            .execute_unprepared(
                "UPDATE accounts SET has_sub_accounts = TRUE \
                 WHERE id IN (SELECT parent_id FROM accounts WHERE parent_id IS NOT NULL)",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter().table(Alias::new("accounts")).drop_column(Alias::new("has_sub_accounts")).to_owned(),
        )
        .await
    }
}
