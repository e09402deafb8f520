//! Turumba: multi-tenant message automation in one binary. This file only wires the crate together.

pub mod app;
pub mod channel_type;
pub mod cli;
pub mod config;
pub mod db;
pub mod http;
pub mod mail;
pub mod modules;
pub mod secret;
