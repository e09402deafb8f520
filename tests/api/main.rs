//! Integration tests: the real app on a random port, spoken to over HTTP, on SQLite and on PostgreSQL.
//! Every test function runs once per backend (see `both_backends!`).

#[macro_use]
mod helpers;

mod accounts;
mod attachments;
mod audit;
mod auth;
mod channels;
mod cognito;
mod contacts;
mod contacts_import;
mod credential_scan;
mod db_script;
mod dispatch;
mod events;
mod fakes;
mod faults;
mod groups;
mod hardening;
mod http_surface;
mod invitations;
mod mail;
mod messages;
mod migrations;
mod processes;
mod providers;
mod query_plans;
mod receipts;
mod roles;
mod schedules;
mod smpp;
mod smsc;
mod sqlite_writer;
mod sub_accounts;
mod suspension;
mod templates;
mod tenancy;
mod tenant_matrix;
