//! The audit trail of writes (SPEC §3.2). Every write a request makes ends in [`super::Events::commit`]
//! with the events it emitted; the commit derives ONE [`AuditEntry`] from them — who (the request's
//! user and address), which account, the action (the first event's type), the resource, and the
//! change (its `before`, when the service gave one, and the events' data as `after`, secrets redacted)
//! — and hands it to the [`AuditLog`] in the same transaction, so an entry exists exactly when the
//! change does. The accounts module owns the table and plugs itself in at start
//! ([`super::Events::set_audit_log`]); this module only knows the interface, as it is below accounts.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DbBackend, DbErr, Statement};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::envelope::{EventEnvelope, EventMeta};

/// One audit log entry.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub account_id: Option<Uuid>,
    pub actor_id: Option<Uuid>,
    /// The first event's type, e.g. `channel.updated`.
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<Uuid>,
    /// `{"before": …, "after": …, "events": [...]}`, secrets redacted.
    pub changes: Value,
    pub request_id: Option<String>,
    pub ip: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Where audit entries go (the accounts module's `audit_logs`).
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// The statements that write the entries, run inside the transaction of the change they describe.
    fn statements(&self, backend: DbBackend, entries: Vec<AuditEntry>) -> Vec<Statement>;
    /// Deletes entries older than `older_than`; returns how many.
    async fn purge(&self, db: &DatabaseConnection, older_than: DateTime<Utc>) -> Result<u64, DbErr>;
}

/// Events listed in one entry at most (an import batch emits one per 500 rows; a request rarely more
/// than a few).
const MAX_LISTED: usize = 50;

/// The entry for the events one request committed: `None` for writes that no request made (a job, a
/// consumer, the command line: their meta carries no client address) or that emitted nothing.
pub fn entry_for(meta: &EventMeta, events: &[EventEnvelope], before: Option<&Value>) -> Option<AuditEntry> {
    let ip = meta.ip.clone()?;
    let first = events.first()?;
    let mut changes = Map::new();
    if let Some(before) = before {
        changes.insert("before".into(), redact(before));
    }
    changes.insert("after".into(), redact(&first.data));
    if events.len() > 1 {
        let listed: Vec<Value> = events
            .iter()
            .take(MAX_LISTED)
            .map(|e| json!({ "type": e.event_type, "resource_type": e.aggregate_type, "resource_id": e.aggregate_id }))
            .collect();
        changes.insert("events".into(), Value::Array(listed));
        changes.insert("event_count".into(), json!(events.len()));
    }
    Some(AuditEntry {
        account_id: first.account_id,
        actor_id: meta.user_id,
        action: first.event_type.clone(),
        resource_type: first.aggregate_type.clone(),
        resource_id: Some(first.aggregate_id),
        changes: Value::Object(changes),
        request_id: meta.request_id.clone(),
        ip: Some(ip),
        created_at: Utc::now(),
    })
}

/// Whether a key names a secret: its value is never written to the audit log.
fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "secret", "token", "credential", "api_key", "apikey", "private_key", "auth", "signature", "hash"]
        .iter()
        .any(|s| k.contains(s))
}

/// A copy of `v` with the value of every secret-named key replaced by `"[redacted]"`, at any depth
/// (flags and nulls stay: they hold no secret).
pub fn redact(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| match v {
                    // A flag or an absence says nothing secret (`credentials_changed: true`).
                    Value::Bool(_) | Value::Null => (k.clone(), v.clone()),
                    _ if is_secret(k) => (k.clone(), json!("[redacted]")),
                    _ => (k.clone(), redact(v)),
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_at_any_depth() {
        let v = json!({"name": "bot", "credentials": {"bot_token": "123:abc"}, "items": [{"password": "p", "n": 1}],
                       "auth_token": "t", "webhook_secret": "s", "phone": "+251911000001",
                       "credentials_changed": true, "password_hash": null});
        let r = redact(&v);
        assert_eq!(r["credentials"], "[redacted]");
        assert_eq!(r["items"][0], json!({"password": "[redacted]", "n": 1}));
        assert_eq!((r["auth_token"].clone(), r["webhook_secret"].clone()), (json!("[redacted]"), json!("[redacted]")));
        assert_eq!((r["name"].clone(), r["phone"].clone()), (json!("bot"), json!("+251911000001")));
        assert_eq!((r["credentials_changed"].clone(), r["password_hash"].clone()), (json!(true), json!(null)));
    }

    #[test]
    fn only_a_request_with_events_makes_an_entry() {
        let request =
            EventMeta { user_id: Some(Uuid::now_v7()), request_id: Some("r1".into()), ip: Some("10.0.0.1".into()) };
        let job = EventMeta { ip: None, ..request.clone() };
        let account = Some(Uuid::now_v7());
        let e = |t: &str| EventEnvelope::new(&request, t, "role", Uuid::now_v7(), account, json!({"name": "nurse"}));
        assert!(entry_for(&job, &[e("role.created")], None).is_none(), "no client address: not a request");
        assert!(entry_for(&request, &[], None).is_none(), "nothing happened");
        let one = entry_for(&request, &[e("role.updated")], Some(&json!({"name": "old"}))).unwrap();
        assert_eq!(
            (one.action.as_str(), one.account_id, one.ip.as_deref()),
            ("role.updated", account, Some("10.0.0.1"))
        );
        assert_eq!(one.changes, json!({"before": {"name": "old"}, "after": {"name": "nurse"}}));
        let two = entry_for(&request, &[e("a.x"), e("b.y")], None).unwrap();
        assert_eq!((two.action.as_str(), two.changes["event_count"].clone()), ("a.x", json!(2)));
    }
}
