//! Group messages (SPEC §6.3): one send to many contacts, fanned out into one message per contact.
//! `(group_message_id, contact_id)` is unique on `messages`, so a fan-out that crashes and restarts
//! halfway never creates a second message for anyone; the fan-out's position (`fanout_after`, the last
//! contact id written) is stored with each batch it writes, so it resumes where it stopped. The
//! contacts it skipped are kept with their reason (`group_message_skips`, one row per contact).

use sea_orm_migration::{prelude::*, schema::*};

use crate::util::{fk, index};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Alias::new("group_messages"))
                .if_not_exists()
                .col(uuid("id").primary_key())
                .col(uuid("account_id"))
                .col(string("name"))
                .col(uuid_null("channel_id"))
                .col(string("channel_strategy"))
                .col(uuid("template_id"))
                .col(text_null("message_body"))
                .col(json_binary("custom_values"))
                .col(json_binary("contact_group_ids"))
                .col(json_binary("segment_ids"))
                .col(json_binary("contact_ids"))
                .col(json_binary("exclude_contact_ids"))
                .col(string("status"))
                .col(integer("total_recipients"))
                .col(integer("pending_count"))
                .col(integer("sent_count"))
                .col(integer("delivered_count"))
                .col(integer("failed_count"))
                .col(integer("cancelled_count"))
                .col(integer("skipped_count"))
                .col(boolean("fanout_done"))
                .col(uuid_null("fanout_after"))
                .col(timestamp_with_time_zone_null("fanout_lease_until"))
                .col(timestamp_with_time_zone_null("scheduled_at"))
                // A recipient-time-zone schedule's wall time: each message is due then in its
                // contact's zone (the account's when unknown).
                .col(date_time_null("local_send_time"))
                .col(timestamp_with_time_zone_null("started_at"))
                .col(timestamp_with_time_zone_null("completed_at"))
                .col(uuid_null("scheduled_message_id"))
                .col(text_null("last_error"))
                .col(json_binary("metadata"))
                .col(uuid_null("created_by_user_id"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .foreign_key(&mut fk("group_messages", "account_id", "accounts", ForeignKeyAction::Cascade))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "group_messages",
            "idx_group_messages_account_created",
            &["account_id", "created_at"],
            false,
        ))
        .await?;
        // The fan-out workers' question: which sends still have recipients to write.
        m.create_index(index("group_messages", "idx_group_messages_fanout", &["fanout_done", "status"], false)).await?;
        m.create_table(
            Table::create()
                .table(Alias::new("group_message_skips"))
                .if_not_exists()
                .col(uuid("group_message_id"))
                .col(uuid("contact_id"))
                .col(uuid("account_id"))
                .col(string("reason"))
                .col(timestamp_with_time_zone("created_at"))
                .primary_key(Index::create().col(Alias::new("group_message_id")).col(Alias::new("contact_id")))
                .foreign_key(&mut fk(
                    "group_message_skips",
                    "group_message_id",
                    "group_messages",
                    ForeignKeyAction::Cascade,
                ))
                .to_owned(),
        )
        .await?;
        // One message per (group message, contact): the fan-out's guarantee. It also serves the
        // `group_message_id` filter, so the plain index on that column goes.
        m.drop_index(Index::drop().name("idx_messages_group").table(Alias::new("messages")).if_exists().to_owned())
            .await?;
        m.create_index(index("messages", "uq_messages_group_contact", &["group_message_id", "contact_id"], true)).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop().name("uq_messages_group_contact").table(Alias::new("messages")).if_exists().to_owned(),
        )
        .await?;
        m.create_index(index("messages", "idx_messages_group", &["group_message_id"], false)).await?;
        m.drop_table(Table::drop().table(Alias::new("group_message_skips")).if_exists().to_owned()).await?;
        m.drop_table(Table::drop().table(Alias::new("group_messages")).if_exists().to_owned()).await
    }
}
