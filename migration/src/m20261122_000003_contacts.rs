//! Contacts: contacts (attributes as JSON), their channel identities (an index for inbound lookups), tags,
//! groups with exact member counts, saved segments and CSV import jobs.

use sea_orm_migration::{prelude::*, schema::*};

use crate::util::{fk, index};

#[derive(DeriveMigrationName)]
pub struct Migration;

fn pk(cols: &[&str]) -> IndexCreateStatement {
    let mut idx = Index::create();
    for c in cols {
        idx.col(Alias::new(*c));
    }
    idx.to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Alias::new("contacts"))
                .if_not_exists()
                .col(uuid("id").primary_key())
                .col(uuid("account_id"))
                .col(string_null("first_name"))
                .col(string_null("last_name"))
                .col(string_null("display_name"))
                .col(string_null("phone"))
                .col(string_null("email"))
                .col(json_binary("channel_identities"))
                .col(string_null("preferred_channel"))
                .col(string_null("language"))
                .col(string_null("timezone"))
                .col(json_binary("attributes"))
                .col(json_binary("opted_out_channels"))
                .col(timestamp_with_time_zone_null("last_inbound_at"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .foreign_key(&mut fk("contacts", "account_id", "accounts", ForeignKeyAction::Cascade))
                .to_owned(),
        )
        .await?;
        // NULLs are distinct in unique indexes on both databases: phone and e-mail are unique when present.
        m.create_index(index("contacts", "uq_contacts_account_phone", &["account_id", "phone"], true)).await?;
        m.create_index(index("contacts", "uq_contacts_account_email", &["account_id", "email"], true)).await?;
        m.create_index(index("contacts", "idx_contacts_account_created", &["account_id", "created_at"], false)).await?;
        m.create_index(index("contacts", "idx_contacts_account_id", &["account_id", "id"], false)).await?;
        m.create_index(index("contacts", "idx_contacts_account_inbound", &["account_id", "last_inbound_at"], false))
            .await?;

        m.create_table(
            Table::create()
                .table(Alias::new("contact_identities"))
                .if_not_exists()
                .col(uuid("account_id"))
                .col(string("channel_type"))
                .col(string("identity"))
                .col(uuid("contact_id"))
                .primary_key(&mut pk(&["account_id", "channel_type", "identity"]))
                .foreign_key(&mut fk("contact_identities", "contact_id", "contacts", ForeignKeyAction::Cascade))
                .to_owned(),
        )
        .await?;
        m.create_index(index("contact_identities", "idx_contact_identities_contact", &["contact_id"], false)).await?;

        m.create_table(
            Table::create()
                .table(Alias::new("tags"))
                .if_not_exists()
                .col(uuid("id").primary_key())
                .col(uuid("account_id"))
                .col(string("name"))
                .col(string("color"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .foreign_key(&mut fk("tags", "account_id", "accounts", ForeignKeyAction::Cascade))
                .to_owned(),
        )
        .await?;
        m.create_index(index("tags", "uq_tags_account_name", &["account_id", "name"], true)).await?;

        m.create_table(
            Table::create()
                .table(Alias::new("contact_tags"))
                .if_not_exists()
                .col(uuid("contact_id"))
                .col(uuid("tag_id"))
                .primary_key(&mut pk(&["contact_id", "tag_id"]))
                .foreign_key(&mut fk("contact_tags", "contact_id", "contacts", ForeignKeyAction::Cascade))
                .foreign_key(&mut fk("contact_tags", "tag_id", "tags", ForeignKeyAction::Cascade))
                .to_owned(),
        )
        .await?;
        m.create_index(index("contact_tags", "idx_contact_tags_tag", &["tag_id", "contact_id"], false)).await?;

        m.create_table(
            Table::create()
                .table(Alias::new("contact_groups"))
                .if_not_exists()
                .col(uuid("id").primary_key())
                .col(uuid("account_id"))
                .col(string("name"))
                .col(string_null("description"))
                .col(big_integer("contact_count"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .foreign_key(&mut fk("contact_groups", "account_id", "accounts", ForeignKeyAction::Cascade))
                .to_owned(),
        )
        .await?;
        m.create_index(index("contact_groups", "uq_contact_groups_account_name", &["account_id", "name"], true))
            .await?;

        m.create_table(
            Table::create()
                .table(Alias::new("group_members"))
                .if_not_exists()
                .col(uuid("group_id"))
                .col(uuid("contact_id"))
                .col(timestamp_with_time_zone("created_at"))
                .primary_key(&mut pk(&["group_id", "contact_id"]))
                .foreign_key(&mut fk("group_members", "group_id", "contact_groups", ForeignKeyAction::Cascade))
                .foreign_key(&mut fk("group_members", "contact_id", "contacts", ForeignKeyAction::Cascade))
                .to_owned(),
        )
        .await?;
        m.create_index(index("group_members", "idx_group_members_contact", &["contact_id"], false)).await?;

        m.create_table(
            Table::create()
                .table(Alias::new("segments"))
                .if_not_exists()
                .col(uuid("id").primary_key())
                .col(uuid("account_id"))
                .col(string("name"))
                .col(string_null("description"))
                .col(json_binary("filter"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .foreign_key(&mut fk("segments", "account_id", "accounts", ForeignKeyAction::Cascade))
                .to_owned(),
        )
        .await?;
        m.create_index(index("segments", "uq_segments_account_name", &["account_id", "name"], true)).await?;

        m.create_table(
            Table::create()
                .table(Alias::new("contact_imports"))
                .if_not_exists()
                .col(uuid("id").primary_key())
                .col(uuid("account_id"))
                .col(uuid_null("user_id"))
                .col(string("status"))
                .col(string_null("file_name"))
                .col(json_binary("options"))
                .col(big_integer("total_rows"))
                .col(big_integer("created"))
                .col(big_integer("updated"))
                .col(big_integer("skipped"))
                .col(big_integer("error_count"))
                .col(json_binary("errors"))
                .col(string_null("message"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .col(timestamp_with_time_zone_null("finished_at"))
                .foreign_key(&mut fk("contact_imports", "account_id", "accounts", ForeignKeyAction::Cascade))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "contact_imports",
            "idx_contact_imports_account_created",
            &["account_id", "created_at"],
            false,
        ))
        .await?;
        m.create_index(index("contact_imports", "idx_contact_imports_status", &["status"], false)).await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            "contact_imports",
            "segments",
            "group_members",
            "contact_groups",
            "contact_tags",
            "tags",
            "contact_identities",
            "contacts",
        ] {
            m.drop_table(Table::drop().table(Alias::new(t)).if_exists().to_owned()).await?;
        }
        Ok(())
    }
}
