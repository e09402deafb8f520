//! The permission catalogue of SPEC §3.2 and the system roles every account is created with.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::error::{AppError, FieldError};

pub const CATALOGUE: &[&str] = &[
    "accounts:read",
    "accounts:manage",
    "members:manage",
    "roles:manage",
    "contacts:read",
    "contacts:write",
    "contacts:import",
    "contacts:export",
    "channels:read",
    "channels:manage",
    "templates:read",
    "templates:manage",
    "messages:read",
    "messages:send",
    "group_messages:send",
    "scheduled_messages:manage",
    "reports:read",
    "audit:read",
    "webhooks:manage",
    "automations:manage",
];

/// The wildcard that grants everything.
pub const ALL: &str = "*";

pub const ADMIN_ROLE: &str = "admin";

/// A resolved permission set: `{"perm": true, ...}` or `{"*": true}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions(BTreeMap<String, bool>);

impl Permissions {
    pub fn from_json(value: &Value) -> Self {
        let mut map = BTreeMap::new();
        if let Some(obj) = value.as_object() {
            for (k, v) in obj {
                if let Some(b) = v.as_bool() {
                    map.insert(k.clone(), b);
                }
            }
        }
        Permissions(map)
    }

    pub fn has(&self, permission: &str) -> bool {
        self.0.get(ALL).copied().unwrap_or(false) || self.0.get(permission).copied().unwrap_or(false)
    }

    pub fn to_json(&self) -> Value {
        Value::Object(self.0.iter().map(|(k, v)| (k.clone(), Value::Bool(*v))).collect::<Map<_, _>>())
    }
}

/// Checks a client-supplied permission object: keys from the catalogue (or `*`), boolean values.
pub fn validate(value: &Value, field: &str) -> Result<Value, AppError> {
    let obj = value.as_object().ok_or_else(|| AppError::field(field, "must be an object of permission -> boolean"))?;
    let mut errors = Vec::new();
    for (k, v) in obj {
        if k != ALL && !CATALOGUE.contains(&k.as_str()) {
            errors.push(FieldError::new(format!("{field}.{k}"), "unknown permission"));
        } else if !v.is_boolean() {
            errors.push(FieldError::new(format!("{field}.{k}"), "must be true or false"));
        }
    }
    if errors.is_empty() { Ok(value.clone()) } else { Err(AppError::Validation(errors)) }
}

/// `(name, description, permissions)` of the system roles.
pub fn system_roles() -> Vec<(&'static str, &'static str, Value)> {
    let reads: Vec<&str> = CATALOGUE.iter().copied().filter(|p| p.ends_with(":read")).collect();
    let mut agent: Map<String, Value> = reads.iter().map(|p| (p.to_string(), Value::Bool(true))).collect();
    for p in ["contacts:write", "messages:send", "group_messages:send", "scheduled_messages:manage", "templates:manage"]
    {
        agent.insert(p.to_string(), Value::Bool(true));
    }
    let viewer: Map<String, Value> = reads.iter().map(|p| (p.to_string(), Value::Bool(true))).collect();
    vec![
        (ADMIN_ROLE, "Full access to the account", json!({ ALL: true })),
        ("agent", "Reads everything; manages contacts, templates and sends messages", Value::Object(agent)),
        ("viewer", "Read-only access", Value::Object(viewer)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_grants_everything() {
        let p = Permissions::from_json(&json!({"*": true}));
        assert!(CATALOGUE.iter().all(|c| p.has(c)));
    }

    #[test]
    fn system_roles_match_the_spec() {
        let roles = system_roles();
        let agent = Permissions::from_json(&roles[1].2);
        assert!(agent.has("contacts:read") && agent.has("audit:read") && agent.has("messages:send"));
        assert!(!agent.has("members:manage") && !agent.has("channels:manage") && !agent.has("contacts:import"));
        let viewer = Permissions::from_json(&roles[2].2);
        assert!(viewer.has("reports:read") && !viewer.has("contacts:write"));
    }

    #[test]
    fn unknown_permissions_and_non_booleans_are_rejected() {
        assert!(validate(&json!({"contacts:read": true}), "permissions").is_ok());
        match validate(&json!({"contacts:fly": true, "roles:manage": "yes"}), "permissions") {
            Err(AppError::Validation(errs)) => {
                assert_eq!(errs.len(), 2);
                assert!(errs.iter().any(|e| e.field == "permissions.contacts:fly"));
            }
            other => panic!("{other:?}"),
        }
        assert!(validate(&json!(["contacts:read"]), "permissions").is_err());
    }
}
