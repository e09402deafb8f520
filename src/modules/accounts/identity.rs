//! The `/v1/auth/*` operations over whichever [`IdentityProvider`] runs: our users table (registration,
//! verification, which creates the account), the login lockout, sessions, logout and passwords. The
//! provider checks and keeps the credentials (`local_identity.rs`, `cognito.rs`).

use chrono::{Duration, Timelike, Utc};
use sea_orm::{ActiveModelTrait, IntoActiveModel, Set};
use serde_json::json;
use uuid::Uuid;

use super::account::emit_account_created;
use super::identity_provider::Proof;
use super::service::*;
use super::tenancy::CurrentUser;
use super::{session_store, store};
use crate::domain::EmailAddress;
use crate::error::{AppError, AppResult};
use crate::modules::events::{EventBus, EventMeta};

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

fn invalid_code() -> AppError {
    super::local_identity::invalid_code()
}

/// Whole seconds, as tokens carry them: a token issued later in this second stays valid.
fn now_in_whole_seconds() -> chrono::DateTime<Utc> {
    Utc::now().with_nanosecond(0).unwrap_or_else(Utc::now)
}

/// Access tokens of the user issued so far are void and their refresh tokens revoked (in `txn`).
async fn end_every_session(txn: &sea_orm::DatabaseTransaction, user_id: Uuid) -> AppResult<()> {
    session_store::void_tokens_before(txn, user_id, now_in_whole_seconds()).await?;
    session_store::revoke_all_of_user(txn, user_id).await
}

impl Accounts {
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn register(&self, reg: Registration<'_>) -> AppResult<Uuid> {
        let email = EmailAddress::canonical(reg.email);
        if store::find_user_by_email(&self.db, &email).await?.is_some() {
            return Err(AppError::conflict("a user with this e-mail already exists"));
        }
        let credential = self.identity.sign_up(&email, reg.password, reg.full_name.trim()).await?;
        let user = store::insert_user(
            &self.db,
            store::NewUser {
                email: &email,
                password_hash: credential.password_hash,
                provider_subject: credential.subject,
                full_name: reg.full_name.trim(),
                verified: false,
                pending_account_name: Some(reg.account_name.trim()),
                pending_invitation_id: None,
            },
        )
        .await?;
        self.identity.send_verification_code(&user, true).await?;
        Ok(user.id)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn resend_verification(&self, email: &str) -> AppResult<()> {
        let email = EmailAddress::canonical(email);
        if let Some(user) = store::find_user_by_email(&self.db, &email).await?
            && user.email_verified_at.is_none()
        {
            self.identity.send_verification_code(&user, false).await?;
        }
        Ok(())
    }

    /// Confirms the e-mail with its code, creates the account named at registration and signs the user
    /// in: by the code alone with the local
    /// provider; Cognito needs the `password` too.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn verify_email(
        &self,
        email: &str,
        code: &str,
        password_in: Option<&str>,
        meta: &EventMeta,
    ) -> AppResult<TokenPair> {
        let email = EmailAddress::canonical(email);
        let needs_password = self.identity.verification_needs_password();
        if needs_password && password_in.is_none() {
            return Err(AppError::field("password", "is required to sign in after verifying the e-mail"));
        }
        let user = store::find_user_by_email(&self.db, &email).await?.ok_or_else(invalid_code)?;
        if user.email_verified_at.is_some() {
            return Err(invalid_code());
        }
        self.identity.confirm_sign_up(&user, code).await?;
        let proof = match password_in.filter(|_| needs_password) {
            Some(p) => self.identity.check_password(&email, p, Some(&user)).await?,
            None => Proof::Pending { family: None },
        };
        let invitation = self.invitation_to_join(user.pending_invitation_id).await?;
        let txn = crate::db::begin_write(&self.db).await?;
        let mut bus = EventBus::new(EventMeta { user_id: Some(user.id), ..meta.clone() });
        // Registered through an invitation (Cognito): the verified address accepts it now. Otherwise,
        // or if it was withdrawn or used meanwhile, the account named at registration is created.
        let joined = match &invitation {
            Some(inv) => match self.join_through(&txn, inv, user.id).await {
                Ok(m) => {
                    super::members::emit_member(&mut bus, "member.added", &m);
                    Some(inv.account_id)
                }
                Err(AppError::Gone { .. }) => None,
                Err(e) => return Err(e),
            },
            None => None,
        };
        let default_account = match joined {
            Some(account_id) => account_id,
            None => {
                let name = user.pending_account_name.clone().unwrap_or_else(|| format!("{}'s account", user.full_name));
                let new = store::NewAccount {
                    name: &name,
                    parent_id: None,
                    timezone: "UTC",
                    default_country_code: None,
                    settings: json!({}),
                };
                let (acc, _) = store::create_account(&txn, new, Some(user.id)).await?;
                emit_account_created(&mut bus, &acc, user.id);
                acc.id
            }
        };
        let mut active = user.into_active_model();
        active.email_verified_at = Set(Some(Utc::now()));
        active.pending_account_name = Set(None);
        active.pending_invitation_id = Set(None);
        active.default_account_id = Set(Some(default_account));
        active.updated_at = Set(Utc::now());
        let user = active.update(&txn).await?;
        self.commit_access_change(txn, bus).await?;
        self.start_session(user.into(), proof).await
    }

    pub(super) async fn start_session(&self, user: CurrentUser, proof: Proof) -> AppResult<TokenPair> {
        let session = self.identity.start_session(user.id, proof).await?;
        Ok(TokenPair {
            access_token: session.access_token,
            refresh_token: session.refresh_token,
            expires_in: session.expires_in,
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
        let proof = match self.identity.check_password(&email, password_in, user.as_ref()).await {
            Ok(proof) => proof,
            Err(e @ AppError::Forbidden { .. }) => {
                // The right password (the provider refuses an unverified user only after it).
                store::release_login_claim(&self.db, claim).await?;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let Some(user) = user else { return Err(AppError::Unauthorized("invalid e-mail or password".into())) };
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
        self.start_session(user.into(), proof).await
    }

    /// A new session from a refresh token (rotated by the local provider: reusing a rotated token
    /// revokes its whole family).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn refresh(&self, refresh_token: &str) -> AppResult<TokenPair> {
        let (user_id, proof) = self.identity.redeem_refresh_token(refresh_token).await?;
        let user = store::find_user(&self.db, user_id)
            .await?
            .filter(|u| u.is_active && u.email_verified_at.is_some())
            .ok_or_else(|| AppError::Unauthorized("invalid refresh token".into()))?;
        self.start_session(user.into(), proof).await
    }

    /// Ends the refresh token's session. Where the provider signs out globally (Cognito, given the
    /// request's access token), every token of the user issued until now is void here too.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn logout(&self, refresh_token: &str, access_token: Option<&str>) -> AppResult<()> {
        if let Some(user_id) = self.identity.sign_out(refresh_token, access_token).await? {
            let txn = crate::db::begin_write(&self.db).await?;
            end_every_session(&txn, user_id).await?;
            self.commit_plain_access_change(txn).await?;
        }
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn forgot_password(&self, email: &str) -> AppResult<()> {
        let email = EmailAddress::canonical(email);
        if let Some(user) = store::find_user_by_email(&self.db, &email).await?
            && user.is_active
        {
            self.identity.send_reset_code(&user).await?;
        }
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn reset_password(&self, email: &str, code: &str, new_password: &str) -> AppResult<()> {
        let email = EmailAddress::canonical(email);
        let user = store::find_user_by_email(&self.db, &email).await?.ok_or_else(invalid_code)?;
        let hash = self.identity.confirm_reset(&user, code, new_password).await?;
        let txn = crate::db::begin_write(&self.db).await?;
        let id = user.id;
        let mut active = user.into_active_model();
        if let Some(hash) = hash {
            active.password_hash = Set(Some(hash));
        }
        // Receiving the code by mail proves the address.
        if active.email_verified_at.as_ref().is_none() {
            active.email_verified_at = Set(Some(Utc::now()));
        }
        active.updated_at = Set(Utc::now());
        active.update(&txn).await?;
        // Every session ends now: refresh tokens are revoked and access tokens issued so far are void.
        end_every_session(&txn, id).await?;
        self.commit_plain_access_change(txn).await?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn change_password(
        &self,
        user: &CurrentUser,
        access_token: &str,
        current: &str,
        new_password: &str,
    ) -> AppResult<()> {
        let model = store::find_user(&self.db, user.id).await?.ok_or(AppError::NotFound("user"))?;
        if let Some(hash) = self.identity.change_password(&model, access_token, current, new_password).await? {
            let txn = crate::db::begin_write(&self.db).await?;
            let mut active = model.into_active_model();
            active.password_hash = Set(Some(hash));
            active.updated_at = Set(Utc::now());
            active.update(&txn).await?;
            self.commit_plain_access_change(txn).await?;
        }
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
        let credential = self.identity.create_verified(&email, password_in, full_name).await?;
        let txn = crate::db::begin_write(&self.db).await?;
        let user = store::insert_user(
            &txn,
            store::NewUser {
                email: &email,
                password_hash: credential.password_hash,
                provider_subject: credential.subject,
                full_name,
                verified: true,
                pending_account_name: None,
                pending_invitation_id: None,
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
        self.commit_access_change(txn, bus).await?;
        Ok((user.id, acc.id))
    }
}
