//! The HTTP side of the contacts module: one file per resource (`contacts`, `tags`, `groups`, `segments`,
//! `imports`, `export`), each with its DTOs, handlers and `configure`.

pub(super) mod contacts;
pub(super) mod export;
pub(super) mod groups;
pub(super) mod imports;
pub(super) mod segments;
pub(super) mod tags;

use actix_web::web;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;
use validator::Validate;

/// `Option<Option<T>>`: absent = leave alone, `null` = clear, a value = set.
pub(super) type Patch<T> = Option<Option<T>>;

/// `contact_ids` or `filter` (a string or an array of strings in the list filter syntax), not both.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactTargetRequest {
    pub contact_ids: Option<Vec<Uuid>>,
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Value>,
}

impl ContactTargetRequest {
    /// The contacts it names, as the service takes them.
    pub(super) fn target(&self) -> crate::modules::contacts::service::Target<'_> {
        crate::modules::contacts::service::Target {
            contact_ids: self.contact_ids.as_deref(),
            filter: self.filter.as_ref(),
        }
    }
}

/// Routes: `/v1/contacts*`, `/v1/tags*`, `/v1/groups*`, `/v1/segments*`. Literal paths first:
/// `/v1/contacts/import` and `/v1/contacts/export` must not be read as contact ids.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/v1/contacts")
            .route(web::get().to(contacts::list_contacts))
            .route(web::post().to(contacts::create_contact)),
    );
    imports::configure(cfg);
    export::configure(cfg);
    contacts::configure(cfg);
    tags::configure(cfg);
    groups::configure(cfg);
    segments::configure(cfg);
}
