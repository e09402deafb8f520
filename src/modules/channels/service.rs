//! The channels service: CRUD with sealed credentials, verification, status from traffic, health; and
//! the [`ChannelRegistry`] that hands messaging a channel with its credentials opened and its adapter.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration, DurationRound, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DatabaseTransaction, EntityTrait, IntoActiveModel, QueryFilter,
    Set,
};
use serde_json::{Value, json};
use uuid::Uuid;

use super::adapter::{AdapterSet, ChannelContext, ErrorClass, ProviderAdapter, ProviderError};
use super::credentials::Credentials;
use super::entity::{channel, channel_usage};
use super::store;
use super::vault::Vault;
use crate::http::ctx::AccountScope;
use crate::http::error::{AppError, AppResult};
use crate::modules::accounts::Accounts;
use crate::modules::events::{EventBus, EventMeta, Events};

/// Permanent failures in a row that put a channel in `error`.
pub const ERROR_AFTER_PERMANENT_FAILURES: i32 = 5;
/// How long a 429 without a hint keeps a channel `rate_limited`.
pub const DEFAULT_RATE_LIMIT_WAIT_SECS: i64 = 60;

/// A new channel, validated by the API layer's DTO.
#[derive(Debug, Clone)]
pub struct NewChannel {
    pub name: String,
    pub channel_type: String,
    pub provider: Option<String>,
    pub credentials: Value,
    pub sender_name: Option<String>,
    pub default_country_code: Option<String>,
    pub rate_limit: Option<i32>,
    pub priority: i32,
    pub retry_count: i32,
    pub retry_interval: i32,
    pub is_enabled: bool,
}

/// A change: `None` keeps, `Some(None)` clears. `credentials` replaces the named fields only.
#[derive(Debug, Clone, Default)]
pub struct ChannelPatch {
    pub name: Option<String>,
    pub credentials: Option<Value>,
    pub sender_name: Option<Option<String>>,
    pub default_country_code: Option<Option<String>>,
    pub rate_limit: Option<Option<i32>>,
    pub priority: Option<i32>,
    pub retry_count: Option<i32>,
    pub retry_interval: Option<i32>,
    pub is_enabled: Option<bool>,
}

/// A channel as the API shows it: credentials masked, status with an expired rate limit lifted.
#[derive(Debug, Clone)]
pub struct ChannelView {
    pub channel: channel::Model,
    pub masked_credentials: Value,
    pub webhook_url: String,
}

/// Channel health for `GET /v1/channels/{id}/health`.
#[derive(Debug, Clone)]
pub struct Health {
    pub channel: channel::Model,
    pub sent_last_hour: i64,
    pub failed_last_hour: i64,
}

#[derive(Clone)]
pub struct Channels {
    pub(crate) db: DatabaseConnection,
    accounts: Accounts,
    events: Events,
    vault: Vault,
    adapters: AdapterSet,
    public_base_url: Option<String>,
}

fn effective_status(c: &channel::Model, now: DateTime<Utc>) -> &str {
    if c.status == "rate_limited" && c.rate_limited_until.is_none_or(|t| t <= now) { "connected" } else { &c.status }
}

impl Channels {
    pub fn new(
        db: DatabaseConnection,
        accounts: Accounts,
        events: Events,
        vault: Vault,
        adapters: AdapterSet,
        public_base_url: Option<String>,
    ) -> Self {
        Channels { db, accounts, events, vault, adapters, public_base_url }
    }

    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    pub(super) async fn commit(&self, txn: DatabaseTransaction, mut bus: EventBus) -> AppResult<()> {
        bus.flush(&txn).await?;
        txn.commit().await?;
        self.events.committed();
        Ok(())
    }

    /// Where the provider must post. Providers that do not sign their callbacks (Africa's Talking,
    /// Vonage) get the channel's webhook secret as a `token` query parameter, which the webhook checks.
    pub fn webhook_url(&self, c: &channel::Model) -> String {
        let mut path = format!("/v1/webhooks/{}/{}", c.channel_type, c.id);
        if matches!(c.provider.as_deref(), Some("africastalking" | "vonage"))
            && let Ok(Some(secret)) = self.webhook_secret(c)
        {
            path.push_str("?token=");
            path.push_str(&secret);
        }
        match &self.public_base_url {
            Some(base) => format!("{base}{path}"),
            None => path,
        }
    }

    /// The channel's webhook secret, opened.
    fn webhook_secret(&self, c: &channel::Model) -> AppResult<Option<String>> {
        let Some(sealed) = &c.webhook_secret else { return Ok(None) };
        let plain = self.vault.open(c.id.as_bytes(), sealed).map_err(AppError::internal)?;
        Ok(Some(String::from_utf8(plain).map_err(AppError::internal)?))
    }

    fn seal(&self, id: Uuid, creds: &Credentials) -> Vec<u8> {
        self.vault.seal(id.as_bytes(), creds.to_json().to_string().as_bytes())
    }

    pub(crate) fn open(&self, c: &channel::Model) -> AppResult<Credentials> {
        let plain = self.vault.open(c.id.as_bytes(), &c.credentials).map_err(AppError::internal)?;
        let value: Value = serde_json::from_slice(&plain).map_err(AppError::internal)?;
        Credentials::parse(&c.channel_type, c.provider.as_deref(), &value)
            .map_err(|_| AppError::internal("stored credentials no longer match their channel type"))
    }

    pub fn view(&self, c: channel::Model) -> AppResult<ChannelView> {
        let masked = self.open(&c)?.masked(&c.channel_type, c.provider.as_deref());
        let webhook_url = self.webhook_url(&c);
        let mut c = c;
        c.status = effective_status(&c, Utc::now()).to_string();
        Ok(ChannelView { channel: c, masked_credentials: masked, webhook_url })
    }

    pub fn views(&self, cs: Vec<channel::Model>) -> AppResult<Vec<ChannelView>> {
        cs.into_iter().map(|c| self.view(c)).collect()
    }

    /// Stores `connected` for the account's channels whose rate limit has passed, so that a list
    /// filtered by `status` agrees with what each channel shows.
    pub async fn lift_expired_rate_limits(&self, scope: AccountScope) -> AppResult<()> {
        let now = Utc::now();
        channel::Entity::update_many()
            .col_expr(channel::Column::Status, Expr::val("connected"))
            .col_expr(channel::Column::RateLimitedUntil, Expr::val(Option::<DateTime<Utc>>::None))
            .filter(channel::Column::AccountId.eq(scope.account_id()))
            .filter(channel::Column::Status.eq("rate_limited"))
            .filter(channel::Column::IsEnabled.eq(true))
            .filter(channel::Column::RateLimitedUntil.lte(now))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    pub async fn get(&self, scope: AccountScope, id: Uuid) -> AppResult<channel::Model> {
        store::find_channel(&self.db, scope, id).await?.ok_or(AppError::NotFound("channel"))
    }

    pub(super) fn context(&self, c: &channel::Model) -> AppResult<ChannelContext> {
        let webhook_secret = self.webhook_secret(c)?;
        Ok(ChannelContext {
            id: c.id,
            account_id: c.account_id,
            channel_type: c.channel_type.clone(),
            provider: c.provider.clone(),
            credentials: self.open(c)?,
            sender_name: c.sender_name.clone(),
            webhook_url: self.public_base_url.as_ref().map(|_| self.webhook_url(c)),
            webhook_secret,
        })
    }

    fn can_verify(&self, c: &channel::Model) -> bool {
        self.adapters.get(&c.channel_type, c.provider.as_deref()).is_some()
    }

    pub(super) fn adapter(&self, c: &channel::Model) -> AppResult<Arc<dyn ProviderAdapter>> {
        self.adapters.get(&c.channel_type, c.provider.as_deref()).ok_or_else(|| {
            AppError::NotImplemented(format!(
                "{} channels{} cannot send in this build yet",
                c.channel_type,
                c.provider.as_deref().map(|p| format!(" ({p})")).unwrap_or_default()
            ))
        })
    }

    pub async fn create(&self, scope: AccountScope, new: NewChannel, meta: &EventMeta) -> AppResult<channel::Model> {
        let creds = Credentials::parse(&new.channel_type, new.provider.as_deref(), &new.credentials)
            .map_err(AppError::Validation)?;
        let id = Uuid::now_v7();
        let now = Utc::now();
        let model = channel::ActiveModel {
            id: Set(id),
            account_id: Set(scope.account_id()),
            name: Set(new.name.trim().to_string()),
            channel_type: Set(new.channel_type.clone()),
            provider: Set(new.provider.clone()),
            status: Set(if new.is_enabled { "disconnected" } else { "disabled" }.into()),
            is_enabled: Set(new.is_enabled),
            credentials: Set(self.seal(id, &creds)),
            // Every channel gets a webhook secret: Telegram's secret token, the URL token of unsigned
            // providers.
            webhook_secret: Set(Some(self.vault.seal(id.as_bytes(), crate::secret::random_token(32).as_bytes()))),
            sender_name: Set(new.sender_name),
            default_country_code: Set(new.default_country_code.map(|c| c.to_uppercase())),
            rate_limit: Set(new.rate_limit),
            priority: Set(new.priority),
            retry_count: Set(new.retry_count),
            retry_interval: Set(new.retry_interval),
            last_verified_at: Set(None),
            last_latency_ms: Set(None),
            error_message: Set(None),
            rate_limited_until: Set(None),
            consecutive_failures: Set(0),
            created_at: Set(now),
            updated_at: Set(now),
        };
        let txn = crate::db::begin_write(&self.db).await?;
        let c = model.insert(&txn).await.map_err(name_conflict)?;
        let mut bus = EventBus::new(meta.clone());
        bus.emit(
            "channel.created",
            "channel",
            c.id,
            Some(scope.account_id()),
            json!({ "name": c.name, "channel_type": c.channel_type, "provider": c.provider }),
        );
        self.commit(txn, bus).await?;
        // Channel types whose adapter is not in this build yet are stored unverified (`disconnected`);
        // `POST …/verify` answers 501 for them.
        if c.is_enabled && self.can_verify(&c) { self.verify(scope, c.id, meta).await } else { Ok(c) }
    }

    pub async fn update(
        &self,
        scope: AccountScope,
        id: Uuid,
        patch: ChannelPatch,
        meta: &EventMeta,
    ) -> AppResult<channel::Model> {
        let current = self.get(scope, id).await?;
        let mut reverify = false;
        let mut active = current.clone().into_active_model();
        if let Some(changes) = &patch.credentials {
            let Some(changes) = changes.as_object() else {
                return Err(AppError::field("credentials", "must be an object"));
            };
            let mut merged = self.open(&current)?.to_json();
            let obj = merged.as_object_mut().expect("credentials are an object");
            for (k, v) in changes {
                obj.insert(k.clone(), v.clone());
            }
            let creds = Credentials::parse(&current.channel_type, current.provider.as_deref(), &merged)
                .map_err(AppError::Validation)?;
            active.credentials = Set(self.seal(id, &creds));
            reverify = true;
        }
        if let Some(n) = patch.name {
            active.name = Set(n.trim().to_string());
        }
        if let Some(v) = patch.sender_name {
            active.sender_name = Set(v);
        }
        if let Some(v) = patch.default_country_code {
            active.default_country_code = Set(v.map(|c| c.to_uppercase()));
        }
        if let Some(v) = patch.rate_limit {
            active.rate_limit = Set(v);
        }
        if let Some(v) = patch.priority {
            active.priority = Set(v);
        }
        if let Some(v) = patch.retry_count {
            active.retry_count = Set(v);
        }
        if let Some(v) = patch.retry_interval {
            active.retry_interval = Set(v);
        }
        let mut status_change = None;
        match patch.is_enabled {
            Some(false) if current.is_enabled => {
                active.is_enabled = Set(false);
                active.status = Set("disabled".into());
                status_change = Some("disabled");
                reverify = false;
            }
            Some(true) if !current.is_enabled => {
                active.is_enabled = Set(true);
                active.status = Set("disconnected".into());
                status_change = Some("disconnected");
                reverify = true;
            }
            _ => {}
        }
        active.updated_at = Set(Utc::now());
        let txn = crate::db::begin_write(&self.db).await?;
        let c = active.update(&txn).await.map_err(name_conflict)?;
        let mut bus = EventBus::new(meta.clone());
        bus.emit("channel.updated", "channel", c.id, Some(scope.account_id()), json!({ "name": c.name }));
        if let Some(s) = status_change {
            bus.emit(
                "channel.status_changed",
                "channel",
                c.id,
                Some(scope.account_id()),
                json!({ "from": current.status, "to": s }),
            );
        }
        self.commit(txn, bus).await?;
        if reverify && c.is_enabled && self.can_verify(&c) { self.verify(scope, id, meta).await } else { Ok(c) }
    }

    pub async fn delete(&self, scope: AccountScope, id: Uuid, meta: &EventMeta) -> AppResult<()> {
        let c = self.get(scope, id).await?;
        let txn = crate::db::begin_write(&self.db).await?;
        channel::Entity::delete_many()
            .filter(channel::Column::Id.eq(c.id))
            .filter(channel::Column::AccountId.eq(scope.account_id()))
            .exec(&txn)
            .await?;
        let mut bus = EventBus::new(meta.clone());
        bus.emit("channel.deleted", "channel", c.id, Some(scope.account_id()), json!({ "name": c.name }));
        self.commit(txn, bus).await
    }

    /// Checks the credentials with the provider: `connected`, or `error` with the provider's message.
    /// A connected Telegram channel gets its webhook registered when `public_base_url` is set.
    pub async fn verify(&self, scope: AccountScope, id: Uuid, meta: &EventMeta) -> AppResult<channel::Model> {
        let mut c = self.get(scope, id).await?;
        if !c.is_enabled {
            return Err(AppError::Conflict {
                message: "the channel is disabled; enable it to verify".into(),
                details: json!({ "field": "is_enabled" }),
            });
        }
        let adapter = self.adapter(&c)?;
        if c.webhook_secret.is_none() {
            let secret = crate::secret::random_token(32);
            let sealed = self.vault.seal(c.id.as_bytes(), secret.as_bytes());
            channel::Entity::update_many()
                .col_expr(channel::Column::WebhookSecret, Expr::val(sealed.clone()))
                .filter(channel::Column::Id.eq(c.id))
                .filter(channel::Column::AccountId.eq(scope.account_id()))
                .exec(&self.db)
                .await?;
            c.webhook_secret = Some(sealed);
        }
        let ctx = self.context(&c)?;
        let started = Instant::now();
        let outcome = match adapter.verify(&ctx).await {
            Ok(_) => adapter.register_webhook(&ctx).await,
            Err(e) => Err(e),
        };
        let latency = started.elapsed().as_millis().min(i32::MAX as u128) as i32;
        let now = Utc::now();
        let (status, error) = match &outcome {
            Ok(()) => ("connected", None),
            Err(e) => ("error", Some(e.message.clone())),
        };
        let mut active = c.clone().into_active_model();
        active.status = Set(status.into());
        active.error_message = Set(error.clone());
        active.last_verified_at = Set(Some(now));
        active.last_latency_ms = Set(Some(latency));
        active.rate_limited_until = Set(None);
        active.consecutive_failures = Set(0);
        active.updated_at = Set(now);
        let txn = crate::db::begin_write(&self.db).await?;
        let updated = active.update(&txn).await?;
        let mut bus = EventBus::new(meta.clone());
        bus.emit(
            "channel.verified",
            "channel",
            c.id,
            Some(scope.account_id()),
            json!({ "status": status, "error_message": error, "latency_ms": latency }),
        );
        if c.status != status {
            bus.emit(
                "channel.status_changed",
                "channel",
                c.id,
                Some(scope.account_id()),
                json!({ "from": c.status, "to": status }),
            );
        }
        self.commit(txn, bus).await?;
        Ok(updated)
    }

    /// What dispatch reports after each send: success → `connected`; throttled → `rate_limited` until
    /// the wait passes; auth → `error`; five permanent failures in a row → `error`. Counts the send in the
    /// hourly usage either way (throttled sends are not failures: they are tried again).
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
                    active.status = Set("connected".into());
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
                        active.status = Set("rate_limited".into());
                    }
                    active.rate_limited_until = Set(Some(now + wait));
                    (0, 0)
                }
                ErrorClass::Auth => {
                    if c.is_enabled {
                        active.status = Set("error".into());
                    }
                    active.error_message = Set(Some(e.message.clone()));
                    (0, 1)
                }
                ErrorClass::Permanent => {
                    let n = c.consecutive_failures + 1;
                    active.consecutive_failures = Set(n);
                    if n >= ERROR_AFTER_PERMANENT_FAILURES && c.is_enabled {
                        active.status = Set("error".into());
                        active.error_message =
                            Set(Some(format!("{n} permanent failures in a row; last: {}", e.message)));
                    }
                    (0, 1)
                }
                ErrorClass::Transient => (0, 1),
            },
        };
        let txn = crate::db::begin_write(&self.db).await?;
        let status_before = effective_status(&c, now).to_string();
        let updated = if active.is_changed() {
            active.updated_at = Set(now);
            active.update(&txn).await?
        } else {
            c.clone()
        };
        if sent + failed > 0 {
            let hour = now.duration_trunc(Duration::hours(1)).unwrap_or(now);
            channel_usage::Entity::insert(channel_usage::ActiveModel {
                channel_id: Set(id),
                hour: Set(hour),
                sent: Set(sent),
                failed: Set(failed),
            })
            .on_conflict(
                OnConflict::columns([channel_usage::Column::ChannelId, channel_usage::Column::Hour])
                    .value(
                        channel_usage::Column::Sent,
                        Expr::col((channel_usage::Entity, channel_usage::Column::Sent)).add(sent),
                    )
                    .value(
                        channel_usage::Column::Failed,
                        Expr::col((channel_usage::Entity, channel_usage::Column::Failed)).add(failed),
                    )
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
        }
        let mut bus = EventBus::new(EventMeta::default());
        let status_after = effective_status(&updated, now);
        if status_before != status_after {
            bus.emit(
                "channel.status_changed",
                "channel",
                id,
                Some(scope.account_id()),
                json!({ "from": status_before, "to": status_after, "error_message": updated.error_message }),
            );
        }
        self.commit(txn, bus).await?;
        Ok(updated)
    }

    pub async fn health(&self, scope: AccountScope, id: Uuid) -> AppResult<Health> {
        let mut c = self.get(scope, id).await?;
        let now = Utc::now();
        c.status = effective_status(&c, now).to_string();
        // The current hour's bucket and the previous one: "the last hour" at bucket resolution.
        let since = now.duration_trunc(Duration::hours(1)).unwrap_or(now) - Duration::hours(1);
        let rows = channel_usage::Entity::find()
            .filter(channel_usage::Column::ChannelId.eq(c.id))
            .filter(channel_usage::Column::Hour.gte(since))
            .all(&self.db)
            .await?;
        Ok(Health {
            sent_last_hour: rows.iter().map(|r| r.sent).sum(),
            failed_last_hour: rows.iter().map(|r| r.failed).sum(),
            channel: c,
        })
    }

    /// Re-seals every channel's credentials (and webhook secrets) sealed under an older key with the
    /// current one. Returns how many channels changed.
    pub async fn rotate_credentials(&self) -> AppResult<u64> {
        let mut changed = 0;
        for c in channel::Entity::find().all(&self.db).await? {
            let stale_secret = c.webhook_secret.as_ref().is_some_and(|s| !self.vault.is_current(s));
            if self.vault.is_current(&c.credentials) && !stale_secret {
                continue;
            }
            let context = c.id.as_bytes();
            let reseal = |sealed: &[u8]| -> AppResult<Vec<u8>> {
                let plain = self.vault.open(context, sealed).map_err(AppError::internal)?;
                Ok(self.vault.seal(context, &plain))
            };
            let credentials = reseal(&c.credentials)?;
            let webhook_secret = c.webhook_secret.as_deref().map(reseal).transpose()?;
            channel::Entity::update_many()
                .col_expr(channel::Column::Credentials, Expr::val(credentials))
                .col_expr(channel::Column::WebhookSecret, Expr::val(webhook_secret))
                .filter(channel::Column::Id.eq(c.id))
                .exec(&self.db)
                .await?;
            changed += 1;
        }
        Ok(changed)
    }

    pub fn registry(&self) -> ChannelRegistry {
        ChannelRegistry { channels: self.clone() }
    }

    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }
}

/// What messaging uses to send: a channel with its credentials opened and its adapter. Credentials never
/// leave this value except into the adapter.
#[derive(Clone)]
pub struct ChannelRegistry {
    channels: Channels,
}

/// A channel ready to send.
pub struct LoadedChannel {
    pub model: channel::Model,
    pub context: ChannelContext,
    pub adapter: Arc<dyn ProviderAdapter>,
}

impl ChannelRegistry {
    pub async fn load(&self, scope: AccountScope, id: Uuid) -> AppResult<LoadedChannel> {
        let model = self.channels.get(scope, id).await?;
        let context = self.channels.context(&model)?;
        let adapter = self.channels.adapter(&model)?;
        Ok(LoadedChannel { model, context, adapter })
    }

    /// Sends one message and reports the outcome on the channel's status and usage.
    pub async fn send(
        &self,
        scope: AccountScope,
        channel: &LoadedChannel,
        message: &super::adapter::OutboundMessage,
    ) -> AppResult<Result<super::adapter::SendReceipt, ProviderError>> {
        if !channel.model.is_enabled {
            return Ok(Err(ProviderError::new(ErrorClass::Permanent, "the channel is disabled")));
        }
        let result = channel.adapter.send(&channel.context, message).await;
        self.channels.report_outcome(scope, channel.model.id, result.as_ref().map(|_| ())).await?;
        Ok(result)
    }

    pub fn channels(&self) -> &Channels {
        &self.channels
    }
}

fn name_conflict(e: sea_orm::DbErr) -> AppError {
    if crate::db::is_unique_violation(&e) {
        AppError::Conflict {
            message: "a channel with this name already exists".into(),
            details: json!({ "field": "name" }),
        }
    } else {
        e.into()
    }
}
