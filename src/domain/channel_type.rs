//! The channel types of SPEC §5, shared by contacts (addresses, opt-outs, preferred channel), channels,
//! events (a dispatch queue per type) and messaging. It lives outside the modules so none of them depends
//! on another for it. [`ChannelType`] is the one place where a type's name is written.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Every channel type a channel (and so a contact's address or opt-out) can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelType {
    Sms,
    Smpp,
    Telegram,
    Whatsapp,
    Messenger,
    Email,
    Sandbox,
}

impl ChannelType {
    pub const ALL: [ChannelType; 7] = [
        ChannelType::Sms,
        ChannelType::Smpp,
        ChannelType::Telegram,
        ChannelType::Whatsapp,
        ChannelType::Messenger,
        ChannelType::Email,
        ChannelType::Sandbox,
    ];

    /// The name stored, sent and accepted (`sms`, `whatsapp`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            ChannelType::Sms => "sms",
            ChannelType::Smpp => "smpp",
            ChannelType::Telegram => "telegram",
            ChannelType::Whatsapp => "whatsapp",
            ChannelType::Messenger => "messenger",
            ChannelType::Email => "email",
            ChannelType::Sandbox => "sandbox",
        }
    }

    pub fn parse(s: &str) -> Option<ChannelType> {
        ChannelType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Where a contact is reached on this type: sms/smpp/whatsapp → phone, email → e-mail,
    /// telegram/messenger → the channel identity; the sandbox channel accepts a phone number.
    pub const fn address_kind(self) -> AddressKind {
        match self {
            ChannelType::Sms | ChannelType::Smpp | ChannelType::Whatsapp | ChannelType::Sandbox => AddressKind::Phone,
            ChannelType::Email => AddressKind::Email,
            ChannelType::Telegram | ChannelType::Messenger => AddressKind::Identity(self.as_str()),
        }
    }
}

impl fmt::Display for ChannelType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ChannelType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ChannelType::parse(s).ok_or_else(|| format!("must be one of {}", CHANNEL_TYPES.join(", ")))
    }
}

const NAMES: [&str; ChannelType::ALL.len()] = {
    let mut names = [""; ChannelType::ALL.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = ChannelType::ALL[i].as_str();
        i += 1;
    }
    names
};

/// The names of every channel type, in [`ChannelType::ALL`]'s order (list-filter whitelists, messages).
pub const CHANNEL_TYPES: &[&str] = &NAMES;

pub fn is_channel_type(s: &str) -> bool {
    ChannelType::parse(s).is_some()
}

/// Where a contact is reached on a channel type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressKind {
    Phone,
    Email,
    /// `channel_identities.<type>`
    Identity(&'static str),
}

/// The address kind of a channel type's name (`None` for a name that is no channel type).
pub fn address_kind(channel_type: &str) -> Option<AddressKind> {
    ChannelType::parse(channel_type).map(ChannelType::address_kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_serialise_as_stored() {
        assert_eq!(CHANNEL_TYPES, ["sms", "smpp", "telegram", "whatsapp", "messenger", "email", "sandbox"]);
        for t in ChannelType::ALL {
            assert_eq!(ChannelType::parse(t.as_str()), Some(t));
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
            assert_eq!(t.as_str().parse::<ChannelType>(), Ok(t));
        }
        assert!(ChannelType::parse("fax").is_none() && !is_channel_type("SMS"));
        assert!("fax".parse::<ChannelType>().unwrap_err().contains("sms, smpp"));
    }

    #[test]
    fn each_type_knows_where_a_contact_is_reached() {
        assert_eq!(address_kind("whatsapp"), Some(AddressKind::Phone));
        assert_eq!(address_kind("sandbox"), Some(AddressKind::Phone));
        assert_eq!(address_kind("email"), Some(AddressKind::Email));
        assert_eq!(address_kind("telegram"), Some(AddressKind::Identity("telegram")));
        assert_eq!(ChannelType::Messenger.address_kind(), AddressKind::Identity("messenger"));
        assert_eq!(address_kind("fax"), None);
    }
}
