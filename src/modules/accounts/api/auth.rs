//! `/v1/auth/*` and `/.well-known/jwks.json`: registration, e-mail verification, login, refresh, logout
//! and passwords, the same API over either identity provider (local or Cognito).

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;
use validator::Validate;

use super::context::{AuthUser, request_meta};
use super::users::UserDto;
use crate::error::{AppResult, ErrorBody};
use crate::http::Json;
use crate::http::envelope::{self, Envelope};
use crate::modules::accounts::identity::{Registration, TokenPair};
use crate::modules::accounts::password::MIN_PASSWORD_LEN;
use crate::modules::accounts::service::Accounts;

// ------------------------------------------------------------------ DTOs

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    #[validate(email(message = "must be a valid e-mail address"), length(max = 254))]
    #[schema(max_length = 254, format = Email)]
    pub email: String,
    #[validate(length(min = MIN_PASSWORD_LEN, max = 256, message = "must be at least 10 characters"))]
    #[schema(min_length = 10, max_length = 256)]
    pub password: String,
    #[validate(length(min = 1, max = 200), custom(function = "crate::domain::text::name"))]
    #[schema(min_length = 1, max_length = 200, pattern = r"^(?!\s+$)[^\u0000-\u001F\u007F-\u009F]*$")]
    pub full_name: String,
    #[validate(length(min = 1, max = 200), custom(function = "crate::domain::text::name"))]
    #[schema(min_length = 1, max_length = 200, pattern = r"^(?!\s+$)[^\u0000-\u001F\u007F-\u009F]*$")]
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
    #[schema(format = Email)]
    pub email: String,
    #[validate(length(min = 6, max = 6, message = "must be the 6-digit code"))]
    #[schema(min_length = 6, max_length = 6)]
    pub code: String,
    /// The password chosen at registration: required with the Cognito identity provider (which signs
    /// the user in with it), ignored by the local one.
    #[validate(length(min = 1, max = 256))]
    #[schema(min_length = 1, max_length = 256)]
    pub password: Option<String>,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
pub struct EmailRequest {
    #[validate(email(message = "must be a valid e-mail address"))]
    #[schema(format = Email)]
    pub email: String,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
pub struct LoginRequest {
    #[validate(length(min = 1, max = 254))]
    #[schema(min_length = 1, max_length = 254)]
    pub email: String,
    #[validate(length(min = 1, max = 256))]
    #[schema(min_length = 1, max_length = 256)]
    pub password: String,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
pub struct RefreshRequest {
    #[validate(length(min = 1, max = 512))]
    #[schema(min_length = 1, max_length = 512)]
    pub refresh_token: String,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
pub struct ResetPasswordRequest {
    #[validate(email(message = "must be a valid e-mail address"))]
    #[schema(format = Email)]
    pub email: String,
    #[validate(length(min = 6, max = 6, message = "must be the 6-digit code"))]
    #[schema(min_length = 6, max_length = 6)]
    pub code: String,
    #[validate(length(min = MIN_PASSWORD_LEN, max = 256, message = "must be at least 10 characters"))]
    #[schema(min_length = 10, max_length = 256)]
    pub new_password: String,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
pub struct ChangePasswordRequest {
    #[validate(length(min = 1, max = 256))]
    #[schema(min_length = 1, max_length = 256)]
    pub current_password: String,
    #[validate(length(min = MIN_PASSWORD_LEN, max = 256, message = "must be at least 10 characters"))]
    #[schema(min_length = 10, max_length = 256)]
    pub new_password: String,
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

// ------------------------------------------------------------------ auth handlers

/// Register a user. The account named here is created when the e-mail is verified.
#[utoipa::path(post, path = "/v1/auth/register", tag = "auth", request_body = RegisterRequest,
    responses((status = 201, body = Envelope<RegisterResponse>), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn register(accounts: web::Data<Accounts>, body: Json<RegisterRequest>) -> AppResult<HttpResponse> {
    body.validate()?;
    let user_id = accounts
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
    accounts: web::Data<Accounts>,
    body: Json<VerifyEmailRequest>,
) -> AppResult<HttpResponse> {
    body.validate()?;
    let tokens = accounts.verify_email(&body.email, &body.code, body.password.as_deref(), &request_meta(&req)).await?;
    Ok(envelope::ok(TokenResponse::from(tokens)))
}

/// Send a new verification code (same answer whether or not the e-mail exists).
#[utoipa::path(post, path = "/v1/auth/resend-verification", tag = "auth", request_body = EmailRequest, responses((status = 202)))]
pub async fn resend_verification(accounts: web::Data<Accounts>, body: Json<EmailRequest>) -> AppResult<HttpResponse> {
    body.validate()?;
    accounts.resend_verification(&body.email).await?;
    Ok(envelope::accepted("if the address needs verification, a new code has been sent"))
}

#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = Envelope<TokenResponse>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "email_not_verified or user_inactive"), (status = 429, body = ErrorBody)))]
pub async fn login(accounts: web::Data<Accounts>, body: Json<LoginRequest>) -> AppResult<HttpResponse> {
    body.validate()?;
    let tokens = accounts.login(&body.email, &body.password).await?;
    Ok(envelope::ok(TokenResponse::from(tokens)))
}

/// Rotate a refresh token. Reusing a rotated token revokes its whole family.
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = Envelope<TokenResponse>), (status = 401, body = ErrorBody)))]
pub async fn refresh(accounts: web::Data<Accounts>, body: Json<RefreshRequest>) -> AppResult<HttpResponse> {
    body.validate()?;
    let tokens = accounts.refresh(&body.refresh_token).await?;
    Ok(envelope::ok(TokenResponse::from(tokens)))
}

/// Revoke the refresh-token family of the given token. With the Cognito provider and the request's
/// bearer token, every session of the user ends (Cognito's GlobalSignOut).
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", request_body = RefreshRequest, responses((status = 204)))]
pub async fn logout(
    req: actix_web::HttpRequest,
    accounts: web::Data<Accounts>,
    body: Json<RefreshRequest>,
) -> AppResult<HttpResponse> {
    body.validate()?;
    let access = super::context::bearer(&req).ok();
    accounts.logout(&body.refresh_token, access.as_deref()).await?;
    Ok(envelope::no_content())
}

#[utoipa::path(post, path = "/v1/auth/forgot-password", tag = "auth", request_body = EmailRequest, responses((status = 202)))]
pub async fn forgot_password(accounts: web::Data<Accounts>, body: Json<EmailRequest>) -> AppResult<HttpResponse> {
    body.validate()?;
    accounts.forgot_password(&body.email).await?;
    Ok(envelope::accepted("if the address belongs to a user, a reset code has been sent"))
}

#[utoipa::path(post, path = "/v1/auth/reset-password", tag = "auth", request_body = ResetPasswordRequest,
    responses((status = 204), (status = 400, body = ErrorBody, description = "invalid_code")))]
pub async fn reset_password(
    accounts: web::Data<Accounts>,
    body: Json<ResetPasswordRequest>,
) -> AppResult<HttpResponse> {
    body.validate()?;
    accounts.reset_password(&body.email, &body.code, &body.new_password).await?;
    Ok(envelope::no_content())
}

#[utoipa::path(post, path = "/v1/auth/change-password", tag = "auth", request_body = ChangePasswordRequest,
    responses((status = 204), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn change_password(
    accounts: web::Data<Accounts>,
    auth: AuthUser,
    body: Json<ChangePasswordRequest>,
) -> AppResult<HttpResponse> {
    body.validate()?;
    accounts.change_password(&auth.user, &auth.token, &body.current_password, &body.new_password).await?;
    Ok(envelope::no_content())
}

/// The public keys that verify access tokens.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth", responses((status = 200, description = "JSON Web Key Set")))]
pub async fn jwks(accounts: web::Data<Accounts>) -> HttpResponse {
    HttpResponse::Ok().json(accounts.jwks())
}

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/.well-known/jwks.json").route(web::get().to(jwks)))
        .service(web::resource("/v1/auth/register").route(web::post().to(register)))
        .service(web::resource("/v1/auth/verify-email").route(web::post().to(verify_email)))
        .service(web::resource("/v1/auth/resend-verification").route(web::post().to(resend_verification)))
        .service(web::resource("/v1/auth/login").route(web::post().to(login)))
        .service(web::resource("/v1/auth/refresh").route(web::post().to(refresh)))
        .service(web::resource("/v1/auth/logout").route(web::post().to(logout)))
        .service(web::resource("/v1/auth/forgot-password").route(web::post().to(forgot_password)))
        .service(web::resource("/v1/auth/reset-password").route(web::post().to(reset_password)))
        .service(web::resource("/v1/auth/change-password").route(web::post().to(change_password)));
}
