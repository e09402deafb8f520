//! The caller's own profile (`PATCH /v1/users/me`).

use chrono::Utc;
use sea_orm::{ActiveModelTrait, IntoActiveModel, Set};
use uuid::Uuid;

use super::service::*;
use super::store;
use super::tenancy::CurrentUser;
use crate::error::{AppError, AppResult};

#[derive(Default)]
pub struct ProfilePatch {
    pub full_name: Patch<String>,
    pub phone: Patch<String>,
    pub default_account_id: Patch<Uuid>,
    pub locale: Patch<String>,
    pub timezone: Patch<String>,
}

impl Accounts {
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn update_profile(&self, user: &CurrentUser, patch: ProfilePatch) -> AppResult<CurrentUser> {
        let model = store::find_user(&self.db, user.id).await?.ok_or(AppError::NotFound("user"))?;
        let mut active = model.into_active_model();
        if let Some(name) = required_name("full_name", patch.full_name)? {
            active.full_name = Set(name);
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
        let txn = crate::db::begin_write(&self.db).await?;
        let user = active.update(&txn).await?;
        self.commit_plain_access_change(txn).await?;
        Ok(user.into())
    }
}
