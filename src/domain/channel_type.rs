//! The channel types of SPEC §5, shared by contacts (addresses, opt-outs, preferred channel), channels,
//! events (a dispatch queue per type) and messaging. It lives outside the modules so none of them depends
//! on another for it. [`ChannelType`] is the one place where a type's name is written.

use std::str::FromStr;

crate::db::text_enum! {
    /// Every channel type a channel (and so a contact's address or opt-out) can have.
    pub enum ChannelType / CHANNEL_TYPES {
        Sms = "sms",
        Smpp = "smpp",
        Telegram = "telegram",
        Whatsapp = "whatsapp",
        Messenger = "messenger",
        Email = "email",
        Sandbox = "sandbox",
    }
}

impl ChannelType {
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

impl FromStr for ChannelType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ChannelType::parse(s).ok_or_else(|| format!("must be one of {}", CHANNEL_TYPES.join(", ")))
    }
}

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
        for t in ChannelType::ALL.iter().copied() {
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
