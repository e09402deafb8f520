//! The local identity provider (the default): argon2id password hashes in our users table, 6-digit
//! codes (hashed, 5 attempts) mailed through the system SMTP, EdDSA access tokens signed by Turumba and
//! opaque refresh tokens rotated on use (reuse of a rotated one revokes its whole family).

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{Duration, Utc};
use sea_orm::DatabaseConnection;
use serde_json::{Value, json};
use uuid::Uuid;

use super::entity::user;
use super::identity_provider::{Credential, IdentityProvider, Proof, Session, TokenSubject, VerifiedTokens};
use super::tokens::{self, JwtKeys};
use super::{password, session_store, store};
use crate::error::{AppError, AppResult};
use crate::mail::Mailer;
use crate::secret::constant_time_eq;

const PURPOSE_VERIFY: &str = "verify_email";
const PURPOSE_RESET: &str = "reset_password";
const CODE_TTL_HOURS: i64 = 24;
const RESET_TTL_HOURS: i64 = 1;
const CODE_MAX_ATTEMPTS: i32 = 5;

pub struct LocalIdentity {
    db: DatabaseConnection,
    keys: Arc<JwtKeys>,
    mailer: Mailer,
    refresh_ttl_days: i64,
    /// Access tokens whose EdDSA signature was checked.
    verified: VerifiedTokens,
}

pub(super) fn invalid_code() -> AppError {
    AppError::BadRequest { code: "invalid_code", message: "the code is invalid or has expired".into() }
}

fn code_hash(user_id: Uuid, code: &str) -> String {
    crate::secret::sha256_hex(format!("{user_id}:{code}"))
}

fn unauthorized_refresh() -> AppError {
    AppError::Unauthorized("invalid refresh token".into())
}

impl LocalIdentity {
    pub fn new(db: DatabaseConnection, keys: Arc<JwtKeys>, mailer: Mailer, refresh_ttl_days: i64) -> Self {
        let verified = VerifiedTokens::new(std::time::Duration::from_secs(keys.access_ttl_secs.max(1) as u64));
        LocalIdentity { db, keys, mailer, refresh_ttl_days, verified }
    }

    /// A fresh 6-digit code for `purpose`, replacing the user's live one (only its hash is stored).
    async fn issue_code(&self, user_id: Uuid, purpose: &str, ttl_hours: i64) -> AppResult<String> {
        let code = tokens::new_code();
        let expires = Utc::now() + Duration::hours(ttl_hours);
        store::replace_code(&self.db, user_id, purpose, code_hash(user_id, &code), expires).await?;
        Ok(code)
    }

    /// Checks a code (counting the attempt) and consumes it on success.
    async fn check_code(&self, user_id: Uuid, purpose: &str, code: &str) -> AppResult<()> {
        let record = store::live_code(&self.db, user_id, purpose).await?.ok_or_else(invalid_code)?;
        if record.expires_at < Utc::now() {
            return Err(invalid_code());
        }
        // Counted before comparing: parallel guesses cannot outrun the limit.
        if !store::claim_code_attempt(&self.db, record.id, CODE_MAX_ATTEMPTS).await? {
            return Err(invalid_code());
        }
        let expected = code_hash(user_id, code.trim());
        if !constant_time_eq(expected.as_bytes(), record.code_hash.as_bytes()) {
            return Err(invalid_code());
        }
        if !store::consume_code(&self.db, record.id).await? {
            return Err(invalid_code());
        }
        Ok(())
    }

    async fn hashed(&self, password_in: &str) -> AppResult<Credential> {
        Ok(Credential { password_hash: Some(password::hash(password_in.to_string()).await?), subject: None })
    }
}

#[async_trait]
impl IdentityProvider for LocalIdentity {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn sign_up(&self, _email: &str, password_in: &str, _full_name: &str) -> AppResult<Credential> {
        self.hashed(password_in).await
    }

    async fn create_verified(&self, _email: &str, password_in: &str, _full_name: &str) -> AppResult<Credential> {
        self.hashed(password_in).await
    }

    async fn send_verification_code(&self, user: &user::Model, _first: bool) -> AppResult<()> {
        let code = self.issue_code(user.id, PURPOSE_VERIFY, CODE_TTL_HOURS).await?;
        let data = json!({ "name": user.full_name, "code": code, "valid_for": "24 hours" });
        self.mailer.send(&user.email, "verification", &data);
        Ok(())
    }

    async fn confirm_sign_up(&self, user: &user::Model, code: &str) -> AppResult<()> {
        self.check_code(user.id, PURPOSE_VERIFY, code).await
    }

    fn confirms_email_itself(&self) -> bool {
        false
    }

    fn verification_needs_password(&self) -> bool {
        false
    }

    async fn check_password(&self, _email: &str, password_in: &str, user: Option<&user::Model>) -> AppResult<Proof> {
        // With no user a dummy hash is checked: the answer takes as long either way.
        let stored = user.and_then(|u| u.password_hash.clone());
        if password::verify(password_in.to_string(), stored).await && user.is_some() {
            Ok(Proof::Pending { family: None })
        } else {
            Err(AppError::Unauthorized("invalid e-mail or password".into()))
        }
    }

    async fn start_session(&self, user_id: Uuid, proof: Proof) -> AppResult<Session> {
        let family = match proof {
            Proof::Pending { family } => family.unwrap_or_else(Uuid::now_v7),
            Proof::Issued(_) => return Err(AppError::internal("the local provider issues its own tokens")),
        };
        let refresh = tokens::new_refresh_token();
        let expires = Utc::now() + Duration::days(self.refresh_ttl_days);
        session_store::insert_refresh_token(&self.db, user_id, family, crate::secret::sha256_hex(&refresh), expires)
            .await?;
        Ok(Session {
            access_token: self.keys.issue(user_id),
            refresh_token: refresh,
            expires_in: self.keys.access_ttl_secs,
        })
    }

    /// Rotates: the presented token is used up; presenting an already-rotated one revokes its family.
    async fn redeem_refresh_token(&self, refresh_token: &str) -> AppResult<(Uuid, Proof)> {
        let record = session_store::find_refresh_token(&self.db, &crate::secret::sha256_hex(refresh_token))
            .await?
            .ok_or_else(unauthorized_refresh)?;
        if record.revoked_at.is_some() {
            tracing::warn!(family = %record.family_id, user = %record.user_id, "refresh token reuse: revoking the family");
            session_store::revoke_family(&self.db, record.family_id).await?;
            return Err(unauthorized_refresh());
        }
        if record.expires_at < Utc::now() {
            return Err(unauthorized_refresh());
        }
        if !session_store::revoke_refresh_token_once(&self.db, record.id).await? {
            // Lost a race with another rotation of the same token: that is reuse too.
            session_store::revoke_family(&self.db, record.family_id).await?;
            return Err(unauthorized_refresh());
        }
        Ok((record.user_id, Proof::Pending { family: Some(record.family_id) }))
    }

    async fn sign_out(&self, refresh_token: &str, _access_token: Option<&str>) -> AppResult<Option<Uuid>> {
        let hash = crate::secret::sha256_hex(refresh_token);
        if let Some(record) = session_store::find_refresh_token(&self.db, &hash).await? {
            session_store::revoke_family(&self.db, record.family_id).await?;
        }
        Ok(None)
    }

    async fn send_reset_code(&self, user: &user::Model) -> AppResult<()> {
        let code = self.issue_code(user.id, PURPOSE_RESET, RESET_TTL_HOURS).await?;
        let data = json!({ "name": user.full_name, "code": code, "valid_for": "one hour" });
        self.mailer.send(&user.email, "password_reset", &data);
        Ok(())
    }

    async fn confirm_reset(&self, user: &user::Model, code: &str, new_password: &str) -> AppResult<Option<String>> {
        self.check_code(user.id, PURPOSE_RESET, code).await?;
        Ok(Some(password::hash(new_password.to_string()).await?))
    }

    async fn change_password(
        &self,
        user: &user::Model,
        _access_token: &str,
        current: &str,
        new_password: &str,
    ) -> AppResult<Option<String>> {
        if !password::verify(current.to_string(), user.password_hash.clone()).await {
            return Err(AppError::field("current_password", "is incorrect"));
        }
        Ok(Some(password::hash(new_password.to_string()).await?))
    }

    async fn token_subject(&self, access_token: &str) -> AppResult<TokenSubject> {
        if let Some(subject) = self.verified.get(access_token) {
            return Ok(subject);
        }
        let claims = self.keys.verify(access_token).ok_or_else(super::resolution::bad_token)?;
        let subject = TokenSubject { user_id: claims.sub, issued_at: claims.iat };
        self.verified.remember(access_token, &subject, claims.exp);
        Ok(subject)
    }

    fn jwks(&self) -> Value {
        self.keys.jwks()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn provider() -> LocalIdentity {
        let db = sea_orm::Database::connect("sqlite::memory:").await.unwrap();
        let keys = Arc::new(JwtKeys::new(&crate::secret::SecretKey::generate(), 900));
        let mailer =
            Mailer::new(&crate::config::Settings::for_test(std::path::Path::new("/tmp"), "sqlite::memory:").smtp, None)
                .unwrap();
        LocalIdentity::new(db, keys, mailer, 30)
    }

    #[tokio::test]
    async fn verified_tokens_are_remembered_only_until_they_expire() {
        let p = provider().await;
        let user = Uuid::now_v7();
        let token = p.keys.issue(user);
        assert_eq!(p.token_subject(&token).await.unwrap().user_id, user);
        assert!(p.verified.get(&token).is_some(), "a verified token is remembered");
        // An entry past its `exp` is not used: the token is checked again (here: garbage, so refused).
        let past = Utc::now().timestamp() - 1;
        p.verified.remember("not-a-token", &TokenSubject { user_id: user, issued_at: past - 900 }, past);
        assert!(matches!(p.token_subject("not-a-token").await, Err(AppError::Unauthorized(_))));
        // A token that fails the check never enters.
        assert!(p.token_subject("garbage").await.is_err());
        assert!(p.verified.get("garbage").is_none());
        assert!(p.verified.get("not-a-token").is_none(), "an expired entry is not handed out");
    }
}
