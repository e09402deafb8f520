//! Events (not built yet; see issue 3): the request-scoped `EventBus`, the transactional outbox, the
//! relay, the `Transport` trait (in-process and RabbitMQ) and the consumer framework.
