//! `/v1/users*` and `/v1/context`: the caller's profile, the members of the active account, and every
//! account the caller can act in.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::context::{AuthUser, RequestCtx};
use crate::db::list::ListQuery;
use crate::error::{AppError, AppResult, ErrorBody};
use crate::http::Json;
use crate::http::envelope::{self, Envelope, ListEnvelope};
use crate::modules::accounts::entity::{membership, role, user};
use crate::modules::accounts::profile::ProfilePatch;
use crate::modules::accounts::service::{Accounts, Patch};
use crate::modules::accounts::tenancy::CurrentUser;

#[derive(Debug, Serialize, ToSchema)]
pub struct UserDto {
    pub id: Uuid,
    pub email: String,
    pub full_name: String,
    pub phone: Option<String>,
    pub is_active: bool,
    pub email_verified_at: Option<DateTime<Utc>>,
    pub default_account_id: Option<Uuid>,
    pub locale: Option<String>,
    pub timezone: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<CurrentUser> for UserDto {
    fn from(u: CurrentUser) -> Self {
        UserDto {
            id: u.id,
            email: u.email,
            full_name: u.full_name,
            phone: u.phone,
            is_active: u.is_active,
            email_verified_at: u.email_verified_at,
            default_account_id: u.default_account_id,
            locale: u.locale,
            timezone: u.timezone,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

impl From<user::Model> for UserDto {
    fn from(u: user::Model) -> Self {
        CurrentUser::from(u).into()
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMeRequest {
    #[serde(default, deserialize_with = "crate::http::patch")]
    #[schema(value_type = String, required = false)]
    pub full_name: Patch<String>,
    #[serde(default, deserialize_with = "crate::http::patch")]
    #[schema(value_type = Option<String>)]
    pub phone: Patch<String>,
    #[serde(default, deserialize_with = "crate::http::patch")]
    #[schema(value_type = Option<Uuid>)]
    pub default_account_id: Patch<Uuid>,
    #[serde(default, deserialize_with = "crate::http::patch")]
    #[schema(value_type = Option<String>)]
    pub locale: Patch<String>,
    #[serde(default, deserialize_with = "crate::http::patch")]
    #[schema(value_type = Option<String>)]
    pub timezone: Patch<String>,
}

impl UpdateMeRequest {
    fn check(&self) -> AppResult<()> {
        let mut errors = Vec::new();
        if let Some(Some(n)) = &self.full_name
            && (n.trim().is_empty() || n.len() > 200)
        {
            errors.push(crate::error::FieldError::new("full_name", "must be 1 to 200 characters"));
        }
        if let Some(Some(p)) = &self.phone
            && (p.len() > 32 || p.is_empty())
        {
            errors.push(crate::error::FieldError::new("phone", "must be 1 to 32 characters"));
        }
        if let Some(Some(l)) = &self.locale
            && (l.is_empty() || l.len() > 35)
        {
            errors.push(crate::error::FieldError::new("locale", "must be a language tag such as en or am-ET"));
        }
        if errors.is_empty() { Ok(()) } else { Err(AppError::Validation(errors)) }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RoleRef {
    pub id: Uuid,
    pub name: String,
    #[schema(value_type = Object)]
    pub permissions: Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ContextAccount {
    pub id: Uuid,
    pub name: String,
    pub parent_id: Option<Uuid>,
    /// `active` or `suspended`.
    pub status: String,
    /// True when the role comes from `accounts:manage` on an ancestor account (an agency acting in a
    /// client's sub-account), not from a membership of this account.
    pub via_parent: bool,
    pub role: RoleRef,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ContextDto {
    pub user: UserDto,
    pub active_account_id: Option<Uuid>,
    pub accounts: Vec<ContextAccount>,
}

/// A member of the active account, as listed by `/v1/users`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountUserDto {
    #[serde(flatten)]
    pub user: UserDto,
    pub role: RoleRef,
}

fn account_user_dto((_, u, r): (membership::Model, user::Model, role::Model)) -> AccountUserDto {
    AccountUserDto { user: u.into(), role: RoleRef { id: r.id, name: r.name, permissions: r.permissions } }
}

// ------------------------------------------------------------------ users and context

#[utoipa::path(get, path = "/v1/users/me", tag = "users", responses((status = 200, body = Envelope<UserDto>)), security(("bearer" = [])))]
pub async fn get_me(auth: AuthUser) -> HttpResponse {
    envelope::ok(UserDto::from(auth.user))
}

#[utoipa::path(patch, path = "/v1/users/me", tag = "users", request_body = UpdateMeRequest,
    responses((status = 200, body = Envelope<UserDto>), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_me(
    accounts: web::Data<Accounts>,
    auth: AuthUser,
    body: Json<UpdateMeRequest>,
) -> AppResult<HttpResponse> {
    body.check()?;
    let b = body.into_inner();
    let patch = ProfilePatch {
        full_name: b.full_name,
        phone: b.phone,
        default_account_id: b.default_account_id,
        locale: b.locale,
        timezone: b.timezone,
    };
    let user = accounts.update_profile(&auth.user, patch).await?;
    Ok(envelope::ok(UserDto::from(user)))
}

/// Members of the active account. Filters: user_id, role_id, created_at, updated_at.
#[utoipa::path(get, path = "/v1/users", tag = "users", params(("filter" = Option<Vec<String>>, Query, description = "field:op:value"), ("sort" = Option<Vec<String>>, Query), ("skip" = Option<u64>, Query), ("limit" = Option<u64>, Query)),
    responses((status = 200, body = ListEnvelope<AccountUserDto>), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_users(accounts: web::Data<Accounts>, ctx: RequestCtx, q: ListQuery) -> AppResult<HttpResponse> {
    ctx.require("accounts:read")?;
    Ok(envelope::list(accounts.list_members(ctx.scope(), &q).await?.map(account_user_dto)))
}

#[utoipa::path(get, path = "/v1/users/{id}", tag = "users", responses((status = 200, body = Envelope<AccountUserDto>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_user(accounts: web::Data<Accounts>, ctx: RequestCtx, id: web::Path<Uuid>) -> AppResult<HttpResponse> {
    ctx.require("accounts:read")?;
    let row = accounts.member_user(ctx.scope(), id.into_inner()).await?;
    Ok(envelope::ok(account_user_dto(row)))
}

/// Who am I, which account is active, and every account I can act in with my role there.
#[utoipa::path(get, path = "/v1/context", tag = "users", responses((status = 200, body = Envelope<ContextDto>)), security(("bearer" = [])))]
pub async fn get_context(
    accounts: web::Data<Accounts>,
    auth: AuthUser,
    req: actix_web::HttpRequest,
) -> AppResult<HttpResponse> {
    let selected = super::context::selected_account(&req)?;
    let (reach, active) = accounts.context(&auth.user, selected).await?;
    let accounts = reach
        .into_iter()
        .map(|r| ContextAccount {
            id: r.account.id,
            name: r.account.name,
            parent_id: r.account.parent_id,
            status: r.account.status,
            via_parent: r.via_parent,
            role: RoleRef { id: r.role.id, name: r.role.name, permissions: r.role.permissions },
        })
        .collect();
    Ok(envelope::ok(ContextDto { user: auth.user.into(), active_account_id: active, accounts }))
}

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    // `/v1/users/me` before `/v1/users/{id}`.
    cfg.service(web::resource("/v1/users/me").route(web::get().to(get_me)).route(web::patch().to(update_me)))
        .service(web::resource("/v1/users").route(web::get().to(list_users)))
        .service(web::resource("/v1/users/{id}").route(web::get().to(get_user)))
        .service(web::resource("/v1/context").route(web::get().to(get_context)));
}
