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

/// A channel's status (SPEC §5), stored as its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, serde::Serialize)]
#[sea_orm(rs_type = "String", db_type = "Text")]
#[serde(rename_all = "snake_case")]
pub enum ChannelStatus {
    #[sea_orm(string_value = "connected")]
    Connected,
    #[sea_orm(string_value = "disconnected")]
    Disconnected,
    #[sea_orm(string_value = "rate_limited")]
    RateLimited,
    #[sea_orm(string_value = "error")]
    Error,
    #[sea_orm(string_value = "disabled")]
    Disabled,
}

impl ChannelStatus {
    pub const ALL: [ChannelStatus; 5] = [
        ChannelStatus::Connected,
        ChannelStatus::Disconnected,
        ChannelStatus::RateLimited,
        ChannelStatus::Error,
        ChannelStatus::Disabled,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ChannelStatus::Connected => "connected",
            ChannelStatus::Disconnected => "disconnected",
            ChannelStatus::RateLimited => "rate_limited",
            ChannelStatus::Error => "error",
            ChannelStatus::Disabled => "disabled",
        }
    }
}

impl std::fmt::Display for ChannelStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compares with a stored name (`status == "error"`).
impl PartialEq<&str> for ChannelStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

const STATUS_NAMES: [&str; ChannelStatus::ALL.len()] = {
    let mut names = [""; ChannelStatus::ALL.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = ChannelStatus::ALL[i].as_str();
        i += 1;
    }
    names
};

/// The status names, for the list filter's whitelist.
pub const STATUSES: &[&str] = &STATUS_NAMES;

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
