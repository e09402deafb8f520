//! The Cognito identity provider (`TURUMBA_IDENTITY__PROVIDER=cognito`): the `/v1/auth/*` steps call an
//! Amazon Cognito user pool through `aws-sdk-cognitoidentityprovider` (SignUp, ConfirmSignUp,
//! ResendConfirmationCode, InitiateAuth USER_PASSWORD_AUTH / REFRESH_TOKEN_AUTH, ForgotPassword,
//! ConfirmForgotPassword, ChangePassword, GlobalSignOut), with `SECRET_HASH` when the app client has a
//! secret. Access tokens are verified locally against the pool's JWKS ([`CognitoVerifier`]).
//!
//! Cognito delivers its codes itself. The pool signs users in by e-mail (e-mail as a username
//! attribute): Cognito's username of a user is then their `sub`, which the refresh flow's `SECRET_HASH`
//! uses. Refresh tokens issued through Turumba are remembered (hashed) so that `logout` can refuse them
//! from then on. Cognito unreachable → 503; its throttling → 429.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_cognitoidentityprovider as cip;
use base64::Engine;
use cip::error::{ProvideErrorMetadata, SdkError};
use cip::types::{AttributeType, AuthFlowType};
use sea_orm::DatabaseConnection;
use serde_json::{Value, json};
use uuid::Uuid;

use super::cognito_jwks::{CognitoVerifier, TokenUse};
use super::entity::user;
use super::identity_provider::{
    Credential, IdentityProvider, IssuedTokens, Proof, Session, TokenSubject, VerifiedTokens,
};
use super::local_identity::invalid_code;
use super::{session_store, store};
use crate::config::CognitoSettings;
use crate::error::{AppError, AppResult};

pub struct CognitoIdentity {
    db: DatabaseConnection,
    client: cip::Client,
    client_id: String,
    client_secret: Option<String>,
    verifier: CognitoVerifier,
    refresh_ttl_days: i64,
    /// Access tokens whose RS256 signature was checked (Cognito's live at most a day).
    verified: VerifiedTokens,
}

/// `SECRET_HASH`: Base64(HMAC-SHA256(client secret, username + client id)).
pub fn secret_hash(client_secret: &str, client_id: &str, username: &str) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, client_secret.as_bytes());
    let tag = aws_lc_rs::hmac::sign(&key, format!("{username}{client_id}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
}

/// A failed Cognito call: its error code, or `None` when Cognito could not be reached.
struct Failure {
    code: Option<String>,
    message: String,
}

fn failure<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    op: &str,
    e: SdkError<E, R>,
) -> Failure {
    match &e {
        SdkError::ServiceError(_) => {
            let code = e.code().unwrap_or("Unknown").to_string();
            let message = e.message().unwrap_or_default().to_string();
            tracing::debug!(op, code, message, "Cognito refused");
            Failure { code: Some(code), message }
        }
        _ => {
            tracing::warn!(op, error = %cip::error::DisplayErrorContext(&e), "Cognito unreachable");
            Failure { code: None, message: String::new() }
        }
    }
}

impl Failure {
    /// The answer for codes every operation shares; `None` for the ones the caller maps itself.
    fn common(&self) -> Option<AppError> {
        let Some(code) = self.code.as_deref() else {
            return Some(AppError::ServiceUnavailable("the identity provider cannot be reached".into()));
        };
        match code {
            "TooManyRequestsException" | "LimitExceededException" | "TooManyFailedAttemptsException" => {
                Some(AppError::RateLimited {
                    retry_after_secs: 60,
                    message: "too many attempts; try again later".into(),
                })
            }
            "InvalidPasswordException" => Some(AppError::field("password", password_message(&self.message))),
            "UserNotConfirmedException" => Some(AppError::Forbidden {
                code: "email_not_verified",
                message: "verify your e-mail address first".into(),
            }),
            "PasswordResetRequiredException" => Some(AppError::Forbidden {
                code: "password_reset_required",
                message: "reset your password first (forgot-password)".into(),
            }),
            "CodeMismatchException" | "ExpiredCodeException" => Some(invalid_code()),
            _ => None,
        }
    }

    /// Codes nobody maps: the pool or the app client is misconfigured, or Cognito failed.
    fn other(self) -> AppError {
        tracing::error!(code = ?self.code, message = %self.message, "unexpected Cognito error");
        AppError::ServiceUnavailable("the identity provider refused the request".into())
    }

    fn into_error(self) -> AppError {
        self.common().unwrap_or_else(|| self.other())
    }
}

/// A call whose refusal the caller must not see (the answer is the same whether or not a code went
/// out to that address): only an outage shows.
fn best_effort<T, E, R>(op: &str, sent: Result<T, SdkError<E, R>>) -> AppResult<()>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match sent.map_err(|e| failure(op, e)) {
        Err(f) if f.code.is_none() => Err(f.into_error()),
        _ => Ok(()),
    }
}

/// A call that sets a new password: a refused one is a field error on `new_password`, and
/// `NotAuthorizedException` answers `refused`.
fn password_set<T, E, R>(op: &str, sent: Result<T, SdkError<E, R>>, refused: AppError) -> AppResult<Option<String>>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let Err(e) = sent else { return Ok(None) };
    let f = failure(op, e);
    match f.code.as_deref() {
        Some("InvalidPasswordException") => Err(AppError::field("new_password", password_message(&f.message))),
        Some("NotAuthorizedException") => Err(refused),
        _ => Err(f.into_error()),
    }
}

fn password_message(cognito: &str) -> String {
    let detail = cognito.split_once(':').map(|(_, d)| d.trim()).unwrap_or(cognito);
    if detail.is_empty() { "does not meet the password policy".into() } else { detail.to_string() }
}

fn wrong_password() -> AppError {
    AppError::Unauthorized("invalid e-mail or password".into())
}

impl CognitoIdentity {
    pub fn new(db: DatabaseConnection, settings: &CognitoSettings, refresh_ttl_days: i64) -> Self {
        let timeout = Duration::from_secs(settings.timeout_secs.max(1));
        let mut conf = cip::Config::builder()
            .behavior_version(cip::config::BehaviorVersion::latest())
            .region(cip::config::Region::new(settings.region.clone()))
            .retry_config(cip::config::retry::RetryConfig::standard().with_max_attempts(2))
            .timeout_config(
                cip::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(timeout.min(Duration::from_secs(3)))
                    .operation_timeout(timeout)
                    .build(),
            );
        if let Some(endpoint) = settings.endpoint.as_deref().filter(|e| !e.is_empty()) {
            conf = conf.endpoint_url(endpoint);
        }
        CognitoIdentity {
            db,
            client: cip::Client::from_conf(conf.build()),
            client_id: settings.client_id.clone(),
            client_secret: settings.client_secret.as_ref().map(|s| s.expose().to_string()).filter(|s| !s.is_empty()),
            verifier: CognitoVerifier::new(&settings.jwks_url(), &settings.issuer(), settings.client_ids()),
            refresh_ttl_days,
            verified: VerifiedTokens::new(Duration::from_secs(24 * 3600)),
        }
    }

    fn secret_hash(&self, username: &str) -> Option<String> {
        self.client_secret.as_deref().map(|s| secret_hash(s, &self.client_id, username))
    }

    /// The user's `sub`, read from an access token Cognito just issued.
    async fn issued(
        &self,
        result: Option<&cip::types::AuthenticationResultType>,
        refresh: Option<&str>,
    ) -> AppResult<IssuedTokens> {
        let result = result.ok_or_else(|| AppError::Forbidden {
            code: "sign_in_challenge",
            message: "the user pool asks for a sign-in challenge (MFA or a new password) this API does not support"
                .into(),
        })?;
        let access = result.access_token().ok_or_else(|| AppError::internal("Cognito issued no access token"))?;
        let refresh =
            result.refresh_token().or(refresh).ok_or_else(|| AppError::internal("Cognito issued no refresh token"))?;
        let claims = self.verifier.verify(access, TokenUse::Access).await?;
        Ok(IssuedTokens {
            access_token: access.to_string(),
            refresh_token: refresh.to_string(),
            expires_in: i64::from(result.expires_in()),
            subject: claims.sub,
        })
    }
}

#[async_trait]
impl IdentityProvider for CognitoIdentity {
    fn name(&self) -> &'static str {
        "cognito"
    }

    async fn sign_up(&self, email: &str, password: &str, full_name: &str) -> AppResult<Credential> {
        let attr = |name: &str, value: &str| {
            AttributeType::builder().name(name).value(value).build().map_err(AppError::internal)
        };
        let out = self
            .client
            .sign_up()
            .client_id(&self.client_id)
            .set_secret_hash(self.secret_hash(email))
            .username(email)
            .password(password)
            .user_attributes(attr("email", email)?)
            .user_attributes(attr("name", full_name)?)
            .send()
            .await
            .map_err(|e| {
                let f = failure("SignUp", e);
                match f.code.as_deref() {
                    Some("UsernameExistsException") => AppError::conflict("a user with this e-mail already exists"),
                    Some("InvalidParameterException") => AppError::field("email", &f.message),
                    _ => f.into_error(),
                }
            })?;
        Ok(Credential { password_hash: None, subject: Some(out.user_sub().to_string()) })
    }

    async fn create_verified(&self, _email: &str, _password: &str, _full_name: &str) -> AppResult<Credential> {
        Err(AppError::NotImplemented(
            "with the Cognito identity provider users sign up themselves (POST /v1/auth/register, or through an \
             invitation); create them in the user pool otherwise"
                .into(),
        ))
    }

    async fn send_verification_code(&self, user: &user::Model, first: bool) -> AppResult<()> {
        if first {
            return Ok(()); // SignUp sent it
        }
        let sent = self
            .client
            .resend_confirmation_code()
            .client_id(&self.client_id)
            .set_secret_hash(self.secret_hash(&user.email))
            .username(&user.email)
            .send()
            .await;
        best_effort("ResendConfirmationCode", sent)
    }

    async fn confirm_sign_up(&self, user: &user::Model, code: &str) -> AppResult<()> {
        let confirmed = self
            .client
            .confirm_sign_up()
            .client_id(&self.client_id)
            .set_secret_hash(self.secret_hash(&user.email))
            .username(&user.email)
            .confirmation_code(code.trim())
            .send()
            .await;
        match confirmed {
            Ok(_) => Ok(()),
            Err(e) => {
                let f = failure("ConfirmSignUp", e);
                match f.code.as_deref() {
                    // Confirmed at Cognito by an earlier call whose sign-in then failed: the password,
                    // checked next, proves the caller.
                    Some("NotAuthorizedException") if f.message.contains("CONFIRMED") => Ok(()),
                    Some("UserNotFoundException" | "NotAuthorizedException") => Err(invalid_code()),
                    _ => Err(f.into_error()),
                }
            }
        }
    }

    fn confirms_email_itself(&self) -> bool {
        true
    }

    fn verification_needs_password(&self) -> bool {
        true
    }

    async fn check_password(&self, email: &str, password: &str, user: Option<&user::Model>) -> AppResult<Proof> {
        let mut params = HashMap::from([
            ("USERNAME".to_string(), email.to_string()),
            ("PASSWORD".to_string(), password.to_string()),
        ]);
        if let Some(h) = self.secret_hash(email) {
            params.insert("SECRET_HASH".into(), h);
        }
        let out = self
            .client
            .initiate_auth()
            .client_id(&self.client_id)
            .auth_flow(AuthFlowType::UserPasswordAuth)
            .set_auth_parameters(Some(params))
            .send()
            .await
            .map_err(|e| {
                let f = failure("InitiateAuth", e);
                match f.code.as_deref() {
                    // A user disabled in the pool, as our own deactivated users are answered.
                    Some("NotAuthorizedException") if f.message.contains("disabled") => {
                        AppError::Forbidden { code: "user_inactive", message: "this user is deactivated".into() }
                    }
                    Some("NotAuthorizedException" | "UserNotFoundException") => wrong_password(),
                    _ => f.into_error(),
                }
            })?;
        let issued = self.issued(out.authentication_result(), None).await?;
        // Our row for the e-mail is this Cognito user: linked on first sign-in if it was not yet.
        let Some(user) = user else { return Err(wrong_password()) };
        match user.provider_subject.as_deref() {
            Some(sub) if sub == issued.subject => {}
            Some(_) => return Err(wrong_password()),
            None => {
                if !session_store::link_subject(&self.db, user.id, &issued.subject).await? {
                    return Err(wrong_password());
                }
            }
        }
        Ok(Proof::Issued(issued))
    }

    async fn start_session(&self, user_id: Uuid, proof: Proof) -> AppResult<Session> {
        let Proof::Issued(t) = proof else {
            return Err(AppError::internal("Cognito sessions come from Cognito"));
        };
        let hash = crate::secret::sha256_hex(&t.refresh_token);
        if session_store::find_refresh_token(&self.db, &hash).await?.is_none() {
            let expires = chrono::Utc::now() + chrono::Duration::days(self.refresh_ttl_days);
            session_store::insert_refresh_token(&self.db, user_id, Uuid::now_v7(), hash, expires).await?;
        }
        Ok(Session { access_token: t.access_token, refresh_token: t.refresh_token, expires_in: t.expires_in })
    }

    async fn redeem_refresh_token(&self, refresh_token: &str) -> AppResult<(Uuid, Proof)> {
        let unauthorized = || AppError::Unauthorized("invalid refresh token".into());
        let record = session_store::find_refresh_token(&self.db, &crate::secret::sha256_hex(refresh_token))
            .await?
            .filter(|r| r.revoked_at.is_none() && r.expires_at > chrono::Utc::now())
            .ok_or_else(unauthorized)?;
        let user = store::find_user(&self.db, record.user_id).await?.ok_or_else(unauthorized)?;
        let sub = user.provider_subject.clone().ok_or_else(unauthorized)?;
        // The refresh flow's SECRET_HASH is keyed by Cognito's username of the user: the `sub` in a pool
        // that signs in by e-mail; keyed by the name given at sign-in (the e-mail) elsewhere, and by
        // the emulator. With a secret, the e-mail is tried when the `sub` is refused.
        let mut names = vec![sub.as_str()];
        if self.client_secret.is_some() {
            names.push(user.email.as_str());
        }
        let mut out = None;
        for (i, name) in names.iter().enumerate() {
            let mut params = HashMap::from([("REFRESH_TOKEN".to_string(), refresh_token.to_string())]);
            if let Some(h) = self.secret_hash(name) {
                params.insert("SECRET_HASH".into(), h);
            }
            let sent = self
                .client
                .initiate_auth()
                .client_id(&self.client_id)
                .auth_flow(AuthFlowType::RefreshTokenAuth)
                .set_auth_parameters(Some(params))
                .send()
                .await;
            match sent {
                Ok(o) => {
                    out = Some(o);
                    break;
                }
                Err(e) => {
                    let f = failure("InitiateAuth", e);
                    match f.code.as_deref() {
                        Some("NotAuthorizedException") if i + 1 < names.len() => continue,
                        Some("NotAuthorizedException" | "UserNotFoundException") => return Err(unauthorized()),
                        _ => return Err(f.into_error()),
                    }
                }
            }
        }
        let out = out.ok_or_else(unauthorized)?;
        let issued = self.issued(out.authentication_result(), Some(refresh_token)).await?;
        if issued.subject != sub {
            return Err(unauthorized());
        }
        Ok((record.user_id, Proof::Issued(issued)))
    }

    /// Cognito signs out globally: with the request's access token, every session of the user ends
    /// (GlobalSignOut), and the caller voids the user's tokens on our side too.
    async fn sign_out(&self, refresh_token: &str, access_token: Option<&str>) -> AppResult<Option<Uuid>> {
        let hash = crate::secret::sha256_hex(refresh_token);
        let record = session_store::find_refresh_token(&self.db, &hash).await?;
        if let Some(r) = &record {
            session_store::revoke_family(&self.db, r.family_id).await?;
        }
        let Some(access) = access_token else { return Ok(None) };
        let subject = self.token_subject(access).await?;
        if let Err(e) = self.client.global_sign_out().access_token(access).send().await {
            let f = failure("GlobalSignOut", e);
            if f.code.as_deref() != Some("NotAuthorizedException") {
                return Err(f.into_error());
            }
        }
        Ok(Some(subject.user_id))
    }

    async fn send_reset_code(&self, user: &user::Model) -> AppResult<()> {
        let sent = self
            .client
            .forgot_password()
            .client_id(&self.client_id)
            .set_secret_hash(self.secret_hash(&user.email))
            .username(&user.email)
            .send()
            .await;
        best_effort("ForgotPassword", sent)
    }

    async fn confirm_reset(&self, user: &user::Model, code: &str, new_password: &str) -> AppResult<Option<String>> {
        let done = self
            .client
            .confirm_forgot_password()
            .client_id(&self.client_id)
            .set_secret_hash(self.secret_hash(&user.email))
            .username(&user.email)
            .confirmation_code(code.trim())
            .password(new_password)
            .send()
            .await;
        if let Err(e) = &done
            && e.code() == Some("UserNotFoundException")
        {
            return Err(invalid_code());
        }
        password_set("ConfirmForgotPassword", done, invalid_code())
    }

    async fn change_password(
        &self,
        _user: &user::Model,
        access_token: &str,
        current: &str,
        new_password: &str,
    ) -> AppResult<Option<String>> {
        let done = self
            .client
            .change_password()
            .access_token(access_token)
            .previous_password(current)
            .proposed_password(new_password)
            .send()
            .await;
        password_set("ChangePassword", done, AppError::field("current_password", "is incorrect"))
    }

    async fn token_subject(&self, access_token: &str) -> AppResult<TokenSubject> {
        if let Some(subject) = self.verified.get(access_token) {
            return Ok(subject);
        }
        let claims = self.verifier.verify(access_token, TokenUse::Access).await?;
        // Once per token: later requests with it are answered by `verified`.
        let user_id = session_store::find_user_by_subject(&self.db, &claims.sub)
            .await?
            .ok_or_else(super::resolution::bad_token)?
            .id;
        let subject = TokenSubject { user_id, issued_at: claims.iat.unwrap_or(0) };
        self.verified.remember(access_token, &subject, claims.exp);
        Ok(subject)
    }

    fn jwks(&self) -> Value {
        json!({ "keys": [] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_hash_is_the_documented_hmac() {
        // python3 -c "import hmac,hashlib,base64; print(base64.b64encode(hmac.new(b'client-secret',
        //   b'user@example.com' + b'client-id', hashlib.sha256).digest()).decode())"
        assert_eq!(
            secret_hash("client-secret", "client-id", "user@example.com"),
            "NpqglvUHBpz0nyO+qeiUjlRR297+e+uA7UhuwY3pkSE="
        );
    }

    fn answer(code: Option<&str>) -> AppError {
        Failure { code: code.map(str::to_string), message: "Password did not conform with policy: too short".into() }
            .into_error()
    }

    #[test]
    fn cognito_errors_become_the_api_answers() {
        assert!(matches!(answer(None), AppError::ServiceUnavailable(_)), "unreachable");
        assert!(matches!(answer(Some("TooManyRequestsException")), AppError::RateLimited { .. }));
        assert!(matches!(answer(Some("LimitExceededException")), AppError::RateLimited { .. }));
        assert!(matches!(
            answer(Some("UserNotConfirmedException")),
            AppError::Forbidden { code: "email_not_verified", .. }
        ));
        assert!(matches!(answer(Some("CodeMismatchException")), AppError::BadRequest { code: "invalid_code", .. }));
        assert!(matches!(answer(Some("ExpiredCodeException")), AppError::BadRequest { code: "invalid_code", .. }));
        match answer(Some("InvalidPasswordException")) {
            AppError::Validation(errors) => assert_eq!(errors[0].field, "password"),
            other => panic!("{other:?}"),
        }
        // A misconfigured pool or client is the operator's problem, not the caller's.
        assert!(matches!(answer(Some("ResourceNotFoundException")), AppError::ServiceUnavailable(_)));
    }

    #[test]
    fn password_policy_messages_keep_cognito_detail() {
        assert_eq!(
            password_message("Password did not conform with policy: Password must have uppercase characters"),
            "Password must have uppercase characters"
        );
        assert_eq!(password_message(""), "does not meet the password policy");
    }
}
