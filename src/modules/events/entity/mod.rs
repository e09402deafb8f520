//! sea-orm entities of the events module.

pub mod dead_letter;
pub mod outbox_event;
pub mod processed_event;
