//! OpenAPI helpers shared by every document: the bearer-token security scheme that the handlers'
//! `security(("bearer" = []))` annotations refer to, and the error answers every operation of a kind
//! can give. The document itself is assembled by the composition root (`app/`).

use utoipa::Modify;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};

/// Adds the `bearer` (JWT) security scheme.
pub struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

/// The error answers shared by many operations, as `components.responses` (name, status, meaning).
const COMMON: &[(&str, &str, &str)] = &[
    ("BadRequest", "400", "malformed JSON, a wrong content type, a bad list query, or no active account"),
    ("Unauthorized", "401", "no bearer token, or an invalid or expired one"),
    (
        "Forbidden",
        "403",
        "the role lacks the permission, `X-Account-Id` names another account, or the account is suspended",
    ),
    ("NotFound", "404", "no such resource in the active account (another tenant's id included)"),
    ("RequestTimeout", "408", "the request body arrived too slowly"),
    ("PayloadTooLarge", "413", "the request body is larger than the limit"),
    ("ValidationFailed", "422", "invalid fields, each named in `details.errors`"),
    ("ServiceUnavailable", "503", "the database or another backing service is unavailable; try again shortly"),
];

fn common_response(name: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::Ref(Ref::from_response_name(name))
}

/// Declares on every operation the error answers its kind can give, so that the document lists every
/// status an operation answers (a handler's own `responses(...)` stay as written): every `/v1` call
/// 400 and 503; with a bearer token 401 and 403; with a path parameter 404; with a request body 408 and
/// 413; with a body or parameters 422.
pub fn declare_common_responses(doc: &mut utoipa::openapi::OpenApi) {
    let components = doc.components.get_or_insert_with(Default::default);
    for (name, _, description) in COMMON {
        let body = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
        let response = ResponseBuilder::new().description(*description).content("application/json", body).build();
        components.responses.insert(name.to_string(), RefOr::T(response));
    }
    for (path, item) in doc.paths.paths.iter_mut() {
        let api = path.starts_with("/v1/");
        for op in
            [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete].into_iter().flatten()
        {
            let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
            let has_body = op.request_body.is_some();
            let has_params = op.parameters.as_ref().is_some_and(|p| !p.is_empty()) || path.contains('{');
            let wanted = [
                ("BadRequest", api),
                ("Unauthorized", secured),
                ("Forbidden", secured),
                ("NotFound", path.contains('{')),
                ("RequestTimeout", has_body),
                ("PayloadTooLarge", has_body),
                ("ValidationFailed", api && (has_body || has_params)),
                ("ServiceUnavailable", api),
            ];
            for (name, when) in wanted {
                let status = COMMON.iter().find(|c| c.0 == name).map(|c| c.1).unwrap_or_default();
                if when && !op.responses.responses.contains_key(status) {
                    op.responses.responses.insert(status.to_string(), common_response(name));
                }
            }
        }
    }
}

/// What no request string may hold: U+0000 (PostgreSQL cannot store it, so every body is refused
/// with one, 422 on `body`).
const NO_NUL: &str = r"^[^\u0000]*$";
/// `filter=field:op:value` (`value` absent for `is_null`/`is_not_null`).
const FILTER: &str = r"^[A-Za-z_][A-Za-z0-9_.]*:[a-z_]+(:[\s\S]*)?$";
/// `sort=field:asc|desc`.
const SORT: &str = r"^[A-Za-z_][A-Za-z0-9_.]*(:(asc|desc))?$";

/// Says in the served document what the handlers' annotations cannot: no string of a request may hold
/// U+0000 (a `pattern` on every string of a request body's schemas that has no pattern, format or enum
/// of its own), and the shape of the list parameters `filter` and `sort`.
pub fn refine(doc: &mut serde_json::Value) {
    fn forbid_nul(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                let is_string = match map.get("type") {
                    Some(serde_json::Value::String(t)) => t == "string",
                    Some(serde_json::Value::Array(types)) => types.iter().any(|t| t == "string"),
                    _ => false,
                };
                if is_string && !["pattern", "format", "enum", "const"].iter().any(|k| map.contains_key(*k)) {
                    map.insert("pattern".into(), NO_NUL.into());
                }
                map.values_mut().for_each(forbid_nul);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(forbid_nul),
            _ => {}
        }
    }
    // Request schemas only: an error message may quote a query parameter, NUL and all.
    fn refs(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                if let Some(r) = map.get("$ref").and_then(|r| r.as_str()) {
                    out.extend(r.strip_prefix("#/components/schemas/").map(str::to_string));
                }
                map.values().for_each(|c| refs(c, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|c| refs(c, out)),
            _ => {}
        }
    }
    let mut pending = Vec::new();
    if let Some(paths) = doc.get("paths").and_then(|p| p.as_object()) {
        for op in paths.values().filter_map(|i| i.as_object()).flat_map(|i| i.values()) {
            if let Some(body) = op.get("requestBody") {
                refs(body, &mut pending);
            }
        }
    }
    let mut request_schemas = std::collections::BTreeSet::new();
    while let Some(name) = pending.pop() {
        if request_schemas.insert(name.clone())
            && let Some(schema) = doc.pointer(&format!("/components/schemas/{name}"))
        {
            refs(schema, &mut pending);
        }
    }
    for name in request_schemas {
        if let Some(schema) = doc.pointer_mut(&format!("/components/schemas/{name}")) {
            forbid_nul(schema);
        }
    }
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else { return };
    for op in paths.values_mut().filter_map(|item| item.as_object_mut()).flat_map(|item| item.values_mut()) {
        let Some(params) = op.get_mut("parameters").and_then(|p| p.as_array_mut()) else { continue };
        for param in params.iter_mut().filter(|p| p["in"] == "query") {
            let (pattern, description) = match param["name"].as_str() {
                Some("filter") => (
                    FILTER,
                    "`field:op:value`, repeatable (SPEC §2); an unknown field or a value of the wrong type is 400",
                ),
                Some("sort") => (SORT, "`field:asc|desc`, repeatable"),
                _ => continue,
            };
            param["description"] = description.into();
            if let Some(items) = param.pointer_mut("/schema/items") {
                items["pattern"] = pattern.into();
            }
        }
    }
}
