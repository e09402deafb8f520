//! Messaging (SPEC §6): templates and their `{VARIABLE}` renderer, single messages and the history,
//! the dispatcher, delivery statuses and inbound messages; group messages with a resumable fan-out;
//! scheduled single sends with time-zone-aware recurrence (group schedules not yet). Depends on
//! accounts, contacts (through `Directory`), channels (through `ChannelRegistry`) and events; nothing
//! depends on it.
//!
//! Public facade: [`Messaging`], [`configure`] and [`ApiDoc`]; the renderer ([`Parsed`], [`Variables`],
//! [`Fallback`]) for benchmarks. Inside: `render` (parse once, render per recipient), `templates`
//! (template rules and preview), `messages` (sends, idempotency, history cursors), `intake` (accepted
//! sends written many per transaction), `groups` (group sends and previews), `fanout` (one message per
//! recipient), `group_store` (their queries and counters), `dispatch` (the dispatcher), `consumer`
//! (webhook items), `receipts` (delivery statuses, parked receipts), `inbound` (inbound messages,
//! opt-out keywords), `recurrence` (occurrences in a time zone), `schedules` (scheduled messages),
//! `scheduler` (fires them), `store` and `schedule_store` (queries), `entity/`, `api/`.
mod api;
mod consumer;
mod dispatch;
mod entity;
mod fanout;
mod group_store;
mod groups;
mod inbound;
mod intake;
mod messages;
mod receipts;
mod recurrence;
mod render;
mod schedule_store;
mod scheduler;
mod schedules;
mod service;
mod store;
mod templates;

pub use api::configure;
pub use consumer::QUEUES as CONSUMER_QUEUES;
pub use dispatch::{DispatchOptions, Dispatcher};
pub use fanout::{FANOUT_BATCH, FANOUT_LEASE_SECS};
pub use groups::NewGroupMessage;
pub use messages::NewMessage;
pub use recurrence::{Recurrence, Timing, time_zone};
pub use render::{Fallback, Parsed, Rendered, Variables, escape};
pub use scheduler::{IDLE_POLL, MISFIRE_GRACE_SECS};
pub use schedules::NewSchedule;
pub use service::{Messaging, MessagingParts};
pub use templates::{Attachment, Preview};

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    api::templates::list_templates,
    api::templates::create_template,
    api::templates::get_template,
    api::templates::update_template,
    api::templates::delete_template,
    api::templates::preview_template,
    api::messages::send_message,
    api::messages::list_messages,
    api::messages::get_message,
    api::messages::update_message,
    api::messages::delete_message,
    api::messages::contact_messages,
    api::groups::list_group_messages,
    api::groups::create_group_message,
    api::groups::preview_group_message,
    api::groups::get_group_message,
    api::groups::update_group_message,
    api::groups::delete_group_message,
    api::groups::list_skipped,
    api::groups::group_progress,
    api::schedules::list_schedules,
    api::schedules::create_schedule,
    api::schedules::get_schedule,
    api::schedules::update_schedule,
    api::schedules::delete_schedule,
    api::schedules::list_occurrences,
))]
pub struct ApiDoc;
