//! Channel status from traffic (SPEC §5): what providers answer moves a channel to `rate_limited`
//! (until the wait is over), `error` (bad credentials, or permanent failures in a row) or back to
//! `connected`; hourly sent/failed counts feed the health endpoint.

use chrono::{Duration, DurationRound, Utc};
use sea_orm;
use sea_orm::{ActiveModelTrait, IntoActiveModel, Set};
use serde_json::json;
use uuid::Uuid;

use super::adapter::{ErrorClass, ProviderError};
use super::entity::channel::{self, ChannelStatus};

use crate::error::AppResult;
use crate::modules::accounts::AccountScope;
use crate::modules::events::{EventBus, EventMeta};

use super::service::Channels;
use super::store;

/// Permanent failures in a row that put a channel in `error`.
pub const ERROR_AFTER_PERMANENT_FAILURES: i32 = 5;

/// How long a 429 without a hint keeps a channel `rate_limited`.
pub const DEFAULT_RATE_LIMIT_WAIT_SECS: i64 = 60;

/// Channel health for `GET /v1/channels/{id}/health`.
#[derive(Debug, Clone)]
pub struct Health {
    pub channel: channel::Model,
    pub sent_last_hour: i64,
    pub failed_last_hour: i64,
}

impl Channels {
    /// Stores `connected` for the account's channels whose rate limit has passed, so that a list
    /// filtered by `status` agrees with what each channel shows.
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn lift_expired_rate_limits(&self, scope: AccountScope) -> AppResult<()> {
        store::lift_rate_limits_ended(&self.db, scope, Utc::now()).await
    }

    /// What dispatch reports after each send: success → `connected`; throttled → `rate_limited` until
    /// the wait passes; auth → `error`; five permanent failures in a row → `error`. Counts the send in the
    /// hourly usage either way (throttled sends are not failures: they are tried again).
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn report_outcome(
        &self,
        scope: AccountScope,
        id: Uuid,
        outcome: Result<(), &ProviderError>,
    ) -> AppResult<channel::Model> {
        let c = self.get(scope, id).await?;
        let now = Utc::now();
        let mut active = c.clone().into_active_model();
        let (sent, failed) = match outcome {
            Ok(()) => {
                if c.is_enabled {
                    active.status = Set(ChannelStatus::Connected);
                }
                active.error_message = Set(None);
                active.consecutive_failures = Set(0);
                active.rate_limited_until = Set(None);
                (1, 0)
            }
            Err(e) => match e.class {
                ErrorClass::Throttled => {
                    let wait = e
                        .retry_after
                        .map(|d| Duration::milliseconds(d.as_millis() as i64))
                        .unwrap_or(Duration::seconds(DEFAULT_RATE_LIMIT_WAIT_SECS));
                    if c.is_enabled {
                        active.status = Set(ChannelStatus::RateLimited);
                    }
                    active.rate_limited_until = Set(Some(now + wait));
                    (0, 0)
                }
                ErrorClass::Auth => {
                    if c.is_enabled {
                        active.status = Set(ChannelStatus::Error);
                    }
                    active.error_message = Set(Some(e.message.clone()));
                    (0, 1)
                }
                ErrorClass::Permanent => {
                    let n = c.consecutive_failures + 1;
                    active.consecutive_failures = Set(n);
                    if n >= ERROR_AFTER_PERMANENT_FAILURES && c.is_enabled {
                        active.status = Set(ChannelStatus::Error);
                        active.error_message =
                            Set(Some(format!("{n} permanent failures in a row; last: {}", e.message)));
                    }
                    (0, 1)
                }
                ErrorClass::Transient => (0, 1),
            },
        };
        let txn = crate::db::begin_write(&self.db).await?;
        let status_before = c.effective_status(now);
        let updated = if active.is_changed() {
            active.updated_at = Set(now);
            active.update(&txn).await?
        } else {
            c.clone()
        };
        if sent + failed > 0 {
            let hour = now.duration_trunc(Duration::hours(1)).unwrap_or(now);
            store::add_usage(&txn, id, hour, sent, failed).await?;
        }
        let mut bus = EventBus::new(EventMeta::default());
        let status_after = updated.effective_status(now);
        if status_before != status_after {
            bus.emit(
                "channel.status_changed",
                "channel",
                id,
                Some(scope.account_id()),
                json!({ "from": status_before, "to": status_after, "error_message": updated.error_message }),
            );
        }
        self.events.commit(txn, bus).await?;
        Ok(updated)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn health(&self, scope: AccountScope, id: Uuid) -> AppResult<Health> {
        let mut c = self.get(scope, id).await?;
        let now = Utc::now();
        c.status = c.effective_status(now);
        // The current hour's bucket and the previous one: "the last hour" at bucket resolution.
        let since = now.duration_trunc(Duration::hours(1)).unwrap_or(now) - Duration::hours(1);
        let rows = store::usage_since(&self.db, c.id, since).await?;
        Ok(Health {
            sent_last_hour: rows.iter().map(|r| r.sent).sum(),
            failed_last_hour: rows.iter().map(|r| r.failed).sum(),
            channel: c,
        })
    }
}
