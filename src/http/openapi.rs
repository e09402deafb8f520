//! The OpenAPI document, generated from the handlers' annotations, served at `/v1/openapi.json`, and
//! the interactive docs at `/docs`.

use std::sync::OnceLock;

use actix_web::HttpResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "Turumba API", description = "Multi-tenant message automation. Every tenant resource lives in the active account: the `X-Account-Id` header selects it (default: the user's default or only account). Lists take `filter=field:op:value` (repeatable), `sort=field:asc|desc`, `skip` and `limit` (max 1000)."),
    paths(super::healthz, super::readyz, super::metrics),
    components(schemas(super::error::ErrorBody, super::error::FieldError, super::envelope::ListMeta)),
    modifiers(&BearerAuth),
    tags((name = "auth"), (name = "users"), (name = "accounts"), (name = "roles"), (name = "contacts"), (name = "tags"), (name = "groups"), (name = "segments"), (name = "channels"), (name = "webhooks"), (name = "operations"))
)]
struct CoreDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = CoreDoc::openapi();
    doc.merge(crate::modules::accounts::ApiDoc::openapi());
    doc.merge(crate::modules::contacts::ApiDoc::openapi());
    doc.merge(crate::modules::channels::ApiDoc::openapi());
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc
}

fn json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| document().to_json().expect("the OpenAPI document serialises"))
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
