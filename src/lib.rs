//! Turumba: multi-tenant message automation in one binary. This file only wires the crate together.
//!
//! Where things live, floor by floor (a file imports only from its own floor or below;
//! `tests/architecture.rs` keeps it so):
//!
//! | folder | floor | job |
//! |---|---|---|
//! | `main.rs`, `cli.rs`, `bin/` | top | the `turumba` command line and the load generator; hand over to `app` |
//! | `app/` | composition root | builds every facade, registers routes, consumers and process roles, serves the operations endpoints and the merged OpenAPI document |
//! | `modules/<name>/` | modules | one domain each: `mod.rs` is its facade (the only door other modules use), `service.rs` its rules, `store.rs` its queries, `api/` its HTTP handlers and DTOs |
//! | `http/` | toolkit | envelopes, the `AppError` → response mapping, extractors, middleware; imports no module |
//! | `error.rs`, `db/`, `domain/`, `config.rs`, `secret.rs`, `mail.rs` | kernel | the error type, connections and the list query language, parsed domain types (phones, e-mails, channel types), settings, keys and constant-time compares, system e-mail; import nothing of ours above them |
//!
//! Between modules: `accounts` → `events`; `contacts`, `channels` → `accounts`, `events`; `events` →
//! kernel only; nothing depends on `messaging`. Only a module's `api` files use the `http` toolkit.

pub mod app;
pub mod cli;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod http;
pub mod mail;
pub mod modules;
pub mod secret;
