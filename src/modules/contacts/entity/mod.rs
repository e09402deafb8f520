//! sea-orm entities of the contacts module. Other modules never use these: they go through the facades
//! ([`super::Contacts`], [`super::Directory`]).

pub mod contact;
pub mod contact_identity;
pub mod contact_import;
pub mod contact_tag;
pub mod contact_total;
pub mod group;
pub mod group_member;
pub mod segment;
pub mod tag;
