//! Contacts (SPEC §4): contacts with custom attributes, tags, groups (exact member counts), segments
//! (saved filters), CSV import jobs and streamed CSV export, and the [`Directory`] facade that messaging
//! uses to resolve recipients in batches and to find or create inbound senders.
//!
//! Public facade: [`Contacts`] (the service behind the API and the CLI), [`Directory`], [`configure`],
//! [`ApiDoc`]. Everything takes an [`crate::http::ctx::AccountScope`]: there is no unscoped query.

mod api;
pub mod directory;
mod entity;
pub mod export;
mod filter;
pub mod import;
pub mod normalise;
mod service;
mod store;

pub use api::configure;
pub use directory::{Audience, Directory, DirectoryContact, Recipient, RecipientStream};
pub use import::{ImportOptions, OnDuplicate, Progress};
pub use service::{ContactInput, Contacts};

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    api::list_contacts,
    api::create_contact,
    api::get_contact,
    api::update_contact,
    api::delete_contact,
    api::add_contact_tags,
    api::remove_contact_tag,
    import::start_import,
    import::list_imports,
    import::get_import,
    export::export_contacts,
    api::list_tags,
    api::create_tag,
    api::get_tag,
    api::update_tag,
    api::delete_tag,
    api::tag_contacts,
    api::untag_contacts,
    api::list_groups,
    api::create_group,
    api::get_group,
    api::update_group,
    api::delete_group,
    api::list_group_contacts,
    api::add_group_contacts,
    api::remove_group_contacts,
    api::list_segments,
    api::create_segment,
    api::get_segment,
    api::update_segment,
    api::delete_segment,
    api::list_segment_contacts,
    api::count_segment,
))]
pub struct ApiDoc;
