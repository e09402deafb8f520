//! The event envelope of SPEC §7 and topic routing-key matching.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Who caused an event (copied into every envelope emitted while serving one request or job).
#[derive(Debug, Clone, Default)]
pub struct EventMeta {
    pub user_id: Option<Uuid>,
    pub request_id: Option<String>,
    /// The client address of the HTTP request (only requests set it; their writes are audited).
    pub ip: Option<String>,
}

impl EventMeta {
    /// The same actor and request for work that outlives the request (a background job): its writes
    /// are not the request's and get no audit entry of their own.
    pub fn for_job(&self) -> EventMeta {
        EventMeta { ip: None, ..self.clone() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EventEnvelope {
    pub event_id: Uuid,
    pub event_type: String,
    pub aggregate_type: String,
    pub aggregate_id: Uuid,
    pub account_id: Option<Uuid>,
    pub occurred_at: DateTime<Utc>,
    pub user_id: Option<Uuid>,
    pub request_id: Option<String>,
    pub data: Value,
}

impl EventEnvelope {
    pub fn new(
        meta: &EventMeta,
        event_type: impl Into<String>,
        aggregate_type: impl Into<String>,
        aggregate_id: Uuid,
        account_id: Option<Uuid>,
        data: Value,
    ) -> Self {
        EventEnvelope {
            event_id: Uuid::now_v7(),
            event_type: event_type.into(),
            aggregate_type: aggregate_type.into(),
            aggregate_id,
            account_id,
            occurred_at: Utc::now(),
            user_id: meta.user_id,
            request_id: meta.request_id.clone(),
            data,
        }
    }
}

/// AMQP topic semantics: words split on `.`, `*` matches one word, `#` zero or more.
pub fn topic_matches(pattern: &str, key: &str) -> bool {
    fn go(p: &[&str], k: &[&str]) -> bool {
        match p.split_first() {
            None => k.is_empty(),
            Some((&"#", rest)) => (0..=k.len()).any(|i| go(rest, &k[i..])),
            Some((&w, rest)) => match k.split_first() {
                Some((&kw, krest)) => (w == "*" || w == kw) && go(rest, krest),
                None => false,
            },
        }
    }
    let p: Vec<&str> = pattern.split('.').collect();
    let k: Vec<&str> = key.split('.').collect();
    go(&p, &k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_patterns_match_like_rabbitmq() {
        assert!(topic_matches("#", "account.created"));
        assert!(topic_matches("account.*", "account.created"));
        assert!(!topic_matches("account.*", "account.created.extra"));
        assert!(topic_matches("message.dispatch.sms", "message.dispatch.sms"));
        assert!(!topic_matches("message.dispatch.sms", "message.dispatch.smpp"));
        assert!(topic_matches("message.#", "message.status.delivered"));
        assert!(topic_matches("message.#", "message"));
        assert!(topic_matches("*.created", "role.created"));
        assert!(!topic_matches("*.created", "role.updated"));
        assert!(topic_matches("#.created", "a.b.created"));
    }

    #[test]
    fn envelopes_round_trip_as_json() {
        let meta = EventMeta { user_id: Some(Uuid::now_v7()), request_id: Some("r1".into()), ip: None };
        let e = EventEnvelope::new(
            &meta,
            "role.created",
            "role",
            Uuid::now_v7(),
            Some(Uuid::now_v7()),
            serde_json::json!({"name": "x"}),
        );
        let back: EventEnvelope = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.request_id.as_deref(), Some("r1"));
    }
}
