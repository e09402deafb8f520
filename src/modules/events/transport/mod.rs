//! Transports move published events to consumers, at least once, acknowledging only after handling.
//!
//! - [`InProcess`]: `--role=all` without `AMQP_URL`; bounded queues, a batch's confirms resolve once
//!   every matching consumer has handled (or dead-lettered) its events.
//! - [`Amqp`]: RabbitMQ through lapin, with publisher confirms and `mandatory`.
//!
//! Publishing has two phases: [`Transport::send`] hands a batch over in order and returns its
//! [`Confirms`] without waiting for them, so the relay can claim and send the events that commit in
//! the meantime instead of holding them until the broker answered for the batch before.

mod amqp;
mod in_process;

use async_trait::async_trait;
use futures_util::future::BoxFuture;

pub use amqp::Amqp;
pub use in_process::InProcess;

use super::envelope::EventEnvelope;

/// Nothing could be published: the broker is unreachable. The relay waits and tries again without
/// counting an attempt against the events.
#[derive(Debug, Clone)]
pub struct Unavailable(pub String);

/// One outcome per event of a batch, in the batch's order (an `Err` there is the event's own problem:
/// unroutable, nacked); `Err(Unavailable)` means the transport could not take the batch at all.
pub type Outcomes = Result<Vec<Result<(), String>>, Unavailable>;

/// The confirms of a batch already handed to the transport; resolves to its [`Outcomes`].
pub type Confirms = BoxFuture<'static, Outcomes>;

#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Hands a batch to the transport, in order, and returns its confirms without awaiting them.
    /// Batches sent one after another are delivered in that order. `Err` means nothing of the batch
    /// could be handed over.
    async fn send(&self, events: &[EventEnvelope]) -> Result<Confirms, Unavailable>;
    /// Sends a batch and waits for its confirms.
    async fn publish(&self, events: &[EventEnvelope]) -> Outcomes {
        self.send(events).await?.await
    }
    /// Readiness: can the transport reach its broker right now?
    async fn check(&self) -> Result<(), String>;
    fn name(&self) -> &'static str;
    /// How many batches a PostgreSQL relay may keep awaiting their confirms, each in an open transaction
    /// (a pooled connection). A broker confirms on its own, so several overlap its round trips.
    fn max_in_flight(&self) -> usize {
        4
    }
}
