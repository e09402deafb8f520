//! The operations endpoints every role serves: `/healthz`, `/readyz` and `/metrics` (the API documents
//! are `openapi`'s).

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::AppState;
use crate::error::AppError;

/// `GET /healthz`: the process is alive.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "alive")))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// `GET /readyz`: the database (and, when configured, the broker) answers.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, description = "ready"), (status = 503, body = crate::error::ErrorBody)))]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    crate::db::ping(&state.db).await.map_err(|e| AppError::ServiceUnavailable(format!("database: {e}")))?;
    let broker = if state.settings.amqp_url.is_some() {
        state.events.check().await.map_err(|e| AppError::ServiceUnavailable(format!("broker: {e}")))?;
        "ok"
    } else {
        "in-process"
    };
    Ok(HttpResponse::Ok().json(json!({ "status": "ready", "checks": { "database": "ok", "broker": broker } })))
}

/// `GET /metrics`: Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus metrics", content_type = "text/plain")))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(state.metrics.render())
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}
