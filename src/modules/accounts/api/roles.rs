//! `/v1/roles*`: the roles of the active account and their permissions.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;
use validator::Validate;

use super::context::RequestCtx;
use crate::db::list::ListQuery;
use crate::error::{AppError, AppResult, ErrorBody};
use crate::http::Json;
use crate::http::envelope::{self, Envelope, ListEnvelope};
use crate::modules::accounts::entity::role;
use crate::modules::accounts::roles::RolePatch;
use crate::modules::accounts::service::{Accounts, Patch};

#[derive(Debug, Serialize, ToSchema)]
pub struct RoleDto {
    pub id: Uuid,
    pub account_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    #[schema(value_type = Object)]
    pub permissions: Value,
    pub is_system: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<role::Model> for RoleDto {
    fn from(r: role::Model) -> Self {
        RoleDto {
            id: r.id,
            account_id: r.account_id,
            name: r.name,
            description: r.description,
            permissions: r.permissions,
            is_system: r.is_system,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRoleRequest {
    #[validate(length(min = 1, max = 100), custom(function = "crate::domain::text::name"))]
    #[schema(min_length = 1, max_length = 100, pattern = r"^(?!\s+$)[^\u0000-\u001F\u007F-\u009F]*$")]
    pub name: String,
    #[validate(length(max = 500))]
    #[schema(max_length = 500)]
    pub description: Option<String>,
    /// Permission → bool, e.g. `{"contacts:read": true}`; `{"*": true}` grants everything.
    #[schema(value_type = Object)]
    pub permissions: Value,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRoleRequest {
    #[serde(default, deserialize_with = "crate::http::patch")]
    #[schema(value_type = String, required = false)]
    pub name: Patch<String>,
    #[serde(default, deserialize_with = "crate::http::patch")]
    #[schema(value_type = Option<String>)]
    pub description: Patch<String>,
    #[serde(default, deserialize_with = "crate::http::patch")]
    #[schema(value_type = Object, required = false)]
    pub permissions: Patch<Value>,
}

// ------------------------------------------------------------------ roles

/// Roles of the active account. Filters: name, is_system, created_at, updated_at.
#[utoipa::path(get, path = "/v1/roles", tag = "roles", params(("filter" = Option<Vec<String>>, Query), ("sort" = Option<Vec<String>>, Query), ("skip" = Option<u64>, Query), ("limit" = Option<u64>, Query)),
    responses((status = 200, body = ListEnvelope<RoleDto>), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_roles(accounts: web::Data<Accounts>, ctx: RequestCtx, q: ListQuery) -> AppResult<HttpResponse> {
    ctx.require("accounts:read")?;
    Ok(envelope::list(accounts.list_roles(ctx.scope(), &q).await?.map(RoleDto::from)))
}

#[utoipa::path(post, path = "/v1/roles", tag = "roles", request_body = CreateRoleRequest,
    responses((status = 201, body = Envelope<RoleDto>), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_role(
    accounts: web::Data<Accounts>,
    ctx: RequestCtx,
    body: Json<CreateRoleRequest>,
) -> AppResult<HttpResponse> {
    ctx.require("roles:manage")?;
    body.validate()?;
    let role =
        accounts.create_role(ctx.scope(), &body.name, body.description.clone(), &body.permissions, &ctx.meta()).await?;
    Ok(envelope::created(RoleDto::from(role)))
}

#[utoipa::path(get, path = "/v1/roles/{id}", tag = "roles", responses((status = 200, body = Envelope<RoleDto>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_role(accounts: web::Data<Accounts>, ctx: RequestCtx, id: web::Path<Uuid>) -> AppResult<HttpResponse> {
    ctx.require("accounts:read")?;
    Ok(envelope::ok(RoleDto::from(accounts.get_role(ctx.scope(), id.into_inner()).await?)))
}

#[utoipa::path(patch, path = "/v1/roles/{id}", tag = "roles", request_body = UpdateRoleRequest,
    responses((status = 200, body = Envelope<RoleDto>), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_role(
    accounts: web::Data<Accounts>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
    body: Json<UpdateRoleRequest>,
) -> AppResult<HttpResponse> {
    ctx.require("roles:manage")?;
    let b = body.into_inner();
    if let Some(Some(n)) = &b.name
        && n.len() > 100
    {
        return Err(AppError::field("name", "must be at most 100 characters"));
    }
    let role = accounts
        .update_role(
            ctx.scope(),
            id.into_inner(),
            RolePatch { name: b.name, description: b.description, permissions: b.permissions },
            &ctx.meta(),
        )
        .await?;
    Ok(envelope::ok(RoleDto::from(role)))
}

#[utoipa::path(delete, path = "/v1/roles/{id}", tag = "roles", responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_role(
    accounts: web::Data<Accounts>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    ctx.require("roles:manage")?;
    accounts.delete_role(ctx.scope(), id.into_inner(), &ctx.meta()).await?;
    Ok(envelope::no_content())
}

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/v1/roles").route(web::get().to(list_roles)).route(web::post().to(create_role)))
        .service(
            web::resource("/v1/roles/{id}")
                .route(web::get().to(get_role))
                .route(web::patch().to(update_role))
                .route(web::delete().to(delete_role)),
        );
}
