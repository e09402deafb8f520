//! `/v1/accounts*`: accounts the caller belongs to and their members.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;
use validator::Validate;

use super::context::AuthUser;
use super::users::RoleRef;
use crate::db::list::ListQuery;
use crate::error::{AppError, AppResult, ErrorBody};
use crate::http::Json;
use crate::http::envelope::{self, Envelope, ListEnvelope};
use crate::modules::accounts::account::{AccountInput, AccountPatch};
use crate::modules::accounts::entity::{account, membership, role, user};
use crate::modules::accounts::service::{Accounts, Patch};

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountDto {
    pub id: Uuid,
    pub name: String,
    pub parent_id: Option<Uuid>,
    pub status: String,
    pub timezone: String,
    pub default_country_code: Option<String>,
    #[schema(value_type = Object)]
    pub settings: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<account::Model> for AccountDto {
    fn from(a: account::Model) -> Self {
        AccountDto {
            id: a.id,
            name: a.name,
            parent_id: a.parent_id,
            status: a.status,
            timezone: a.timezone,
            default_country_code: a.default_country_code,
            settings: a.settings,
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

fn valid_country_code(cc: &str) -> Result<(), validator::ValidationError> {
    let digits = cc.strip_prefix('+').unwrap_or(cc);
    let alpha2 = cc.len() == 2 && cc.chars().all(|c| c.is_ascii_uppercase());
    let calling = !digits.is_empty() && digits.len() <= 4 && digits.chars().all(|c| c.is_ascii_digit());
    if alpha2 || calling {
        Ok(())
    } else {
        Err(validator::ValidationError::new("country_code")
            .with_message("must be an ISO 3166 alpha-2 code (ET) or a calling code (+251)".into()))
    }
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccountRequest {
    #[validate(length(min = 1, max = 200), custom(function = "crate::domain::text::name"))]
    #[schema(min_length = 1, max_length = 200, pattern = r"^(?!\s+$)[^\u0000-\u001F\u007F-\u009F]*$")]
    pub name: String,
    /// IANA time zone; default `UTC`.
    #[validate(length(max = 64))]
    #[schema(max_length = 64)]
    pub timezone: Option<String>,
    #[validate(custom(function = "valid_country_code"))]
    pub default_country_code: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub settings: Option<Value>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAccountRequest {
    #[serde(default, deserialize_with = "crate::http::patch")]
    #[schema(value_type = String, required = false)]
    pub name: Patch<String>,
    #[serde(default, deserialize_with = "crate::http::patch")]
    #[schema(value_type = String, required = false)]
    pub timezone: Patch<String>,
    #[serde(default, deserialize_with = "crate::http::patch")]
    #[schema(value_type = Option<String>)]
    pub default_country_code: Patch<String>,
    #[serde(default, deserialize_with = "crate::http::patch")]
    #[schema(value_type = Option<Object>)]
    pub settings: Patch<Value>,
    /// `active` or `suspended`: changed only by an admin of an ancestor account (or the operator's
    /// `turumba admin suspend-account`); a suspended account answers 403 `account_suspended` to tenant
    /// requests and its work waits until it is active again.
    #[schema(value_type = Option<String>)]
    pub status: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberDto {
    pub user_id: Uuid,
    pub account_id: Uuid,
    pub email: String,
    pub full_name: String,
    pub role: RoleRef,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn member_dto((m, u, r): (membership::Model, user::Model, role::Model)) -> MemberDto {
    MemberDto {
        user_id: u.id,
        account_id: m.account_id,
        email: u.email,
        full_name: u.full_name,
        role: RoleRef { id: r.id, name: r.name, permissions: r.permissions },
        created_at: m.created_at,
        updated_at: m.updated_at,
    }
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMemberRequest {
    #[validate(email(message = "must be a valid e-mail address"))]
    #[schema(format = Email)]
    pub email: String,
    pub role_id: Uuid,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMemberRequest {
    pub role_id: Uuid,
}

// ------------------------------------------------------------------ accounts

/// Accounts the caller may act in: their memberships and the sub-accounts below those where their role
/// grants `accounts:manage`. Filters: id, account_id, name, status, parent_id, created_at, updated_at.
#[utoipa::path(get, path = "/v1/accounts", tag = "accounts", params(("filter" = Option<Vec<String>>, Query), ("sort" = Option<Vec<String>>, Query), ("skip" = Option<u64>, Query), ("limit" = Option<u64>, Query)),
    responses((status = 200, body = ListEnvelope<AccountDto>), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_accounts(accounts: web::Data<Accounts>, auth: AuthUser, q: ListQuery) -> AppResult<HttpResponse> {
    Ok(envelope::list(accounts.list_accounts_of(&auth.user, &q).await?.map(AccountDto::from)))
}

/// Create a top-level account; the caller becomes its admin.
#[utoipa::path(post, path = "/v1/accounts", tag = "accounts", request_body = CreateAccountRequest,
    responses((status = 201, body = Envelope<AccountDto>), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_account(
    accounts: web::Data<Accounts>,
    auth: AuthUser,
    body: Json<CreateAccountRequest>,
) -> AppResult<HttpResponse> {
    body.validate()?;
    let acc = accounts.create_account(&auth.user, account_input(&body)?, &auth.meta()).await?;
    Ok(envelope::created(AccountDto::from(acc)))
}

#[utoipa::path(get, path = "/v1/accounts/{id}", tag = "accounts", responses((status = 200, body = Envelope<AccountDto>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_account(
    accounts: web::Data<Accounts>,
    auth: AuthUser,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    let access = accounts.path_access(&auth.user, id.into_inner(), "accounts:read").await?;
    Ok(envelope::ok(AccountDto::from(accounts.get_account(access.scope).await?)))
}

#[utoipa::path(patch, path = "/v1/accounts/{id}", tag = "accounts", request_body = UpdateAccountRequest,
    responses((status = 200, body = Envelope<AccountDto>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_account(
    accounts: web::Data<Accounts>,
    auth: AuthUser,
    id: web::Path<Uuid>,
    body: Json<UpdateAccountRequest>,
) -> AppResult<HttpResponse> {
    let id = id.into_inner();
    let access = accounts.path_access(&auth.user, id, "accounts:manage").await?;
    let b = body.into_inner();
    if let Some(Some(cc)) = &b.default_country_code {
        valid_country_code(cc).map_err(|e| AppError::field("default_country_code", e.message.unwrap_or_default()))?;
    }
    let patch = AccountPatch {
        name: b.name,
        timezone: b.timezone,
        default_country_code: b.default_country_code,
        settings: b.settings,
    };
    // Whether the status may change is known before anything is written; an activation comes first
    // (the other fields need an active account), a suspension last (they are applied while it is
    // still active), so one body is applied whole or refused whole.
    if let Some(status) = &b.status {
        accounts.check_status_change(&access, status).await?;
    }
    let activating = b.status.as_deref() == Some("active");
    let mut acc = None;
    if activating {
        acc = Some(accounts.set_status_as(&access, "active", &auth.meta()).await?);
    }
    if !patch.is_empty() {
        accounts.ensure_active(id).await?;
        acc = Some(accounts.update_account(access.scope, patch, &auth.meta()).await?);
    }
    if let Some(status) = b.status.as_deref().filter(|_| !activating) {
        acc = Some(accounts.set_status_as(&access, status, &auth.meta()).await?);
    }
    let acc = match acc {
        Some(acc) => acc,
        None => accounts.get_account(access.scope).await?,
    };
    Ok(envelope::ok(AccountDto::from(acc)))
}

/// Delete an account (409 while it has sub-accounts).
#[utoipa::path(delete, path = "/v1/accounts/{id}", tag = "accounts", responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_account(
    accounts: web::Data<Accounts>,
    auth: AuthUser,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    let access = accounts.path_access_to_change(&auth.user, id.into_inner(), "accounts:manage").await?;
    accounts.delete_account(access.scope, &auth.meta()).await?;
    Ok(envelope::no_content())
}

/// Direct sub-accounts of an account. Filters as for `/v1/accounts`.
#[utoipa::path(get, path = "/v1/accounts/{id}/sub-accounts", tag = "accounts", params(("filter" = Option<Vec<String>>, Query), ("sort" = Option<Vec<String>>, Query), ("skip" = Option<u64>, Query), ("limit" = Option<u64>, Query)),
    responses((status = 200, body = ListEnvelope<AccountDto>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_sub_accounts(
    accounts: web::Data<Accounts>,
    auth: AuthUser,
    id: web::Path<Uuid>,
    q: ListQuery,
) -> AppResult<HttpResponse> {
    let access = accounts.path_access(&auth.user, id.into_inner(), "accounts:read").await?;
    Ok(envelope::list(accounts.list_sub_accounts(access.scope, &q).await?.map(AccountDto::from)))
}

/// Create a sub-account (a client of an agency). It starts with its system roles and no members: the
/// members of this account (and of its ancestors) whose role grants `accounts:manage` act in it with
/// that role; its own people are added or invited. 409 past `TURUMBA_ACCOUNTS__MAX_DEPTH` levels.
#[utoipa::path(post, path = "/v1/accounts/{id}/sub-accounts", tag = "accounts", request_body = CreateAccountRequest,
    responses((status = 201, body = Envelope<AccountDto>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_sub_account(
    accounts: web::Data<Accounts>,
    auth: AuthUser,
    id: web::Path<Uuid>,
    body: Json<CreateAccountRequest>,
) -> AppResult<HttpResponse> {
    body.validate()?;
    let access = accounts.path_access_to_change(&auth.user, id.into_inner(), "accounts:manage").await?;
    let acc = accounts.create_sub_account(&auth.user, access.scope, account_input(&body)?, &auth.meta()).await?;
    Ok(envelope::created(AccountDto::from(acc)))
}

fn account_input(body: &CreateAccountRequest) -> AppResult<AccountInput<'_>> {
    if let Some(s) = &body.settings
        && !s.is_object()
    {
        return Err(AppError::field("settings", "must be an object"));
    }
    Ok(AccountInput {
        name: &body.name,
        timezone: body.timezone.as_deref(),
        default_country_code: body.default_country_code.as_deref(),
        settings: body.settings.clone(),
    })
}

/// Members of an account. Filters: user_id, role_id, created_at, updated_at.
#[utoipa::path(get, path = "/v1/accounts/{id}/members", tag = "accounts", params(("filter" = Option<Vec<String>>, Query), ("sort" = Option<Vec<String>>, Query), ("skip" = Option<u64>, Query), ("limit" = Option<u64>, Query)),
    responses((status = 200, body = ListEnvelope<MemberDto>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_members(
    accounts: web::Data<Accounts>,
    auth: AuthUser,
    id: web::Path<Uuid>,
    q: ListQuery,
) -> AppResult<HttpResponse> {
    let access = accounts.path_access(&auth.user, id.into_inner(), "accounts:read").await?;
    Ok(envelope::list(accounts.list_members(access.scope, &q).await?.map(member_dto)))
}

/// Add an existing verified user by e-mail (new people are invited instead).
#[utoipa::path(post, path = "/v1/accounts/{id}/members", tag = "accounts", request_body = AddMemberRequest,
    responses((status = 201, body = Envelope<MemberDto>), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn add_member(
    accounts: web::Data<Accounts>,
    auth: AuthUser,
    id: web::Path<Uuid>,
    body: Json<AddMemberRequest>,
) -> AppResult<HttpResponse> {
    body.validate()?;
    let access = accounts.path_access_to_change(&auth.user, id.into_inner(), "members:manage").await?;
    let m = accounts.add_member(access.scope, &body.email, body.role_id, &auth.meta()).await?;
    let row = accounts.member_user(access.scope, m.user_id).await?;
    Ok(envelope::created(member_dto(row)))
}

/// Change a member's role (the last admin cannot be demoted: 409).
#[utoipa::path(patch, path = "/v1/accounts/{id}/members/{user_id}", tag = "accounts", request_body = UpdateMemberRequest,
    responses((status = 200, body = Envelope<MemberDto>), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_member(
    accounts: web::Data<Accounts>,
    auth: AuthUser,
    path: web::Path<(Uuid, Uuid)>,
    body: Json<UpdateMemberRequest>,
) -> AppResult<HttpResponse> {
    let (account_id, user_id) = path.into_inner();
    let access = accounts.path_access_to_change(&auth.user, account_id, "members:manage").await?;
    accounts.change_member_role(access.scope, user_id, body.role_id, &auth.meta()).await?;
    let row = accounts.member_user(access.scope, user_id).await?;
    Ok(envelope::ok(member_dto(row)))
}

/// Remove a member (the last admin cannot be removed: 409).
#[utoipa::path(delete, path = "/v1/accounts/{id}/members/{user_id}", tag = "accounts", responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn remove_member(
    accounts: web::Data<Accounts>,
    auth: AuthUser,
    path: web::Path<(Uuid, Uuid)>,
) -> AppResult<HttpResponse> {
    let (account_id, user_id) = path.into_inner();
    let access = accounts.path_access_to_change(&auth.user, account_id, "members:manage").await?;
    accounts.remove_member(access.scope, user_id, &auth.meta()).await?;
    Ok(envelope::no_content())
}

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/v1/accounts").route(web::get().to(list_accounts)).route(web::post().to(create_account)),
    )
    .service(
        web::resource("/v1/accounts/{id}")
            .route(web::get().to(get_account))
            .route(web::patch().to(update_account))
            .route(web::delete().to(delete_account)),
    )
    .service(
        web::resource("/v1/accounts/{id}/sub-accounts")
            .route(web::get().to(list_sub_accounts))
            .route(web::post().to(create_sub_account)),
    )
    .service(
        web::resource("/v1/accounts/{id}/members").route(web::get().to(list_members)).route(web::post().to(add_member)),
    )
    .service(
        web::resource("/v1/accounts/{id}/members/{user_id}")
            .route(web::patch().to(update_member))
            .route(web::delete().to(remove_member)),
    );
}
