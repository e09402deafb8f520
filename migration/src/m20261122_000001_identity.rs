//! Identity and tenancy: users, accounts (with room for sub-accounts), roles, memberships, refresh
//! tokens, one-time codes and login failures.

use sea_orm_migration::{prelude::*, schema::*};

use crate::util::{fk, index};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Alias::new("accounts"))
                .if_not_exists()
                .col(uuid("id").primary_key())
                .col(string("name"))
                .col(uuid_null("parent_id"))
                .col(string("status"))
                .col(string("timezone"))
                .col(string_null("default_country_code"))
                .col(json_binary("settings"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .foreign_key(&mut fk("accounts", "parent_id", "accounts", ForeignKeyAction::Restrict))
                .to_owned(),
        )
        .await?;
        m.create_index(index("accounts", "idx_accounts_parent_id", &["parent_id"], false)).await?;

        m.create_table(
            Table::create()
                .table(Alias::new("users"))
                .if_not_exists()
                .col(uuid("id").primary_key())
                .col(string_uniq("email"))
                .col(string_null("password_hash"))
                .col(string("full_name"))
                .col(string_null("phone"))
                .col(boolean("is_active"))
                .col(timestamp_with_time_zone_null("email_verified_at"))
                .col(uuid_null("default_account_id"))
                .col(string_null("locale"))
                .col(string_null("timezone"))
                .col(string_null("pending_account_name"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .foreign_key(&mut fk("users", "default_account_id", "accounts", ForeignKeyAction::SetNull))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Alias::new("roles"))
                .if_not_exists()
                .col(uuid("id").primary_key())
                .col(uuid("account_id"))
                .col(string("name"))
                .col(string_null("description"))
                .col(json_binary("permissions"))
                .col(boolean("is_system"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .foreign_key(&mut fk("roles", "account_id", "accounts", ForeignKeyAction::Cascade))
                .to_owned(),
        )
        .await?;
        m.create_index(index("roles", "uq_roles_account_name", &["account_id", "name"], true)).await?;
        m.create_index(index("roles", "idx_roles_account_created", &["account_id", "created_at"], false)).await?;

        m.create_table(
            Table::create()
                .table(Alias::new("memberships"))
                .if_not_exists()
                .col(uuid("id").primary_key())
                .col(uuid("account_id"))
                .col(uuid("user_id"))
                .col(uuid("role_id"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .foreign_key(&mut fk("memberships", "account_id", "accounts", ForeignKeyAction::Cascade))
                .foreign_key(&mut fk("memberships", "user_id", "users", ForeignKeyAction::Cascade))
                .foreign_key(&mut fk("memberships", "role_id", "roles", ForeignKeyAction::Restrict))
                .to_owned(),
        )
        .await?;
        m.create_index(index("memberships", "uq_memberships_account_user", &["account_id", "user_id"], true)).await?;
        m.create_index(index("memberships", "idx_memberships_user", &["user_id"], false)).await?;
        m.create_index(index("memberships", "idx_memberships_role", &["role_id"], false)).await?;

        m.create_table(
            Table::create()
                .table(Alias::new("refresh_tokens"))
                .if_not_exists()
                .col(uuid("id").primary_key())
                .col(uuid("user_id"))
                .col(uuid("family_id"))
                .col(string_uniq("token_hash"))
                .col(timestamp_with_time_zone("expires_at"))
                .col(timestamp_with_time_zone_null("revoked_at"))
                .col(timestamp_with_time_zone("created_at"))
                .foreign_key(&mut fk("refresh_tokens", "user_id", "users", ForeignKeyAction::Cascade))
                .to_owned(),
        )
        .await?;
        m.create_index(index("refresh_tokens", "idx_refresh_tokens_family", &["family_id"], false)).await?;
        m.create_index(index("refresh_tokens", "idx_refresh_tokens_user", &["user_id"], false)).await?;

        m.create_table(
            Table::create()
                .table(Alias::new("auth_codes"))
                .if_not_exists()
                .col(uuid("id").primary_key())
                .col(uuid("user_id"))
                .col(string("purpose"))
                .col(string("code_hash"))
                .col(integer("attempts"))
                .col(timestamp_with_time_zone("expires_at"))
                .col(timestamp_with_time_zone_null("consumed_at"))
                .col(timestamp_with_time_zone("created_at"))
                .foreign_key(&mut fk("auth_codes", "user_id", "users", ForeignKeyAction::Cascade))
                .to_owned(),
        )
        .await?;
        m.create_index(index("auth_codes", "idx_auth_codes_user_purpose", &["user_id", "purpose"], false)).await?;

        m.create_table(
            Table::create()
                .table(Alias::new("login_failures"))
                .if_not_exists()
                .col(uuid("id").primary_key())
                .col(string("email"))
                .col(timestamp_with_time_zone("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("login_failures", "idx_login_failures_email_created", &["email", "created_at"], false))
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in ["login_failures", "auth_codes", "refresh_tokens", "memberships", "roles", "users", "accounts"] {
            m.drop_table(Table::drop().table(Alias::new(t)).if_exists().to_owned()).await?;
        }
        Ok(())
    }
}
