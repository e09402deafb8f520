//! The channel types of SPEC §5, shared by contacts (addresses, opt-outs, preferred channel), channels and
//! messaging. It lives outside the modules so none of them depends on another for it.

/// Every channel type a channel (and so a contact's address or opt-out) can have.
pub const CHANNEL_TYPES: &[&str] = &["sms", "smpp", "telegram", "whatsapp", "messenger", "email", "sandbox"];

pub fn is_channel_type(s: &str) -> bool {
    CHANNEL_TYPES.contains(&s)
}

/// Where a contact is reached on a channel type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressKind {
    Phone,
    Email,
    /// `channel_identities.<type>`
    Identity(&'static str),
}

/// sms/smpp/whatsapp → phone, email → e-mail, telegram/messenger → the channel identity; the sandbox
/// channel accepts a phone number.
pub fn address_kind(channel_type: &str) -> Option<AddressKind> {
    Some(match channel_type {
        "sms" | "smpp" | "whatsapp" | "sandbox" => AddressKind::Phone,
        "email" => AddressKind::Email,
        "telegram" => AddressKind::Identity("telegram"),
        "messenger" => AddressKind::Identity("messenger"),
        _ => return None,
    })
}
