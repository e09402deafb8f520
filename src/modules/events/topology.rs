//! The RabbitMQ topology (SPEC §7, ARCHITECTURE.md), declared idempotently at start: the topic exchange
//! `messaging`, the dead-letter exchange and queue, the bounded audit tap, and one durable queue per
//! consumer, named after it and declared by the process that runs it (`Amqp::start_consumer`). There is
//! no durable queue without a reader: such a queue keeps every event routed to it for ever. Every name
//! carries the configured prefix (empty in production; tests use a unique one so they can run in
//! parallel).

pub const EXCHANGE: &str = "messaging";
pub const DLX: &str = "messaging.dlx";
pub const DLQ: &str = "messaging.dlq";
pub const AUDIT_QUEUE: &str = "messaging_audit";
/// The audit queue keeps at most this many events, each for at most 7 days.
pub const AUDIT_MAX_LENGTH: i64 = 100_000;
pub const AUDIT_TTL_MS: i64 = 7 * 24 * 3600 * 1000;

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
