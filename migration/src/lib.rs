//! One migration set for SQLite and PostgreSQL. Rules learned the hard way (see ARCHITECTURE.md): declare
//! foreign keys inline in `create_table`, one ALTER operation per statement, type changes by table copy.

pub use sea_orm_migration::prelude::*;

mod m20261122_000001_identity;
mod m20261122_000002_events;
mod m20261122_000003_contacts;
mod m20261122_000004_channels;
mod m20261122_000005_channel_bind_leases;
mod m20261122_000006_sandbox_messages;
mod m20261128_000007_hardening;
mod m20261128_000008_templates;
mod m20261128_000009_messages;
mod m20261128_000010_dispatch;
mod m20261128_000011_rate_buckets;
mod m20261128_000012_receipts;
mod m20261128_000013_dispatch_indexes;
mod m20261128_000014_message_parts;
mod m20261128_000015_scheduled_messages;
mod m20261128_000016_group_messages;
mod m20261128_000017_held_webhooks;
mod m20261128_000018_invitations;
mod m20261128_000019_audit_logs;
mod m20261129_000020_identity_subject;
mod m20261129_000021_account_has_sub_accounts;
mod m20261129_000022_contacts_list_order;
mod m20261129_000023_contact_totals;
mod m20261130_000024_partial_message_indexes;
mod m20261130_000025_message_index_writes;
mod util;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_identity::Migration),
            Box::new(m20261122_000002_events::Migration),
            Box::new(m20261122_000003_contacts::Migration),
            Box::new(m20261122_000004_channels::Migration),
            Box::new(m20261122_000005_channel_bind_leases::Migration),
            Box::new(m20261122_000006_sandbox_messages::Migration),
            Box::new(m20261128_000007_hardening::Migration),
            Box::new(m20261128_000008_templates::Migration),
            Box::new(m20261128_000009_messages::Migration),
            Box::new(m20261128_000010_dispatch::Migration),
            Box::new(m20261128_000011_rate_buckets::Migration),
            Box::new(m20261128_000012_receipts::Migration),
            Box::new(m20261128_000013_dispatch_indexes::Migration),
            Box::new(m20261128_000014_message_parts::Migration),
            Box::new(m20261128_000015_scheduled_messages::Migration),
            Box::new(m20261128_000016_group_messages::Migration),
            Box::new(m20261128_000017_held_webhooks::Migration),
            Box::new(m20261128_000018_invitations::Migration),
            Box::new(m20261128_000019_audit_logs::Migration),
            Box::new(m20261129_000020_identity_subject::Migration),
            Box::new(m20261129_000021_account_has_sub_accounts::Migration),
            Box::new(m20261129_000022_contacts_list_order::Migration),
            Box::new(m20261129_000023_contact_totals::Migration),
            Box::new(m20261130_000024_partial_message_indexes::Migration),
            Box::new(m20261130_000025_message_index_writes::Migration),
        ]
    }
}
