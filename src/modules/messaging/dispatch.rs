//! The dispatcher (roles `dispatcher`, `worker`, `all`): the messages table is the queue. A pass claims
//! due messages — `queued` or `failed` with `next_attempt_at` passed, or `sending` whose claim lease ran
//! out (its dispatcher died mid-send) — moving them to `sending` with the attempt counted and a lease,
//! and commits that BEFORE any provider call; so a message is never sent twice by two dispatchers, and a
//! crash loses nothing (the lease runs out and the message is claimed again: at most one duplicate
//! provider request). The sends run outside any transaction, a few at a time; the outcomes of the pass
//! are written in ONE transaction with their `message.status.<status>` events, each only if the message
//! is still held by this claim (same status and attempt).
//!
//! Outcomes: accepted → `sent` (or `delivered` when the provider confirms at once); throttled → back to
//! `queued`, due after the provider's wait, the attempt not spent; transient → `failed` with the retry
//! due after the channel's `retry_interval` doubled per attempt (a row with a due time: it survives a
//! restart), until `retry_count` retries are spent → `permanently_failed`; permanent or auth →
//! `permanently_failed` at once, with `error_details`.
//!
//! A channel with `rate_limit` (sends per minute) draws tokens from its bucket row, shared by every
//! dispatcher through the database (one second's worth at most: bursts are smoothed); messages beyond
//! the tokens go back to `queued`, due when the next token is, without spending an attempt.
//!
//! Metrics: `messages_dispatched_total{channel_type, outcome}` (sent, delivered, retry_scheduled,
//! throttled, rate_limited, released, permanently_failed), `dispatch_provider_latency_seconds{channel_type}` (the
//! provider call) and `message_dispatch_delay_seconds{channel_type}` (due → accepted by the provider).
//!
//! A claim covers its message only while its lease runs: a message whose turn in the pass comes so late
//! that the lease could run out before its provider call (at most `send_timeout`) and the pass's record
//! are done is not sent by this pass — it is handed back (`queued`, due at once, no attempt spent), so
//! no other dispatcher can take over a message this one is still sending (see [`DispatchOptions::start_within`]).
//!
//! A send's record also matches the delivery receipts that arrived before it (see `receipts`).
//!
//! SMPP: only the process holding a channel's bind lease sends its messages; the other dispatchers do
//! not claim them (and one that claimed just before the lease moved gives the message back, no
//! attempt spent).
//!
//! Waking: in the process that queued a message, the send wakes the dispatcher at once; with a broker,
//! `message.dispatch.*` rings the doorbell of a dispatcher in another process; an idle dispatcher also
//! polls every [`DispatchOptions::poll`].
//!
//! Concurrency: at most [`DispatchOptions::concurrency`] provider calls in flight per dispatcher, and
//! at most [`DispatchOptions::per_channel`] of them for any one channel, so a slow provider cannot take
//! every slot from the others. Every provider call is bounded by [`DispatchOptions::send_timeout`]
//! (below the claim lease), whatever the adapter's own timers: a stuck connection fails its message
//! transiently instead of holding the pass. [`DispatchOptions::loops`] passes run at once (one claims
//! and records while another waits for its providers); both bounds hold across them.

mod record;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures_util::StreamExt;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use super::entity::message;
use super::group_store;
use super::service::Messaging;
use super::store::{self, Outcome};
use super::templates::media_of;
use crate::domain::channel_type::ChannelType;
use crate::error::AppResult;
use crate::modules::accounts::AccountScope;
use crate::modules::channels::{
    BIND_OWNED_ELSEWHERE, ChannelRegistry, ErrorClass, LoadedChannel, OutboundMessage, ProviderError,
};

/// How the dispatcher paces itself.
#[derive(Debug, Clone, Copy)]
pub struct DispatchOptions {
    /// Messages claimed per pass.
    pub batch: u64,
    /// How long a claim holds a message.
    pub lease: Duration,
    /// How often an idle dispatcher looks for due messages when nothing woke it.
    pub poll: Duration,
    /// Provider calls in flight per dispatcher.
    pub concurrency: usize,
    /// Provider calls in flight per channel in this dispatcher: a slow provider holds at most this many
    /// of the `concurrency` slots, and the other channels' messages keep moving.
    pub per_channel: usize,
    /// The longest a provider call may take, whatever the adapter's own timeouts: then it counts as a
    /// transient failure. Below `lease`, so no other dispatcher takes the message over while it is sent.
    pub send_timeout: Duration,
    /// Passes run at once by [`Dispatcher::start`]: one claims and records while another waits for
    /// its providers (the two bounds above hold across them).
    pub loops: usize,
}

impl DispatchOptions {
    /// How long after its claim a pass may still start a message's provider call: three quarters of
    /// what the lease leaves beyond `send_timeout`. The last quarter is the pass's margin for recording
    /// its outcomes (written together once every call of the pass has ended), so a send is recorded
    /// before its lease runs out and no other dispatcher claims it again meanwhile.
    pub fn start_within(&self) -> Duration {
        self.lease.saturating_sub(self.send_timeout) * 3 / 4
    }
}

impl Default for DispatchOptions {
    fn default() -> Self {
        DispatchOptions {
            batch: 200,
            lease: Duration::from_secs(120),
            poll: Duration::from_millis(500),
            concurrency: 16,
            per_channel: 8,
            send_timeout: Duration::from_secs(90),
            loops: 2,
        }
    }
}

/// How long a pass trusts what it read of a group send's cancellation.
const CANCEL_RECHECK: Duration = Duration::from_millis(500);

/// Whether the group sends of a pass's messages were cancelled, read at most every
/// [`CANCEL_RECHECK`] per group: a send cancelled while a pass works through its claimed messages
/// stops within that time (the claimed messages not yet handed to a provider are cancelled).
#[derive(Default)]
struct CancelWatch {
    seen: tokio::sync::Mutex<HashMap<Uuid, (bool, std::time::Instant)>>,
}

impl CancelWatch {
    async fn is_cancelled(&self, db: &sea_orm::DatabaseConnection, group: Uuid) -> bool {
        let mut seen = self.seen.lock().await;
        if let Some((cancelled, at)) = seen.get(&group)
            && (*cancelled || at.elapsed() < CANCEL_RECHECK)
        {
            return *cancelled;
        }
        // A read that fails leaves the send going (the record's own check cancels what is left).
        let cancelled = group_store::cancelled_among(db, &[group]).await.is_ok_and(|c| c.contains(&group));
        seen.insert(group, (cancelled, std::time::Instant::now()));
        cancelled
    }
}

/// Longest wait between two attempts.
const MAX_BACKOFF_SECS: i64 = 3600;
/// How often a dispatcher drops receipts parked too long.
const SWEEP_EVERY: Duration = Duration::from_secs(600);
/// A throttled send without the provider's hint waits this long.
const DEFAULT_THROTTLE_WAIT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Dispatcher {
    messaging: Messaging,
    registry: ChannelRegistry,
    options: DispatchOptions,
    /// Provider calls in flight in this dispatcher (`concurrency`), across its passes.
    slots: Arc<Semaphore>,
    /// Provider calls in flight per channel (`per_channel`), across its passes.
    channel_slots: Arc<std::sync::Mutex<HashMap<Uuid, Arc<Semaphore>>>>,
}

/// What one outcome of a pass changes (decided before the pass is written).
struct Decided {
    m: message::Model,
    change: store::Change,
    /// Given back to the queue (rate limit): no status event.
    deferred: bool,
    provider_id: Option<String>,
    part_ids: Vec<String>,
}

/// A claimed message's channel, loaded once per pass.
type Loaded = Option<(AccountScope, Arc<LoadedChannel>)>;

impl Dispatcher {
    pub fn new(messaging: Messaging, registry: ChannelRegistry, options: DispatchOptions) -> Self {
        let slots = Arc::new(Semaphore::new(options.concurrency.max(1)));
        Dispatcher { messaging, registry, options, slots, channel_slots: Arc::default() }
    }

    /// The in-flight bound of one channel's provider calls.
    fn channel_slot(&self, channel_id: Uuid) -> Arc<Semaphore> {
        let mut slots = self.channel_slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.entry(channel_id).or_insert_with(|| Arc::new(Semaphore::new(self.options.per_channel.max(1)))).clone()
    }

    /// Runs `loops` passes at once until shutdown: at once when this process sent a message, else
    /// every `poll`; a pass that found a full batch wakes another.
    pub fn start(self, shutdown: &CancellationToken, tracker: &TaskTracker) {
        for i in 0..self.options.loops.max(1) {
            let me = self.clone();
            let shutdown = shutdown.clone();
            let wake: Arc<Notify> = self.messaging.dispatch_wake.clone();
            tracker.spawn(async move {
                let mut swept: Option<std::time::Instant> = None;
                loop {
                    if i == 0 && swept.is_none_or(|at| at.elapsed() >= SWEEP_EVERY) {
                        swept = Some(std::time::Instant::now());
                        me.sweep().await;
                    }
                    let handled = match me.run_once().await {
                        Ok(n) => n,
                        Err(e) => {
                            tracing::warn!(error = %e, "dispatch pass failed");
                            0
                        }
                    };
                    if handled as u64 == me.options.batch {
                        wake.notify_one();
                        continue;
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = wake.notified() => {}
                        _ = tokio::time::sleep(me.options.poll) => {}
                    }
                }
            });
        }
    }

    /// Drops receipts parked longer than [`super::consumer::PARKED_RECEIPT_DAYS`] (their send's answer
    /// was lost and the message sent again under another provider id).
    async fn sweep(&self) {
        let before = Utc::now() - chrono::Duration::days(super::consumer::PARKED_RECEIPT_DAYS);
        match super::receipts::expire_parked(&self.messaging.db, before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(count = n, "dropped delivery receipts that never matched a send"),
            Err(e) => tracing::warn!(error = %e, "cannot drop old parked receipts"),
        }
    }

    /// One pass: claim, send, record. Returns how many messages it handled.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn run_once(&self) -> AppResult<usize> {
        let elsewhere = self.registry.bound_elsewhere().await;
        let held: Vec<Uuid> = self.messaging.accounts.suspended_accounts().await?.iter().copied().collect();
        // Taken before the claim, so the lease the database gives runs at least until `start_by` + the rest.
        let start_by = std::time::Instant::now() + self.options.start_within();
        let claimed =
            store::claim_due(&self.messaging.db, self.options.batch, self.options.lease, &elsewhere, &held).await?;
        if claimed.is_empty() {
            return Ok(0);
        }
        let channels = self.load_channels(&claimed).await;
        let (claimed, mut deferred) = self.within_rate_limits(claimed, &channels).await?;
        let windows = self.service_windows(&claimed, &channels).await;
        // Each channel's messages in claim order, at most `per_channel` of them in flight; all channels
        // together at most `concurrency` (the slots are handed out first come, first served).
        let slots = &*self.slots;
        let cancels = CancelWatch::default();
        let mut by_channel: Vec<(Uuid, Vec<message::Model>)> = Vec::new();
        for m in claimed {
            match by_channel.iter_mut().find(|(c, _)| *c == m.channel_id) {
                Some((_, list)) => list.push(m),
                None => by_channel.push((m.channel_id, vec![m])),
            }
        }
        let per_channel = by_channel.into_iter().map(|(channel_id, list)| {
            let loaded = channels.get(&channel_id).cloned().flatten();
            let channel_slots = self.channel_slot(channel_id);
            let (slots, windows, cancels) = (slots, &windows, &cancels);
            futures_util::stream::iter(list)
                .map(move |m| {
                    let loaded = loaded.clone();
                    let channel_slots = channel_slots.clone();
                    let last_inbound_at = m.contact_id.and_then(|c| windows.get(&c).copied());
                    async move {
                        let _channel = channel_slots.acquire().await.expect("the semaphore is never closed");
                        let _slot = slots.acquire().await.expect("the semaphore is never closed");
                        if let Some(g) = m.group_message_id
                            && cancels.is_cancelled(&self.messaging.db, g).await
                        {
                            return (m, Outcome::Cancelled);
                        }
                        if std::time::Instant::now() > start_by {
                            return (m, Outcome::Released);
                        }
                        let outcome = self.deliver(&m, loaded, last_inbound_at).await;
                        (m, outcome)
                    }
                })
                .buffer_unordered(self.options.per_channel.max(1))
                .collect::<Vec<_>>()
        });
        let mut outcomes: Vec<(message::Model, Outcome)> =
            futures_util::future::join_all(per_channel).await.into_iter().flatten().collect();
        self.report_to_channels(&outcomes, &channels).await;
        outcomes.append(&mut deferred);
        let n = outcomes.len();
        self.record(outcomes).await?;
        Ok(n)
    }

    async fn load_channels(&self, claimed: &[message::Model]) -> HashMap<Uuid, Loaded> {
        let mut out: HashMap<Uuid, Loaded> = HashMap::new();
        let mut scopes: HashMap<Uuid, Option<AccountScope>> = HashMap::new();
        for m in claimed {
            if out.contains_key(&m.channel_id) {
                continue;
            }
            if let std::collections::hash_map::Entry::Vacant(entry) = scopes.entry(m.account_id) {
                // A system job across accounts: each message is sent in its own account's scope.
                entry.insert(self.messaging.accounts.operator_scope(m.account_id).await.ok());
            }
            let Some(scope) = scopes[&m.account_id] else {
                out.insert(m.channel_id, None);
                continue;
            };
            let loaded = match self.registry.load(scope, m.channel_id).await {
                Ok(c) => Some((scope, Arc::new(c))),
                Err(e) => {
                    tracing::warn!(channel_id = %m.channel_id, error = %e, "cannot load the channel of a message");
                    None
                }
            };
            out.insert(m.channel_id, loaded);
        }
        out
    }

    /// Splits the claimed messages of rate-limited channels into those the channels' buckets allow now
    /// and those deferred to when the next token is due (in claim order).
    async fn within_rate_limits(
        &self,
        claimed: Vec<message::Model>,
        channels: &HashMap<Uuid, Loaded>,
    ) -> AppResult<(Vec<message::Model>, Vec<(message::Model, Outcome)>)> {
        let mut wanted: HashMap<Uuid, u32> = HashMap::new();
        for m in &claimed {
            if let Some(Some((_, c))) = channels.get(&m.channel_id)
                && c.model.rate_limit.is_some()
            {
                *wanted.entry(m.channel_id).or_default() += 1;
            }
        }
        let mut allowance: HashMap<Uuid, (u32, chrono::DateTime<Utc>)> = HashMap::new();
        for (channel_id, want) in wanted {
            let Some(Some((_, c))) = channels.get(&channel_id) else { continue };
            let per_minute = c.model.rate_limit.unwrap_or(i32::MAX);
            let (granted, wait) = store::take_send_tokens(&self.messaging.db, channel_id, per_minute, want).await?;
            let due = Utc::now() + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::seconds(1));
            allowance.insert(channel_id, (granted, due));
        }
        let (mut now, mut later) = (Vec::new(), Vec::new());
        for m in claimed {
            match allowance.get_mut(&m.channel_id) {
                Some((0, due)) => {
                    let due = *due;
                    later.push((m, Outcome::Deferred(due)));
                }
                Some((left, _)) => {
                    *left -= 1;
                    now.push(m);
                }
                None => now.push(m),
            }
        }
        Ok((now, later))
    }

    /// When the contacts of the WhatsApp and Messenger messages among `claimed` last wrote to us (free
    /// text is allowed only within 24 h of that); a contact this cannot be read for counts as silent.
    /// The account scopes come from the channels this pass loaded (no second lookup).
    async fn service_windows(
        &self,
        claimed: &[message::Model],
        channels: &HashMap<Uuid, Loaded>,
    ) -> HashMap<Uuid, chrono::DateTime<Utc>> {
        let mut by_account: HashMap<Uuid, (AccountScope, Vec<Uuid>)> = HashMap::new();
        for m in claimed {
            if matches!(m.channel_type, ChannelType::Whatsapp | ChannelType::Messenger)
                && let Some(c) = m.contact_id
                && let Some(Some((scope, _))) = channels.get(&m.channel_id)
            {
                by_account.entry(m.account_id).or_insert_with(|| (*scope, Vec::new())).1.push(c);
            }
        }
        let mut out = HashMap::new();
        for (scope, contacts) in by_account.into_values() {
            match self.messaging.directory.last_inbound(scope, &contacts).await {
                Ok(found) => out.extend(found),
                Err(e) => tracing::warn!(error = %e, "cannot read when contacts last wrote"),
            }
        }
        out
    }

    async fn deliver(
        &self,
        m: &message::Model,
        loaded: Loaded,
        last_inbound_at: Option<chrono::DateTime<Utc>>,
    ) -> Outcome {
        let Some((_, channel)) = loaded else {
            let e = ProviderError::new(ErrorClass::Permanent, "the channel no longer exists or cannot be opened");
            return Outcome::Failed { error: e, retry_count: 0, retry_interval: 0 };
        };
        let outbound = OutboundMessage {
            message_id: m.id,
            to: m.delivery_address.clone(),
            text: m.message_body.clone(),
            subject: m.metadata.get("subject").and_then(|s| s.as_str()).map(str::to_string),
            last_inbound_at,
            attachments: media_of(&m.attachments),
            ..Default::default()
        };
        let (retry_count, retry_interval) = (channel.model.retry_count, channel.model.retry_interval);
        let started = std::time::Instant::now();
        let answer =
            match tokio::time::timeout(self.options.send_timeout, self.registry.send_unreported(&channel, &outbound))
                .await
            {
                Ok(answer) => answer,
                Err(_) => Err(ProviderError::new(
                    ErrorClass::Transient,
                    format!("the provider did not answer within {} s", self.options.send_timeout.as_secs_f64()),
                )
                .with_code("send_timeout")),
            };
        metrics::histogram!("dispatch_provider_latency_seconds", "channel_type" => m.channel_type.as_str())
            .record(started.elapsed().as_secs_f64());
        match answer {
            Ok(receipt) => Outcome::Sent(receipt),
            Err(error) => Outcome::Failed { error, retry_count, retry_interval },
        }
    }

    /// The pass's provider answers on each channel's status and usage: one report per channel (not one
    /// read and one transaction per message).
    async fn report_to_channels(&self, outcomes: &[(message::Model, Outcome)], channels: &HashMap<Uuid, Loaded>) {
        let mut by_channel: HashMap<Uuid, Vec<Result<(), ProviderError>>> = HashMap::new();
        for (m, outcome) in outcomes {
            let answer = match outcome {
                Outcome::Sent(_) => Ok(()),
                Outcome::Failed { error, .. } => Err(error.clone()),
                Outcome::Deferred(_) | Outcome::Released | Outcome::Cancelled => continue,
            };
            by_channel.entry(m.channel_id).or_default().push(answer);
        }
        for (channel_id, answers) in by_channel {
            if let Some(Some((scope, c))) = channels.get(&channel_id)
                && c.model.is_enabled
            {
                self.registry.report(*scope, channel_id, &answers).await;
            }
        }
    }
}
