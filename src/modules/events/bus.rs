//! `EventBus`: collects the domain events of one request (or job) and writes them to the outbox in the
//! same transaction as the change that caused them. Nothing is published outside a transaction.

use sea_orm::{ConnectionTrait, DbErr};
use serde_json::Value;
use uuid::Uuid;

use super::envelope::{EventEnvelope, EventMeta};
use super::outbox;

#[derive(Debug, Default)]
pub struct EventBus {
    meta: EventMeta,
    pending: Vec<EventEnvelope>,
    /// The state before the change, for the audit entry (set by services that update something).
    before: Option<Value>,
}

impl EventBus {
    pub fn new(meta: EventMeta) -> Self {
        EventBus { meta, pending: Vec::new(), before: None }
    }

    pub fn emit(
        &mut self,
        event_type: &str,
        aggregate_type: &str,
        aggregate_id: Uuid,
        account_id: Option<Uuid>,
        data: Value,
    ) {
        self.pending.push(EventEnvelope::new(&self.meta, event_type, aggregate_type, aggregate_id, account_id, data));
    }

    /// Records the state before this change (the resource as it was), for the audit log.
    pub fn before(&mut self, state: Value) {
        self.before = Some(state);
    }

    /// The audit entry of what this bus holds, if a request made it (see [`super::audit`]).
    pub fn audit_entry(&self) -> Option<super::audit::AuditEntry> {
        super::audit::entry_for(&self.meta, &self.pending, self.before.as_ref())
    }

    pub fn events(&self) -> &[EventEnvelope] {
        &self.pending
    }

    /// Writes the collected events into the outbox using the caller's transaction.
    pub async fn flush<C: ConnectionTrait>(&mut self, txn: &C) -> Result<(), DbErr> {
        let events = std::mem::take(&mut self.pending);
        outbox::insert_events(txn, &events).await
    }
}
