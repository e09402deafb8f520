//! Messaging's tables.

pub mod group_message;
pub mod group_message_skip;
pub mod idempotency_key;
pub mod message;
pub mod message_part;
pub mod parked_receipt;
pub mod rate_bucket;
pub mod schedule_occurrence;
pub mod scheduled_message;
pub mod template;
