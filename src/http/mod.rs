//! The HTTP toolkit the modules' `api` files and the composition root use: success envelopes, the
//! response mapping of [`crate::error::AppError`], the list-query extractor, middleware (request id,
//! tracing span, metrics, error-body normalisation), body/path/query configuration and the OpenAPI
//! helpers. It sits on the kernel and imports no module: the operations endpoints and the merged OpenAPI
//! document are assembled by the composition root (`app/`).

pub mod envelope;
pub mod error;
mod json;
pub mod limits;
pub mod list;
pub mod openapi;
pub mod wire;

pub use json::{Json, from_object_slice};

use std::sync::OnceLock;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::{ErrorHandlerResponse, Next};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde_json::json;
use tracing::Instrument;

use crate::error::AppError;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request id (from `X-Request-Id` or generated), stored in request extensions by [`observe`].
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// This request's id ("" outside the [`observe`] middleware).
pub fn request_id(req: &HttpRequest) -> String {
    req.extensions().get::<RequestId>().map(|r| r.0.clone()).unwrap_or_default()
}

/// The process-wide Prometheus recorder (installed once, shared by every app in the process).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_seconds".into()),
                    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0],
                )
                .expect("bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            // A recorder set by someone else (another test harness) still leaves us a working handle.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Request id, tracing span, access log line and request metrics for every request.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.chars().all(|c| c.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = req.method().to_string();
    let path = req.path().to_string();
    let span = tracing::info_span!("http", request_id = %id, method = %method, path = %path, account_id = tracing::field::Empty);
    let mut res = next.call(req).instrument(span.clone()).await?;
    // After routing the request knows the resource it matched: its pattern is a lookup, not a second
    // walk of the routes.
    let route = res.request().match_pattern().unwrap_or_else(|| "unmatched".into());
    let status = res.status().as_u16();
    let elapsed = started.elapsed();
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID, v);
    }
    metrics::counter!("http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status.to_string()).increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
        .record(elapsed.as_secs_f64());
    span.in_scope(|| tracing::debug!(status, elapsed_ms = elapsed.as_secs_f64() * 1000.0, "request finished"));
    Ok(res)
}

/// Replaces actix's plain-text error bodies (unknown route, wrong method, overflow, …) with the SPEC
/// error envelope. Bodies that are already JSON pass through untouched.
pub fn normalise_error<B>(res: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let (code, message) = match status {
        StatusCode::NOT_FOUND => ("not_found", "no such resource".to_string()),
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "this method is not allowed on this path".to_string()),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "request body is too large".to_string()),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ("bad_request", "unsupported content type; send application/json".to_string())
        }
        s if s.is_client_error() => ("bad_request", s.canonical_reason().unwrap_or("bad request").to_string()),
        _ => ("internal_error", "an internal error occurred; it has been logged".to_string()),
    };
    let (req, old) = res.into_parts();
    let mut new = HttpResponse::build(status);
    for (k, v) in old.headers() {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            new.insert_header((k.clone(), v.clone()));
        }
    }
    let new = new.json(json!({ "success": false, "error": code, "message": message, "details": {} }));
    Ok(ErrorHandlerResponse::Response(ServiceResponse::new(req, new).map_into_right_body()))
}

/// JSON body errors: syntax → 400, wrong shape (missing field, wrong type) → 422, too big → 413.
pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default().limit(limit).error_handler(move |err, _req| {
        use actix_web::error::JsonPayloadError as E;
        let app = match &err {
            E::OverflowKnownLength { .. } | E::Overflow { .. } => AppError::PayloadTooLarge { limit },
            E::ContentType => AppError::bad_request("expected Content-Type: application/json"),
            E::Deserialize(e) if e.is_data() => AppError::field(data_error_field(&e.to_string()), e.to_string()),
            E::Deserialize(e) => AppError::bad_request(format!("malformed JSON: {e}")),
            other => AppError::bad_request(format!("unreadable body: {other}")),
        };
        app.into()
    })
}

/// Best effort: serde names the field in "missing field `x`" / "unknown field `x`".
pub(crate) fn data_error_field(message: &str) -> String {
    message.split('`').nth(1).filter(|_| message.contains("field")).unwrap_or("body").to_string()
}

/// Deserialises a present field (even `null`) as `Some(...)`, so PATCH can tell "absent" from "null".
/// Use with `#[serde(default, deserialize_with = "crate::http::patch")]` on an `Option<Option<T>>`.
pub fn patch<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    use serde::Deserialize;
    Option::<T>::deserialize(d).map(Some)
}

pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|_, _| AppError::NotFound("resource").into())
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err, _| AppError::bad_request(err.to_string()).into())
}

pub async fn not_found(_req: HttpRequest) -> Result<HttpResponse, AppError> {
    Err(AppError::NotFound("route"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_errors_name_their_field() {
        assert_eq!(data_error_field("missing field `email` at line 1 column 2"), "email");
        assert_eq!(data_error_field("invalid type: string, expected u32"), "body");
    }
}
