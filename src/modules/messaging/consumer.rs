//! The status and inbound consumer (roles `dispatcher`, `worker`, `all`): every `webhook.inbound.<type>`
//! event — one item of a provider webhook, an SMPP `deliver_sm` or a polled mail — is either a
//! delivery status ([`super::receipts`]) or a message from a contact ([`super::inbound`]). The item's
//! effects, its inbox row's progress (`processed` with its last item) and the events it causes are
//! written in the consumer's one transaction, which the event framework makes run once per event.

use async_trait::async_trait;
use chrono::Utc;
use sea_orm::DatabaseTransaction;
use serde::Deserialize;
use uuid::Uuid;

use super::inbound::Inbound;
use super::receipts::{self, Receipt};
use super::service::Messaging;
use crate::domain::channel_type::ChannelType;
use crate::error::AppError;
use crate::modules::channels::WebhookItem;
use crate::modules::events::{Consumer, EventBus, EventEnvelope, EventMeta, HandlerError, SharedConsumer};

/// How long a receipt may wait for its send to be recorded before it is dropped.
pub const PARKED_RECEIPT_DAYS: i64 = 7;

/// One webhook item as the inbox emitted it.
#[derive(Debug, Deserialize)]
struct ItemEvent {
    inbox_id: Uuid,
    channel_id: Uuid,
    channel_type: String,
    item: WebhookItem,
}

/// The durable queues of messaging's consumers (each named after its consumer).
pub const WEBHOOK_ITEMS_QUEUE: &str = "messaging.webhook_items";
pub const ACCOUNT_ACTIVATED_QUEUE: &str = "messaging.account_activated";
pub const DISPATCH_DOORBELL_QUEUE: &str = "messaging.dispatch_doorbell";
pub const FANOUT_DOORBELL_QUEUE: &str = "messaging.fanout_doorbell";
pub const SCHEDULE_DOORBELL_QUEUE: &str = "messaging.schedule_doorbell";
/// All of them, for tearing a broker's topology down (`Amqp::delete_topology`).
pub const QUEUES: [&str; 5] = [
    WEBHOOK_ITEMS_QUEUE,
    ACCOUNT_ACTIVATED_QUEUE,
    DISPATCH_DOORBELL_QUEUE,
    FANOUT_DOORBELL_QUEUE,
    SCHEDULE_DOORBELL_QUEUE,
];

pub struct WebhookItems {
    messaging: Messaging,
}

impl Messaging {
    /// The consumers messaging runs in the dispatcher roles: webhook items, and with a broker the
    /// dispatch and fan-out doorbells (in one process a send wakes the dispatcher, a queued group
    /// message the fan-out, directly).
    pub fn consumers(&self) -> Vec<SharedConsumer> {
        let mut consumers: Vec<SharedConsumer> = vec![
            std::sync::Arc::new(WebhookItems { messaging: self.clone() }),
            std::sync::Arc::new(Activated {
                wakes: [self.dispatch_wake.clone(), self.fanout_wake.clone(), self.schedule_wake.clone()],
            }),
        ];
        if self.events.amqp().is_some() {
            consumers.push(std::sync::Arc::new(Doorbell {
                name: DISPATCH_DOORBELL_QUEUE,
                binding: "message.dispatch.*",
                wake: self.dispatch_wake.clone(),
            }));
            consumers.push(std::sync::Arc::new(Doorbell {
                name: FANOUT_DOORBELL_QUEUE,
                binding: "group_message.queued",
                wake: self.fanout_wake.clone(),
            }));
        }
        consumers
    }

    /// The consumers of the scheduler roles: with a broker, the doorbell that a schedule created or
    /// edited in another process rings (in one process the change wakes the scheduler directly).
    pub fn scheduler_consumers(&self) -> Vec<SharedConsumer> {
        match self.events.amqp() {
            Some(_) => vec![std::sync::Arc::new(Doorbell {
                name: SCHEDULE_DOORBELL_QUEUE,
                binding: "scheduled_message.changed",
                wake: self.schedule_wake.clone(),
            })],
            None => Vec::new(),
        }
    }
}

/// Wakes a loop of this process when another process changed its work: `message.dispatch.<type>` rings
/// the dispatcher (a send was queued), `scheduled_message.changed` the scheduler (a schedule was created
/// or edited). The tables stay the queues (a pass takes whatever is due), so a lost or repeated ring
/// costs nothing but a pass.
pub struct Doorbell {
    name: &'static str,
    binding: &'static str,
    wake: std::sync::Arc<tokio::sync::Notify>,
}

#[async_trait]
impl Consumer for Doorbell {
    fn name(&self) -> &str {
        self.name
    }

    fn bindings(&self) -> Vec<String> {
        vec![self.binding.into()]
    }

    async fn handle(&self, _txn: &DatabaseTransaction, _event: &EventEnvelope) -> Result<(), HandlerError> {
        self.wake.notify_one();
        Ok(())
    }

    /// Rings touch no table: take them a thousand at a time.
    fn batch_size(&self) -> usize {
        crate::modules::events::MAX_BATCH
    }
}

/// An account became active again (`account.activated`): its queued messages, group sends and due
/// schedules wait no longer, so the loops of this process look now. (A process that runs only the
/// scheduler looks within its idle poll.)
pub struct Activated {
    wakes: [std::sync::Arc<tokio::sync::Notify>; 3],
}

#[async_trait]
impl Consumer for Activated {
    fn name(&self) -> &str {
        ACCOUNT_ACTIVATED_QUEUE
    }

    fn bindings(&self) -> Vec<String> {
        vec!["account.activated".into()]
    }

    async fn handle(&self, _txn: &DatabaseTransaction, _event: &EventEnvelope) -> Result<(), HandlerError> {
        for wake in &self.wakes {
            wake.notify_one();
        }
        Ok(())
    }
}

fn handler_error(e: AppError) -> HandlerError {
    match e {
        // A concurrent writer (the same new sender in two messages at once): the next try finds it.
        AppError::Conflict { message, .. } => HandlerError::Transient(message),
        AppError::Validation(errors) => HandlerError::Permanent(format!("invalid webhook item: {errors:?}")),
        e => HandlerError::Transient(e.to_string()),
    }
}

#[async_trait]
impl Consumer for WebhookItems {
    fn name(&self) -> &str {
        WEBHOOK_ITEMS_QUEUE
    }

    fn bindings(&self) -> Vec<String> {
        vec!["webhook.inbound.*".into()]
    }

    async fn handle(&self, txn: &DatabaseTransaction, event: &EventEnvelope) -> Result<(), HandlerError> {
        let e: ItemEvent = serde_json::from_value(event.data.clone())
            .map_err(|err| HandlerError::Permanent(format!("unreadable webhook item: {err}")))?;
        let Some(account_id) = event.account_id else {
            return Err(HandlerError::Permanent("a webhook item without an account".into()));
        };
        let channel_type = ChannelType::parse(&e.channel_type)
            .ok_or_else(|| HandlerError::Permanent(format!("unknown channel type `{}`", e.channel_type)))?;
        let m = &self.messaging;
        // Every read goes through the handler's transaction: no second pooled connection while it holds one.
        let scope = match m.accounts.operator_scope_in(txn, account_id).await {
            Ok(scope) => scope,
            // The account was deleted since: its messages and inbox went with it.
            Err(AppError::NotFound(_)) => return Ok(()),
            Err(err) => return Err(handler_error(err)),
        };
        let meta = EventMeta { user_id: None, request_id: event.request_id.clone(), ip: None };
        let mut bus = EventBus::new(meta);
        match e.item {
            WebhookItem::Status { provider_message_id, status, error, at, .. } => {
                let r = Receipt { channel_id: e.channel_id, provider_message_id, status, error, at };
                receipts::apply(txn, &mut bus, scope, &r).await.map_err(handler_error)?;
            }
            WebhookItem::Inbound { provider_message_id, from, from_name, text, received_at, .. } => {
                let i = Inbound {
                    channel_id: e.channel_id,
                    channel_type,
                    provider_message_id,
                    from,
                    from_name,
                    text,
                    at: received_at.map(|t| t.min(Utc::now())),
                };
                m.receive(txn, &mut bus, scope, i).await.map_err(handler_error)?;
            }
        }
        m.channels.inbox_item_processed(txn, scope, e.inbox_id).await.map_err(handler_error)?;
        bus.flush(txn).await?;
        // Wakes this process's relay for the events just written: in-process, the relay waits for this
        // handler's commit before its next pass; elsewhere PostgreSQL's NOTIFY or the poll finds them.
        m.events.committed();
        Ok(())
    }
}
