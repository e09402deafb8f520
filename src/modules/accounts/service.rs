//! Business rules of identity and tenancy: the local identity provider (register, verify, login,
//! refresh rotation, password reset), tenancy resolution, accounts, roles and memberships.

use std::sync::Arc;

use chrono::{Duration, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DatabaseTransaction, EntityTrait, IntoActiveModel, ModelTrait,
    QueryFilter, Set,
};
use serde_json::{Value, json};
use uuid::Uuid;

use super::entity::{account, membership, role, user};
use super::permissions::{self, Permissions};
use super::tokens::{self, JwtKeys};
use super::{password, store};
use crate::http::ctx::AccountScope;
use crate::http::error::{AppError, AppResult};
use crate::mail::Mailer;
use crate::modules::events::{EventBus, EventMeta, Events};

pub const PURPOSE_VERIFY: &str = "verify_email";
pub const PURPOSE_RESET: &str = "reset_password";
const CODE_TTL_HOURS: i64 = 24;
const RESET_TTL_HOURS: i64 = 1;
const CODE_MAX_ATTEMPTS: i32 = 5;
const LOGIN_WINDOW_MINUTES: i64 = 15;
const LOGIN_MAX_FAILURES: u64 = 10;

/// The authenticated caller (never carries the password hash).
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub id: Uuid,
    pub email: String,
    pub full_name: String,
    pub phone: Option<String>,
    pub is_active: bool,
    pub email_verified_at: Option<chrono::DateTime<Utc>>,
    pub default_account_id: Option<Uuid>,
    pub locale: Option<String>,
    pub timezone: Option<String>,
    pub created_at: chrono::DateTime<Utc>,
    pub updated_at: chrono::DateTime<Utc>,
}

impl From<user::Model> for CurrentUser {
    fn from(u: user::Model) -> Self {
        CurrentUser {
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

/// What the caller may do in one account.
#[derive(Debug, Clone)]
pub struct Access {
    pub scope: AccountScope,
    pub role_id: Uuid,
    pub role_name: String,
    pub permissions: Permissions,
    /// True when the access comes from `accounts:manage` on the parent account.
    pub via_parent: bool,
}

impl Access {
    pub fn require(&self, permission: &str) -> AppResult<()> {
        if self.permissions.has(permission) {
            Ok(())
        } else {
            Err(AppError::Forbidden {
                code: "forbidden",
                message: format!("your role lacks the `{permission}` permission"),
            })
        }
    }
}

pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: i64,
    pub user: CurrentUser,
}

#[derive(Clone)]
pub struct Accounts {
    pub(crate) db: DatabaseConnection,
    keys: Arc<JwtKeys>,
    mailer: Mailer,
    refresh_ttl_days: i64,
    events: Events,
}

pub struct Registration<'a> {
    pub email: &'a str,
    pub password: &'a str,
    pub full_name: &'a str,
    pub account_name: &'a str,
}

pub struct AccountInput<'a> {
    pub name: &'a str,
    pub timezone: Option<&'a str>,
    pub default_country_code: Option<&'a str>,
    pub settings: Option<Value>,
}

/// `Option<Option<T>>`: absent = leave alone, `Some(None)` = clear, `Some(Some(v))` = set.
pub type Patch<T> = Option<Option<T>>;

#[derive(Default)]
pub struct ProfilePatch {
    pub full_name: Patch<String>,
    pub phone: Patch<String>,
    pub default_account_id: Patch<Uuid>,
    pub locale: Patch<String>,
    pub timezone: Patch<String>,
}

#[derive(Default)]
pub struct AccountPatch {
    pub name: Patch<String>,
    pub timezone: Patch<String>,
    pub default_country_code: Patch<String>,
    pub settings: Patch<Value>,
}

#[derive(Default)]
pub struct RolePatch {
    pub name: Patch<String>,
    pub description: Patch<String>,
    pub permissions: Patch<Value>,
}

pub fn normalise_email(email: &str) -> String {
    email.trim().to_lowercase()
}

fn code_hash(user_id: Uuid, code: &str) -> String {
    tokens::sha256_hex(&format!("{user_id}:{code}"))
}

fn invalid_code() -> AppError {
    AppError::BadRequest { code: "invalid_code", message: "the code is invalid or has expired".into() }
}

pub fn valid_timezone(tz: &str) -> bool {
    tz.parse::<chrono_tz::Tz>().is_ok()
}

fn required<T>(field: &str, value: Patch<T>) -> AppResult<Option<T>> {
    match value {
        Some(None) => Err(AppError::field(field, "cannot be null")),
        Some(Some(v)) => Ok(Some(v)),
        None => Ok(None),
    }
}

impl Accounts {
    pub fn new(
        db: DatabaseConnection,
        keys: Arc<JwtKeys>,
        mailer: Mailer,
        refresh_ttl_days: i64,
        events: Events,
    ) -> Self {
        Accounts { db, keys, mailer, refresh_ttl_days, events }
    }

    /// Writes the collected events in the transaction, commits, and wakes the relay.
    async fn commit(&self, txn: DatabaseTransaction, mut bus: EventBus) -> AppResult<()> {
        bus.flush(&txn).await?;
        txn.commit().await?;
        self.events.committed();
        Ok(())
    }

    pub fn jwks(&self) -> Value {
        self.keys.jwks()
    }

    // ---------------------------------------------------------------- tenancy

    /// Verifies the access token and loads the user, who must still exist, be active and verified.
    pub async fn authenticate(&self, token: &str) -> AppResult<CurrentUser> {
        let user_id = self.token_subject(token)?;
        let user = store::find_user(&self.db, user_id).await?.filter(may_sign_in).ok_or_else(bad_token)?;
        Ok(user.into())
    }

    fn token_subject(&self, token: &str) -> AppResult<Uuid> {
        self.keys.verify(token).map(|c| c.sub).ok_or_else(bad_token)
    }

    /// Authenticates a tenant request and resolves its active account, in one query in the common case
    /// (a direct membership in the selected or default account); other cases take the full path.
    pub async fn authorize(&self, token: &str, selected: Option<Uuid>) -> AppResult<(CurrentUser, Access)> {
        let user_id = self.token_subject(token)?;
        let (user, role) = store::user_with_role(&self.db, user_id, selected)
            .await?
            .filter(|(u, _)| may_sign_in(u))
            .ok_or_else(bad_token)?;
        let user = CurrentUser::from(user);
        if let (Some(r), Some(account_id)) = (role, selected.or(user.default_account_id)) {
            let access = Access {
                scope: AccountScope::checked(account_id),
                role_id: r.id,
                role_name: r.name,
                permissions: Permissions::from_json(&r.permissions),
                via_parent: false,
            };
            return Ok((user, access));
        }
        let access = self.active_access(&user, selected).await?;
        Ok((user, access))
    }

    /// The caller's access to one account: a direct membership, or `accounts:manage` on its parent.
    pub async fn access_to(&self, user: &CurrentUser, account_id: Uuid) -> AppResult<Option<Access>> {
        if let Some((_, r)) = store::membership_with_role(&self.db, user.id, account_id).await? {
            return Ok(Some(Access {
                scope: AccountScope::checked(account_id),
                role_id: r.id,
                role_name: r.name,
                permissions: Permissions::from_json(&r.permissions),
                via_parent: false,
            }));
        }
        let Some(acc) = store::find_account(&self.db, account_id).await? else {
            return Ok(None);
        };
        let Some(parent) = acc.parent_id else {
            return Ok(None);
        };
        match store::membership_with_role(&self.db, user.id, parent).await? {
            Some((_, r)) => {
                let perms = Permissions::from_json(&r.permissions);
                Ok(perms.has("accounts:manage").then(|| Access {
                    scope: AccountScope::checked(account_id),
                    role_id: r.id,
                    role_name: r.name,
                    permissions: perms,
                    via_parent: true,
                }))
            }
            None => Ok(None),
        }
    }

    /// Active account: the `X-Account-Id` selection, else the default account, else the only one.
    pub async fn active_access(&self, user: &CurrentUser, selected: Option<Uuid>) -> AppResult<Access> {
        if let Some(id) = selected {
            return self
                .access_to(user, id)
                .await?
                .ok_or_else(|| AppError::forbidden("X-Account-Id does not name an account you can act in"));
        }
        if let Some(id) = user.default_account_id
            && let Some(access) = self.access_to(user, id).await?
        {
            return Ok(access);
        }
        let ids = store::account_ids_of_user(&self.db, user.id).await?;
        if ids.len() == 1
            && let Some(access) = self.access_to(user, ids[0]).await?
        {
            return Ok(access);
        }
        Err(AppError::BadRequest {
            code: "account_required",
            message: "select an account with the X-Account-Id header (or set a default account)".into(),
        })
    }

    /// `GET /v1/context`: every direct membership, and the active account (or `None` when the caller must
    /// choose). The common case needs no query beyond the membership list; the rest takes the full path.
    pub async fn context(
        &self,
        user: &CurrentUser,
        selected: Option<Uuid>,
    ) -> AppResult<(Vec<(membership::Model, role::Model, account::Model)>, Option<Uuid>)> {
        let memberships = store::memberships_of_user(&self.db, user.id).await?;
        let wanted = selected.or(user.default_account_id);
        if let Some(id) = wanted
            && memberships.iter().any(|(_, _, a)| a.id == id)
        {
            return Ok((memberships, Some(id)));
        }
        let active = match self.active_access(user, selected).await {
            Ok(a) => Some(a.scope.account_id()),
            Err(AppError::BadRequest { code: "account_required", .. }) => None,
            Err(e) => return Err(e),
        };
        Ok((memberships, active))
    }

    /// Access to an account named in a path: 404 when the caller has none (never reveal it exists).
    pub async fn path_access(&self, user: &CurrentUser, account_id: Uuid, permission: &str) -> AppResult<Access> {
        let access = self.access_to(user, account_id).await?.ok_or(AppError::NotFound("account"))?;
        access.require(permission)?;
        Ok(access)
    }

    // ---------------------------------------------------------------- local identity

    pub async fn register(&self, reg: Registration<'_>) -> AppResult<Uuid> {
        let email = normalise_email(reg.email);
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
        let code = tokens::new_code();
        store::replace_code(
            &txn,
            user.id,
            PURPOSE_VERIFY,
            code_hash(user.id, &code),
            Utc::now() + Duration::hours(CODE_TTL_HOURS),
        )
        .await?;
        txn.commit().await?;
        self.mail_verification(&email, &code);
        Ok(user.id)
    }

    fn mail_verification(&self, email: &str, code: &str) {
        self.mailer.send(
            email,
            "Your Turumba verification code",
            format!("Your Turumba verification code is {code}\n\nIt is valid for 24 hours.\n"),
        );
    }

    pub async fn resend_verification(&self, email: &str) -> AppResult<()> {
        let email = normalise_email(email);
        if let Some(user) = store::find_user_by_email(&self.db, &email).await?
            && user.email_verified_at.is_none()
        {
            let code = tokens::new_code();
            store::replace_code(
                &self.db,
                user.id,
                PURPOSE_VERIFY,
                code_hash(user.id, &code),
                Utc::now() + Duration::hours(CODE_TTL_HOURS),
            )
            .await?;
            self.mail_verification(&email, &code);
        }
        Ok(())
    }

    /// Checks a code (counting the attempt) and consumes it on success.
    async fn check_code(&self, user_id: Uuid, purpose: &str, code: &str) -> AppResult<()> {
        let record = store::live_code(&self.db, user_id, purpose).await?.ok_or_else(invalid_code)?;
        if record.expires_at < Utc::now() || record.attempts >= CODE_MAX_ATTEMPTS {
            return Err(invalid_code());
        }
        let expected = code_hash(user_id, code.trim());
        if !constant_time_eq(expected.as_bytes(), record.code_hash.as_bytes()) {
            store::count_code_attempt(&self.db, record.id).await?;
            return Err(invalid_code());
        }
        if !store::consume_code(&self.db, record.id).await? {
            return Err(invalid_code());
        }
        Ok(())
    }

    pub async fn verify_email(&self, email: &str, code: &str, meta: &EventMeta) -> AppResult<TokenPair> {
        let email = normalise_email(email);
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
            user.id,
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
        self.commit(txn, bus).await?;
        self.issue_tokens(user.into(), Uuid::now_v7()).await
    }

    async fn issue_tokens(&self, user: CurrentUser, family: Uuid) -> AppResult<TokenPair> {
        let refresh = tokens::new_refresh_token();
        store::insert_refresh_token(
            &self.db,
            user.id,
            family,
            tokens::sha256_hex(&refresh),
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

    pub async fn login(&self, email: &str, password_in: &str) -> AppResult<TokenPair> {
        let email = normalise_email(email);
        let since = Utc::now() - Duration::minutes(LOGIN_WINDOW_MINUTES);
        let (failures, oldest) = store::login_failures_since(&self.db, &email, since).await?;
        if failures >= LOGIN_MAX_FAILURES {
            let retry = oldest
                .map(|o| (o + Duration::minutes(LOGIN_WINDOW_MINUTES) - Utc::now()).num_seconds().max(1))
                .unwrap_or(60);
            return Err(AppError::RateLimited {
                retry_after_secs: retry as u64,
                message: "too many failed logins for this e-mail; try again later".into(),
            });
        }
        let user = store::find_user_by_email(&self.db, &email).await?;
        let ok = password::verify(password_in.to_string(), user.as_ref().and_then(|u| u.password_hash.clone())).await;
        let user = match (ok, user) {
            (true, Some(u)) => u,
            _ => {
                store::record_login_failure(&self.db, &email).await?;
                return Err(AppError::Unauthorized("invalid e-mail or password".into()));
            }
        };
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
    pub async fn refresh(&self, refresh_token: &str) -> AppResult<TokenPair> {
        let unauthorized = || AppError::Unauthorized("invalid refresh token".into());
        let record =
            store::find_refresh_token(&self.db, &tokens::sha256_hex(refresh_token)).await?.ok_or_else(unauthorized)?;
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

    pub async fn logout(&self, refresh_token: &str) -> AppResult<()> {
        if let Some(record) = store::find_refresh_token(&self.db, &tokens::sha256_hex(refresh_token)).await? {
            store::revoke_family(&self.db, record.family_id).await?;
        }
        Ok(())
    }

    pub async fn forgot_password(&self, email: &str) -> AppResult<()> {
        let email = normalise_email(email);
        if let Some(user) = store::find_user_by_email(&self.db, &email).await?
            && user.is_active
        {
            let code = tokens::new_code();
            store::replace_code(
                &self.db,
                user.id,
                PURPOSE_RESET,
                code_hash(user.id, &code),
                Utc::now() + Duration::hours(RESET_TTL_HOURS),
            )
            .await?;
            self.mailer.send(
                &email,
                "Reset your Turumba password",
                format!("Your Turumba password reset code is {code}\n\nIt is valid for one hour. If you did not ask for it, ignore this e-mail.\n"),
            );
        }
        Ok(())
    }

    pub async fn reset_password(&self, email: &str, code: &str, new_password: &str) -> AppResult<()> {
        let email = normalise_email(email);
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
        active.update(&txn).await?;
        store::revoke_all_of_user(&txn, id).await?;
        txn.commit().await?;
        Ok(())
    }

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
    pub async fn create_verified_user(
        &self,
        email: &str,
        password_in: &str,
        full_name: &str,
        account_name: &str,
    ) -> AppResult<(Uuid, Uuid)> {
        let email = normalise_email(email);
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
            user.id,
        )
        .await?;
        let mut active = user.into_active_model();
        active.default_account_id = Set(Some(acc.id));
        let user = active.update(&txn).await?;
        let mut bus = EventBus::new(EventMeta { user_id: Some(user.id), request_id: None });
        emit_account_created(&mut bus, &acc, user.id);
        self.commit(txn, bus).await?;
        Ok((user.id, acc.id))
    }

    // ---------------------------------------------------------------- profile

    pub async fn update_profile(&self, user: &CurrentUser, patch: ProfilePatch) -> AppResult<CurrentUser> {
        let model = store::find_user(&self.db, user.id).await?.ok_or(AppError::NotFound("user"))?;
        let mut active = model.into_active_model();
        if let Some(name) = required("full_name", patch.full_name)? {
            active.full_name = Set(name.trim().to_string());
        }
        if let Some(phone) = patch.phone {
            active.phone = Set(phone);
        }
        if let Some(locale) = patch.locale {
            active.locale = Set(locale);
        }
        if let Some(tz) = patch.timezone {
            if let Some(t) = &tz
                && !valid_timezone(t)
            {
                return Err(AppError::field("timezone", "must be an IANA time zone such as Africa/Addis_Ababa"));
            }
            active.timezone = Set(tz);
        }
        if let Some(default) = patch.default_account_id {
            if let Some(id) = default
                && self.access_to(user, id).await?.is_none()
            {
                return Err(AppError::field("default_account_id", "must be an account you belong to"));
            }
            active.default_account_id = Set(default);
        }
        active.updated_at = Set(Utc::now());
        Ok(active.update(&self.db).await?.into())
    }

    // ---------------------------------------------------------------- accounts

    pub async fn create_account(
        &self,
        user: &CurrentUser,
        input: AccountInput<'_>,
        parent: Option<AccountScope>,
        meta: &EventMeta,
    ) -> AppResult<account::Model> {
        let tz = input.timezone.unwrap_or("UTC");
        if !valid_timezone(tz) {
            return Err(AppError::field("timezone", "must be an IANA time zone such as Africa/Addis_Ababa"));
        }
        let txn = crate::db::begin_write(&self.db).await?;
        let (acc, _) = store::create_account(
            &txn,
            store::NewAccount {
                name: input.name.trim(),
                parent_id: parent.map(|p| p.account_id()),
                timezone: tz,
                default_country_code: input.default_country_code,
                settings: input.settings.unwrap_or_else(|| json!({})),
            },
            user.id,
        )
        .await?;
        let mut bus = EventBus::new(meta.clone());
        emit_account_created(&mut bus, &acc, user.id);
        self.commit(txn, bus).await?;
        Ok(acc)
    }

    /// A scope for an operator acting from the command line (who has the database anyway): the account
    /// must exist. Never used for HTTP requests, whose scope comes from the caller's membership.
    pub async fn operator_scope(&self, account_id: Uuid) -> AppResult<AccountScope> {
        store::find_account(&self.db, account_id).await?.ok_or(AppError::NotFound("account"))?;
        Ok(AccountScope::checked(account_id))
    }

    /// The account's `default_country_code` (used to read national phone numbers).
    pub async fn default_country_code(&self, scope: AccountScope) -> AppResult<Option<String>> {
        Ok(self.get_account(scope).await?.default_country_code)
    }

    pub async fn get_account(&self, scope: AccountScope) -> AppResult<account::Model> {
        store::find_account(&self.db, scope.account_id()).await?.ok_or(AppError::NotFound("account"))
    }

    pub async fn update_account(
        &self,
        scope: AccountScope,
        patch: AccountPatch,
        meta: &EventMeta,
    ) -> AppResult<account::Model> {
        let mut active = self.get_account(scope).await?.into_active_model();
        if let Some(name) = required("name", patch.name)? {
            if name.trim().is_empty() {
                return Err(AppError::field("name", "must not be empty"));
            }
            active.name = Set(name.trim().to_string());
        }
        if let Some(tz) = required("timezone", patch.timezone)? {
            if !valid_timezone(&tz) {
                return Err(AppError::field("timezone", "must be an IANA time zone such as Africa/Addis_Ababa"));
            }
            active.timezone = Set(tz);
        }
        if let Some(cc) = patch.default_country_code {
            active.default_country_code = Set(cc);
        }
        if let Some(settings) = patch.settings {
            let settings = settings.unwrap_or_else(|| json!({}));
            if !settings.is_object() {
                return Err(AppError::field("settings", "must be an object"));
            }
            active.settings = Set(settings);
        }
        active.updated_at = Set(Utc::now());
        let txn = crate::db::begin_write(&self.db).await?;
        let acc = active.update(&txn).await?;
        let mut bus = EventBus::new(meta.clone());
        bus.emit(
            "account.updated",
            "account",
            acc.id,
            Some(acc.id),
            json!({ "name": acc.name, "timezone": acc.timezone, "status": acc.status }),
        );
        self.commit(txn, bus).await?;
        Ok(acc)
    }

    pub async fn delete_account(&self, scope: AccountScope, meta: &EventMeta) -> AppResult<()> {
        if store::has_sub_accounts(&self.db, scope).await? {
            return Err(AppError::conflict("delete the sub-accounts of this account first"));
        }
        let acc = self.get_account(scope).await?;
        let txn = crate::db::begin_write(&self.db).await?;
        // Memberships reference roles with RESTRICT; remove them first, then the account (roles cascade).
        membership::Entity::delete_many()
            .filter(membership::Column::AccountId.eq(scope.account_id()))
            .exec(&txn)
            .await?;
        let (id, name) = (acc.id, acc.name.clone());
        acc.delete(&txn).await?;
        let mut bus = EventBus::new(meta.clone());
        bus.emit("account.deleted", "account", id, Some(id), json!({ "name": name }));
        self.commit(txn, bus).await?;
        Ok(())
    }

    // ---------------------------------------------------------------- roles

    pub async fn create_role(
        &self,
        scope: AccountScope,
        name: &str,
        description: Option<String>,
        perms: &Value,
        meta: &EventMeta,
    ) -> AppResult<role::Model> {
        let perms = permissions::validate(perms, "permissions")?;
        let now = Utc::now();
        let txn = crate::db::begin_write(&self.db).await?;
        let role = role::ActiveModel {
            id: Set(Uuid::now_v7()),
            account_id: Set(scope.account_id()),
            name: Set(name.trim().to_string()),
            description: Set(description),
            permissions: Set(perms),
            is_system: Set(false),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&txn)
        .await
        .map_err(role_conflict)?;
        let mut bus = EventBus::new(meta.clone());
        emit_role(&mut bus, "role.created", &role);
        self.commit(txn, bus).await?;
        Ok(role)
    }

    pub async fn get_role(&self, scope: AccountScope, id: Uuid) -> AppResult<role::Model> {
        store::find_role(&self.db, scope, id).await?.ok_or(AppError::NotFound("role"))
    }

    pub async fn update_role(
        &self,
        scope: AccountScope,
        id: Uuid,
        patch: RolePatch,
        meta: &EventMeta,
    ) -> AppResult<role::Model> {
        let role = self.get_role(scope, id).await?;
        if role.is_system {
            return Err(AppError::conflict("system roles cannot be changed; create a custom role instead"));
        }
        let mut active = role.into_active_model();
        if let Some(name) = required("name", patch.name)? {
            if name.trim().is_empty() {
                return Err(AppError::field("name", "must not be empty"));
            }
            active.name = Set(name.trim().to_string());
        }
        if let Some(d) = patch.description {
            active.description = Set(d);
        }
        if let Some(p) = required("permissions", patch.permissions)? {
            active.permissions = Set(permissions::validate(&p, "permissions")?);
        }
        active.updated_at = Set(Utc::now());
        let txn = crate::db::begin_write(&self.db).await?;
        let role = active.update(&txn).await.map_err(role_conflict)?;
        let mut bus = EventBus::new(meta.clone());
        emit_role(&mut bus, "role.updated", &role);
        self.commit(txn, bus).await?;
        Ok(role)
    }

    pub async fn delete_role(&self, scope: AccountScope, id: Uuid, meta: &EventMeta) -> AppResult<()> {
        let role = self.get_role(scope, id).await?;
        if role.is_system {
            return Err(AppError::conflict("system roles cannot be deleted"));
        }
        if store::role_in_use(&self.db, scope, id).await? {
            return Err(AppError::conflict("the role is assigned to members; give them another role first"));
        }
        let txn = crate::db::begin_write(&self.db).await?;
        let mut bus = EventBus::new(meta.clone());
        emit_role(&mut bus, "role.deleted", &role);
        role.delete(&txn).await?;
        self.commit(txn, bus).await
    }

    // ---------------------------------------------------------------- members

    /// Adds an existing, verified user to the account (invitations cover users without an account).
    pub async fn add_member(
        &self,
        scope: AccountScope,
        email: &str,
        role_id: Uuid,
        meta: &EventMeta,
    ) -> AppResult<membership::Model> {
        let role = store::find_role(&self.db, scope, role_id)
            .await?
            .ok_or_else(|| AppError::field("role_id", "no such role in this account"))?;
        let user = store::find_user_by_email(&self.db, &normalise_email(email))
            .await?
            .filter(|u| u.email_verified_at.is_some())
            .ok_or_else(|| AppError::field("email", "no verified user has this e-mail; invite them instead"))?;
        let txn = crate::db::begin_write(&self.db).await?;
        let m = store::insert_membership(&txn, scope.account_id(), user.id, role.id).await?;
        let mut bus = EventBus::new(meta.clone());
        emit_member(&mut bus, "member.added", &m);
        self.commit(txn, bus).await?;
        Ok(m)
    }

    pub async fn change_member_role(
        &self,
        scope: AccountScope,
        user_id: Uuid,
        role_id: Uuid,
        meta: &EventMeta,
    ) -> AppResult<membership::Model> {
        let txn = crate::db::begin_write(&self.db).await?;
        let m = store::find_membership(&txn, scope, user_id).await?.ok_or(AppError::NotFound("member"))?;
        let new_role = store::find_role(&txn, scope, role_id)
            .await?
            .ok_or_else(|| AppError::field("role_id", "no such role in this account"))?;
        let admin = store::admin_role(&txn, scope).await?;
        if m.role_id == admin.id && new_role.id != admin.id && store::count_admins(&txn, scope).await? <= 1 {
            return Err(AppError::conflict("an account must keep at least one admin"));
        }
        let mut active = m.into_active_model();
        active.role_id = Set(new_role.id);
        active.updated_at = Set(Utc::now());
        let m = active.update(&txn).await?;
        let mut bus = EventBus::new(meta.clone());
        emit_member(&mut bus, "member.updated", &m);
        self.commit(txn, bus).await?;
        Ok(m)
    }

    pub async fn remove_member(&self, scope: AccountScope, user_id: Uuid, meta: &EventMeta) -> AppResult<()> {
        let txn = crate::db::begin_write(&self.db).await?;
        let m = store::find_membership(&txn, scope, user_id).await?.ok_or(AppError::NotFound("member"))?;
        let admin = store::admin_role(&txn, scope).await?;
        if m.role_id == admin.id && store::count_admins(&txn, scope).await? <= 1 {
            return Err(AppError::conflict("an account must keep at least one admin"));
        }
        let mut bus = EventBus::new(meta.clone());
        emit_member(&mut bus, "member.removed", &m);
        m.delete(&txn).await?;
        // A removed member's default account must not keep pointing here.
        if let Some(u) = store::find_user(&txn, user_id).await?
            && u.default_account_id == Some(scope.account_id())
        {
            let mut active = u.into_active_model();
            active.default_account_id = Set(None);
            active.update(&txn).await?;
        }
        self.commit(txn, bus).await
    }

    pub async fn member_user(
        &self,
        scope: AccountScope,
        user_id: Uuid,
    ) -> AppResult<(membership::Model, user::Model, role::Model)> {
        let m = store::find_membership(&self.db, scope, user_id).await?.ok_or(AppError::NotFound("user"))?;
        let u = store::find_user(&self.db, user_id).await?.ok_or(AppError::NotFound("user"))?;
        let r = store::find_role(&self.db, scope, m.role_id).await?.ok_or(AppError::NotFound("role"))?;
        Ok((m, u, r))
    }

    /// Users and roles for a page of memberships (two queries, not one per row).
    pub async fn hydrate_members(
        &self,
        scope: AccountScope,
        page: Vec<membership::Model>,
    ) -> AppResult<Vec<(membership::Model, user::Model, role::Model)>> {
        let users = store::users_by_ids(&self.db, page.iter().map(|m| m.user_id).collect()).await?;
        let roles = store::roles_by_ids(&self.db, scope, page.iter().map(|m| m.role_id).collect()).await?;
        Ok(page
            .into_iter()
            .filter_map(|m| {
                let u = users.iter().find(|u| u.id == m.user_id)?.clone();
                let r = roles.iter().find(|r| r.id == m.role_id)?.clone();
                Some((m, u, r))
            })
            .collect())
    }
}

/// A token only works while its user exists, is active and has a verified e-mail.
fn may_sign_in(u: &user::Model) -> bool {
    u.is_active && u.email_verified_at.is_some()
}

fn bad_token() -> AppError {
    AppError::Unauthorized("invalid or expired token".into())
}

fn role_conflict(e: sea_orm::DbErr) -> AppError {
    if crate::db::is_unique_violation(&e) {
        AppError::conflict("a role with this name already exists")
    } else {
        e.into()
    }
}

fn emit_account_created(bus: &mut EventBus, acc: &account::Model, owner: Uuid) {
    bus.emit(
        "account.created",
        "account",
        acc.id,
        Some(acc.id),
        json!({ "name": acc.name, "parent_id": acc.parent_id, "owner_user_id": owner, "timezone": acc.timezone }),
    );
}

fn emit_role(bus: &mut EventBus, event_type: &str, r: &role::Model) {
    bus.emit(event_type, "role", r.id, Some(r.account_id), json!({ "name": r.name, "permissions": r.permissions }));
}

fn emit_member(bus: &mut EventBus, event_type: &str, m: &membership::Model) {
    bus.emit(event_type, "membership", m.id, Some(m.account_id), json!({ "user_id": m.user_id, "role_id": m.role_id }));
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
