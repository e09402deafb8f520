//! Routes and DTOs of the accounts module: `/v1/auth/*`, `/v1/users*`, `/v1/context`, `/v1/accounts*`,
//! `/v1/roles*` and `/.well-known/jwks.json`.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;
use validator::Validate;

use super::entity::{account, membership, role, user};
use super::list_fields;
use super::password::MIN_PASSWORD_LEN;
use super::service::{
    AccountInput, AccountPatch, CurrentUser, Patch, ProfilePatch, Registration, RolePatch, TokenPair,
};
use super::store;
use crate::app::AppState;
use crate::http::ctx::{AuthUser, RequestCtx, request_meta};
use crate::http::envelope::{self, Envelope, ListEnvelope, Page};
use crate::http::error::{AppError, AppResult, ErrorBody};
use crate::http::list::ListQuery;

// ------------------------------------------------------------------ DTOs

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    #[validate(email(message = "must be a valid e-mail address"), length(max = 254))]
    pub email: String,
    #[validate(length(min = MIN_PASSWORD_LEN, max = 256, message = "must be at least 10 characters"))]
    pub password: String,
    #[validate(length(min = 1, max = 200), custom(function = "not_blank"))]
    pub full_name: String,
    #[validate(length(min = 1, max = 200), custom(function = "not_blank"))]
    pub account_name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RegisterResponse {
    pub user_id: Uuid,
    pub verification_required: bool,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
pub struct VerifyEmailRequest {
    #[validate(email(message = "must be a valid e-mail address"))]
    pub email: String,
    #[validate(length(min = 6, max = 6, message = "must be the 6-digit code"))]
    pub code: String,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
pub struct EmailRequest {
    #[validate(email(message = "must be a valid e-mail address"))]
    pub email: String,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
pub struct LoginRequest {
    #[validate(length(min = 1, max = 254))]
    pub email: String,
    #[validate(length(min = 1, max = 256))]
    pub password: String,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
pub struct RefreshRequest {
    #[validate(length(min = 1, max = 512))]
    pub refresh_token: String,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
pub struct ResetPasswordRequest {
    #[validate(email(message = "must be a valid e-mail address"))]
    pub email: String,
    #[validate(length(min = 6, max = 6, message = "must be the 6-digit code"))]
    pub code: String,
    #[validate(length(min = MIN_PASSWORD_LEN, max = 256, message = "must be at least 10 characters"))]
    pub new_password: String,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
pub struct ChangePasswordRequest {
    #[validate(length(min = 1, max = 256))]
    pub current_password: String,
    #[validate(length(min = MIN_PASSWORD_LEN, max = 256, message = "must be at least 10 characters"))]
    pub new_password: String,
}

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

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Access-token lifetime in seconds.
    pub expires_in: i64,
    pub user: UserDto,
}

impl From<TokenPair> for TokenResponse {
    fn from(t: TokenPair) -> Self {
        TokenResponse {
            access_token: t.access_token,
            refresh_token: t.refresh_token,
            token_type: "Bearer".into(),
            expires_in: t.expires_in,
            user: t.user.into(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMeRequest {
    #[serde(default, deserialize_with = "crate::http::patch")]
    #[schema(value_type = Option<String>)]
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
            errors.push(crate::http::error::FieldError::new("full_name", "must be 1 to 200 characters"));
        }
        if let Some(Some(p)) = &self.phone
            && (p.len() > 32 || p.is_empty())
        {
            errors.push(crate::http::error::FieldError::new("phone", "must be 1 to 32 characters"));
        }
        if let Some(Some(l)) = &self.locale
            && (l.is_empty() || l.len() > 35)
        {
            errors.push(crate::http::error::FieldError::new("locale", "must be a language tag such as en or am-ET"));
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
    pub role: RoleRef,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ContextDto {
    pub user: UserDto,
    pub active_account_id: Option<Uuid>,
    pub accounts: Vec<ContextAccount>,
}

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

/// Names must carry text: they are stored trimmed, so whitespace alone would become an empty name.
fn not_blank(value: &str) -> Result<(), validator::ValidationError> {
    // An empty value is already reported by the length rule; one message per problem.
    if !value.is_empty() && value.trim().is_empty() {
        Err(validator::ValidationError::new("blank").with_message("must not be blank".into()))
    } else {
        Ok(())
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
    #[validate(length(min = 1, max = 200), custom(function = "not_blank"))]
    pub name: String,
    /// IANA time zone; default `UTC`.
    #[validate(length(max = 64))]
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
    #[schema(value_type = Option<String>)]
    pub name: Patch<String>,
    #[serde(default, deserialize_with = "crate::http::patch")]
    #[schema(value_type = Option<String>)]
    pub timezone: Patch<String>,
    #[serde(default, deserialize_with = "crate::http::patch")]
    #[schema(value_type = Option<String>)]
    pub default_country_code: Patch<String>,
    #[serde(default, deserialize_with = "crate::http::patch")]
    #[schema(value_type = Option<Object>)]
    pub settings: Patch<Value>,
}

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
    #[validate(length(min = 1, max = 100), custom(function = "not_blank"))]
    pub name: String,
    #[validate(length(max = 500))]
    pub description: Option<String>,
    /// Permission → bool, e.g. `{"contacts:read": true}`; `{"*": true}` grants everything.
    #[schema(value_type = Object)]
    pub permissions: Value,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRoleRequest {
    #[serde(default, deserialize_with = "crate::http::patch")]
    #[schema(value_type = Option<String>)]
    pub name: Patch<String>,
    #[serde(default, deserialize_with = "crate::http::patch")]
    #[schema(value_type = Option<String>)]
    pub description: Patch<String>,
    #[serde(default, deserialize_with = "crate::http::patch")]
    #[schema(value_type = Option<Object>)]
    pub permissions: Patch<Value>,
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
    pub email: String,
    pub role_id: Uuid,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMemberRequest {
    pub role_id: Uuid,
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

// ------------------------------------------------------------------ auth handlers

/// Register a user. The account named here is created when the e-mail is verified.
#[utoipa::path(post, path = "/v1/auth/register", tag = "auth", request_body = RegisterRequest,
    responses((status = 201, body = Envelope<RegisterResponse>), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn register(state: web::Data<AppState>, body: web::Json<RegisterRequest>) -> AppResult<HttpResponse> {
    body.validate()?;
    let user_id = state
        .accounts
        .register(Registration {
            email: &body.email,
            password: &body.password,
            full_name: &body.full_name,
            account_name: &body.account_name,
        })
        .await?;
    Ok(envelope::created(RegisterResponse { user_id, verification_required: true }))
}

/// Confirm the e-mail with the 6-digit code; creates the account, its roles and the admin membership.
#[utoipa::path(post, path = "/v1/auth/verify-email", tag = "auth", request_body = VerifyEmailRequest,
    responses((status = 200, body = Envelope<TokenResponse>), (status = 400, body = ErrorBody, description = "invalid_code")))]
pub async fn verify_email(
    req: actix_web::HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<VerifyEmailRequest>,
) -> AppResult<HttpResponse> {
    body.validate()?;
    let tokens = state.accounts.verify_email(&body.email, &body.code, &request_meta(&req)).await?;
    Ok(envelope::ok(TokenResponse::from(tokens)))
}

/// Send a new verification code (same answer whether or not the e-mail exists).
#[utoipa::path(post, path = "/v1/auth/resend-verification", tag = "auth", request_body = EmailRequest, responses((status = 202)))]
pub async fn resend_verification(state: web::Data<AppState>, body: web::Json<EmailRequest>) -> AppResult<HttpResponse> {
    body.validate()?;
    state.accounts.resend_verification(&body.email).await?;
    Ok(envelope::accepted("if the address needs verification, a new code has been sent"))
}

#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = Envelope<TokenResponse>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "email_not_verified or user_inactive"), (status = 429, body = ErrorBody)))]
pub async fn login(state: web::Data<AppState>, body: web::Json<LoginRequest>) -> AppResult<HttpResponse> {
    body.validate()?;
    let tokens = state.accounts.login(&body.email, &body.password).await?;
    Ok(envelope::ok(TokenResponse::from(tokens)))
}

/// Rotate a refresh token. Reusing a rotated token revokes its whole family.
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = Envelope<TokenResponse>), (status = 401, body = ErrorBody)))]
pub async fn refresh(state: web::Data<AppState>, body: web::Json<RefreshRequest>) -> AppResult<HttpResponse> {
    body.validate()?;
    let tokens = state.accounts.refresh(&body.refresh_token).await?;
    Ok(envelope::ok(TokenResponse::from(tokens)))
}

/// Revoke the refresh-token family of the given token.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", request_body = RefreshRequest, responses((status = 204)))]
pub async fn logout(state: web::Data<AppState>, body: web::Json<RefreshRequest>) -> AppResult<HttpResponse> {
    body.validate()?;
    state.accounts.logout(&body.refresh_token).await?;
    Ok(envelope::no_content())
}

#[utoipa::path(post, path = "/v1/auth/forgot-password", tag = "auth", request_body = EmailRequest, responses((status = 202)))]
pub async fn forgot_password(state: web::Data<AppState>, body: web::Json<EmailRequest>) -> AppResult<HttpResponse> {
    body.validate()?;
    state.accounts.forgot_password(&body.email).await?;
    Ok(envelope::accepted("if the address belongs to a user, a reset code has been sent"))
}

#[utoipa::path(post, path = "/v1/auth/reset-password", tag = "auth", request_body = ResetPasswordRequest,
    responses((status = 204), (status = 400, body = ErrorBody, description = "invalid_code")))]
pub async fn reset_password(
    state: web::Data<AppState>,
    body: web::Json<ResetPasswordRequest>,
) -> AppResult<HttpResponse> {
    body.validate()?;
    state.accounts.reset_password(&body.email, &body.code, &body.new_password).await?;
    Ok(envelope::no_content())
}

#[utoipa::path(post, path = "/v1/auth/change-password", tag = "auth", request_body = ChangePasswordRequest,
    responses((status = 204), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn change_password(
    state: web::Data<AppState>,
    auth: AuthUser,
    body: web::Json<ChangePasswordRequest>,
) -> AppResult<HttpResponse> {
    body.validate()?;
    state.accounts.change_password(&auth.user, &body.current_password, &body.new_password).await?;
    Ok(envelope::no_content())
}

/// The public keys that verify access tokens.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth", responses((status = 200, description = "JSON Web Key Set")))]
pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(state.accounts.jwks())
}

// ------------------------------------------------------------------ users and context

#[utoipa::path(get, path = "/v1/users/me", tag = "users", responses((status = 200, body = Envelope<UserDto>)), security(("bearer" = [])))]
pub async fn get_me(auth: AuthUser) -> HttpResponse {
    envelope::ok(UserDto::from(auth.user))
}

#[utoipa::path(patch, path = "/v1/users/me", tag = "users", request_body = UpdateMeRequest,
    responses((status = 200, body = Envelope<UserDto>), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_me(
    state: web::Data<AppState>,
    auth: AuthUser,
    body: web::Json<UpdateMeRequest>,
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
    let user = state.accounts.update_profile(&auth.user, patch).await?;
    Ok(envelope::ok(UserDto::from(user)))
}

/// Members of the active account. Filters: user_id, role_id, created_at, updated_at.
#[utoipa::path(get, path = "/v1/users", tag = "users", params(("filter" = Option<Vec<String>>, Query, description = "field:op:value"), ("sort" = Option<Vec<String>>, Query), ("skip" = Option<u64>, Query), ("limit" = Option<u64>, Query)),
    responses((status = 200, body = ListEnvelope<AccountUserDto>), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_users(state: web::Data<AppState>, ctx: RequestCtx, q: ListQuery) -> AppResult<HttpResponse> {
    ctx.require("accounts:read")?;
    let page = members_page(&state, &ctx.scope(), &q).await?;
    let items = state.accounts.hydrate_members(ctx.scope(), page.items).await?;
    Ok(envelope::list(Page {
        items: items.into_iter().map(account_user_dto).collect(),
        total: page.total,
        skip: page.skip,
        limit: page.limit,
    }))
}

#[utoipa::path(get, path = "/v1/users/{id}", tag = "users", responses((status = 200, body = Envelope<AccountUserDto>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_user(state: web::Data<AppState>, ctx: RequestCtx, id: web::Path<Uuid>) -> AppResult<HttpResponse> {
    ctx.require("accounts:read")?;
    let row = state.accounts.member_user(ctx.scope(), id.into_inner()).await?;
    Ok(envelope::ok(account_user_dto(row)))
}

/// Who am I, which account is active, and every account I can act in with my role there.
#[utoipa::path(get, path = "/v1/context", tag = "users", responses((status = 200, body = Envelope<ContextDto>)), security(("bearer" = [])))]
pub async fn get_context(
    state: web::Data<AppState>,
    auth: AuthUser,
    req: actix_web::HttpRequest,
) -> AppResult<HttpResponse> {
    let selected = crate::http::ctx::selected_account(&req)?;
    let (memberships, active) = state.accounts.context(&auth.user, selected).await?;
    let accounts = memberships
        .into_iter()
        .map(|(_, r, a)| ContextAccount {
            id: a.id,
            name: a.name,
            parent_id: a.parent_id,
            role: RoleRef { id: r.id, name: r.name, permissions: r.permissions },
        })
        .collect();
    Ok(envelope::ok(ContextDto { user: auth.user.into(), active_account_id: active, accounts }))
}

// ------------------------------------------------------------------ accounts

/// Accounts the caller is a member of. Filters: name, status, parent_id, created_at, updated_at.
#[utoipa::path(get, path = "/v1/accounts", tag = "accounts", params(("filter" = Option<Vec<String>>, Query), ("sort" = Option<Vec<String>>, Query), ("skip" = Option<u64>, Query), ("limit" = Option<u64>, Query)),
    responses((status = 200, body = ListEnvelope<AccountDto>), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_accounts(state: web::Data<AppState>, auth: AuthUser, q: ListQuery) -> AppResult<HttpResponse> {
    let select = q.apply(
        store::accounts_of_user(auth.user.id),
        list_fields::ACCOUNT_FIELDS,
        account::Column::Id,
        account::Column::CreatedAt,
    )?;
    let page = q.fetch(&state.db, select).await?;
    Ok(envelope::list(page.map(AccountDto::from)))
}

/// Create a top-level account; the caller becomes its admin.
#[utoipa::path(post, path = "/v1/accounts", tag = "accounts", request_body = CreateAccountRequest,
    responses((status = 201, body = Envelope<AccountDto>), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_account(
    state: web::Data<AppState>,
    auth: AuthUser,
    body: web::Json<CreateAccountRequest>,
) -> AppResult<HttpResponse> {
    body.validate()?;
    if let Some(s) = &body.settings
        && !s.is_object()
    {
        return Err(AppError::field("settings", "must be an object"));
    }
    let acc = state
        .accounts
        .create_account(
            &auth.user,
            AccountInput {
                name: &body.name,
                timezone: body.timezone.as_deref(),
                default_country_code: body.default_country_code.as_deref(),
                settings: body.settings.clone(),
            },
            None,
            &auth.meta(),
        )
        .await?;
    Ok(envelope::created(AccountDto::from(acc)))
}

#[utoipa::path(get, path = "/v1/accounts/{id}", tag = "accounts", responses((status = 200, body = Envelope<AccountDto>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_account(state: web::Data<AppState>, auth: AuthUser, id: web::Path<Uuid>) -> AppResult<HttpResponse> {
    let access = state.accounts.path_access(&auth.user, id.into_inner(), "accounts:read").await?;
    Ok(envelope::ok(AccountDto::from(state.accounts.get_account(access.scope).await?)))
}

#[utoipa::path(patch, path = "/v1/accounts/{id}", tag = "accounts", request_body = UpdateAccountRequest,
    responses((status = 200, body = Envelope<AccountDto>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_account(
    state: web::Data<AppState>,
    auth: AuthUser,
    id: web::Path<Uuid>,
    body: web::Json<UpdateAccountRequest>,
) -> AppResult<HttpResponse> {
    let access = state.accounts.path_access(&auth.user, id.into_inner(), "accounts:manage").await?;
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
    Ok(envelope::ok(AccountDto::from(state.accounts.update_account(access.scope, patch, &auth.meta()).await?)))
}

/// Delete an account (409 while it has sub-accounts).
#[utoipa::path(delete, path = "/v1/accounts/{id}", tag = "accounts", responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_account(
    state: web::Data<AppState>,
    auth: AuthUser,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    let access = state.accounts.path_access(&auth.user, id.into_inner(), "accounts:manage").await?;
    state.accounts.delete_account(access.scope, &auth.meta()).await?;
    Ok(envelope::no_content())
}

async fn members_page(
    state: &AppState,
    scope: &crate::http::ctx::AccountScope,
    q: &ListQuery,
) -> AppResult<Page<membership::Model>> {
    let select = store::memberships_in(*scope);
    let select = q.apply(select, list_fields::MEMBER_FIELDS, membership::Column::Id, membership::Column::CreatedAt)?;
    q.fetch(&state.db, select).await
}

/// Members of an account. Filters: user_id, role_id, created_at, updated_at.
#[utoipa::path(get, path = "/v1/accounts/{id}/members", tag = "accounts", params(("filter" = Option<Vec<String>>, Query), ("sort" = Option<Vec<String>>, Query), ("skip" = Option<u64>, Query), ("limit" = Option<u64>, Query)),
    responses((status = 200, body = ListEnvelope<MemberDto>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_members(
    state: web::Data<AppState>,
    auth: AuthUser,
    id: web::Path<Uuid>,
    q: ListQuery,
) -> AppResult<HttpResponse> {
    let access = state.accounts.path_access(&auth.user, id.into_inner(), "accounts:read").await?;
    let page = members_page(&state, &access.scope, &q).await?;
    let items = state.accounts.hydrate_members(access.scope, page.items).await?;
    Ok(envelope::list(Page {
        items: items.into_iter().map(member_dto).collect(),
        total: page.total,
        skip: page.skip,
        limit: page.limit,
    }))
}

/// Add an existing verified user by e-mail (new people are invited instead).
#[utoipa::path(post, path = "/v1/accounts/{id}/members", tag = "accounts", request_body = AddMemberRequest,
    responses((status = 201, body = Envelope<MemberDto>), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn add_member(
    state: web::Data<AppState>,
    auth: AuthUser,
    id: web::Path<Uuid>,
    body: web::Json<AddMemberRequest>,
) -> AppResult<HttpResponse> {
    body.validate()?;
    let access = state.accounts.path_access(&auth.user, id.into_inner(), "members:manage").await?;
    let m = state.accounts.add_member(access.scope, &body.email, body.role_id, &auth.meta()).await?;
    let row = state.accounts.member_user(access.scope, m.user_id).await?;
    Ok(envelope::created(member_dto(row)))
}

/// Change a member's role (the last admin cannot be demoted: 409).
#[utoipa::path(patch, path = "/v1/accounts/{id}/members/{user_id}", tag = "accounts", request_body = UpdateMemberRequest,
    responses((status = 200, body = Envelope<MemberDto>), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_member(
    state: web::Data<AppState>,
    auth: AuthUser,
    path: web::Path<(Uuid, Uuid)>,
    body: web::Json<UpdateMemberRequest>,
) -> AppResult<HttpResponse> {
    let (account_id, user_id) = path.into_inner();
    let access = state.accounts.path_access(&auth.user, account_id, "members:manage").await?;
    state.accounts.change_member_role(access.scope, user_id, body.role_id, &auth.meta()).await?;
    let row = state.accounts.member_user(access.scope, user_id).await?;
    Ok(envelope::ok(member_dto(row)))
}

/// Remove a member (the last admin cannot be removed: 409).
#[utoipa::path(delete, path = "/v1/accounts/{id}/members/{user_id}", tag = "accounts", responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn remove_member(
    state: web::Data<AppState>,
    auth: AuthUser,
    path: web::Path<(Uuid, Uuid)>,
) -> AppResult<HttpResponse> {
    let (account_id, user_id) = path.into_inner();
    let access = state.accounts.path_access(&auth.user, account_id, "members:manage").await?;
    state.accounts.remove_member(access.scope, user_id, &auth.meta()).await?;
    Ok(envelope::no_content())
}

// ------------------------------------------------------------------ roles

/// Roles of the active account. Filters: name, is_system, created_at, updated_at.
#[utoipa::path(get, path = "/v1/roles", tag = "roles", params(("filter" = Option<Vec<String>>, Query), ("sort" = Option<Vec<String>>, Query), ("skip" = Option<u64>, Query), ("limit" = Option<u64>, Query)),
    responses((status = 200, body = ListEnvelope<RoleDto>), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_roles(state: web::Data<AppState>, ctx: RequestCtx, q: ListQuery) -> AppResult<HttpResponse> {
    ctx.require("accounts:read")?;
    let select =
        q.apply(store::roles_in(ctx.scope()), list_fields::ROLE_FIELDS, role::Column::Id, role::Column::CreatedAt)?;
    let page = q.fetch(&state.db, select).await?;
    Ok(envelope::list(page.map(RoleDto::from)))
}

#[utoipa::path(post, path = "/v1/roles", tag = "roles", request_body = CreateRoleRequest,
    responses((status = 201, body = Envelope<RoleDto>), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_role(
    state: web::Data<AppState>,
    ctx: RequestCtx,
    body: web::Json<CreateRoleRequest>,
) -> AppResult<HttpResponse> {
    ctx.require("roles:manage")?;
    body.validate()?;
    let role = state
        .accounts
        .create_role(ctx.scope(), &body.name, body.description.clone(), &body.permissions, &ctx.meta())
        .await?;
    Ok(envelope::created(RoleDto::from(role)))
}

#[utoipa::path(get, path = "/v1/roles/{id}", tag = "roles", responses((status = 200, body = Envelope<RoleDto>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_role(state: web::Data<AppState>, ctx: RequestCtx, id: web::Path<Uuid>) -> AppResult<HttpResponse> {
    ctx.require("accounts:read")?;
    Ok(envelope::ok(RoleDto::from(state.accounts.get_role(ctx.scope(), id.into_inner()).await?)))
}

#[utoipa::path(patch, path = "/v1/roles/{id}", tag = "roles", request_body = UpdateRoleRequest,
    responses((status = 200, body = Envelope<RoleDto>), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_role(
    state: web::Data<AppState>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
    body: web::Json<UpdateRoleRequest>,
) -> AppResult<HttpResponse> {
    ctx.require("roles:manage")?;
    let b = body.into_inner();
    if let Some(Some(n)) = &b.name
        && n.len() > 100
    {
        return Err(AppError::field("name", "must be at most 100 characters"));
    }
    let role = state
        .accounts
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
pub async fn delete_role(state: web::Data<AppState>, ctx: RequestCtx, id: web::Path<Uuid>) -> AppResult<HttpResponse> {
    ctx.require("roles:manage")?;
    state.accounts.delete_role(ctx.scope(), id.into_inner(), &ctx.meta()).await?;
    Ok(envelope::no_content())
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/.well-known/jwks.json", web::get().to(jwks))
        .route("/v1/auth/register", web::post().to(register))
        .route("/v1/auth/verify-email", web::post().to(verify_email))
        .route("/v1/auth/resend-verification", web::post().to(resend_verification))
        .route("/v1/auth/login", web::post().to(login))
        .route("/v1/auth/refresh", web::post().to(refresh))
        .route("/v1/auth/logout", web::post().to(logout))
        .route("/v1/auth/forgot-password", web::post().to(forgot_password))
        .route("/v1/auth/reset-password", web::post().to(reset_password))
        .route("/v1/auth/change-password", web::post().to(change_password))
        .service(web::resource("/v1/users/me").route(web::get().to(get_me)).route(web::patch().to(update_me)))
        .route("/v1/users", web::get().to(list_users))
        .route("/v1/users/{id}", web::get().to(get_user))
        .route("/v1/context", web::get().to(get_context))
        .service(
            web::resource("/v1/accounts").route(web::get().to(list_accounts)).route(web::post().to(create_account)),
        )
        .service(
            web::resource("/v1/accounts/{id}")
                .route(web::get().to(get_account))
                .route(web::patch().to(update_account))
                .route(web::delete().to(delete_account)),
        )
        .service(
            web::resource("/v1/accounts/{id}/members")
                .route(web::get().to(list_members))
                .route(web::post().to(add_member)),
        )
        .service(
            web::resource("/v1/accounts/{id}/members/{user_id}")
                .route(web::patch().to(update_member))
                .route(web::delete().to(remove_member)),
        )
        .service(web::resource("/v1/roles").route(web::get().to(list_roles)).route(web::post().to(create_role)))
        .service(
            web::resource("/v1/roles/{id}")
                .route(web::get().to(get_role))
                .route(web::patch().to(update_role))
                .route(web::delete().to(delete_role)),
        );
}
