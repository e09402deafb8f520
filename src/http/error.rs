//! `AppError`: the one error type of the HTTP surface, mapped to the SPEC §2 error envelope
//! `{"success": false, "error": "<code>", "message": "...", "details": {...}}`.
//!
//! Internal causes are logged with the request id and never leaked to the client.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use sea_orm::DbErr;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

/// One field problem inside a 422 answer.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// The error envelope, as documented in OpenAPI.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Always `false`.
    pub success: bool,
    /// Stable snake_case code, e.g. `validation_error`.
    pub error: String,
    pub message: String,
    #[schema(value_type = Object)]
    pub details: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{message}")]
    Conflict { message: String, details: Value },
    #[error("request body is too large (limit {limit} bytes)")]
    PayloadTooLarge { limit: usize },
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("too many requests")]
    RateLimited { retry_after_secs: u64, message: String },
    #[error("{0}")]
    NotImplemented(String),
    #[error("{0}")]
    ServiceUnavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        AppError::BadRequest { code: "bad_request", message: message.into() }
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        AppError::Forbidden { code: "forbidden", message: message.into() }
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        AppError::Conflict { message: message.into(), details: json!({}) }
    }
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        AppError::Validation(vec![FieldError::new(field, message)])
    }
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        AppError::Internal(cause.to_string())
    }

    pub fn code(&self) -> &'static str {
        match self {
            AppError::BadRequest { code, .. } => code,
            AppError::Unauthorized(_) => "unauthorized",
            AppError::Forbidden { code, .. } => code,
            AppError::NotFound(_) => "not_found",
            AppError::Conflict { .. } => "conflict",
            AppError::PayloadTooLarge { .. } => "payload_too_large",
            AppError::Validation(_) => "validation_error",
            AppError::RateLimited { .. } => "rate_limited",
            AppError::NotImplemented(_) => "not_implemented",
            AppError::ServiceUnavailable(_) => "service_unavailable",
            AppError::Internal(_) => "internal_error",
        }
    }

    fn public_message(&self) -> String {
        match self {
            AppError::Internal(_) => "an internal error occurred; it has been logged".to_string(),
            AppError::ServiceUnavailable(_) => "a backing service is unavailable; try again shortly".to_string(),
            AppError::Validation(_) => "the request has invalid fields".to_string(),
            AppError::RateLimited { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }

    fn details(&self) -> Value {
        match self {
            AppError::Validation(errors) => json!({ "errors": errors }),
            AppError::Conflict { details, .. } => details.clone(),
            AppError::RateLimited { retry_after_secs, .. } => json!({ "retry_after": retry_after_secs }),
            AppError::PayloadTooLarge { limit } => json!({ "limit": limit }),
            _ => json!({}),
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            success: false,
            error: self.code().to_string(),
            message: self.public_message(),
            details: self.details(),
        }
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            AppError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden { .. } => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Conflict { .. } => StatusCode::CONFLICT,
            AppError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            AppError::ServiceUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            AppError::Internal(cause) => tracing::error!(error = %cause, "internal error"),
            AppError::ServiceUnavailable(cause) => {
                tracing::warn!(error = %cause, "service unavailable")
            }
            _ => {}
        }
        let mut res = HttpResponse::build(self.status_code());
        if let AppError::RateLimited { retry_after_secs, .. } = self {
            res.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
        }
        if let AppError::Unauthorized(_) = self {
            res.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        }
        res.json(self.body())
    }
}

impl From<DbErr> for AppError {
    fn from(err: DbErr) -> Self {
        match &err {
            DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => AppError::ServiceUnavailable(err.to_string()),
            _ => AppError::Internal(err.to_string()),
        }
    }
}

impl From<sea_orm::TransactionError<AppError>> for AppError {
    fn from(err: sea_orm::TransactionError<AppError>) -> Self {
        match err {
            sea_orm::TransactionError::Connection(db) => db.into(),
            sea_orm::TransactionError::Transaction(app) => app,
        }
    }
}

impl From<validator::ValidationErrors> for AppError {
    fn from(errs: validator::ValidationErrors) -> Self {
        let mut out = Vec::new();
        collect_validation("", &errs, &mut out);
        out.sort_by(|a, b| a.field.cmp(&b.field));
        AppError::Validation(out)
    }
}

fn collect_validation(prefix: &str, errs: &validator::ValidationErrors, out: &mut Vec<FieldError>) {
    use validator::ValidationErrorsKind;
    for (field, kind) in errs.errors() {
        let name = if prefix.is_empty() { field.to_string() } else { format!("{prefix}.{field}") };
        match kind {
            ValidationErrorsKind::Field(list) => {
                for e in list {
                    let message = e.message.as_ref().map(|m| m.to_string()).unwrap_or_else(|| describe(e));
                    out.push(FieldError::new(name.clone(), message));
                }
            }
            ValidationErrorsKind::Struct(inner) => collect_validation(&name, inner, out),
            ValidationErrorsKind::List(items) => {
                for (i, inner) in items {
                    collect_validation(&format!("{name}[{i}]"), inner, out);
                }
            }
        }
    }
}

fn describe(e: &validator::ValidationError) -> String {
    let p = |k: &str| e.params.get(k).map(|v| v.to_string());
    match e.code.as_ref() {
        "length" => match (p("min"), p("max")) {
            (Some(min), Some(max)) => format!("length must be between {min} and {max}"),
            (Some(min), None) => format!("must be at least {min} characters"),
            (None, Some(max)) => format!("must be at most {max} characters"),
            _ => "has an invalid length".into(),
        },
        "email" => "must be a valid e-mail address".into(),
        "range" => "is out of range".into(),
        "required" => "is required".into(),
        other => format!("is invalid ({other})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;

    async fn render(err: AppError) -> (u16, Value, Option<String>) {
        let res = err.error_response();
        let status = res.status().as_u16();
        let retry = res.headers().get(header::RETRY_AFTER).map(|v| v.to_str().unwrap().to_string());
        let body = to_bytes(res.into_body()).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap(), retry)
    }

    #[actix_web::test]
    async fn every_error_code_has_its_status_and_envelope() {
        let cases: Vec<(AppError, u16, &str)> = vec![
            (AppError::bad_request("bad filter"), 400, "bad_request"),
            (AppError::Unauthorized("no token".into()), 401, "unauthorized"),
            (AppError::forbidden("nope"), 403, "forbidden"),
            (AppError::NotFound("role"), 404, "not_found"),
            (AppError::conflict("dup"), 409, "conflict"),
            (AppError::PayloadTooLarge { limit: 10 }, 413, "payload_too_large"),
            (AppError::field("email", "bad"), 422, "validation_error"),
            (AppError::RateLimited { retry_after_secs: 7, message: "slow down".into() }, 429, "rate_limited"),
            (AppError::internal("db exploded"), 500, "internal_error"),
            (AppError::NotImplemented("later".into()), 501, "not_implemented"),
            (AppError::ServiceUnavailable("db down".into()), 503, "service_unavailable"),
        ];
        for (err, status, code) in cases {
            let (s, body, _) = render(err).await;
            assert_eq!(s, status);
            assert_eq!(body["success"], false);
            assert_eq!(body["error"], code);
            assert!(body["message"].is_string());
            assert!(body["details"].is_object());
        }
    }

    #[actix_web::test]
    async fn validation_lists_fields_and_internal_hides_cause() {
        let (_, body, _) = render(AppError::field("email", "must be a valid e-mail address")).await;
        assert_eq!(body["details"]["errors"][0]["field"], "email");
        let (_, body, _) = render(AppError::internal("password=secret in SQL")).await;
        assert!(!body["message"].as_str().unwrap().contains("secret"));
        let (_, _, retry) = render(AppError::RateLimited { retry_after_secs: 42, message: "x".into() }).await;
        assert_eq!(retry.as_deref(), Some("42"));
    }
}
