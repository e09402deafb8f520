//! Messaging's tables.

pub mod idempotency_key;
pub mod message;
pub mod template;
