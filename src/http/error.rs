//! Maps the kernel's [`AppError`] to HTTP: its status code, the SPEC §2 error envelope, `Retry-After`
//! and `WWW-Authenticate`. Internal causes are logged with the request id and never leaked to the client.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};

use crate::error::AppError;

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            AppError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden { .. } => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Conflict { .. } => StatusCode::CONFLICT,
            AppError::Gone { .. } => StatusCode::GONE,
            AppError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            AppError::UriTooLong { .. } => StatusCode::URI_TOO_LONG,
            AppError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            AppError::ServiceUnavailable(_) | AppError::StorageFull(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            AppError::Internal(cause) => tracing::error!(error = %cause, "internal error"),
            AppError::ServiceUnavailable(cause) => {
                tracing::warn!(error = %cause, "service unavailable")
            }
            AppError::StorageFull(cause) => tracing::error!(error = %cause, "storage full"),
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

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;
    use serde_json::Value;

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
            (AppError::StorageFull("disk full".into()), 503, "storage_full"),
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
