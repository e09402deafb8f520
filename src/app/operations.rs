//! The operations endpoints every role serves: `/healthz`, `/readyz` and `/metrics` (the API documents
//! are `openapi`'s).

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::{AppState, Role};
use crate::error::AppError;

/// `GET /healthz`: the process is alive.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "alive")))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// `GET /readyz`: this process can do its role's work. Every role needs its database. The `api` role
/// stays ready while the broker is down — what it accepts waits in the outbox until the broker is back —
/// and reports the broker as `unavailable`; every role that relays or consumes events (`outbox-relay`,
/// `worker`, `dispatcher`, `scheduler`, and `all`, which includes them) needs the broker and is not
/// ready without it.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, description = "ready"), (status = 503, body = crate::error::ErrorBody)))]
pub async fn readyz(state: web::Data<AppState>, role: web::Data<Role>) -> Result<HttpResponse, AppError> {
    crate::db::ping(&state.db).await.map_err(|e| AppError::ServiceUnavailable(format!("database: {e}")))?;
    let broker = if state.settings.amqp_url.is_none() {
        "in-process"
    } else {
        match state.events.check().await {
            Ok(()) => "ok",
            Err(e) if *role.get_ref() == Role::Api => {
                tracing::warn!(error = %e, "the broker is unavailable; events wait in the outbox");
                "unavailable"
            }
            Err(e) => return Err(AppError::ServiceUnavailable(format!("broker: {e}"))),
        }
    };
    Ok(HttpResponse::Ok().json(json!({ "status": "ready", "checks": { "database": "ok", "broker": broker } })))
}

/// `GET /metrics`: Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus metrics", content_type = "text/plain")))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    // Times an SQLite connection found the database locked and tried again a moment later.
    metrics::counter!("sqlite_busy_retries_total").absolute(sqlite_busy::retries());
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(state.metrics.render())
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/healthz").route(web::get().to(healthz)))
        .service(web::resource("/readyz").route(web::get().to(readyz)))
        .service(web::resource("/metrics").route(web::get().to(metrics)));
}
