//! Channel status from traffic (SPEC §5): what providers answer moves a channel to `rate_limited`
//! (until the wait is over), `error` (bad credentials, or permanent failures in a row) or back to
//! `connected`; hourly sent/failed counts feed the health endpoint.

use chrono::{Duration, DurationRound, Utc};
use sea_orm;
use sea_orm::{ActiveModelTrait, ConnectionTrait, IntoActiveModel, Set};
use serde_json::json;
use uuid::Uuid;

use super::adapter::{ErrorClass, ProviderError};
use super::entity::channel::{self, ChannelStatus};

use crate::db::script::Script;
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
        self.report_outcomes(scope, id, &[outcome]).await
    }

    /// The outcomes of several sends on one channel, in the order they happened, in ONE read and one
    /// transaction (a dispatcher reports a whole pass this way): the same rules as
    /// [`Channels::report_outcome`] applied one after the other.
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn report_outcomes(
        &self,
        scope: AccountScope,
        id: Uuid,
        outcomes: &[Result<(), &ProviderError>],
    ) -> AppResult<channel::Model> {
        let c = self.get(scope, id).await?;
        let now = Utc::now();
        let (mut sent, mut failed) = (0, 0);
        // The channel's columns as the outcomes leave them (a disabled channel keeps its status).
        let mut status = c.status;
        let mut error_message = c.error_message.clone();
        let mut failures_in_a_row = c.consecutive_failures;
        let mut rate_limited_until = c.rate_limited_until;
        let set_status = |s: ChannelStatus, status: &mut ChannelStatus| {
            if c.is_enabled {
                *status = s;
            }
        };
        for outcome in outcomes {
            match outcome {
                Ok(()) => {
                    set_status(ChannelStatus::Connected, &mut status);
                    error_message = None;
                    failures_in_a_row = 0;
                    rate_limited_until = None;
                    sent += 1;
                }
                Err(e) => match e.class {
                    ErrorClass::Throttled => {
                        let wait = e
                            .retry_after
                            .map(|d| Duration::milliseconds(d.as_millis() as i64))
                            .unwrap_or(Duration::seconds(DEFAULT_RATE_LIMIT_WAIT_SECS));
                        set_status(ChannelStatus::RateLimited, &mut status);
                        rate_limited_until = Some(now + wait);
                    }
                    ErrorClass::Auth => {
                        set_status(ChannelStatus::Error, &mut status);
                        error_message = Some(e.message.clone());
                        failed += 1;
                    }
                    ErrorClass::Permanent => {
                        failures_in_a_row += 1;
                        if failures_in_a_row >= ERROR_AFTER_PERMANENT_FAILURES && c.is_enabled {
                            status = ChannelStatus::Error;
                            error_message =
                                Some(format!("{failures_in_a_row} permanent failures in a row; last: {}", e.message));
                        }
                        failed += 1;
                    }
                    ErrorClass::Transient => failed += 1,
                },
            }
        }
        let hour = now.duration_trunc(Duration::hours(1)).unwrap_or(now);
        // Written only when something changed: a healthy channel's sends cost its usage row alone, sent
        // as one statement list (see `crate::db::script`; no event: its status stays).
        let unchanged = (status, &error_message, failures_in_a_row, rate_limited_until)
            == (c.status, &c.error_message, c.consecutive_failures, c.rate_limited_until);
        if unchanged {
            if sent + failed > 0 {
                let mut script = Script::new(self.db.get_database_backend());
                script.push(store::usage_statement(script.backend(), id, hour, sent, failed));
                script.run(&self.db).await?;
            }
            return Ok(c);
        }
        let txn = crate::db::begin_write(&self.db).await?;
        let status_before = c.effective_status(now);
        let mut active = c.clone().into_active_model();
        active.status = Set(status);
        active.error_message = Set(error_message);
        active.consecutive_failures = Set(failures_in_a_row);
        active.rate_limited_until = Set(rate_limited_until);
        active.updated_at = Set(now);
        let updated = active.update(&txn).await?;
        if sent + failed > 0 {
            txn.execute_raw(store::usage_statement(txn.get_database_backend(), id, hour, sent, failed)).await?;
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
