//! The [`Accounts`] service: what every part of the accounts module shares (the database, the signing
//! keys, the mailer, the event pipeline) and the small rules they all use. Its operations live beside it,
//! one file per concern: `tenancy`, `identity`, `profile`, `account`, `roles`, `members`.

use std::sync::Arc;

use sea_orm::DatabaseConnection;
use serde_json::Value;

use super::identity_provider::IdentityProvider;
use super::tokens::JwtKeys;
use crate::error::{AppError, AppResult};
use crate::mail::Mailer;
use crate::modules::events::Events;

#[derive(Clone)]
pub struct Accounts {
    pub(super) db: DatabaseConnection,
    /// Who owns passwords, codes and tokens: the local provider or Cognito.
    pub(super) identity: Arc<dyn IdentityProvider>,
    pub(super) mailer: Mailer,
    /// Levels of an account tree, the top-level account included.
    pub(super) max_depth: u32,
    /// The link mailed with an invitation (`{token}` in it).
    pub(super) invitation_url: Option<String>,
    pub(super) events: Events,
    pub(super) suspensions: Arc<super::suspension::Suspensions>,
    /// What authentication reads, remembered until the next change (`access_cache`, on the process's
    /// `db::memo::Memo`).
    pub(super) access_cache: Arc<super::access_cache::AccessCache>,
}

/// `Option<Option<T>>`: absent = leave alone, `Some(None)` = clear, `Some(Some(v))` = set.
pub type Patch<T> = Option<Option<T>>;

pub fn valid_timezone(tz: &str) -> bool {
    tz.parse::<chrono_tz::Tz>().is_ok()
}

pub(super) fn required<T>(field: &str, value: Patch<T>) -> AppResult<Option<T>> {
    match value {
        Some(None) => Err(AppError::field(field, "cannot be null")),
        Some(Some(v)) => Ok(Some(v)),
        None => Ok(None),
    }
}

/// A PATCH of a name: not null, not blank, no control characters; stored trimmed.
pub(super) fn required_name(field: &str, value: Patch<String>) -> AppResult<Option<String>> {
    let Some(name) = required(field, value)? else { return Ok(None) };
    let name = name.trim();
    if name.is_empty() {
        return Err(AppError::field(field, "must not be empty"));
    }
    if let Some(problem) = crate::domain::text::name_problem(name) {
        return Err(AppError::field(field, problem));
    }
    Ok(Some(name.to_string()))
}

impl Accounts {
    pub fn new(
        db: DatabaseConnection,
        keys: Arc<JwtKeys>,
        mailer: Mailer,
        identity: (&crate::config::IdentitySettings, &crate::config::CognitoSettings),
        settings: &crate::config::AccountSettings,
        events: Events,
        memo: Arc<crate::db::memo::Memo>,
    ) -> Self {
        events.set_audit_log(Arc::new(super::audit::AuditWriter), settings.audit_retention_days);
        let (identity, cognito) = identity;
        let ttl = identity.refresh_token_ttl_days;
        let suspensions: Arc<super::suspension::Suspensions> = Default::default();
        // A suspension is an account change too: read the set again whenever the process forgets.
        let also = suspensions.clone();
        let access_cache = super::access_cache::AccessCache::new(memo, move || also.forget());
        let identity: Arc<dyn IdentityProvider> = match identity.provider.as_str() {
            "cognito" => Arc::new(super::cognito::CognitoIdentity::new(db.clone(), cognito, ttl)),
            _ => Arc::new(super::local_identity::LocalIdentity::new(db.clone(), keys, mailer.clone(), ttl)),
        };
        Accounts {
            db,
            identity,
            mailer,
            max_depth: settings.max_depth,
            invitation_url: settings.invitation_url.clone().filter(|u| !u.is_empty()),
            events,
            suspensions,
            access_cache,
        }
    }

    pub fn jwks(&self) -> Value {
        self.identity.jwks()
    }

    /// `local` or `cognito`.
    pub fn identity_provider(&self) -> &'static str {
        self.identity.name()
    }
}
