//! Contacts (SPEC §4): contacts with custom attributes, tags, groups (exact member counts), segments
//! (saved filters), CSV import jobs and streamed CSV export, and the [`Directory`] facade that messaging
//! uses to resolve recipients in batches and to find or create inbound senders.
//!
//! Public facade: [`Contacts`] (the service behind the API and the CLI), [`Directory`] and its types,
//! the import and export types the CLI drives, the phone helpers, [`configure`] and [`ApiDoc`].
//! Everything takes an [`AccountScope`](crate::modules::accounts::AccountScope): there is no unscoped
//! query.
//!
//! Inside: `service` (contacts) beside `tags`, `groups`, `segments` and `input`, `filter` (the contact filter language),
//! `normalise` (phones, e-mails, attributes), `import/` (reader, batch writer, job store), `export`,
//! `directory`, `store` (every other query), `api/` (one file per resource).

mod api;
mod audience;
mod directory;
mod entity;
mod export;
mod filter;
mod groups;
mod import;
mod input;
mod normalise;
mod segments;
mod service;
mod store;
mod tags;

pub use api::configure;
pub use audience::{AudienceStream, RecipientStream};
pub use directory::{Audience, Directory, DirectoryContact, InboundContact, InboundSender, Reach, Recipient};
pub use export::{ExportSelection, export_to};
pub use import::{BATCH_ROWS, ImportOptions, OnDuplicate, Progress, check_header as check_import_header};
pub use normalise::normalise_phone;
pub use service::{ContactInput, Contacts, ImportUploads};

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    api::contacts::list_contacts,
    api::contacts::create_contact,
    api::contacts::get_contact,
    api::contacts::update_contact,
    api::contacts::delete_contact,
    api::contacts::add_contact_tags,
    api::contacts::remove_contact_tag,
    api::imports::start_import,
    api::imports::list_imports,
    api::imports::get_import,
    api::export::export_contacts,
    api::tags::list_tags,
    api::tags::create_tag,
    api::tags::get_tag,
    api::tags::update_tag,
    api::tags::delete_tag,
    api::tags::tag_contacts,
    api::tags::untag_contacts,
    api::groups::list_groups,
    api::groups::create_group,
    api::groups::get_group,
    api::groups::update_group,
    api::groups::delete_group,
    api::groups::list_group_contacts,
    api::groups::add_group_contacts,
    api::groups::remove_group_contacts,
    api::segments::list_segments,
    api::segments::create_segment,
    api::segments::get_segment,
    api::segments::update_segment,
    api::segments::delete_segment,
    api::segments::list_segment_contacts,
    api::segments::count_segment,
))]
pub struct ApiDoc;
