//! Messaging's tables.

pub mod template;
