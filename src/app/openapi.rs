//! The OpenAPI document: the operations endpoints and the shared schemas here, merged with every
//! module's `ApiDoc` (each generated from its handlers' annotations); served at `/v1/openapi.json`, with
//! the interactive docs at `/docs`.

use std::sync::OnceLock;

use actix_web::{HttpResponse, web};
use utoipa::OpenApi;

use super::operations;
use crate::http::openapi::BearerAuth;
use crate::modules::{accounts, channels, contacts, messaging};

#[derive(OpenApi)]
#[openapi(
    info(title = "Turumba API", description = "Multi-tenant message automation. Every tenant resource lives in the active account: the `X-Account-Id` header selects it (default: the user's default or only account). Lists take `filter=field:op:value` (repeatable), `sort=field:asc|desc`, `skip` and `limit` (max 1000)."),
    paths(operations::healthz, operations::readyz, operations::metrics),
    components(schemas(crate::error::ErrorBody, crate::error::FieldError, crate::http::envelope::ListMeta)),
    modifiers(&BearerAuth),
    tags((name = "auth"), (name = "users"), (name = "accounts"), (name = "roles"), (name = "contacts"), (name = "tags"), (name = "groups"), (name = "segments"), (name = "channels"), (name = "webhooks"), (name = "templates"), (name = "messages"), (name = "group-messages"), (name = "scheduled-messages"), (name = "operations"))
)]
struct CoreDoc;

/// The whole document, as served.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = CoreDoc::openapi();
    doc.merge(accounts::ApiDoc::openapi());
    doc.merge(contacts::ApiDoc::openapi());
    doc.merge(channels::ApiDoc::openapi());
    doc.merge(messaging::ApiDoc::openapi());
    crate::http::openapi::declare_common_responses(&mut doc);
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc
}

fn json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        let mut doc = serde_json::to_value(document()).expect("the OpenAPI document serialises");
        crate::http::openapi::refine(&mut doc);
        doc.to_string()
    })
}

pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(json())
}

pub async fn docs() -> HttpResponse {
    static HTML: OnceLock<String> = OnceLock::new();
    let html = HTML.get_or_init(|| {
        let spec: serde_json::Value = serde_json::from_str(json()).unwrap_or_default();
        utoipa_scalar::Scalar::new(spec).to_html()
    });
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(html.as_str())
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/v1/openapi.json").route(web::get().to(openapi_json)))
        .service(web::resource("/docs").route(web::get().to(docs)));
}
