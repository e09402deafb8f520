//! Layered settings: defaults in code < `config/default.toml` < `config/<TURUMBA_ENV>.toml` < environment
//! (`TURUMBA_SECTION__KEY`, plus the bare `DATABASE_URL`, `AMQP_URL` and `TURUMBA_PORT`).
//!
//! Every value is checked once at start-up ([`Settings::load`]); a bad one stops the process with a
//! message naming the setting. Secrets never appear in `Debug` output.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A string that is never printed: `Debug` and `Display` show `[redacted]`.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Clone, Debug, Deserialize)]
pub struct SmtpSettings {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// `none` (plain, for local relays), `starttls` or `tls` (implicit TLS).
    pub tls: String,
    pub from: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct CorsSettings {
    /// Comma-separated origins, or `*`. Empty: no CORS headers at all.
    pub origins: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct IdentitySettings {
    /// `local` (built in) or `cognito`.
    pub provider: String,
    /// Access-token lifetime in seconds.
    pub access_token_ttl_secs: i64,
    /// Refresh-token lifetime in days.
    pub refresh_token_ttl_days: i64,
}

/// The Cognito identity provider (`TURUMBA_COGNITO__*`), used when `identity.provider = "cognito"`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct CognitoSettings {
    /// The pool's AWS region, e.g. `eu-west-1`.
    pub region: String,
    pub user_pool_id: String,
    /// The app client the API signs users in through (USER_PASSWORD_AUTH enabled).
    pub client_id: String,
    /// The app client's secret, if it has one (`SECRET_HASH` is sent then).
    pub client_secret: Option<Secret>,
    /// Other app clients whose tokens are accepted (comma-separated), e.g. the web app's own.
    pub other_client_ids: String,
    /// The Cognito API endpoint; unset: AWS's for the region (set it for an emulator or a proxy).
    pub endpoint: Option<String>,
    /// Where the pool's keys are; unset: `<issuer>/.well-known/jwks.json`.
    pub jwks_url: Option<String>,
    /// The `iss` tokens must carry; unset: `https://cognito-idp.<region>.amazonaws.com/<pool>`.
    pub issuer: Option<String>,
    /// Longest Cognito call, in seconds (0: 10).
    pub timeout_secs: u64,
}

impl CognitoSettings {
    pub fn issuer(&self) -> String {
        match self.issuer.as_deref().filter(|i| !i.is_empty()) {
            Some(i) => i.trim_end_matches('/').to_string(),
            None => format!("https://cognito-idp.{}.amazonaws.com/{}", self.region, self.user_pool_id),
        }
    }

    pub fn jwks_url(&self) -> String {
        match self.jwks_url.as_deref().filter(|u| !u.is_empty()) {
            Some(u) => u.to_string(),
            None => format!("{}/.well-known/jwks.json", self.issuer()),
        }
    }

    /// Every app client id whose tokens are accepted.
    pub fn client_ids(&self) -> Vec<String> {
        std::iter::once(self.client_id.as_str())
            .chain(self.other_client_ids.split(','))
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect()
    }

    fn check(&self) -> Result<(), SettingsError> {
        for (value, name) in [
            (&self.region, "TURUMBA_COGNITO__REGION"),
            (&self.user_pool_id, "TURUMBA_COGNITO__USER_POOL_ID"),
            (&self.client_id, "TURUMBA_COGNITO__CLIENT_ID"),
        ] {
            if value.trim().is_empty() {
                return Err(bad(name, "is required with TURUMBA_IDENTITY__PROVIDER=cognito"));
            }
        }
        for (value, name) in
            [(&self.endpoint, "TURUMBA_COGNITO__ENDPOINT"), (&self.jwks_url, "TURUMBA_COGNITO__JWKS_URL")]
        {
            if let Some(v) = value.as_deref().filter(|v| !v.is_empty())
                && !(v.starts_with("http://") || v.starts_with("https://"))
            {
                return Err(bad(name, "must be an http:// or https:// URL"));
            }
        }
        Ok(())
    }
}

/// Accounts and their sub-accounts.
#[derive(Clone, Debug, Deserialize)]
pub struct AccountSettings {
    /// Levels of the account tree, the top-level account included (3: an agency, its clients and
    /// theirs).
    pub max_depth: u32,
    /// The link mailed with an invitation, `{token}` replaced by its token (the web app's page that
    /// previews and accepts it); unset: the mail carries the token and the API call.
    pub invitation_url: Option<String>,
    /// Days audit log entries are kept (0: forever); the relay role purges older ones.
    pub audit_retention_days: i64,
    /// Longest time, in seconds, a process remembers a caller's user row, roles and accounts, and the
    /// channels sends name (every change is announced to every process and forgets them at once; this
    /// bounds the rest; see `db::memo`). 0: read them from the database on every request.
    pub access_cache_seconds: u64,
}

#[derive(Clone, Debug, Deserialize)]
pub struct HttpSettings {
    /// Largest accepted JSON body in bytes.
    pub body_limit: usize,
    /// Largest accepted CSV import body in bytes.
    pub import_body_limit: usize,
    /// Worker threads for the HTTP server (0 = one per core).
    pub workers: usize,
    /// Longest wait, in seconds, for the next bytes of a request body (then 408).
    pub body_idle_timeout_secs: u64,
    /// Longest time, in seconds, to receive a whole request body (then 408).
    pub body_read_timeout_secs: u64,
    /// Open connections the server holds at most (spread over the workers); more wait in the backlog.
    pub max_connections: usize,
}

/// The dispatcher's pace (roles `all`, `worker`, `dispatcher`).
#[derive(Clone, Debug, Deserialize)]
pub struct DispatchSettings {
    /// Provider calls in flight per dispatcher process.
    pub concurrency: usize,
    /// Provider calls in flight per channel in one dispatcher process.
    pub per_channel: usize,
    /// Dispatcher passes run at once in one process (one claims and records while another waits for
    /// its providers); the two bounds above hold across them.
    pub loops: usize,
    /// Longest a provider call may take, in seconds: then it counts as a transient failure.
    pub send_timeout_secs: u64,
    /// How long a dispatcher's claim holds a message, in seconds (above `send_timeout_secs`): a
    /// message whose dispatcher died mid-send is claimed again this long after it was claimed.
    pub lease_secs: u64,
    /// Messages one pass claims (and records together). A dispatcher that dies mid-pass leaves at
    /// most `batch` × `loops` claimed messages whose provider calls may have been made: those are the
    /// ones a crash can send twice. Smaller is fewer possible duplicates, larger is fewer transactions.
    pub batch: u64,
    /// How long a fan-out claim holds a group message between two batches, in seconds: a group send
    /// whose worker died mid-fan-out is taken over this long after its last batch.
    pub fanout_lease_secs: i64,
}

/// Files sent with messages by URL: the e-mail adapter downloads them (other providers fetch them
/// themselves).
#[derive(Clone, Debug, Deserialize)]
pub struct AttachmentSettings {
    /// Total bytes of the files of one message.
    pub max_bytes: u64,
    /// Longest download of one file, in seconds.
    pub fetch_timeout_secs: u64,
    /// Whether file URLs may point at this machine or a private network (off: a tenant's URL cannot
    /// reach internal services).
    pub allow_private_networks: bool,
}

#[derive(Clone, Debug, Deserialize)]
pub struct DatabaseSettings {
    pub max_connections: u32,
}

#[derive(Clone, Debug, Deserialize)]
pub struct EventSettings {
    /// Outbox rows the relay claims per batch.
    pub relay_batch_size: u64,
    /// How often an idle relay looks for work when nothing woke it.
    pub relay_poll_interval_ms: u64,
    /// Publish attempts before an outbox row is marked `failed`.
    pub publish_max_attempts: i32,
    /// Days published outbox rows are kept.
    pub retention_days: i64,
    /// Handler attempts before an event goes to the dead-letter queue.
    pub consumer_max_attempts: i32,
    /// RabbitMQ prefetch per consumer.
    pub prefetch: u16,
    /// Prefix of every RabbitMQ exchange and queue name (empty in production).
    pub amqp_prefix: String,
    /// Whether RabbitMQ keeps a copy of every event in the bounded, transient `messaging_audit` queue (an
    /// operator's tap; on by default).
    pub audit_queue: bool,
    /// Capacity of each in-process consumer queue (publishers wait when it is full).
    pub queue_capacity: usize,
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub env: String,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub amqp_url: Option<Secret>,
    pub bind: SocketAddr,
    pub public_base_url: Option<String>,
    pub secret_key: Option<Secret>,
    /// Keys that sealed credentials before the current one (base64, comma-separated).
    pub previous_secret_keys: Option<Secret>,
    pub log: String,
    pub log_format: LogFormat,
    pub smtp: SmtpSettings,
    pub cors: CorsSettings,
    pub identity: IdentitySettings,
    pub cognito: CognitoSettings,
    pub accounts: AccountSettings,
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    pub events: EventSettings,
    pub attachments: AttachmentSettings,
    pub dispatch: DispatchSettings,
    /// Overrides of the built-in system-mail templates (`mail/<name>.<part>.hbs`).
    pub templates_dir: Option<PathBuf>,
}

/// The raw, partly optional shape that the `config` crate fills in.
#[derive(Debug, Deserialize)]
struct RawSettings {
    data_dir: PathBuf,
    database_url: Option<String>,
    amqp_url: Option<Secret>,
    bind: String,
    port: Option<u16>,
    public_base_url: Option<String>,
    secret_key: Option<Secret>,
    previous_secret_keys: Option<Secret>,
    log: String,
    log_format: LogFormat,
    smtp: SmtpSettings,
    cors: CorsSettings,
    identity: IdentitySettings,
    #[serde(default)]
    cognito: CognitoSettings,
    accounts: AccountSettings,
    http: HttpSettings,
    database: DatabaseSettings,
    events: EventSettings,
    attachments: AttachmentSettings,
    dispatch: DispatchSettings,
    templates_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid setting `{setting}`: {reason}")]
pub struct SettingsError {
    pub setting: String,
    pub reason: String,
}

fn bad(setting: &str, reason: impl Into<String>) -> SettingsError {
    SettingsError { setting: setting.to_string(), reason: reason.into() }
}

impl Settings {
    /// Loads settings from `config_dir` (usually `./config`) and the process environment.
    pub fn load(config_dir: &Path) -> Result<Self, SettingsError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(config_dir, &env)
    }

    /// Same as [`Settings::load`] with an explicit environment (tests use this).
    pub fn load_from(config_dir: &Path, env: &[(String, String)]) -> Result<Self, SettingsError> {
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let run_env = get("TURUMBA_ENV").unwrap_or_else(|| "development".into());

        let mut builder = config::Config::builder()
            .set_default("data_dir", "./data")
            .and_then(|b| b.set_default("bind", "0.0.0.0:8080"))
            .and_then(|b| b.set_default("log", "info"))
            .and_then(|b| b.set_default("log_format", "pretty"))
            .and_then(|b| b.set_default("smtp.tls", "starttls"))
            .and_then(|b| b.set_default("smtp.from", "Turumba <no-reply@turumba.local>"))
            .and_then(|b| b.set_default("cors.origins", ""))
            .and_then(|b| b.set_default("identity.provider", "local"))
            .and_then(|b| b.set_default("identity.access_token_ttl_secs", 900))
            .and_then(|b| b.set_default("identity.refresh_token_ttl_days", 30))
            .and_then(|b| b.set_default("accounts.max_depth", 3))
            .and_then(|b| b.set_default("accounts.audit_retention_days", 365))
            .and_then(|b| b.set_default("accounts.access_cache_seconds", 30))
            .and_then(|b| b.set_default("http.body_limit", 1024 * 1024))
            .and_then(|b| b.set_default("http.import_body_limit", 50 * 1024 * 1024))
            .and_then(|b| b.set_default("http.workers", 0))
            .and_then(|b| b.set_default("http.body_idle_timeout_secs", 10))
            .and_then(|b| b.set_default("http.body_read_timeout_secs", 300))
            .and_then(|b| b.set_default("http.max_connections", 10_000))
            .and_then(|b| b.set_default("database.max_connections", 16))
            .and_then(|b| b.set_default("events.relay_batch_size", 500))
            .and_then(|b| b.set_default("events.relay_poll_interval_ms", 500))
            .and_then(|b| b.set_default("events.publish_max_attempts", 10))
            .and_then(|b| b.set_default("events.retention_days", 7))
            .and_then(|b| b.set_default("events.consumer_max_attempts", 5))
            .and_then(|b| b.set_default("events.prefetch", 32))
            .and_then(|b| b.set_default("events.amqp_prefix", ""))
            .and_then(|b| b.set_default("events.audit_queue", true))
            .and_then(|b| b.set_default("events.queue_capacity", 1024))
            .and_then(|b| b.set_default("attachments.max_bytes", 18 * 1024 * 1024))
            .and_then(|b| b.set_default("attachments.fetch_timeout_secs", 30))
            .and_then(|b| b.set_default("attachments.allow_private_networks", false))
            .and_then(|b| b.set_default("dispatch.concurrency", 16))
            .and_then(|b| b.set_default("dispatch.per_channel", 8))
            .and_then(|b| b.set_default("dispatch.loops", 2))
            .and_then(|b| b.set_default("dispatch.send_timeout_secs", 90))
            .and_then(|b| b.set_default("dispatch.lease_secs", 120))
            .and_then(|b| b.set_default("dispatch.batch", 200))
            .and_then(|b| b.set_default("dispatch.fanout_lease_secs", 60))
            .map_err(|e| bad("defaults", e.to_string()))?;

        for name in ["default".to_string(), run_env.clone()] {
            let path = config_dir.join(format!("{name}.toml"));
            if path.exists() {
                builder = builder.add_source(config::File::from(path).required(true));
            }
        }
        // TURUMBA_SECTION__KEY, lower-cased by the config crate.
        let mut source = config::Environment::with_prefix("TURUMBA").prefix_separator("_").separator("__");
        source = source.source(Some(env.iter().cloned().collect()));
        builder = builder.add_source(source);
        // The bare names the SPEC fixes.
        for (var, key) in [("DATABASE_URL", "database_url"), ("AMQP_URL", "amqp_url")] {
            if let Some(v) = get(var).filter(|v| !v.is_empty()) {
                builder = builder.set_override(key, v).map_err(|e| bad(var, e.to_string()))?;
            }
        }
        let cfg = builder.build().map_err(|e| bad("configuration", e.to_string()))?;
        let raw: RawSettings = cfg.try_deserialize().map_err(|e| {
            // The config crate names the key in its message ("... for key `http.workers`").
            bad("configuration", e.to_string())
        })?;
        Self::from_raw(raw, run_env)
    }

    fn from_raw(raw: RawSettings, env: String) -> Result<Self, SettingsError> {
        let mut bind: SocketAddr = raw
            .bind
            .parse()
            .map_err(|_| bad("TURUMBA_BIND", format!("`{}` is not an address like 0.0.0.0:8080", raw.bind)))?;
        if let Some(port) = raw.port {
            bind.set_port(port);
        }
        let database_url = match raw.database_url.filter(|s| !s.is_empty()) {
            Some(url) => url,
            None => format!("sqlite://{}/turumba.db", raw.data_dir.display()),
        };
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            return Err(bad("DATABASE_URL", "must start with sqlite:// or postgres://"));
        }
        if let Some(amqp) = &raw.amqp_url
            && !(amqp.expose().starts_with("amqp://") || amqp.expose().starts_with("amqps://"))
        {
            return Err(bad("AMQP_URL", "must start with amqp:// or amqps://"));
        }
        if !matches!(raw.identity.provider.as_str(), "local" | "cognito") {
            return Err(bad("TURUMBA_IDENTITY__PROVIDER", "must be `local` or `cognito`"));
        }
        if raw.identity.provider == "cognito" {
            raw.cognito.check()?;
        }
        if raw.identity.access_token_ttl_secs < 30 {
            return Err(bad("TURUMBA_IDENTITY__ACCESS_TOKEN_TTL_SECS", "must be at least 30"));
        }
        if raw.identity.refresh_token_ttl_days < 1 {
            return Err(bad("TURUMBA_IDENTITY__REFRESH_TOKEN_TTL_DAYS", "must be at least 1"));
        }
        if let Some(url) = &raw.accounts.invitation_url
            && !url.is_empty()
            && !url.contains("{token}")
        {
            return Err(bad("TURUMBA_ACCOUNTS__INVITATION_URL", "must contain {token}"));
        }
        if raw.accounts.audit_retention_days < 0 {
            return Err(bad("TURUMBA_ACCOUNTS__AUDIT_RETENTION_DAYS", "must not be negative"));
        }
        if !(1..=10).contains(&raw.accounts.max_depth) {
            return Err(bad("TURUMBA_ACCOUNTS__MAX_DEPTH", "must be between 1 and 10"));
        }
        if !matches!(raw.smtp.tls.as_str(), "none" | "starttls" | "tls") {
            return Err(bad("TURUMBA_SMTP__TLS", "must be `none`, `starttls` or `tls`"));
        }
        if raw.http.body_limit < 1024 {
            return Err(bad("TURUMBA_HTTP__BODY_LIMIT", "must be at least 1024 bytes"));
        }
        if raw.http.body_idle_timeout_secs == 0 || raw.http.body_read_timeout_secs == 0 {
            return Err(bad("TURUMBA_HTTP__BODY_*_TIMEOUT_SECS", "must be at least 1"));
        }
        if raw.http.max_connections < 16 {
            return Err(bad("TURUMBA_HTTP__MAX_CONNECTIONS", "must be at least 16"));
        }
        // The PostgreSQL relay holds one connection while in-process consumers need another.
        if raw.database.max_connections < 2 {
            return Err(bad("TURUMBA_DATABASE__MAX_CONNECTIONS", "must be at least 2"));
        }
        let ev = &raw.events;
        if ev.relay_batch_size == 0 || ev.relay_batch_size > 10_000 {
            return Err(bad("TURUMBA_EVENTS__RELAY_BATCH_SIZE", "must be between 1 and 10000"));
        }
        if ev.relay_poll_interval_ms < 10 {
            return Err(bad("TURUMBA_EVENTS__RELAY_POLL_INTERVAL_MS", "must be at least 10"));
        }
        if ev.publish_max_attempts < 1 || ev.consumer_max_attempts < 1 {
            return Err(bad("TURUMBA_EVENTS__*_MAX_ATTEMPTS", "must be at least 1"));
        }
        if ev.retention_days < 0 {
            return Err(bad("TURUMBA_EVENTS__RETENTION_DAYS", "must not be negative"));
        }
        if ev.prefetch == 0 || ev.queue_capacity == 0 {
            return Err(bad("TURUMBA_EVENTS__PREFETCH", "prefetch and queue_capacity must be at least 1"));
        }
        if raw.attachments.max_bytes < 1024 {
            return Err(bad("TURUMBA_ATTACHMENTS__MAX_BYTES", "must be at least 1024"));
        }
        if raw.attachments.fetch_timeout_secs == 0 {
            return Err(bad("TURUMBA_ATTACHMENTS__FETCH_TIMEOUT_SECS", "must be at least 1"));
        }
        if !(1..=1024).contains(&raw.dispatch.concurrency) || !(1..=1024).contains(&raw.dispatch.per_channel) {
            return Err(bad("TURUMBA_DISPATCH__*", "concurrency and per_channel must be between 1 and 1024"));
        }
        if !(1..=16).contains(&raw.dispatch.loops) {
            return Err(bad("TURUMBA_DISPATCH__LOOPS", "must be between 1 and 16"));
        }
        if !(5..=3600).contains(&raw.dispatch.fanout_lease_secs) {
            return Err(bad("TURUMBA_DISPATCH__FANOUT_LEASE_SECS", "must be between 5 and 3600"));
        }
        if !(1..=1000).contains(&raw.dispatch.batch) {
            return Err(bad("TURUMBA_DISPATCH__BATCH", "must be between 1 and 1000"));
        }
        if raw.dispatch.send_timeout_secs == 0 || raw.dispatch.lease_secs <= raw.dispatch.send_timeout_secs {
            return Err(bad(
                "TURUMBA_DISPATCH__LEASE_SECS",
                "must be above TURUMBA_DISPATCH__SEND_TIMEOUT_SECS, which must be at least 1",
            ));
        }
        if let Some(url) = &raw.public_base_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(bad("TURUMBA_PUBLIC_BASE_URL", "must start with http:// or https://"));
        }
        tracing_subscriber::EnvFilter::try_new(&raw.log).map_err(|e| bad("TURUMBA_LOG", e.to_string()))?;
        Ok(Settings {
            env,
            data_dir: raw.data_dir,
            database_url,
            amqp_url: raw.amqp_url.filter(|s| !s.expose().is_empty()),
            bind,
            public_base_url: raw.public_base_url.map(|u| u.trim_end_matches('/').to_string()),
            secret_key: raw.secret_key.filter(|s| !s.expose().is_empty()),
            previous_secret_keys: raw.previous_secret_keys.filter(|s| !s.expose().is_empty()),
            log: raw.log,
            log_format: raw.log_format,
            smtp: raw.smtp,
            cors: raw.cors,
            identity: raw.identity,
            cognito: raw.cognito,
            accounts: raw.accounts,
            http: raw.http,
            database: raw.database,
            events: raw.events,
            attachments: raw.attachments,
            dispatch: raw.dispatch,
            templates_dir: raw.templates_dir.filter(|d| !d.as_os_str().is_empty()),
        })
    }

    /// Settings for tests: a given data dir and database, a random port on loopback, no config files.
    pub fn for_test(data_dir: &Path, database_url: &str) -> Self {
        let env = vec![
            ("TURUMBA_DATA_DIR".to_string(), data_dir.display().to_string()),
            ("DATABASE_URL".to_string(), database_url.to_string()),
            ("TURUMBA_BIND".to_string(), "127.0.0.1:0".to_string()),
            ("TURUMBA_LOG".to_string(), "warn".to_string()),
        ];
        Self::load_from(Path::new("/nonexistent-turumba-config"), &env).expect("test settings are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn defaults_need_no_configuration() {
        let s = Settings::load_from(Path::new("/nonexistent"), &[]).unwrap();
        assert_eq!(s.bind.to_string(), "0.0.0.0:8080");
        assert_eq!(s.database_url, "sqlite://./data/turumba.db");
        assert!(s.amqp_url.is_none());
        assert_eq!(s.identity.provider, "local");
        assert_eq!(s.http.body_limit, 1024 * 1024);
    }

    #[test]
    fn environment_overrides_and_port_only_override() {
        let s = Settings::load_from(
            Path::new("/nonexistent"),
            &env(&[
                ("TURUMBA_PORT", "9999"),
                ("DATABASE_URL", "postgres://u@h/db"),
                ("TURUMBA_SMTP__HOST", "mail.example"),
                ("TURUMBA_DATA_DIR", "/tmp/x"),
            ]),
        )
        .unwrap();
        assert_eq!(s.bind.port(), 9999);
        assert_eq!(s.database_url, "postgres://u@h/db");
        assert_eq!(s.smtp.host.as_deref(), Some("mail.example"));
        assert_eq!(s.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn config_files_are_layered_under_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("default.toml"), "log = \"debug\"\n[http]\nworkers = 3\n").unwrap();
        std::fs::write(dir.path().join("staging.toml"), "[http]\nworkers = 5\n").unwrap();
        let s = Settings::load_from(dir.path(), &env(&[("TURUMBA_ENV", "staging")])).unwrap();
        assert_eq!(s.log, "debug");
        assert_eq!(s.http.workers, 5);
        let s = Settings::load_from(dir.path(), &env(&[("TURUMBA_ENV", "staging"), ("TURUMBA_HTTP__WORKERS", "7")]))
            .unwrap();
        assert_eq!(s.http.workers, 7);
    }

    #[test]
    fn bad_values_name_the_setting() {
        let err = Settings::load_from(Path::new("/x"), &env(&[("DATABASE_URL", "mysql://x")])).unwrap_err();
        assert_eq!(err.setting, "DATABASE_URL");
        let err = Settings::load_from(Path::new("/x"), &env(&[("TURUMBA_BIND", "nonsense")])).unwrap_err();
        assert_eq!(err.setting, "TURUMBA_BIND");
        let err = Settings::load_from(Path::new("/x"), &env(&[("TURUMBA_HTTP__WORKERS", "many")])).unwrap_err();
        assert!(err.to_string().contains("workers"), "{err}");
        let err = Settings::load_from(Path::new("/x"), &env(&[("TURUMBA_IDENTITY__PROVIDER", "ldap")])).unwrap_err();
        assert_eq!(err.setting, "TURUMBA_IDENTITY__PROVIDER");
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let s = Settings::load_from(
            Path::new("/x"),
            &env(&[("TURUMBA_SECRET_KEY", "c3VwZXJzZWNyZXQ="), ("TURUMBA_SMTP__PASSWORD", "hunter2")]),
        )
        .unwrap();
        let printed = format!("{s:?}");
        assert!(!printed.contains("c3VwZXJzZWNyZXQ="));
        assert!(!printed.contains("hunter2"));
        assert!(printed.contains("[redacted]"));
    }
}
