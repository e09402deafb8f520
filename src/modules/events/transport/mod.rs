//! Transports move published events to consumers, at least once, acknowledging only after handling.
//!
//! - [`InProcess`]: `--role=all` without `AMQP_URL`; bounded queues, `publish` returns once every
//!   matching consumer has handled (or dead-lettered) the event.
//! - [`Amqp`]: RabbitMQ through lapin, with publisher confirms and `mandatory`.

mod amqp;
mod in_process;

use async_trait::async_trait;

pub use amqp::Amqp;
pub use in_process::InProcess;

use super::envelope::EventEnvelope;

/// Nothing could be published: the broker is unreachable. The relay waits and tries again without
/// counting an attempt against the events.
#[derive(Debug, Clone)]
pub struct Unavailable(pub String);

#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Publishes a batch. `Ok` holds one outcome per event (an `Err` there is the event's own problem:
    /// unroutable, nacked); `Err(Unavailable)` means the transport could not take the batch at all.
    async fn publish(&self, events: &[EventEnvelope]) -> Result<Vec<Result<(), String>>, Unavailable>;
    /// Readiness: can the transport reach its broker right now?
    async fn check(&self) -> Result<(), String>;
    fn name(&self) -> &'static str;
}
