//! sea-orm entities of the accounts module. Other modules never use these: they go through the facade.

pub mod account;
pub mod audit_log;
pub mod auth_code;
pub mod invitation;
pub mod login_failure;
pub mod membership;
pub mod refresh_token;
pub mod role;
pub mod user;
