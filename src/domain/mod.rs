//! Kernel domain types shared by several modules, each parsed once: contact addresses ([`PhoneE164`],
//! [`EmailAddress`]), the channel types of SPEC §5 ([`channel_type`]) and the rule for names ([`text`]). They import nothing of ours.

mod address;
pub mod channel_type;
pub mod text;

pub use address::{EmailAddress, PhoneE164, default_region};
