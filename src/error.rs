//! `AppError`: the one error type of Turumba's services and stores, with the SPEC §2 error envelope it
//! becomes: `{"success": false, "error": "<code>", "message": "...", "details": {...}}`.
//!
//! Kernel floor: no HTTP types here. `crate::http::error` maps each variant to its status code and
//! response; internal causes are logged there with the request id and never leaked to the client.

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
    /// 410: something that existed and is used up (an expired or accepted invitation).
    #[error("{message}")]
    Gone { code: &'static str, message: String },
    #[error("request body is too large (limit {limit} bytes)")]
    PayloadTooLarge { limit: usize },
    #[error("the request body did not arrive in time: {0}")]
    RequestTimeout(String),
    #[error("the URL is too long (limit {limit} bytes)")]
    UriTooLong { limit: usize },
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("too many requests")]
    RateLimited { retry_after_secs: u64, message: String },
    #[error("{0}")]
    NotImplemented(String),
    #[error("{0}")]
    ServiceUnavailable(String),
    /// 503 `storage_full`: the database's disk (or PostgreSQL's) is full; nothing of the request was
    /// written.
    #[error("{0}")]
    StorageFull(String),
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
            AppError::Gone { code, .. } => code,
            AppError::PayloadTooLarge { .. } => "payload_too_large",
            AppError::RequestTimeout(_) => "request_timeout",
            AppError::UriTooLong { .. } => "uri_too_long",
            AppError::Validation(_) => "validation_error",
            AppError::RateLimited { .. } => "rate_limited",
            AppError::NotImplemented(_) => "not_implemented",
            AppError::ServiceUnavailable(_) => "service_unavailable",
            AppError::StorageFull(_) => "storage_full",
            AppError::Internal(_) => "internal_error",
        }
    }

    pub(crate) fn public_message(&self) -> String {
        match self {
            AppError::Internal(_) => "an internal error occurred; it has been logged".to_string(),
            AppError::ServiceUnavailable(_) => "a backing service is unavailable; try again shortly".to_string(),
            AppError::StorageFull(_) => {
                "the server's storage is full; nothing was written — try again once space is freed".to_string()
            }
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
            AppError::PayloadTooLarge { limit } | AppError::UriTooLong { limit } => json!({ "limit": limit }),
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

impl From<DbErr> for AppError {
    fn from(err: DbErr) -> Self {
        use sea_orm::RuntimeErr;
        match &err {
            DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => AppError::ServiceUnavailable(err.to_string()),
            DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => match fault_of(e) {
                Some(StorageFault::Unavailable) => AppError::ServiceUnavailable(err.to_string()),
                Some(StorageFault::Full) => AppError::StorageFull(err.to_string()),
                None => AppError::Internal(err.to_string()),
            },
            _ => AppError::Internal(err.to_string()),
        }
    }
}

/// A database failure that is the database's state, not the query's: the answer is a 503 to retry,
/// never a 500.
#[derive(Debug, PartialEq, Eq)]
enum StorageFault {
    /// The connection broke, the pool is exhausted or closed, the server is shutting down or
    /// restarting, or SQLite's file is locked or unreadable.
    Unavailable,
    /// No space left: PostgreSQL's `disk_full` (53100), SQLite's `SQLITE_FULL` (13).
    Full,
}

fn fault_of(err: &sqlx::Error) -> Option<StorageFault> {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => Some(StorageFault::Unavailable),
        sqlx::Error::Database(db) => fault_of_code(db.code().as_deref()?),
        _ => None,
    }
}

/// By SQLSTATE (PostgreSQL: always five characters) or SQLite's extended result code (a number below
/// 10,000).
fn fault_of_code(code: &str) -> Option<StorageFault> {
    if code.len() < 5
        && let Ok(sqlite) = code.parse::<i32>()
    {
        // The primary code is the low byte: SQLITE_BUSY 5, SQLITE_LOCKED 6, SQLITE_IOERR 10,
        // SQLITE_FULL 13, SQLITE_CANTOPEN 14.
        return match sqlite & 0xff {
            13 => Some(StorageFault::Full),
            5 | 6 | 10 | 14 => Some(StorageFault::Unavailable),
            _ => None,
        };
    }
    match code {
        "53100" => Some(StorageFault::Full),
        // Class 08 connection exceptions, 57P01–57P03 shutdown / crash / cannot connect now,
        // 53300 too many connections, 40001/40P01 are left to their callers (retryable conflicts).
        c if c.starts_with("08") || c.starts_with("57P") || c == "53300" => Some(StorageFault::Unavailable),
        _ => None,
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
mod storage_fault_tests {
    use super::*;

    #[test]
    fn database_states_are_told_from_query_failures() {
        assert_eq!(fault_of_code("13"), Some(StorageFault::Full), "SQLITE_FULL");
        assert_eq!(fault_of_code("53100"), Some(StorageFault::Full), "PostgreSQL disk_full");
        assert_eq!(fault_of_code("5"), Some(StorageFault::Unavailable), "SQLITE_BUSY");
        assert_eq!(fault_of_code("778"), Some(StorageFault::Unavailable), "SQLITE_IOERR_WRITE");
        assert_eq!(fault_of_code("57P01"), Some(StorageFault::Unavailable), "admin_shutdown");
        assert_eq!(fault_of_code("08006"), Some(StorageFault::Unavailable), "connection_failure");
        assert_eq!(fault_of_code("2067"), None, "SQLITE_CONSTRAINT_UNIQUE is the query's");
        assert_eq!(fault_of_code("23505"), None, "unique_violation is the query's");
        assert_eq!(fault_of_code("42601"), None, "a syntax error is ours");
        let io = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        let err: AppError = DbErr::Query(sea_orm::RuntimeErr::SqlxError(std::sync::Arc::new(io))).into();
        assert!(matches!(err, AppError::ServiceUnavailable(_)), "{err:?}");
        let other = sqlx::Error::RowNotFound;
        let err: AppError = DbErr::Exec(sea_orm::RuntimeErr::SqlxError(std::sync::Arc::new(other))).into();
        assert!(matches!(err, AppError::Internal(_)), "{err:?}");
    }
}
