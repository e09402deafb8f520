//! sea-orm entities of the channels module. Other modules never use these: they go through the facades
//! ([`super::Channels`], [`super::ChannelRegistry`]).

pub mod channel;
pub mod channel_usage;
pub mod sandbox_message;
pub mod webhook_inbox;
