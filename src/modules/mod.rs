//! Domain modules. Each owns its tables, services and routes; others use only its `mod.rs` facade.

pub mod accounts;
pub mod channels;
pub mod contacts;
pub mod events;
pub mod messaging;
