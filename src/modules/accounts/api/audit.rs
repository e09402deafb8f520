//! `GET /v1/audit-logs` (`audit:read`): who changed what in the active account, when, from where.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::context::RequestCtx;
use crate::db::list::ListQuery;
use crate::error::{AppResult, ErrorBody};
use crate::http::envelope::{self, ListEnvelope};
use crate::modules::accounts::entity::audit_log;
use crate::modules::accounts::service::Accounts;

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditLogDto {
    pub id: Uuid,
    pub account_id: Option<Uuid>,
    /// The user who made the change (none for an unauthenticated request such as accepting an
    /// invitation by registering, which names the new user as the resource).
    pub actor_id: Option<Uuid>,
    /// What happened, e.g. `channel.updated`, `message.sent`, `group_message.queued`.
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<Uuid>,
    /// `{"before": …, "after": …}` (secrets redacted; `events` lists every event of a write that
    /// emitted several).
    #[schema(value_type = Object)]
    pub changes: Value,
    pub request_id: Option<String>,
    /// The connection's peer address, and the address a proxy says it forwarded for, if any.
    pub ip: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<audit_log::Model> for AuditLogDto {
    fn from(a: audit_log::Model) -> Self {
        AuditLogDto {
            id: a.id,
            account_id: a.account_id,
            actor_id: a.actor_id,
            action: a.action,
            resource_type: a.resource_type,
            resource_id: a.resource_id,
            changes: a.changes,
            request_id: a.request_id,
            ip: a.ip,
            created_at: a.created_at,
        }
    }
}

/// The active account's audit log: one entry per write a request made (messages: one per send, "who
/// sent what, when, to whom"). Filters: actor_id, action, resource_type, resource_id, request_id,
/// created_at, id, account_id; newest first by default.
#[utoipa::path(get, path = "/v1/audit-logs", tag = "accounts", params(("filter" = Option<Vec<String>>, Query), ("sort" = Option<Vec<String>>, Query), ("skip" = Option<u64>, Query), ("limit" = Option<u64>, Query)),
    responses((status = 200, body = ListEnvelope<AuditLogDto>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_audit_logs(accounts: web::Data<Accounts>, ctx: RequestCtx, q: ListQuery) -> AppResult<HttpResponse> {
    ctx.require("audit:read")?;
    Ok(envelope::list(accounts.list_audit_logs(ctx.scope(), &q).await?.map(AuditLogDto::from)))
}

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/v1/audit-logs").route(web::get().to(list_audit_logs)));
}
