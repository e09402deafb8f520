//! Builds the shared state (database, keys, mailer, module facades) and starts the chosen roles.
//!
//! [`Application::build`] binds the listener first (port 0 works), so tests spawn the real server and
//! read [`Application::port`]; `run_until_stopped` serves until SIGTERM/SIGINT with a 30 s grace period.

use std::net::TcpListener;
use std::sync::Arc;

use actix_cors::Cors;
use actix_web::middleware::{Condition, ErrorHandlers, NormalizePath, TrailingSlash, from_fn};
use actix_web::{App, dev::Server, web};
use metrics_exporter_prometheus::PrometheusHandle;
use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Settings;
use crate::db;
use crate::db::memo::Memo;
use crate::http;
use crate::mail::Mailer;
use crate::modules::accounts::{self, Accounts, JwtKeys};
use crate::modules::channels::{self, BindLeases, Channels, MediaFetcher, Vault};
use crate::modules::contacts::{self, Contacts, Directory, ImportUploads};
use crate::modules::events::{Events, SharedConsumer};
use crate::modules::messaging::{self, DispatchOptions, Dispatcher, Messaging, MessagingParts};
use crate::secret::SecretKey;

mod openapi;
mod operations;
mod role;

pub use openapi::document as openapi_document;
pub use role::Role;

pub struct AppState {
    pub db: DatabaseConnection,
    pub settings: Arc<Settings>,
    pub accounts: Accounts,
    pub contacts: Contacts,
    pub directory: Directory,
    pub channels: Channels,
    pub messaging: Messaging,
    pub events: Events,
    pub metrics: PrometheusHandle,
    /// What this process remembers of rarely changed rows (access, channels), until the next change.
    pub memo: Arc<Memo>,
    /// Cancelled at shutdown; every background loop watches it.
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
}

pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
}

pub struct BuildOptions {
    pub role: Role,
    pub migrate: bool,
    /// Extra consumers (tests register their own handlers here).
    pub consumers: Vec<SharedConsumer>,
    /// Run the outbox relay when the role includes it (tests that drive the relay by hand turn it off).
    pub relay: bool,
    /// Run the dispatcher, the group fan-out and the scheduler when the role includes them (tests that
    /// look at queued messages, or drive dispatch passes, fan-outs and the scheduler's clock by hand,
    /// turn them off).
    pub dispatch: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions { role: Role::All, migrate: true, consumers: Vec::new(), relay: true, dispatch: true }
    }
}

/// The consumers a role runs besides the extra ones it was given: the dispatcher's (webhook items:
/// delivery statuses and inbound messages; the dispatch and group fan-out doorbells; the release of held
/// webhooks when an account is activated) in `dispatcher`,
/// `worker` and `all`, the scheduler's (its doorbell) in `scheduler`, `worker` and `all`.
fn built_in_consumers(role: Role, state: &AppState) -> Vec<SharedConsumer> {
    let mut consumers = Vec::new();
    if role.dispatches() {
        consumers.extend(state.messaging.consumers());
        consumers.extend(state.channels.consumers());
    }
    if matches!(role, Role::All | Role::Worker | Role::Scheduler) {
        consumers.extend(state.messaging.scheduler_consumers());
    }
    consumers
}

/// The durable queues the built-in consumers read, whichever process runs them (for tearing a broker's
/// topology down: `Amqp::delete_topology`).
pub fn consumer_queues() -> Vec<&'static str> {
    [&messaging::CONSUMER_QUEUES[..], &channels::CONSUMER_QUEUES[..]].concat()
}

/// Who this process is as the owner of the contact imports it runs: `host:port` for a server (a restart
/// on the same address is the same owner), `host:cli:pid` for a command.
pub fn process_owner(port: Option<u16>) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    match port {
        Some(port) => format!("{host}:{port}"),
        None => format!("{host}:cli:{}", std::process::id()),
    }
}

/// Connects, migrates and builds the shared state for a command (see [`build_state_for`]).
pub async fn build_state(settings: Settings, migrate: bool) -> Result<AppState, String> {
    build_state_for(settings, migrate, process_owner(None)).await
}

/// Connects, migrates and builds the shared state (used by `serve` and by CLI commands); `owner` names
/// this process (see [`process_owner`]). No consumer runs yet: a server starts its role's consumers
/// once the state is built, before the relay.
pub async fn build_state_for(settings: Settings, migrate: bool, owner: String) -> Result<AppState, String> {
    let db = db::connect(&settings.database_url, settings.database.max_connections)
        .await
        .map_err(|e| format!("cannot open the database: {e}"))?;
    if migrate {
        db::migrate_up(&db).await.map_err(|e| format!("migrations failed: {e}"))?;
    }
    let secret = SecretKey::load_or_create(settings.secret_key.as_ref().map(|s| s.expose()), &settings.data_dir)?;
    let keys = Arc::new(JwtKeys::new(&secret, settings.identity.access_token_ttl_secs));
    let mailer = Mailer::new(&settings.smtp, settings.templates_dir.as_deref())?;
    if !mailer.is_configured() {
        tracing::info!("SMTP is not configured: verification and reset codes are written to the log");
    }
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let amqp_url = settings.amqp_url.as_ref().map(|s| s.expose().to_string());
    let events = Events::new(db.clone(), &settings.database_url, amqp_url.as_deref(), settings.events.clone());
    let memo = Memo::new(
        std::time::Duration::from_secs(settings.accounts.access_cache_seconds),
        db.get_database_backend() == sea_orm::DbBackend::Postgres,
    );
    let accounts = Accounts::new(
        db.clone(),
        keys,
        mailer,
        (&settings.identity, &settings.cognito),
        &settings.accounts,
        events.clone(),
        memo.clone(),
    );
    let uploads = ImportUploads::new(&settings.data_dir, settings.http.import_body_limit, tasks.clone(), owner);
    let contacts = Contacts::new(db.clone(), accounts.clone(), events.clone(), uploads);
    let directory = Directory::new(contacts.clone());
    let previous =
        SecretKey::load_previous(settings.previous_secret_keys.as_ref().map(|s| s.expose()), &settings.data_dir)?;
    let (smpp_tx, smpp_rx) = tokio::sync::mpsc::channel(1024);
    let leases = BindLeases::new(db.clone());
    let channels = Channels::new(
        db.clone(),
        accounts.clone(),
        events.clone(),
        memo.clone(),
        Vault::new(&secret, &previous),
        channels::all_adapters(
            channels::http_client(),
            Some(db.clone()),
            Some(smpp_tx),
            Some(leases.clone()),
            MediaFetcher::new(
                std::time::Duration::from_secs(settings.attachments.fetch_timeout_secs),
                settings.attachments.max_bytes,
                settings.attachments.allow_private_networks,
            ),
        ),
        settings.public_base_url.clone(),
    )
    .with_bind_leases(leases);
    channels.start_smpp_recorder(smpp_rx, &shutdown, &tasks);
    let messaging = Messaging::new(MessagingParts {
        db: db.clone(),
        accounts: accounts.clone(),
        directory: directory.clone(),
        channels: channels.clone(),
        events: events.clone(),
        cursor_key: secret.derive("message-cursor"),
        fanout_lease_secs: settings.dispatch.fanout_lease_secs,
    });
    Ok(AppState {
        db,
        settings: Arc::new(settings),
        accounts,
        contacts,
        directory,
        channels,
        messaging,
        events,
        metrics: http::metrics_handle(),
        memo,
        shutdown,
        tasks,
    })
}

/// Marks contact imports whose process died as failed: before serving, those this address's previous
/// process left behind (at once) and every expired lease; then expired leases every 10 s.
async fn start_import_sweeper(state: &web::Data<AppState>) {
    match state.contacts.recover_imports().await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(count = n, "marked contact imports interrupted by a stop as failed"),
        Err(e) => tracing::warn!(error = %e, "could not check for interrupted imports"),
    }
    let contacts = state.contacts.clone();
    let shutdown = state.shutdown.clone();
    state.tasks.spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(std::time::Duration::from_secs(10)) => {}
            }
            match contacts.fail_stale_imports().await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(count = n, "marked interrupted contact imports as failed"),
                Err(e) => tracing::warn!(error = %e, "could not check for interrupted imports"),
            }
        }
    });
}

fn cors(settings: &Settings) -> Condition<Cors> {
    let origins: Vec<String> =
        settings.cors.origins.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    let mut cors = Cors::default()
        .allowed_methods(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
        .allow_any_header()
        .expose_headers(["x-request-id", "retry-after"])
        .max_age(3600);
    if origins.iter().any(|o| o == "*") {
        cors = cors.allow_any_origin();
    } else {
        for o in &origins {
            cors = cors.allowed_origin(o);
        }
    }
    Condition::new(!origins.is_empty(), cors)
}

impl Application {
    pub async fn build(settings: Settings, opts: BuildOptions) -> Result<Self, String> {
        opts.role.check(&settings)?;
        let listener =
            TcpListener::bind(settings.bind).map_err(|e| format!("cannot listen on {}: {e}", settings.bind))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let workers = match settings.http.workers {
            0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            n => n,
        };
        let role = opts.role;
        let owner = process_owner(Some(port));
        let state = web::Data::new(build_state_for(settings, opts.migrate, owner).await?);
        if role.runs_consumers() {
            // Consumers first: in-process, an event relayed before its consumer joined would reach nobody.
            let mut consumers = built_in_consumers(role, &state);
            consumers.extend(opts.consumers);
            state.events.start_consumers(consumers, &state.shutdown, &state.tasks);
        }
        if role.runs_relay() && opts.relay {
            state.events.start_relay(&state.shutdown, &state.tasks);
        }
        if role.serves_api() {
            start_import_sweeper(&state).await;
            state.memo.watch(&state.settings.database_url, &state.shutdown, &state.tasks);
        }
        // Only a process that can send keeps the SMPP binds it makes (see `channels::leases`).
        state.channels.set_dispatching(role.dispatches());
        if role.runs_consumers() {
            if matches!(role, Role::All | Role::Worker | Role::Scheduler) && opts.dispatch {
                state.messaging.start_scheduler(&state.shutdown, &state.tasks);
            }
            if role.dispatches() {
                state.channels.start_mailbox_poller(std::time::Duration::from_secs(60), &state.shutdown, &state.tasks);
                if opts.dispatch {
                    let registry = state.channels.registry();
                    Dispatcher::new(
                        state.messaging.clone(),
                        registry,
                        DispatchOptions {
                            concurrency: state.settings.dispatch.concurrency,
                            per_channel: state.settings.dispatch.per_channel,
                            loops: state.settings.dispatch.loops,
                            send_timeout: std::time::Duration::from_secs(state.settings.dispatch.send_timeout_secs),
                            lease: std::time::Duration::from_secs(state.settings.dispatch.lease_secs),
                            batch: state.settings.dispatch.batch,
                            ..Default::default()
                        },
                    )
                    .start(&state.shutdown, &state.tasks);
                }
                if opts.dispatch {
                    state.messaging.start_fanout(&state.shutdown, &state.tasks);
                }
            }
        }
        let server_state = state.clone();
        // Handlers take the facade they need; the operations endpoints take the whole state.
        let accounts = web::Data::new(state.accounts.clone());
        let contacts = web::Data::new(state.contacts.clone());
        let channels = web::Data::new(state.channels.clone());
        let messaging_data = web::Data::new(state.messaging.clone());
        let role_data = web::Data::new(role);
        let max_connections = state.settings.http.max_connections;
        let options = http::wire::ServerOptions {
            workers: if role.serves_api() { workers } else { 1 },
            max_connections,
            shutdown_timeout_secs: 30,
        };
        let server = http::wire::serve(listener, options, move || {
            let s = &server_state.settings;
            let app = App::new()
                .app_data(server_state.clone())
                .app_data(accounts.clone())
                .app_data(contacts.clone())
                .app_data(channels.clone())
                .app_data(messaging_data.clone())
                .app_data(role_data.clone())
                .app_data(http::json_config(s.http.body_limit))
                .app_data(web::PayloadConfig::new(s.http.body_limit))
                .app_data(http::path_config())
                .app_data(http::query_config())
                .app_data(http::limits::RequestLimits {
                    body_idle: std::time::Duration::from_secs(s.http.body_idle_timeout_secs),
                    body_total: std::time::Duration::from_secs(s.http.body_read_timeout_secs),
                })
                .wrap(ErrorHandlers::new().default_handler(http::normalise_error))
                .wrap(from_fn(http::limits::guard_request))
                .wrap(cors(s))
                .wrap(from_fn(http::observe))
                .wrap(NormalizePath::new(TrailingSlash::Trim))
                .configure(operations::configure)
                .configure(openapi::configure);
            // Worker roles serve only the operations endpoints (health, readiness, metrics).
            let app = if role.serves_api() {
                app.configure(accounts::configure)
                    .configure(contacts::configure)
                    .configure(channels::configure)
                    .configure(messaging::configure)
            } else {
                app
            };
            app.default_service(web::to(http::not_found))
        })
        .map_err(|e| e.to_string())?;
        tracing::info!(port, %role, transport = state.events.transport_name(), "turumba is listening");
        Ok(Application { port, server, state })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until the server is stopped (SIGTERM/SIGINT, or `handle().stop()`), then stops the
    /// background work and gives it up to 30 s to finish or hand its work back.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        self.state.shutdown.cancel();
        self.state.tasks.close();
        if tokio::time::timeout(std::time::Duration::from_secs(30), self.state.tasks.wait()).await.is_err() {
            tracing::warn!("background work did not stop within 30 s");
        }
        result
    }
}
