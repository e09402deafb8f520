use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "channels")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub account_id: Uuid,
    pub name: String,
    pub channel_type: String,
    pub provider: Option<String>,
    pub status: ChannelStatus,
    pub is_enabled: bool,
    /// Sealed by the vault: key id ‖ nonce ‖ ciphertext (never leaves the module unsealed).
    pub credentials: Vec<u8>,
    /// The Telegram webhook secret token, sealed.
    pub webhook_secret: Option<Vec<u8>>,
    pub sender_name: Option<String>,
    pub default_country_code: Option<String>,
    pub rate_limit: Option<i32>,
    pub priority: i32,
    pub retry_count: i32,
    pub retry_interval: i32,
    pub last_verified_at: Option<DateTimeUtc>,
    pub last_latency_ms: Option<i32>,
    pub error_message: Option<String>,
    pub rate_limited_until: Option<DateTimeUtc>,
    pub consecutive_failures: i32,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

crate::db::text_enum! {
    /// A channel's status (SPEC §5).
    pub enum ChannelStatus / STATUSES {
        Connected = "connected",
        Disconnected = "disconnected",
        RateLimited = "rate_limited",
        Error = "error",
        Disabled = "disabled",
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl Model {
    /// The status as shown: a rate limit whose wait has passed reads as `connected` (before anything
    /// stores it).
    pub fn effective_status(&self, now: DateTimeUtc) -> ChannelStatus {
        if self.status == ChannelStatus::RateLimited && self.rate_limited_until.is_none_or(|t| t <= now) {
            ChannelStatus::Connected
        } else {
            self.status
        }
    }
}

impl ActiveModelBehavior for ActiveModel {}
