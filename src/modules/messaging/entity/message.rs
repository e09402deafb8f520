use sea_orm::entity::prelude::*;

use crate::domain::channel_type::ChannelType;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "messages")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub account_id: Uuid,
    pub channel_id: Uuid,
    pub contact_id: Option<Uuid>,
    pub sent_by_user_id: Option<Uuid>,
    pub group_message_id: Option<Uuid>,
    pub scheduled_message_id: Option<Uuid>,
    pub template_id: Option<Uuid>,
    /// The channel's type when the message was created (the dispatch queue it goes to).
    pub channel_type: ChannelType,
    pub direction: Direction,
    pub status: MessageStatus,
    pub delivery_address: String,
    pub message_body: String,
    /// The template body the message was rendered from (editing the template never changes it).
    pub original_template: Option<String>,
    pub attachments: Json,
    pub scheduled_at: Option<DateTimeUtc>,
    pub sent_at: Option<DateTimeUtc>,
    pub delivered_at: Option<DateTimeUtc>,
    pub read_at: Option<DateTimeUtc>,
    pub failed_at: Option<DateTimeUtc>,
    pub attempts: i32,
    pub provider_message_id: Option<String>,
    /// Segments, encoding, subject, provider data, and the caller's own keys.
    pub metadata: Json,
    /// `{code, message, provider_code}` of the last failure.
    pub error_details: Option<Json>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// When the next attempt is due (queued, or failed with a retry scheduled).
    pub next_attempt_at: Option<DateTimeUtc>,
    /// Until when the dispatcher that claimed the message (`sending`) holds it.
    pub lease_until: Option<DateTimeUtc>,
}

crate::db::text_enum! {
    pub enum Direction / DIRECTIONS {
        Outbound = "outbound",
        Inbound = "inbound",
        System = "system",
    }
}

crate::db::text_enum! {
    /// Outbound: `queued → sending → sent → delivered`; `sending → failed → (sending again when the
    /// retry is due) → permanently_failed`; `queued → cancelled`. Inbound messages are `delivered`.
    pub enum MessageStatus / MESSAGE_STATUSES {
        Queued = "queued",
        Sending = "sending",
        Sent = "sent",
        Delivered = "delivered",
        Failed = "failed",
        PermanentlyFailed = "permanently_failed",
        Cancelled = "cancelled",
    }
}

impl MessageStatus {
    /// Turumba will do nothing more with a message in this status, so it may be deleted (`sent` waits
    /// only for a receipt, which some channels never give; a late one matches nothing).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            MessageStatus::Sent
                | MessageStatus::Delivered
                | MessageStatus::PermanentlyFailed
                | MessageStatus::Cancelled
        )
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
