//! Kernel domain types shared by several modules, each parsed once: contact addresses ([`PhoneE164`],
//! [`EmailAddress`]) and the channel types of SPEC §5 ([`channel_type`]). They import nothing of ours.

mod address;
pub mod channel_type;

pub use address::{EmailAddress, PhoneE164, default_region};
