//! Benchmarks of the event pipeline and of contacts (figures, not tests; results go in BENCHMARKS.md).
//!
//! ```text
//! cargo run --release --bin turumba-bench -- contacts --database sqlite --rows 100000
//! cargo run --release --bin turumba-bench -- gen-contacts --rows 100000 --out contacts.csv
//! ```
//!
//! ```text
//! cargo run --release --bin turumba-bench -- adapters --sends 20000 --concurrency 32
//! cargo run --release --bin turumba-bench -- smpp --sends 20000 --concurrency 64
//! cargo run --release --bin turumba-bench -- dispatch --database sqlite --rate 1000 --seconds 10
//! cargo run --release --bin turumba-bench -- schedules --database sqlite --count 10000
//! cargo run --release --bin turumba-bench -- accepts --database sqlite --seconds 10
//! benches/groups.sh both 100000   # group-send and telegram-server against real server processes
//! ```
//!
//! ```text
//! cargo build --release --bins && target/release/turumba-bench scenario --topology sqlite   # or postgres
//! ```
//!
//! ```text
//! cargo run --release --bin turumba-bench -- events --database sqlite
//! cargo run --release --bin turumba-bench -- events --database postgres://postgres@127.0.0.1:5432/test \
//!     --amqp amqp://guest:guest@127.0.0.1:5672/%2f
//! ```
//!
//! 1. Latency: events are committed one per transaction at `--rate` per second for `--seconds`; the
//!    relay publishes them; the time from commit to the transport's confirmation is recorded per event.
//! 2. Throughput: `--backlog` events are committed first, then one relay drains them; events/s.
//! 3. With `--amqp`: the raw RabbitMQ publish-with-confirms rate on the same machine, same batch size
//!    (the ceiling the relay works under).

mod accepts;
mod adapters;
mod contacts;
mod dispatch;
mod events;
mod groups;
mod load;
mod scenario;
mod schedules;
mod smpp;

use std::time::Duration;

use clap::Parser;
use sea_orm::{ConnectionTrait, DatabaseConnection};
use uuid::Uuid;

#[derive(Parser, Debug)]
#[command(name = "turumba-bench")]
enum Cli {
    /// Outbox → relay → transport latency and throughput.
    Events(events::EventsArgs),
    /// What one accepted send costs: in-process (no HTTP) and over HTTP, with the CPU of this process
    /// and of the database per accept.
    Accepts(accepts::AcceptsArgs),
    /// Contacts: import of a generated CSV, a segment count with attribute filters, Directory streaming.
    Contacts {
        /// `sqlite` (a temp file) or a postgres:// URL (a fresh database is created and dropped).
        #[arg(long, default_value = "sqlite")]
        database: String,
        #[arg(long, default_value_t = 100_000)]
        rows: u64,
    },
    /// Provider adapter send throughput over HTTP keep-alive against a local server answering in the
    /// Telegram Bot API format (the server runs on the same cores).
    Adapters {
        #[arg(long, default_value_t = 20_000)]
        sends: u64,
        /// Sends in flight at once.
        #[arg(long, default_value_t = 32)]
        concurrency: u64,
    },
    /// SMPP `submit_sm` throughput on one windowed bind against a minimal local SMSC (same cores).
    Smpp {
        #[arg(long, default_value_t = 20_000)]
        sends: u64,
        #[arg(long, default_value_t = 64)]
        concurrency: u64,
    },
    /// Accept → sent latency: `POST /v1/messages` at a fixed rate into the real application, a Telegram
    /// channel pointed at a local Telegram-format server.
    Dispatch(dispatch::DispatchArgs),
    /// One group message to N recipients against a running server (see `benches/groups.sh`).
    GroupSend(groups::GroupSendArgs),
    /// A Telegram-format provider server on its own (for `group-send`).
    TelegramServer {
        #[arg(long, default_value_t = 18900)]
        port: u16,
    },
    /// Schedules all due at one instant: how long until every one fired, and each one's lateness.
    Schedules(schedules::SchedulesArgs),
    /// The benchmark SMSC on its own (any bind accepted, every submit_sm answered and counted).
    Smsc {
        #[arg(long, default_value_t = 2775)]
        port: u16,
    },
    /// Every headline claim in one run against the real binary: one table of throughput, p50/p99, CPU
    /// seconds and peak RSS per process, then the ceilings of the parts and (`--jasmin`) the peer.
    Scenario(scenario::ScenarioArgs),
    /// HTTP requests with a number in flight, for gateways' send APIs.
    HttpLoad(load::LoadArgs),
    /// Writes the generated contacts CSV the contacts benchmark imports (phone, email, names, attributes, tags).
    GenContacts {
        #[arg(long, default_value_t = 100_000)]
        rows: u64,
        #[arg(long, short)]
        out: std::path::PathBuf,
    },
}

#[tokio::main]
async fn main() {
    match Cli::parse() {
        Cli::Events(args) => events::run(args).await,
        Cli::Accepts(args) => accepts::run(args).await,
        Cli::Contacts { database, rows } => contacts::bench_contacts(database, rows).await,
        Cli::GenContacts { rows, out } => contacts::generate_contacts_csv(rows, &out),
        Cli::Adapters { sends, concurrency } => adapters::bench_adapters(sends, concurrency).await,
        Cli::Smpp { sends, concurrency } => smpp::bench_smpp(sends, concurrency).await,
        Cli::Dispatch(args) => dispatch::run(args).await,
        Cli::Schedules(args) => schedules::run(args).await,
        Cli::GroupSend(args) => groups::run(args).await,
        Cli::TelegramServer { port } => groups::serve_telegram(port).await,
        Cli::Smsc { port } => smpp::serve_smsc(port).await,
        Cli::HttpLoad(args) => load::run(args).await,
        Cli::Scenario(args) => scenario::run(args).await,
    }
}

/// The real application (role `all`) on a fresh database, serving on a random port, with the verified
/// user `bench@example.com` / `bench password 1`.
pub(crate) struct BenchApp {
    pub api: String,
    pub state: actix_web::web::Data<turumba::app::AppState>,
    handle: actix_web::dev::ServerHandle,
    cleanup: Option<(DatabaseConnection, String)>,
    dir: tempfile::TempDir,
}

impl BenchApp {
    pub(crate) async fn start(database: &str) -> BenchApp {
        Self::start_as(database, turumba::app::Role::All, None).await
    }

    /// The application in one role (its API is always served on the returned address); roles other
    /// than `all` need PostgreSQL and a broker (`amqp`).
    pub(crate) async fn start_as(database: &str, role: turumba::app::Role, amqp: Option<&str>) -> BenchApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let (url, cleanup) = fresh_db(database, dir.path()).await;
        let mut settings = turumba::config::Settings::for_test(dir.path(), &url);
        settings.database.max_connections = 16;
        if let Some(url) = amqp {
            settings.amqp_url = Some(turumba::config::Secret::new(url.to_string()));
            settings.events.amqp_prefix = format!("bench_{}_", &Uuid::new_v4().simple().to_string()[..8]);
        }
        let options = turumba::app::BuildOptions { role, ..turumba::app::BuildOptions::default() };
        let app = turumba::app::Application::build(settings, options).await.expect("the app builds");
        let api = format!("http://127.0.0.1:{}", app.port());
        let (state, handle) = (app.state(), app.handle());
        tokio::spawn(app.run_until_stopped());
        state
            .accounts
            .create_verified_user("bench@example.com", "bench password 1", "Bench", "Bench")
            .await
            .expect("user");
        BenchApp { api, state, handle, cleanup, dir }
    }

    pub(crate) async fn stop(self) {
        self.handle.stop(true).await;
        drop_db(self.cleanup).await;
    }
}

/// Peak resident memory of this process so far (VmHWM), in MiB.
pub(crate) fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// A fresh database: a temp SQLite file or a new PostgreSQL database (dropped by `drop_db`).
pub(crate) async fn fresh_db(database: &str, tmp: &std::path::Path) -> (String, Option<(DatabaseConnection, String)>) {
    if database == "sqlite" {
        (format!("sqlite://{}/bench.db", tmp.display()), None)
    } else {
        let name = format!("turumba_bench_{}", &Uuid::new_v4().simple().to_string()[..10]);
        let admin = sea_orm::Database::connect(database.to_string()).await.expect("connect");
        admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("create db");
        let (prefix, _) = database.rsplit_once('/').expect("URL has a database");
        (format!("{prefix}/{name}"), Some((admin, name)))
    }
}

pub(crate) async fn drop_db(cleanup: Option<(DatabaseConnection, String)>) {
    if let Some((admin, name)) = cleanup {
        let _ = admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
    }
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub(crate) fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}
