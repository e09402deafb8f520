use sea_orm::entity::prelude::*;

/// One send to many contacts (SPEC §6.3), with its live counters and the fan-out's progress.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "group_messages")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub account_id: Uuid,
    pub name: String,
    /// The channel every message goes through (`fixed`); `None` with `preferred`.
    pub channel_id: Option<Uuid>,
    pub channel_strategy: ChannelStrategy,
    /// The template rendered for each recipient (a body given instead auto-creates one).
    pub template_id: Uuid,
    /// The body as given, when the send was made from a body.
    pub message_body: Option<String>,
    pub custom_values: Json,
    pub contact_group_ids: Json,
    pub segment_ids: Json,
    pub contact_ids: Json,
    pub exclude_contact_ids: Json,
    pub status: GroupStatus,
    pub total_recipients: i32,
    /// queued, sending, or failed with a retry due.
    pub pending_count: i32,
    /// sent or delivered.
    pub sent_count: i32,
    pub delivered_count: i32,
    /// permanently failed.
    pub failed_count: i32,
    pub cancelled_count: i32,
    pub skipped_count: i32,
    /// Every recipient has a message or a skip row.
    pub fanout_done: bool,
    /// The last contact the fan-out wrote (it resumes after it).
    pub fanout_after: Option<Uuid>,
    /// Until when the fan-out worker that claimed the send holds it.
    pub fanout_lease_until: Option<DateTimeUtc>,
    /// Not fanned out before then.
    pub scheduled_at: Option<DateTimeUtc>,
    /// Each message is due at this wall time in its contact's time zone (the account's when unknown):
    /// the occurrences of a `timezone_mode: recipient` schedule.
    pub local_send_time: Option<DateTime>,
    pub started_at: Option<DateTimeUtc>,
    pub completed_at: Option<DateTimeUtc>,
    /// The schedule whose occurrence created it.
    pub scheduled_message_id: Option<Uuid>,
    /// Why the fan-out stopped, when it failed.
    pub last_error: Option<String>,
    pub metadata: Json,
    pub created_by_user_id: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

crate::db::text_enum! {
    /// `fixed`: the send's channel for everyone; `preferred`: each contact's preferred channel type
    /// among the account's enabled channels, else the highest-priority channel that reaches them.
    pub enum ChannelStrategy / CHANNEL_STRATEGIES {
        Fixed = "fixed",
        Preferred = "preferred",
    }
}

crate::db::text_enum! {
    /// `draft → queued → processing → completed | partially_failed | failed`; `cancelled` from draft,
    /// queued or processing.
    pub enum GroupStatus / GROUP_STATUSES {
        Draft = "draft",
        Queued = "queued",
        Processing = "processing",
        Completed = "completed",
        PartiallyFailed = "partially_failed",
        Failed = "failed",
        Cancelled = "cancelled",
    }
}

impl GroupStatus {
    /// Nothing more will be sent (late receipts may still move the counters).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            GroupStatus::Completed | GroupStatus::PartiallyFailed | GroupStatus::Failed | GroupStatus::Cancelled
        )
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
