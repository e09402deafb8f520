//! The channels service: CRUD with sealed credentials, verification and key rotation. Status from
//! traffic and health are in `status.rs`; the [`ChannelRegistry`](super::ChannelRegistry) messaging
//! sends through is in `registry.rs`.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;

use sea_orm::{ActiveModelTrait, DatabaseConnection, IntoActiveModel, Set};
use serde_json::{Value, json};
use uuid::Uuid;

use super::adapter::{AdapterSet, ChannelContext, ProviderAdapter};
use super::credentials::Credentials;
use super::entity::channel::{self, ChannelStatus};
use super::entity::sandbox_message;
use super::leases::BindLeases;
use super::store;
use super::vault::Vault;
use crate::db::list::{ListQuery, Page};
use crate::db::memo::{Memo, Remembered};
use crate::error::{AppError, AppResult};
use crate::modules::accounts::AccountScope;
use crate::modules::accounts::Accounts;
use crate::modules::events::{EventBus, EventMeta, Events};

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

#[derive(Clone)]
pub struct Channels {
    pub(super) db: DatabaseConnection,
    pub(super) accounts: Accounts,
    pub(super) events: Events,
    pub(super) vault: Vault,
    pub(super) adapters: AdapterSet,
    pub(super) public_base_url: Option<String>,
    /// This process's SMPP bind leases (see [`Channels::with_bind_leases`]).
    pub(super) leases: Option<BindLeases>,
    /// What sends read of a channel, remembered until the next change ([`Channels::for_send`]).
    pub(super) memo: Arc<Memo>,
    pub(super) sending: Remembered<(Uuid, Uuid), channel::Model>,
}

impl Channels {
    pub fn new(
        db: DatabaseConnection,
        accounts: Accounts,
        events: Events,
        memo: Arc<Memo>,
        vault: Vault,
        adapters: AdapterSet,
        public_base_url: Option<String>,
    ) -> Self {
        let sending = memo.cache(Self::REMEMBERED);
        let forgets = sending.clone();
        memo.on_forget(move || forgets.invalidate_all());
        Channels { db, accounts, events, vault, adapters, public_base_url, leases: None, memo, sending }
    }

    /// Channels whose settings a process remembers for sends.
    const REMEMBERED: u64 = 10_000;

    /// Tells the SMPP adapter whether this process dispatches messages: one that does not (the `api`
    /// role) closes the bind it makes to verify a channel, so that a dispatcher elsewhere can take it.
    pub fn set_dispatching(&self, on: bool) {
        if let Some(leases) = &self.leases {
            leases.set_dispatching(on);
        }
    }

    /// The bind leases this process's SMPP adapter takes (the same owner): the registry then knows
    /// which channels another process sends for.
    pub fn with_bind_leases(mut self, leases: BindLeases) -> Self {
        self.leases = Some(leases);
        self
    }

    pub fn vault(&self) -> &Vault {
        &self.vault
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
        c.status = c.effective_status(Utc::now());
        Ok(ChannelView { channel: c, masked_credentials: masked, webhook_url })
    }

    pub fn views(&self, cs: Vec<channel::Model>) -> AppResult<Vec<ChannelView>> {
        cs.into_iter().map(|c| self.view(c)).collect()
    }

    /// The account's channels (credentials masked), filtered, sorted and paged. A status filter first
    /// lifts expired rate limits, so the list agrees with what each channel shows.
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn list_channels(&self, scope: AccountScope, q: &ListQuery) -> AppResult<Page<ChannelView>> {
        if q.filters.iter().any(|f| f.field == "status") {
            self.lift_expired_rate_limits(scope).await?;
        }
        let page = store::list_channels(&self.db, scope, q).await?;
        let items = self.views(page.items)?;
        Ok(Page { items, total: page.total, skip: page.skip, limit: page.limit })
    }

    /// What a sandbox channel of the account "sent" (404 for any other channel).
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn list_sandbox_messages(
        &self,
        scope: AccountScope,
        id: Uuid,
        q: &ListQuery,
    ) -> AppResult<Page<sandbox_message::Model>> {
        let c = self.get(scope, id).await?;
        if c.channel_type != "sandbox" {
            return Err(AppError::NotFound("sandbox channel"));
        }
        store::list_sandbox_messages(&self.db, scope, c.id, q).await
    }

    /// The public base URL webhooks are reached at, when configured.
    pub fn public_base_url(&self) -> Option<&str> {
        self.public_base_url.as_deref()
    }

    /// The account's enabled channels, highest priority first (ties: the oldest first).
    pub async fn enabled_channels(&self, scope: AccountScope) -> AppResult<Vec<channel::Model>> {
        use sea_orm::{ColumnTrait, QueryFilter, QueryOrder};
        Ok(store::channels_in(scope)
            .filter(channel::Column::IsEnabled.eq(true))
            .order_by_desc(channel::Column::Priority)
            .order_by_asc(channel::Column::CreatedAt)
            .all(&self.db)
            .await?)
    }

    pub async fn get(&self, scope: AccountScope, id: Uuid) -> AppResult<channel::Model> {
        store::find_channel(&self.db, scope, id).await?.ok_or(AppError::NotFound("channel"))
    }

    /// The channel as a send reads it — its type, provider, `is_enabled`, country and sender name —
    /// remembered until the next change to a channel in any process (`db::memo`: [`Self::update`]
    /// and [`Self::delete`] announce theirs), so that accepting a message costs no read of its
    /// channel. What the dispatcher and the webhooks change without announcing (status, verification,
    /// usage) and the sealed secrets may be older here: read those with [`Self::get`].
    pub async fn for_send(&self, scope: AccountScope, id: Uuid) -> AppResult<channel::Model> {
        self.memo.remembered(&self.sending, (scope.account_id(), id), self.get(scope, id)).await
    }

    /// Commits a change to a channel's settings with its events; every process forgets the channels
    /// it remembered for sends.
    async fn commit_settings_change(&self, txn: sea_orm::DatabaseTransaction, bus: EventBus) -> AppResult<()> {
        Memo::announce(&txn).await?;
        self.events.commit(txn, bus).await?;
        self.memo.forget();
        Ok(())
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

    /// Whether the channel's provider can send files with a message (see `ProviderAdapter::sends_attachments`).
    pub fn sends_attachments(&self, c: &channel::Model) -> bool {
        self.adapters.get(&c.channel_type, c.provider.as_deref()).is_some_and(|a| a.sends_attachments())
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

    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
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
            status: Set(if new.is_enabled { ChannelStatus::Disconnected } else { ChannelStatus::Disabled }),
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
        self.events.commit(txn, bus).await?;
        // Channel types whose adapter is not in this build yet are stored unverified (`disconnected`);
        // `POST …/verify` answers 501 for them.
        if c.is_enabled && self.can_verify(&c) { self.verify(scope, c.id, &meta.for_job()).await } else { Ok(c) }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
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
                active.status = Set(ChannelStatus::Disabled);
                status_change = Some(ChannelStatus::Disabled);
                reverify = false;
            }
            Some(true) if !current.is_enabled => {
                active.is_enabled = Set(true);
                active.status = Set(ChannelStatus::Disconnected);
                status_change = Some(ChannelStatus::Disconnected);
                reverify = true;
            }
            _ => {}
        }
        active.updated_at = Set(Utc::now());
        let txn = crate::db::begin_write(&self.db).await?;
        let c = active.update(&txn).await.map_err(name_conflict)?;
        let mut bus = EventBus::new(meta.clone());
        bus.before(channel_event(&current));
        let mut after = channel_event(&c);
        after["credentials_changed"] = json!(reverify && status_change.is_none());
        bus.emit("channel.updated", "channel", c.id, Some(scope.account_id()), after);
        if let Some(s) = status_change {
            bus.emit(
                "channel.status_changed",
                "channel",
                c.id,
                Some(scope.account_id()),
                json!({ "from": current.status, "to": s }),
            );
        }
        self.commit_settings_change(txn, bus).await?;
        if reverify && c.is_enabled && self.can_verify(&c) {
            self.verify(scope, id, &meta.for_job()).await
        } else {
            Ok(c)
        }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn delete(&self, scope: AccountScope, id: Uuid, meta: &EventMeta) -> AppResult<()> {
        let c = self.get(scope, id).await?;
        let txn = crate::db::begin_write(&self.db).await?;
        store::delete_channel(&txn, scope, c.id).await?;
        let mut bus = EventBus::new(meta.clone());
        bus.emit("channel.deleted", "channel", c.id, Some(scope.account_id()), json!({ "name": c.name }));
        self.commit_settings_change(txn, bus).await
    }

    /// Checks the credentials with the provider: `connected`, or `error` with the provider's message.
    /// A connected Telegram channel gets its webhook registered when `public_base_url` is set.
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
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
            store::set_webhook_secret(&self.db, scope, c.id, sealed.clone()).await?;
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
            Ok(()) => (ChannelStatus::Connected, None),
            Err(e) => (ChannelStatus::Error, Some(e.message.clone())),
        };
        let mut active = c.clone().into_active_model();
        active.status = Set(status);
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
        self.events.commit(txn, bus).await?;
        Ok(updated)
    }

    /// Re-seals every channel's credentials (and webhook secrets) sealed under an older key with the
    /// current one. Returns how many channels changed.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn rotate_credentials(&self) -> AppResult<u64> {
        let mut changed = 0;
        for c in store::all_channels(&self.db).await? {
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
            store::reseal_channel(&self.db, c.id, credentials, webhook_secret).await?;
            changed += 1;
        }
        Ok(changed)
    }

    pub fn accounts(&self) -> &Accounts {
        &self.accounts
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

/// A channel's settings as its events and audit entries show them (never its credentials).
fn channel_event(c: &channel::Model) -> serde_json::Value {
    json!({
        "name": c.name, "sender_name": c.sender_name, "default_country_code": c.default_country_code,
        "rate_limit": c.rate_limit, "priority": c.priority, "retry_count": c.retry_count,
        "retry_interval": c.retry_interval, "is_enabled": c.is_enabled,
    })
}
