//! The RabbitMQ topology (SPEC §7, ARCHITECTURE.md), declared idempotently at start. Every name carries
//! the configured prefix (empty in production; tests use a unique one so they can run in parallel).

use crate::domain::channel_type::ChannelType;

pub const EXCHANGE: &str = "messaging";
pub const DLX: &str = "messaging.dlx";
pub const DLQ: &str = "messaging.dlq";
pub const AUDIT_QUEUE: &str = "messaging_audit";
/// The audit queue keeps at most this many events, each for at most 7 days.
pub const AUDIT_MAX_LENGTH: i64 = 100_000;
pub const AUDIT_TTL_MS: i64 = 7 * 24 * 3600 * 1000;

/// The standard work queues and their bindings (consumers arrive with the messaging issues).
pub fn standard_queues() -> Vec<(String, Vec<String>)> {
    let mut q = vec![
        ("group_message_processing".to_string(), vec!["group_message.*".to_string()]),
        ("scheduled_message_processing".to_string(), vec!["scheduled_message.*".to_string()]),
        ("message.status.update".to_string(), vec!["message.status.*".to_string()]),
        ("webhook.inbound".to_string(), vec!["webhook.inbound.*".to_string()]),
    ];
    // One dispatch queue per channel type.
    for t in ChannelType::ALL {
        q.push((format!("message.dispatch.{t}"), vec![format!("message.dispatch.{t}")]));
    }
    q
}

#[derive(Debug, Clone, Default)]
pub struct Names {
    pub prefix: String,
}

impl Names {
    pub fn new(prefix: &str) -> Self {
        Names { prefix: prefix.to_string() }
    }
    pub fn exchange(&self) -> String {
        format!("{}{EXCHANGE}", self.prefix)
    }
    pub fn dlx(&self) -> String {
        format!("{}{DLX}", self.prefix)
    }
    pub fn dlq(&self) -> String {
        format!("{}{DLQ}", self.prefix)
    }
    pub fn queue(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}
