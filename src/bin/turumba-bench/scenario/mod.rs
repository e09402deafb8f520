//! `turumba-bench scenario`: the product's headline claims as one run against the real binary.
//!
//! ```text
//! cargo build --release --bins
//! target/release/turumba-bench scenario --topology sqlite
//! target/release/turumba-bench scenario --topology postgres --jasmin
//! target/release/turumba-bench scenario --topology sqlite --scale 0.1 --only reads,group-send
//! ```
//!
//! It starts `turumba serve` in the chosen topology — `sqlite`: one process with every role on an
//! embedded SQLite file; `postgres`: one `--role api` and one `--role worker` process on a fresh
//! PostgreSQL database and RabbitMQ — plus a Telegram-format provider server and an SMSC, each a
//! process of its own; creates a user with `turumba admin create-user`; then drives the API scenario
//! by scenario and prints ONE table: the work done, seconds, the rate, p50/p99 where requests are
//! timed one by one, and for every process the CPU seconds it spent and its peak RSS during that row
//! (`/proc/<pid>/stat`, and `VmHWM` reset through `clear_refs` before each row; PostgreSQL's and
//! RabbitMQ's CPU is summed over their processes).
//!
//! After the scenarios, with Turumba stopped, the ceilings of the parts it runs on are measured on the
//! same machine in the same run (the raw database insert rate for message-shaped rows, RabbitMQ's
//! confirmed-publish rate, the provider server's and the SMSC's own request rates) and Turumba's
//! figure is given as a fraction of each. With `--jasmin`, Jasmin 0.11 runs the SMPP workload through
//! `bench/peers/jasmin_vs_turumba.sh` (Jasmin only) against the same SMSC program, and the ratio is
//! printed. It prints figures for BENCHMARKS.md and asserts no speed; it does exit non-zero when the
//! work itself went wrong (a request refused, a message not sent, a schedule not fired), so a run at a
//! tiny `--scale` is a check that every scenario still works (CI runs one on both topologies).

mod ceilings;
mod loads;
mod scenarios;
pub(crate) mod stack;

use std::path::PathBuf;
use std::time::Instant;

use ceilings::*;
use scenarios::*;
use stack::*;

#[derive(clap::Args, Debug)]
pub(crate) struct ScenarioArgs {
    /// `sqlite` (one `serve --role all` on an embedded SQLite file) or `postgres` (a `--role api` and a
    /// `--role worker` process on PostgreSQL and RabbitMQ).
    #[arg(long, default_value = "sqlite", value_parser = ["sqlite", "postgres"])]
    topology: String,
    /// The PostgreSQL server (a fresh database is created on it and dropped after).
    #[arg(long, env = "BENCH_DATABASE_URL", default_value = "postgres://postgres@127.0.0.1:5432/test")]
    postgres: String,
    #[arg(long, env = "AMQP_URL", default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp: String,
    /// The scenarios to run, in this order (each needs the ones before it only for data: `group-send`
    /// sends to the contacts `import` made; `history` pads the messages table to its size).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "import,group-send,single-sends,smpp,smpp-group,schedules,reads,history"
    )]
    only: Vec<String>,
    /// Scales every count (1 = the issues' sizes: 100,000 contacts and recipients, 10,000 single sends
    /// and schedules, 5,000 SMPP messages and group recipients, 1,000,000 history rows).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Seconds each read load runs.
    #[arg(long, default_value_t = 10)]
    read_seconds: u64,
    /// Connections for the history reads (a web app's pool).
    #[arg(long, default_value_t = 8)]
    history_clients: u64,
    /// The `turumba` binary (default: the one beside this program).
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Also run Jasmin 0.11 on the SMPP workload through `bench/peers/jasmin_vs_turumba.sh` (run from
    /// the repository's root; installs Jasmin into a venv on first use; needs the machine's RabbitMQ
    /// and Redis, python3).
    #[arg(long)]
    jasmin: bool,
    /// Skip the ceilings.
    #[arg(long)]
    no_ceilings: bool,
}

/// Clients for the write and read loads (the issue's 64), and for the SMPP intake (32, as Jasmin's).
const CLIENTS: usize = 64;
const SMPP_CLIENTS: usize = 32;

/// One line of the table.
struct Row {
    scenario: String,
    work: String,
    secs: f64,
    rate: String,
    p50: Option<f64>,
    p99: Option<f64>,
    usage: Usage,
    note: String,
}

fn print_table(topology: &str, rows: &[Row]) {
    println!();
    println!("| scenario ({topology}) | work | s | rate | p50 ms | p99 ms | CPU s per process | peak RSS MiB | note |");
    println!("|---|---|---:|---:|---:|---:|---|---|---|");
    let opt = |v: Option<f64>| v.map(|x| format!("{x:.1}")).unwrap_or_else(|| "–".into());
    for r in rows {
        let cpu = r.usage.iter().map(|(n, c, _)| format!("{n} {c:.1}")).collect::<Vec<_>>().join(", ");
        let peak =
            r.usage.iter().filter_map(|(n, _, p)| p.map(|p| format!("{n} {p:.0}"))).collect::<Vec<_>>().join(", ");
        println!(
            "| {} | {} | {:.2} | {} | {} | {} | {cpu} | {peak} | {} |",
            r.scenario,
            r.work,
            r.secs,
            r.rate,
            opt(r.p50),
            opt(r.p99),
            r.note.trim()
        );
    }
}

pub(crate) async fn run(args: ScenarioArgs) {
    let topology = args.topology.clone();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    println!(
        "scenario run: topology {topology}, scale {}, {cores} cores; server, provider, SMSC and client on one machine",
        args.scale
    );
    let mut s = Stack::start(args).await;
    let mut rows = Vec::new();
    let only = s.args.only.clone();
    for name in &only {
        let started = Instant::now();
        let mut more = match name.as_str() {
            "import" => import(&mut s).await,
            "group-send" => group_send(&mut s).await,
            "single-sends" => single_sends(&mut s).await,
            "smpp" => smpp(&mut s).await,
            "smpp-group" => smpp_group(&mut s).await,
            "schedules" => schedules(&mut s).await,
            "reads" => reads(&mut s).await,
            "history" => history(&mut s).await,
            other => panic!(
                "unknown scenario {other} (import, group-send, single-sends, smpp, smpp-group, schedules, reads, history)"
            ),
        };
        eprintln!("  {name}: done in {:.0} s", started.elapsed().as_secs_f64());
        rows.append(&mut more);
    }
    print_table(&topology, &rows);
    let peak: Vec<String> = s
        .meter
        .watched
        .iter()
        .filter_map(|w| match w.source {
            Source::Pid(_) if w.name != "client" && w.name != "provider" && w.name != "smsc" => Some(format!(
                "{} {:.0} MiB",
                w.name,
                rows.iter().filter_map(|r| r.usage.iter().find(|u| u.0 == w.name)?.2).fold(0.0, f64::max)
            )),
            _ => None,
        })
        .collect();
    println!("\nTurumba's peak RSS over the whole run: {}", peak.join(", "));
    println!("logs: {}", s.logs.display());

    s.stop_servers().await;
    if !s.args.no_ceilings {
        let ceilings = ceilings(&mut s).await;
        println!("\n| ceiling (same run, Turumba stopped) | rate/s | compared with | Turumba/s | fraction |");
        println!("|---|---:|---|---:|---:|");
        for (what, rate, against) in &ceilings {
            let ours = s.figures.iter().find(|(n, _)| n == against).map(|(_, v)| *v);
            match ours {
                Some(v) => println!("| {what} | {rate:.0} | {against} | {v:.0} | {:.2} |", v / rate),
                None => println!("| {what} | {rate:.0} | {against} (not run) | – | – |"),
            }
        }
    }
    if s.args.jasmin {
        let ours = |name: &str| s.figures.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        let j = jasmin(&s);
        println!("\n| HTTP → SMPP, same SMSC program, same run | msg/s | × Jasmin |");
        println!("|---|---:|---:|");
        println!(
            "| Jasmin 0.11.1 (`/send`, {SMPP_CLIENTS} clients) | {} |",
            j.map_or("did not run | –".into(), |j| format!("{j:.0} | 1.0"))
        );
        for (label, name) in [
            ("Turumba, `POST /v1/messages` (32 clients)", "smpp msg/s"),
            ("Turumba, one group message", "smpp group msg/s"),
        ] {
            let (t, ratio) = match (ours(name), j) {
                (Some(t), Some(j)) => (format!("{t:.0}"), format!("{:.1}", t / j)),
                (Some(t), None) => (format!("{t:.0}"), "–".into()),
                _ => ("not run".into(), "–".into()),
            };
            println!("| {label} | {t} | {ratio} |");
        }
    }
    let problems = std::mem::take(&mut s.problems);
    let logs = s.logs.clone();
    s.finish().await;
    // Kept when the work went wrong, or when asked for (BENCH_SERVER_LOG).
    if problems.is_empty() && std::env::var_os("BENCH_SERVER_LOG").is_none() {
        let _ = std::fs::remove_dir_all(&logs);
    } else {
        eprintln!("\nlogs kept in {}", logs.display());
    }
    if !problems.is_empty() {
        eprintln!("\nthe work went wrong ({}):", problems.len());
        for p in &problems {
            eprintln!("  - {p}");
        }
        std::process::exit(1);
    }
}
