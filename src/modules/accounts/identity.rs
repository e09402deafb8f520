//! The local identity provider: registration, e-mail verification codes, login (with the failure
//! lockout), refresh-token rotation, logout and password reset.

use chrono::{Duration, Timelike, Utc};
use sea_orm::{ActiveModelTrait, IntoActiveModel, Set};
use serde_json::json;
use uuid::Uuid;

use super::account::emit_account_created;

use super::service::*;
use super::tenancy::CurrentUser;
use super::tokens::{self};
use super::{password, store};
use crate::domain::EmailAddress;
use crate::error::{AppError, AppResult};
use crate::modules::events::{EventBus, EventMeta};
use crate::secret::constant_time_eq;

pub const PURPOSE_VERIFY: &str = "verify_email";

pub const PURPOSE_RESET: &str = "reset_password";

const CODE_TTL_HOURS: i64 = 24;

const RESET_TTL_HOURS: i64 = 1;

const CODE_MAX_ATTEMPTS: i32 = 5;

const LOGIN_WINDOW_MINUTES: i64 = 15;

const LOGIN_MAX_FAILURES: u64 = 10;

pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: i64,
    pub user: CurrentUser,
}

pub struct Registration<'a> {
    pub email: &'a str,
    pub password: &'a str,
    pub full_name: &'a str,
    pub account_name: &'a str,
}

/// A fresh 6-digit code for `purpose`, replacing the user's live one (only its hash is stored).
async fn issue_code<C: sea_orm::ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    purpose: &str,
    ttl_hours: i64,
) -> AppResult<String> {
    let code = tokens::new_code();
    store::replace_code(db, user_id, purpose, code_hash(user_id, &code), Utc::now() + Duration::hours(ttl_hours))
        .await?;
    Ok(code)
}

pub(super) fn code_hash(user_id: Uuid, code: &str) -> String {
    crate::secret::sha256_hex(format!("{user_id}:{code}"))
}

pub(super) fn invalid_code() -> AppError {
    AppError::BadRequest { code: "invalid_code", message: "the code is invalid or has expired".into() }
}

impl Accounts {
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn register(&self, reg: Registration<'_>) -> AppResult<Uuid> {
        let email = EmailAddress::canonical(reg.email);
        if store::find_user_by_email(&self.db, &email).await?.is_some() {
            return Err(AppError::conflict("a user with this e-mail already exists"));
        }
        let hash = password::hash(reg.password.to_string()).await?;
        let txn = crate::db::begin_write(&self.db).await?;
        let user = store::insert_user(
            &txn,
            store::NewUser {
                email: &email,
                password_hash: hash,
                full_name: reg.full_name.trim(),
                verified: false,
                pending_account_name: Some(reg.account_name.trim()),
            },
        )
        .await?;
        let code = issue_code(&txn, user.id, PURPOSE_VERIFY, CODE_TTL_HOURS).await?;
        txn.commit().await?;
        self.mail_verification(&email, &user.full_name, &code);
        Ok(user.id)
    }

    pub(super) fn mail_verification(&self, email: &str, name: &str, code: &str) {
        self.mailer.send(email, "verification", &json!({ "name": name, "code": code, "valid_for": "24 hours" }));
    }

    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn resend_verification(&self, email: &str) -> AppResult<()> {
        let email = EmailAddress::canonical(email);
        if let Some(user) = store::find_user_by_email(&self.db, &email).await?
            && user.email_verified_at.is_none()
        {
            let code = issue_code(&self.db, user.id, PURPOSE_VERIFY, CODE_TTL_HOURS).await?;
            self.mail_verification(&email, &user.full_name, &code);
        }
        Ok(())
    }

    /// Checks a code (counting the attempt) and consumes it on success.
    pub(super) async fn check_code(&self, user_id: Uuid, purpose: &str, code: &str) -> AppResult<()> {
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

    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn verify_email(&self, email: &str, code: &str, meta: &EventMeta) -> AppResult<TokenPair> {
        let email = EmailAddress::canonical(email);
        let user = store::find_user_by_email(&self.db, &email).await?.ok_or_else(invalid_code)?;
        if user.email_verified_at.is_some() {
            return Err(invalid_code());
        }
        self.check_code(user.id, PURPOSE_VERIFY, code).await?;
        let account_name = user.pending_account_name.clone().unwrap_or_else(|| format!("{}'s account", user.full_name));
        let txn = crate::db::begin_write(&self.db).await?;
        let (acc, _) = store::create_account(
            &txn,
            store::NewAccount {
                name: &account_name,
                parent_id: None,
                timezone: "UTC",
                default_country_code: None,
                settings: json!({}),
            },
            Some(user.id),
        )
        .await?;
        let mut active = user.into_active_model();
        active.email_verified_at = Set(Some(Utc::now()));
        active.pending_account_name = Set(None);
        active.default_account_id = Set(Some(acc.id));
        active.updated_at = Set(Utc::now());
        let user = active.update(&txn).await?;
        let mut bus = EventBus::new(EventMeta { user_id: Some(user.id), ..meta.clone() });
        emit_account_created(&mut bus, &acc, user.id);
        self.events.commit(txn, bus).await?;
        self.issue_tokens(user.into(), Uuid::now_v7()).await
    }

    pub(super) async fn issue_tokens(&self, user: CurrentUser, family: Uuid) -> AppResult<TokenPair> {
        let refresh = tokens::new_refresh_token();
        store::insert_refresh_token(
            &self.db,
            user.id,
            family,
            crate::secret::sha256_hex(&refresh),
            Utc::now() + Duration::days(self.refresh_ttl_days),
        )
        .await?;
        Ok(TokenPair {
            access_token: self.keys.issue(user.id),
            refresh_token: refresh,
            expires_in: self.keys.access_ttl_secs,
            user,
        })
    }

    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn login(&self, email: &str, password_in: &str) -> AppResult<TokenPair> {
        let email = EmailAddress::canonical(email);
        let since = Utc::now() - Duration::minutes(LOGIN_WINDOW_MINUTES);
        // The attempt is counted before the password is checked, so parallel attempts cannot outrun
        // the limit; a wrong password leaves the claim standing as its failure.
        let claim = match store::claim_login_attempt(&self.db, &email, since, LOGIN_MAX_FAILURES).await? {
            Ok(claim) => claim,
            Err(oldest) => {
                let retry = oldest
                    .map(|o| (o + Duration::minutes(LOGIN_WINDOW_MINUTES) - Utc::now()).num_seconds().max(1))
                    .unwrap_or(60);
                return Err(AppError::RateLimited {
                    retry_after_secs: retry as u64,
                    message: "too many failed logins for this e-mail; try again later".into(),
                });
            }
        };
        let user = store::find_user_by_email(&self.db, &email).await?;
        let ok = password::verify(password_in.to_string(), user.as_ref().and_then(|u| u.password_hash.clone())).await;
        let user = match (ok, user) {
            (true, Some(u)) => u,
            _ => return Err(AppError::Unauthorized("invalid e-mail or password".into())),
        };
        if user.email_verified_at.is_none() || !user.is_active {
            // The right password: not a failure, whatever else stops the login.
            store::release_login_claim(&self.db, claim).await?;
        }
        if user.email_verified_at.is_none() {
            return Err(AppError::Forbidden {
                code: "email_not_verified",
                message: "verify your e-mail address first".into(),
            });
        }
        if !user.is_active {
            return Err(AppError::Forbidden { code: "user_inactive", message: "this user is deactivated".into() });
        }
        store::clear_login_failures(&self.db, &email).await?;
        self.issue_tokens(user.into(), Uuid::now_v7()).await
    }

    /// Rotates a refresh token. Presenting an already-rotated token revokes its whole family.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn refresh(&self, refresh_token: &str) -> AppResult<TokenPair> {
        let unauthorized = || AppError::Unauthorized("invalid refresh token".into());
        let record = store::find_refresh_token(&self.db, &crate::secret::sha256_hex(refresh_token))
            .await?
            .ok_or_else(unauthorized)?;
        if record.revoked_at.is_some() {
            tracing::warn!(family = %record.family_id, user = %record.user_id, "refresh token reuse: revoking the family");
            store::revoke_family(&self.db, record.family_id).await?;
            return Err(unauthorized());
        }
        if record.expires_at < Utc::now() {
            return Err(unauthorized());
        }
        if !store::revoke_refresh_token_once(&self.db, record.id).await? {
            // Lost a race with another rotation of the same token: that is reuse too.
            store::revoke_family(&self.db, record.family_id).await?;
            return Err(unauthorized());
        }
        let user = store::find_user(&self.db, record.user_id)
            .await?
            .filter(|u| u.is_active && u.email_verified_at.is_some())
            .ok_or_else(unauthorized)?;
        self.issue_tokens(user.into(), record.family_id).await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn logout(&self, refresh_token: &str) -> AppResult<()> {
        if let Some(record) = store::find_refresh_token(&self.db, &crate::secret::sha256_hex(refresh_token)).await? {
            store::revoke_family(&self.db, record.family_id).await?;
        }
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn forgot_password(&self, email: &str) -> AppResult<()> {
        let email = EmailAddress::canonical(email);
        if let Some(user) = store::find_user_by_email(&self.db, &email).await?
            && user.is_active
        {
            let code = issue_code(&self.db, user.id, PURPOSE_RESET, RESET_TTL_HOURS).await?;
            let data = json!({ "name": user.full_name, "code": code, "valid_for": "one hour" });
            self.mailer.send(&email, "password_reset", &data);
        }
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn reset_password(&self, email: &str, code: &str, new_password: &str) -> AppResult<()> {
        let email = EmailAddress::canonical(email);
        let user = store::find_user_by_email(&self.db, &email).await?.ok_or_else(invalid_code)?;
        self.check_code(user.id, PURPOSE_RESET, code).await?;
        let hash = password::hash(new_password.to_string()).await?;
        let txn = crate::db::begin_write(&self.db).await?;
        let id = user.id;
        let mut active = user.into_active_model();
        active.password_hash = Set(Some(hash));
        // Receiving the code by mail proves the address.
        if active.email_verified_at.as_ref().is_none() {
            active.email_verified_at = Set(Some(Utc::now()));
        }
        active.updated_at = Set(Utc::now());
        // Every session ends now: refresh tokens are revoked and access tokens issued so far are void.
        // Whole seconds, as tokens carry them: a token issued later in this second stays valid.
        active.tokens_valid_after = Set(Some(Utc::now().with_nanosecond(0).unwrap_or_else(Utc::now)));
        active.update(&txn).await?;
        store::revoke_all_of_user(&txn, id).await?;
        txn.commit().await?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn change_password(&self, user: &CurrentUser, current: &str, new_password: &str) -> AppResult<()> {
        let model = store::find_user(&self.db, user.id).await?.ok_or(AppError::NotFound("user"))?;
        if !password::verify(current.to_string(), model.password_hash.clone()).await {
            return Err(AppError::field("current_password", "is incorrect"));
        }
        let hash = password::hash(new_password.to_string()).await?;
        let mut active = model.into_active_model();
        active.password_hash = Set(Some(hash));
        active.updated_at = Set(Utc::now());
        active.update(&self.db).await?;
        Ok(())
    }

    /// For `turumba admin create-user` and tests: a verified user with an account and admin membership.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn create_verified_user(
        &self,
        email: &str,
        password_in: &str,
        full_name: &str,
        account_name: &str,
    ) -> AppResult<(Uuid, Uuid)> {
        let email = EmailAddress::canonical(email);
        let hash = password::hash(password_in.to_string()).await?;
        let txn = crate::db::begin_write(&self.db).await?;
        let user = store::insert_user(
            &txn,
            store::NewUser {
                email: &email,
                password_hash: hash,
                full_name,
                verified: true,
                pending_account_name: None,
            },
        )
        .await?;
        let (acc, _) = store::create_account(
            &txn,
            store::NewAccount {
                name: account_name,
                parent_id: None,
                timezone: "UTC",
                default_country_code: None,
                settings: json!({}),
            },
            Some(user.id),
        )
        .await?;
        let mut active = user.into_active_model();
        active.default_account_id = Set(Some(acc.id));
        let user = active.update(&txn).await?;
        let mut bus = EventBus::new(EventMeta { user_id: Some(user.id), request_id: None, ip: None });
        emit_account_created(&mut bus, &acc, user.id);
        self.events.commit(txn, bus).await?;
        Ok((user.id, acc.id))
    }
}
