//! The `turumba` command line: `serve`, `migrate`, `admin`. Every start-up error ends the process with a
//! non-zero exit code and one line saying why.

use std::path::Path;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use migration::{Migrator, MigratorTrait};

use crate::app::{self, Application, BuildOptions, Role};
use crate::config::{LogFormat, Settings};
use crate::modules::events::ops;

#[derive(Debug, Parser)]
#[command(name = "turumba", version, about = "Multi-tenant message automation platform")]
pub struct Cli {
    /// Folder with default.toml and <TURUMBA_ENV>.toml.
    #[arg(long, global = true, default_value = "config", env = "TURUMBA_CONFIG_DIR")]
    pub config_dir: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (all roles by default).
    Serve {
        #[arg(long, value_enum, default_value_t = Role::All)]
        role: Role,
        /// Listen address, e.g. 0.0.0.0:8080 (overrides TURUMBA_BIND).
        #[arg(long)]
        bind: Option<String>,
        /// Do not run pending migrations at start.
        #[arg(long)]
        no_migrate: bool,
    },
    /// Database migrations.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Administrative tasks.
    Admin {
        #[command(subcommand)]
        action: AdminAction,
    },
    /// The transactional outbox: status and re-queueing of failed events.
    Outbox {
        #[command(subcommand)]
        action: OutboxAction,
    },
    /// The dead-letter queue (RabbitMQ's `messaging.dlq`, or the in-process dead letters).
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
    /// Contacts: CSV import and export from the command line.
    Contacts {
        #[command(subcommand)]
        action: ContactsAction,
    },
    /// Exit 0 when the local server answers GET /healthz (for container health checks).
    Healthcheck {
        /// Port to probe (default: the configured port).
        #[arg(long)]
        port: Option<u16>,
    },
}

#[derive(Debug, Subcommand)]
pub enum MigrateAction {
    /// Apply all pending migrations.
    Up,
    /// Roll back the last N migrations (default 1).
    Down {
        #[arg(long, default_value_t = 1)]
        steps: u32,
    },
    /// List applied and pending migrations.
    Status,
}

#[derive(Debug, Subcommand)]
pub enum OutboxAction {
    /// Counts by status and the age of the oldest pending event; lists failed events.
    Status,
    /// Put failed events (all, or one) back to pending.
    RetryFailed {
        #[arg(long)]
        id: Option<uuid::Uuid>,
    },
}

#[derive(Debug, Subcommand)]
pub enum DlqAction {
    /// Show dead letters without removing them.
    List {
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Send dead letters back through the pipeline (only the consumer that failed handles them again).
    Replay {
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

#[derive(Debug, Subcommand)]
pub enum ContactsAction {
    /// Import a CSV file into an account (the same job and report as POST /v1/contacts/import).
    Import {
        /// The CSV file (UTF-8, header row first).
        file: std::path::PathBuf,
        #[arg(long)]
        account: uuid::Uuid,
        /// JSON object: CSV column → field, e.g. '{"Phone Number": "phone", "Program": "attributes.program"}'.
        /// Default: columns named like fields.
        #[arg(long)]
        mapping: Option<String>,
        #[arg(long, value_parser = ["skip", "update"], default_value = "skip")]
        on_duplicate: String,
        /// Add every imported contact to this group.
        #[arg(long)]
        group_id: Option<uuid::Uuid>,
        /// Tag every imported contact (repeatable).
        #[arg(long = "tag-id")]
        tag_ids: Vec<uuid::Uuid>,
    },
    /// Export an account's contacts (all, or by filter, segment or group) as CSV.
    Export {
        #[arg(long)]
        account: uuid::Uuid,
        /// `field:op:value`, repeatable (the list filter syntax).
        #[arg(long)]
        filter: Vec<String>,
        #[arg(long)]
        segment_id: Option<uuid::Uuid>,
        #[arg(long)]
        group_id: Option<uuid::Uuid>,
        /// Output file (default: standard output).
        #[arg(long, short)]
        output: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminAction {
    /// Create a verified user, its account and the admin membership; prints the ids.
    CreateUser {
        #[arg(long)]
        email: String,
        #[arg(long)]
        password: String,
        #[arg(long)]
        account_name: String,
        #[arg(long)]
        full_name: Option<String>,
    },
    /// Re-seal every channel's credentials under the current secret key. With `--generate` (only when
    /// the key lives in the data dir) a new key is made first and the old one kept in
    /// `secret.key.previous`; with `TURUMBA_SECRET_KEY`, set the new key there and the old one in
    /// `TURUMBA_PREVIOUS_SECRET_KEYS`, then run this. Access tokens signed with the old key stop working.
    RotateKey {
        #[arg(long)]
        generate: bool,
    },
    /// Check the database's storage (SQLite: `PRAGMA integrity_check` and `foreign_key_check`, as after a
    /// full disk or a crash; PostgreSQL: that it answers). Prints `ok`, or each problem and exits 1.
    /// Does not migrate.
    CheckDatabase,
    /// Suspend an account (and so every account below it): its tenant requests answer 403
    /// `account_suspended`, its queued and scheduled work waits and its webhooks are held.
    SuspendAccount {
        #[arg(long)]
        account_id: uuid::Uuid,
    },
    /// Make a suspended account active again: its work resumes and its held webhooks are processed.
    ActivateAccount {
        #[arg(long)]
        account_id: uuid::Uuid,
    },
}

fn init_logging(settings: &Settings) {
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log).unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match settings.log_format {
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut settings = match Settings::load(Path::new(&cli.config_dir)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Command::Serve { bind: Some(bind), .. } = &cli.command {
        match bind.parse() {
            Ok(addr) => settings.bind = addr,
            Err(_) => {
                eprintln!("error: invalid setting `--bind`: `{bind}` is not an address like 0.0.0.0:8080");
                return ExitCode::FAILURE;
            }
        }
    }
    init_logging(&settings);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, settings: Settings) -> Result<(), String> {
    match command {
        Command::Serve { role, no_migrate, .. } => {
            let app =
                Application::build(settings, BuildOptions { role, migrate: !no_migrate, ..Default::default() }).await?;
            app.run_until_stopped().await.map_err(|e| e.to_string())
        }
        Command::Migrate { action } => {
            let db = crate::db::connect(&settings.database_url, 2)
                .await
                .map_err(|e| format!("cannot open the database: {e}"))?;
            match action {
                MigrateAction::Up => Migrator::up(&db, None).await.map_err(|e| e.to_string())?,
                MigrateAction::Down { steps } => Migrator::down(&db, Some(steps)).await.map_err(|e| e.to_string())?,
                MigrateAction::Status => {
                    for m in Migrator::get_migration_with_status(&db).await.map_err(|e| e.to_string())? {
                        println!("{:<10} {}", format!("{:?}", m.status()).to_lowercase(), m.name());
                    }
                }
            }
            Ok(())
        }
        Command::Outbox { action } => {
            let state = app::build_state(settings, true).await?;
            match action {
                OutboxAction::Status => {
                    let s = ops::outbox_status(&state.db).await.map_err(|e| e.to_string())?;
                    let age = s
                        .oldest_pending_at
                        .map(|t| format!("{:.1}s", (chrono::Utc::now() - t).num_milliseconds() as f64 / 1000.0))
                        .unwrap_or_else(|| "-".into());
                    println!("pending    {}", s.pending);
                    println!("published  {}", s.published);
                    println!("failed     {}", s.failed);
                    println!("oldest pending age  {age}");
                    for row in ops::outbox_failed(&state.db, 20).await.map_err(|e| e.to_string())? {
                        println!(
                            "failed {} {} attempts={} error={}",
                            row.id,
                            row.event_type,
                            row.attempts,
                            row.last_error.unwrap_or_default()
                        );
                    }
                }
                OutboxAction::RetryFailed { id } => {
                    let n = ops::outbox_retry_failed(&state.db, id).await.map_err(|e| e.to_string())?;
                    println!("re-queued {n} event(s)");
                }
            }
            Ok(())
        }
        Command::Dlq { action } => {
            let state = app::build_state(settings, true).await?;
            let amqp = state.events.amqp().cloned();
            match action {
                DlqAction::List { limit } => {
                    let letters = ops::dlq_list(&state.db, amqp.as_deref(), limit).await?;
                    println!("{} dead letter(s) shown (limit {limit})", letters.len());
                    for d in letters {
                        let id = d.event_id.map(|i| i.to_string()).unwrap_or_else(|| "-".into());
                        println!("{id} {} queue={} attempts={} error={}", d.event_type, d.queue, d.attempts, d.error);
                    }
                }
                DlqAction::Replay { limit } => {
                    let n = ops::dlq_replay(&state.db, amqp.as_deref(), limit).await?;
                    println!("replayed {n} dead letter(s) through the outbox");
                }
            }
            Ok(())
        }
        Command::Healthcheck { port } => healthcheck(port.unwrap_or(settings.bind.port())).await,
        Command::Contacts { action } => contacts(action, settings).await,
        Command::Admin { action: AdminAction::RotateKey { generate } } => {
            if generate {
                if settings.secret_key.is_some() {
                    return Err("--generate rotates the key file in the data dir, but TURUMBA_SECRET_KEY is set: \
                                put the new key in TURUMBA_SECRET_KEY and the old one in \
                                TURUMBA_PREVIOUS_SECRET_KEYS, then run `turumba admin rotate-key`"
                        .into());
                }
                crate::secret::SecretKey::rotate_file(&settings.data_dir)?;
                println!("generated a new secret key in {}", settings.data_dir.join("secret.key").display());
            }
            let state = app::build_state(settings, true).await?;
            let n = state.channels.rotate_credentials().await.map_err(|e| e.to_string())?;
            println!(
                "re-sealed the credentials of {n} channel(s) under key {}",
                state.channels.vault().current_key_id()
            );
            Ok(())
        }
        Command::Admin { action: AdminAction::CreateUser { email, password, account_name, full_name } } => {
            if password.chars().count() < 10 {
                return Err("--password must be at least 10 characters".into());
            }
            if !email.contains('@') {
                return Err("--email must be an e-mail address".into());
            }
            let state = app::build_state(settings, true).await?;
            let full_name = full_name.unwrap_or_else(|| email.split('@').next().unwrap_or("admin").to_string());
            let (user_id, account_id) = state
                .accounts
                .create_verified_user(&email, &password, &full_name, &account_name)
                .await
                .map_err(|e| e.to_string())?;
            println!("user_id={user_id}");
            println!("account_id={account_id}");
            Ok(())
        }
        Command::Admin { action: AdminAction::CheckDatabase } => {
            let db = crate::db::connect(&settings.database_url, 1).await.map_err(|e| e.to_string())?;
            let problems = crate::db::check_integrity(&db).await.map_err(|e| e.to_string())?;
            if problems.is_empty() {
                println!("ok");
                return Ok(());
            }
            for p in &problems {
                println!("{p}");
            }
            Err(format!("the database has {} problem(s)", problems.len()))
        }
        Command::Admin { action: AdminAction::SuspendAccount { account_id } } => {
            set_account_status(settings, account_id, "suspended").await
        }
        Command::Admin { action: AdminAction::ActivateAccount { account_id } } => {
            set_account_status(settings, account_id, "active").await
        }
    }
}

async fn set_account_status(settings: Settings, account_id: uuid::Uuid, status: &str) -> Result<(), String> {
    let state = app::build_state(settings, true).await?;
    let scope = state.accounts.operator_scope(account_id).await.map_err(|e| e.to_string())?;
    let meta = crate::modules::events::EventMeta::default();
    let acc = state.accounts.set_status(scope, status, &meta).await.map_err(|e| e.to_string())?;
    println!("account_id={} status={}", acc.id, acc.status);
    Ok(())
}

async fn contacts(action: ContactsAction, settings: Settings) -> Result<(), String> {
    use crate::modules::contacts::{ExportSelection, ImportOptions, OnDuplicate, check_import_header, export_to};
    let state = app::build_state(settings, true).await?;
    let err = |e: crate::error::AppError| match e {
        crate::error::AppError::Validation(errors) => {
            errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; ")
        }
        other => other.to_string(),
    };
    match action {
        ContactsAction::Import { file, account, mapping, on_duplicate, group_id, tag_ids } => {
            let scope = state.accounts.operator_scope(account).await.map_err(err)?;
            let mapping = mapping
                .map(|m| serde_json::from_str(&m).map_err(|e| format!("--mapping must be a JSON object: {e}")))
                .transpose()?;
            let on_duplicate = if on_duplicate == "update" { OnDuplicate::Update } else { OnDuplicate::Skip };
            let options = ImportOptions { mapping, on_duplicate, group_id, tag_ids };
            if !file.is_file() {
                return Err(format!("{}: no such file", file.display()));
            }
            check_import_header(&file, &options).map_err(err)?;
            let name = file.file_name().map(|n| n.to_string_lossy().to_string());
            let job = state.contacts.create_import(scope, None, name, &options).await.map_err(err)?;
            let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
            let bar = progress_bar(size);
            let started = std::time::Instant::now();
            let meta = crate::modules::events::EventMeta::default();
            let result = state
                .contacts
                .run_import(scope, job.id, file.clone(), meta, |p| {
                    bar.set_message(format!(
                        "{} rows · {} created · {} updated · {} errors",
                        p.total_rows, p.created, p.updated, p.error_count
                    ));
                    bar.inc(1);
                    if bar.is_hidden() && p.total_rows % 10_000 < crate::modules::contacts::BATCH_ROWS as u64 {
                        eprintln!(
                            "… {} rows ({} created, {} updated, {} skipped, {} errors)",
                            p.total_rows, p.created, p.updated, p.skipped, p.error_count
                        );
                    }
                })
                .await;
            bar.finish_and_clear();
            let p = result.map_err(err)?;
            println!("import_id={}", job.id);
            println!(
                "rows={} created={} updated={} skipped={} errors={} seconds={:.2}",
                p.total_rows,
                p.created,
                p.updated,
                p.skipped,
                p.error_count,
                started.elapsed().as_secs_f64()
            );
            for e in p.errors.iter().take(20) {
                println!("row {}: {}: {}", e.row, e.field, e.message);
            }
            if p.error_count > 20 {
                println!(
                    "… and {} more (GET /v1/contacts/imports/{} lists the first 1,000)",
                    p.error_count - 20,
                    job.id
                );
            }
            Ok(())
        }
        ContactsAction::Export { account, filter, segment_id, group_id, output } => {
            let scope = state.accounts.operator_scope(account).await.map_err(err)?;
            let filters =
                filter.iter().map(|f| crate::db::list::Filter::parse(f)).collect::<Result<Vec<_>, _>>().map_err(err)?;
            crate::db::list::check_filter_limits(&filters).map_err(err)?;
            let selection = ExportSelection { filters, segment_id, group_id, search: None };
            let plan = state.contacts.plan_export(scope, &selection).await.map_err(err)?;
            let count = match output {
                Some(path) => {
                    let file = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                    let mut out = std::io::BufWriter::new(file);
                    let n = export_to(&state.contacts, &plan, &mut out).await.map_err(err)?;
                    std::io::Write::flush(&mut out).map_err(|e| e.to_string())?;
                    n
                }
                None => {
                    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                    let n = export_to(&state.contacts, &plan, &mut out).await.map_err(err)?;
                    std::io::Write::flush(&mut out).map_err(|e| e.to_string())?;
                    n
                }
            };
            eprintln!("exported {count} contacts");
            Ok(())
        }
    }
}

/// A spinner with the running totals on a terminal; hidden (plain lines instead) when stderr is not one.
fn progress_bar(bytes: u64) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.set_prefix(format!("{bytes} bytes"));
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// A minimal HTTP/1.1 probe, so the runtime image needs no curl.
async fn healthcheck(port: u16) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .map_err(|e| e.to_string())?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.map_err(|e| e.to_string())?;
        if &head[9..12] == b"200" { Ok(()) } else { Err(format!("unhealthy: {}", String::from_utf8_lossy(&head))) }
    };
    tokio::time::timeout(std::time::Duration::from_secs(3), probe)
        .await
        .map_err(|_| "health check timed out".to_string())?
}
