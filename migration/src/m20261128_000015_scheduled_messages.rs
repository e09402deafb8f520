//! Scheduled messages (SPEC §6.4): a send at a wall-clock time in an IANA zone, once or by a recurrence
//! rule, and the occurrences fired so far — `(schedule_id, occurrence_at)` is unique, so no scheduler,
//! restart or crash fires an occurrence twice.

use sea_orm_migration::{prelude::*, schema::*};

use crate::util::{fk, index};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Alias::new("scheduled_messages"))
                .if_not_exists()
                .col(uuid("id").primary_key())
                .col(uuid("account_id"))
                .col(string("name"))
                .col(uuid("channel_id"))
                .col(uuid_null("template_id"))
                .col(text_null("message_body"))
                .col(json_binary("custom_values"))
                .col(string("send_type"))
                .col(string_null("delivery_address"))
                .col(uuid_null("contact_id"))
                .col(json_binary("contact_group_ids"))
                .col(json_binary("segment_ids"))
                .col(json_binary("contact_ids"))
                .col(json_binary("exclude_contact_ids"))
                // The first occurrence as a wall-clock time in `timezone` (no offset).
                .col(date_time("scheduled_at"))
                .col(string("timezone"))
                .col(string("timezone_mode"))
                .col(boolean("is_recurring"))
                .col(string_null("recurrence_rule"))
                .col(timestamp_with_time_zone_null("recurrence_end_at"))
                .col(string("misfire_policy"))
                .col(string("status"))
                .col(timestamp_with_time_zone_null("last_triggered_at"))
                .col(timestamp_with_time_zone_null("next_trigger_at"))
                .col(integer("trigger_count"))
                .col(uuid_null("last_message_id"))
                .col(uuid_null("last_group_message_id"))
                .col(text_null("last_error"))
                .col(json_binary("metadata"))
                .col(uuid_null("created_by_user_id"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .foreign_key(&mut fk("scheduled_messages", "account_id", "accounts", ForeignKeyAction::Cascade))
                .foreign_key(&mut fk("scheduled_messages", "channel_id", "channels", ForeignKeyAction::Cascade))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "scheduled_messages",
            "idx_scheduled_messages_account_created",
            &["account_id", "created_at"],
            false,
        ))
        .await?;
        // The scheduler's question: what is due, soonest first.
        m.create_index(index("scheduled_messages", "idx_scheduled_messages_due", &["next_trigger_at"], false)).await?;
        m.create_table(
            Table::create()
                .table(Alias::new("schedule_occurrences"))
                .if_not_exists()
                .col(uuid("id").primary_key())
                .col(uuid("schedule_id"))
                .col(uuid("account_id"))
                .col(timestamp_with_time_zone("occurrence_at"))
                .col(string("outcome"))
                .col(uuid_null("message_id"))
                .col(uuid_null("group_message_id"))
                .col(text_null("error"))
                .col(timestamp_with_time_zone("created_at"))
                .foreign_key(&mut fk(
                    "schedule_occurrences",
                    "schedule_id",
                    "scheduled_messages",
                    ForeignKeyAction::Cascade,
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "schedule_occurrences",
            "uq_schedule_occurrences_key",
            &["schedule_id", "occurrence_at"],
            true,
        ))
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Alias::new("schedule_occurrences")).if_exists().to_owned()).await?;
        m.drop_table(Table::drop().table(Alias::new("scheduled_messages")).if_exists().to_owned()).await
    }
}
