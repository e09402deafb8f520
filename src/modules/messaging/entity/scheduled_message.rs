use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "scheduled_messages")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub account_id: Uuid,
    pub name: String,
    pub channel_id: Uuid,
    pub template_id: Option<Uuid>,
    pub message_body: Option<String>,
    pub custom_values: Json,
    pub send_type: SendType,
    pub delivery_address: Option<String>,
    pub contact_id: Option<Uuid>,
    pub contact_group_ids: Json,
    pub segment_ids: Json,
    pub contact_ids: Json,
    pub exclude_contact_ids: Json,
    /// The first occurrence, a wall-clock time in `timezone`.
    pub scheduled_at: DateTime,
    pub timezone: String,
    pub timezone_mode: TimezoneMode,
    pub is_recurring: bool,
    pub recurrence_rule: Option<String>,
    pub recurrence_end_at: Option<DateTimeUtc>,
    pub misfire_policy: MisfirePolicy,
    pub status: ScheduleStatus,
    pub last_triggered_at: Option<DateTimeUtc>,
    /// The next occurrence (an instant); `None` once nothing is left to fire.
    pub next_trigger_at: Option<DateTimeUtc>,
    pub trigger_count: i32,
    pub last_message_id: Option<Uuid>,
    pub last_group_message_id: Option<Uuid>,
    /// Why the last occurrence failed, if it did.
    pub last_error: Option<String>,
    pub metadata: Json,
    pub created_by_user_id: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

crate::db::text_enum! {
    pub enum SendType / SEND_TYPES {
        Single = "single",
        Group = "group",
    }
}

crate::db::text_enum! {
    /// `fixed`: the schedule's zone for everyone; `recipient`: each recipient's own zone.
    pub enum TimezoneMode / TIMEZONE_MODES {
        Fixed = "fixed",
        Recipient = "recipient",
    }
}

crate::db::text_enum! {
    /// After downtime: fire the latest missed occurrence once, or none of them.
    pub enum MisfirePolicy / MISFIRE_POLICIES {
        FireOnce = "fire_once",
        Skip = "skip",
    }
}

crate::db::text_enum! {
    /// `pending` until it first fires; a recurring schedule is `triggered` while more occurrences follow;
    /// `completed` when none is left; `failed` when a one-time send could not be made.
    pub enum ScheduleStatus / SCHEDULE_STATUSES {
        Pending = "pending",
        Triggered = "triggered",
        Completed = "completed",
        Failed = "failed",
        Cancelled = "cancelled",
        Paused = "paused",
    }
}

impl ScheduleStatus {
    /// Edits are allowed only before a schedule first fires, or while it is paused.
    pub fn editable(self) -> bool {
        matches!(self, ScheduleStatus::Pending | ScheduleStatus::Paused)
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
