//! `/v1/accounts/{id}/invitations*` (members:manage) and the invitee's side, `/v1/invitations/{token}`
//! (public preview) and `…/accept` (logged in as the invited address, or registering through it).

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;
use validator::Validate;

use super::auth::{RegisterResponse, TokenResponse};
use super::context::{AuthUser, request_meta};
use crate::db::list::ListQuery;
use crate::error::{AppError, AppResult, ErrorBody};
use crate::http::Json;
use crate::http::envelope::{self, Envelope, ListEnvelope};
use crate::modules::accounts::entity::invitation;
use crate::modules::accounts::invitations::{InvitationView, NewUserAcceptance, shown_status};
use crate::modules::accounts::password::MIN_PASSWORD_LEN;
use crate::modules::accounts::service::Accounts;

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInvitationRequest {
    #[validate(email(message = "must be a valid e-mail address"), length(max = 254))]
    #[schema(max_length = 254, format = Email)]
    pub email: String,
    pub role_id: Uuid,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationDto {
    pub id: Uuid,
    pub account_id: Uuid,
    pub email: String,
    pub role_id: Uuid,
    pub invited_by: Option<Uuid>,
    /// `pending`, `accepted`, `revoked` or `expired`.
    pub status: String,
    pub expires_at: DateTime<Utc>,
    pub accepted_at: Option<DateTime<Utc>>,
    pub accepted_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<invitation::Model> for InvitationDto {
    fn from(i: invitation::Model) -> Self {
        InvitationDto {
            status: shown_status(&i).to_string(),
            id: i.id,
            account_id: i.account_id,
            email: i.email,
            role_id: i.role_id,
            invited_by: i.invited_by,
            expires_at: i.expires_at,
            accepted_at: i.accepted_at,
            accepted_by: i.accepted_by,
            created_at: i.created_at,
            updated_at: i.updated_at,
        }
    }
}

/// What an invitation link shows.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationPreviewDto {
    pub email: String,
    pub account_id: Uuid,
    pub account_name: String,
    pub role_name: String,
    pub invited_by: Option<String>,
    pub expires_at: DateTime<Utc>,
    /// True: log in as `email` and accept; false: accept with `full_name` and `password` to register.
    pub user_exists: bool,
}

impl From<InvitationView> for InvitationPreviewDto {
    fn from(v: InvitationView) -> Self {
        InvitationPreviewDto {
            email: v.invitation.email,
            account_id: v.account.id,
            account_name: v.account.name,
            role_name: v.role.name,
            invited_by: v.invited_by,
            expires_at: v.invitation.expires_at,
            user_exists: v.user_exists,
        }
    }
}

/// Accepting without a bearer token registers the invited address.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptAsNewUserRequest {
    #[validate(length(min = 1, max = 200), custom(function = "crate::domain::text::name"))]
    #[schema(min_length = 1, max_length = 200, pattern = r"^(?!\s+$)[^\u0000-\u001F\u007F-\u009F]*$")]
    pub full_name: String,
    #[validate(length(min = MIN_PASSWORD_LEN, max = 256, message = "must be at least 10 characters"))]
    #[schema(min_length = 10, max_length = 256)]
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AcceptedDto {
    /// The account joined.
    pub account_id: Uuid,
}

/// Invite someone by e-mail with a role; a pending invitation of the same address is replaced (its
/// link stops working). 409 when they are already a member.
#[utoipa::path(post, path = "/v1/accounts/{id}/invitations", tag = "accounts", request_body = CreateInvitationRequest,
    responses((status = 201, body = Envelope<InvitationDto>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_invitation(
    accounts: web::Data<Accounts>,
    auth: AuthUser,
    id: web::Path<Uuid>,
    body: Json<CreateInvitationRequest>,
) -> AppResult<HttpResponse> {
    body.validate()?;
    let access = accounts.path_access_to_change(&auth.user, id.into_inner(), "members:manage").await?;
    let inv = accounts.invite(access.scope, &auth.user, &body.email, body.role_id, &auth.meta()).await?;
    Ok(envelope::created(InvitationDto::from(inv)))
}

/// The account's invitations. Filters: id, account_id, email, role_id, status (the stored one: pending,
/// accepted, revoked — an expired invitation is stored pending and shown `expired`; filter on
/// `expires_at` to tell them apart), expires_at, created_at, updated_at.
#[utoipa::path(get, path = "/v1/accounts/{id}/invitations", tag = "accounts", params(("filter" = Option<Vec<String>>, Query), ("sort" = Option<Vec<String>>, Query), ("skip" = Option<u64>, Query), ("limit" = Option<u64>, Query)),
    responses((status = 200, body = ListEnvelope<InvitationDto>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_invitations(
    accounts: web::Data<Accounts>,
    auth: AuthUser,
    id: web::Path<Uuid>,
    q: ListQuery,
) -> AppResult<HttpResponse> {
    let access = accounts.path_access(&auth.user, id.into_inner(), "members:manage").await?;
    Ok(envelope::list(accounts.list_invitations(access.scope, &q).await?.map(InvitationDto::from)))
}

/// Withdraw a pending invitation (409 once accepted).
#[utoipa::path(delete, path = "/v1/accounts/{id}/invitations/{invitation_id}", tag = "accounts",
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn revoke_invitation(
    accounts: web::Data<Accounts>,
    auth: AuthUser,
    path: web::Path<(Uuid, Uuid)>,
) -> AppResult<HttpResponse> {
    let (account_id, invitation_id) = path.into_inner();
    let access = accounts.path_access_to_change(&auth.user, account_id, "members:manage").await?;
    accounts.revoke_invitation(access.scope, invitation_id, &auth.meta()).await?;
    Ok(envelope::no_content())
}

/// Where an invitation leads (no login: the token is the proof). 404 unknown; 410
/// `invitation_expired`, `invitation_used` or `invitation_revoked`.
#[utoipa::path(get, path = "/v1/invitations/{token}", tag = "accounts",
    responses((status = 200, body = Envelope<InvitationPreviewDto>), (status = 404, body = ErrorBody), (status = 410, body = ErrorBody)))]
pub async fn preview_invitation(accounts: web::Data<Accounts>, token: web::Path<String>) -> AppResult<HttpResponse> {
    Ok(envelope::ok(InvitationPreviewDto::from(accounts.preview_invitation(&token).await?)))
}

/// Accept an invitation. With a bearer token: as that user, who must have the invited e-mail (403
/// `invitation_email_mismatch`) → `{account_id}`. Without one: `{full_name, password}` registers the
/// invited address (verified by the link; 409 if it already has a user, who logs in instead) → tokens,
/// as from login; with the Cognito provider → 202 `{user_id, verification_required}`: the invitation is
/// accepted when the e-mail is verified with Cognito's code (`verify-email`). 404 unknown; 410 expired,
/// used or revoked.
#[utoipa::path(post, path = "/v1/invitations/{token}/accept", tag = "accounts", request_body(content = Option<AcceptAsNewUserRequest>),
    responses((status = 200, body = Envelope<AcceptedDto>, description = "accepted by the logged-in user"), (status = 201, body = Envelope<TokenResponse>, description = "registered through the invitation"), (status = 202, body = Envelope<RegisterResponse>, description = "signed up with Cognito: verify the e-mail to accept"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 410, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn accept_invitation(
    req: HttpRequest,
    accounts: web::Data<Accounts>,
    token: web::Path<String>,
    body: web::Bytes,
) -> AppResult<HttpResponse> {
    if req.headers().contains_key(actix_web::http::header::AUTHORIZATION) {
        let auth = <AuthUser as actix_web::FromRequest>::extract(&req).await?;
        let account_id = accounts.accept_invitation(&token, &auth.user, &auth.meta()).await?;
        return Ok(envelope::ok(AcceptedDto { account_id }));
    }
    let body: AcceptAsNewUserRequest = crate::http::from_object_slice(&body).map_err(|e| match e.is_data() {
        true => AppError::field(crate::http::data_error_field(&e.to_string()), e.to_string()),
        false => AppError::bad_request(format!("expected {{full_name, password}} (or a bearer token): {e}")),
    })?;
    body.validate()?;
    let accepted =
        accounts.accept_invitation_as_new_user(&token, &body.full_name, &body.password, &request_meta(&req)).await?;
    Ok(match accepted {
        NewUserAcceptance::SignedIn(tokens) => envelope::created(TokenResponse::from(*tokens)),
        NewUserAcceptance::VerificationRequired { user_id } => {
            envelope::accepted_with(RegisterResponse { user_id, verification_required: true })
        }
    })
}

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/v1/accounts/{id}/invitations")
            .route(web::get().to(list_invitations))
            .route(web::post().to(create_invitation)),
    )
    .service(web::resource("/v1/accounts/{id}/invitations/{invitation_id}").route(web::delete().to(revoke_invitation)))
    .service(web::resource("/v1/invitations/{token}").route(web::get().to(preview_invitation)))
    .service(web::resource("/v1/invitations/{token}/accept").route(web::post().to(accept_invitation)));
}
