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

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{SubsecRound, Utc};
use futures_util::StreamExt;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde_json::{Value, json};

use crate::{ms, pct};

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
    /// Also run Jasmin 0.11 on the SMPP workload (installs it into a venv on first use; needs the
    /// machine's RabbitMQ and Redis, python3).
    #[arg(long)]
    jasmin: bool,
    /// Skip the ceilings.
    #[arg(long)]
    no_ceilings: bool,
}

/// Clients for the write and read loads (the issue's 64), and for the SMPP intake (32, as Jasmin's).
const CLIENTS: usize = 64;
const SMPP_CLIENTS: usize = 32;

// ------------------------------------------------------------------------------------------------
// Processes and what they spend

/// Where a row's CPU and memory figures come from.
enum Source {
    Pid(u32),
    /// Every process with this command name (a service's many processes: CPU only).
    Comm(&'static str),
}

struct Watched {
    name: String,
    source: Source,
}

/// Clock ticks per second of `/proc/<pid>/stat`.
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// CPU seconds a process spent, with those of its children it has waited for (this program's: wrk).
fn cpu_secs_of(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name in parentheses: state, ppid, …; utime, stime, cutime and cstime are the
    // 12th to the 15th.
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("").split_whitespace().collect();
    let tick = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (tick(11) + tick(12) + tick(13) + tick(14)) as f64 / clock_ticks()
}

fn pids_named(comm: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm))
        .collect()
}

fn peak_mib_of(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse::<f64>().ok().map(|kb| kb / 1024.0)
}

impl Watched {
    fn pids(&self) -> Vec<u32> {
        match self.source {
            Source::Pid(p) => vec![p],
            Source::Comm(c) => pids_named(c),
        }
    }

    fn cpu(&self) -> f64 {
        self.pids().into_iter().map(cpu_secs_of).sum()
    }
}

/// CPU seconds and peak RSS (MiB, for single processes) of each watched process over one row.
type Usage = Vec<(String, f64, Option<f64>)>;

struct Meter {
    watched: Vec<Watched>,
}

impl Meter {
    fn begin(&self) -> Vec<f64> {
        for w in &self.watched {
            if let Source::Pid(p) = w.source {
                let _ = std::fs::write(format!("/proc/{p}/clear_refs"), "5");
            }
        }
        self.watched.iter().map(Watched::cpu).collect()
    }

    fn end(&self, began: Vec<f64>) -> Usage {
        self.watched
            .iter()
            .zip(began)
            .map(|(w, before)| {
                let peak = match w.source {
                    Source::Pid(p) => peak_mib_of(p),
                    Source::Comm(_) => None,
                };
                (w.name.clone(), (w.cpu() - before).max(0.0), peak)
            })
            .collect()
    }
}

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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("addr").port()
}

fn spawn(program: &Path, args: &[&str], envs: &[(&str, String)], log: &Path) -> Child {
    Command::new(program)
        .args(args)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(File::create(log).expect("log file"))
        .stderr(File::create(log.with_extension("err")).expect("log file"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()))
}

async fn wait_up(http: &reqwest::Client, base: &str, logs: &Path) {
    for _ in 0..300 {
        if http.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("nothing answered on {base} within 30 s (logs in {})", logs.display());
}

// ------------------------------------------------------------------------------------------------
// Loads

/// Requests timed one by one.
struct Timed {
    secs: f64,
    ok: usize,
    failed: usize,
    latencies: Vec<Duration>,
    first_failure: Option<String>,
}

impl Timed {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.secs
    }
    fn p(&self, q: f64) -> Option<f64> {
        (!self.latencies.is_empty()).then(|| ms(pct(&self.latencies, q)))
    }
    fn failures(&self) -> String {
        match &self.first_failure {
            Some(f) => format!("{} failed (first: {f})", self.failed),
            None => String::new(),
        }
    }
}

/// `n` requests with `clients` in flight over keep-alive connections; those answering `expect` count.
async fn drive(n: u64, clients: usize, expect: u16, request: impl Fn(u64) -> reqwest::RequestBuilder) -> Timed {
    let started = Instant::now();
    let results: Vec<(Result<(), String>, Duration)> = futures_util::stream::iter(0..n)
        .map(|i| {
            let req = request(i);
            async move {
                let t = Instant::now();
                let outcome = match req.send().await {
                    Ok(r) if r.status().as_u16() == expect => Ok(()),
                    Ok(r) => Err(format!("{} {}", r.status().as_u16(), r.text().await.unwrap_or_default())),
                    Err(e) => Err(e.to_string()),
                };
                (outcome, t.elapsed())
            }
        })
        .buffer_unordered(clients)
        .collect()
        .await;
    let secs = started.elapsed().as_secs_f64();
    let mut latencies: Vec<Duration> = results.iter().map(|(_, d)| *d).collect();
    latencies.sort();
    let failed = results.iter().filter(|(r, _)| r.is_err()).count();
    let first_failure = results.iter().find_map(|(r, _)| r.clone().err()).map(|e| e.chars().take(200).collect());
    Timed { secs, ok: results.len() - failed, failed, latencies, first_failure }
}

/// A read load for `secs` seconds at `clients` connections: wrk when it is installed (the lightest
/// client, so the server gets the cores), else this program's own client. (requests/s, p50, p99, note)
async fn read_load(http: &reqwest::Client, url: &str, token: &str, clients: u64, secs: u64) -> (f64, f64, f64, String) {
    let wrk = Command::new("wrk")
        .args(["-t2", &format!("-c{clients}"), &format!("-d{secs}s"), "--latency"])
        .args(["-H", &format!("authorization: Bearer {token}"), url])
        .output();
    if let Ok(out) = wrk
        && out.status.success()
    {
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let field = |prefix: &str| {
            text.lines().find(|l| l.trim_start().starts_with(prefix)).and_then(|l| l.split_whitespace().nth(1))
        };
        let rps = field("Requests/sec:").and_then(|v| v.parse().ok()).unwrap_or(0.0);
        let non2xx: u64 = text
            .lines()
            .find(|l| l.contains("Non-2xx"))
            .and_then(|l| l.split_whitespace().last()?.parse().ok())
            .unwrap_or(0);
        let note = if non2xx > 0 { format!("wrk -c{clients}; {non2xx} non-2xx") } else { format!("wrk -c{clients}") };
        return (rps, wrk_ms(field("50%")), wrk_ms(field("99%")), note);
    }
    // No wrk: the same load from this program for about as long.
    let probe = drive(200, clients as usize, 200, |_| http.get(url).bearer_auth(token)).await;
    let n = (probe.rate() * secs as f64) as u64;
    let t = drive(n.max(200), clients as usize, 200, |_| http.get(url).bearer_auth(token)).await;
    let note = format!("{clients} clients (wrk not installed) {}", t.failures());
    (t.rate(), t.p(0.5).unwrap_or(0.0), t.p(0.99).unwrap_or(0.0), note)
}

/// wrk's `1.23ms`, `850.00us`, `1.02s` in milliseconds.
fn wrk_ms(v: Option<&str>) -> f64 {
    let Some(v) = v else { return 0.0 };
    let (num, factor) = if let Some(n) = v.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (v, 1.0)
    };
    num.parse::<f64>().map(|x| x * factor).unwrap_or(0.0)
}

// ------------------------------------------------------------------------------------------------
// The stack under test

struct Stack {
    args: ScenarioArgs,
    _dir: tempfile::TempDir,
    logs: PathBuf,
    cleanup: Option<(DatabaseConnection, String)>,
    amqp_prefix: Option<String>,
    servers: Vec<Child>,
    helpers: Vec<Child>,
    meter: Meter,
    http: reqwest::Client,
    db: DatabaseConnection,
    api: String,
    provider: String,
    smsc_port: u16,
    smsc_out: PathBuf,
    token: String,
    telegram: String,
    sandbox: String,
    smpp: String,
    /// Figures the ceilings are compared with, by name.
    figures: Vec<(&'static str, f64)>,
    /// What went wrong in the work itself (not in its speed).
    problems: Vec<String>,
}

impl Stack {
    async fn start(args: ScenarioArgs) -> Stack {
        let bin = args
            .bin
            .clone()
            .unwrap_or_else(|| std::env::current_exe().expect("this program's path").with_file_name("turumba"));
        let me = std::env::current_exe().expect("this program's path");
        let dir = tempfile::tempdir().expect("temp dir");
        // The logs outlive the run when it goes wrong (removed at the end otherwise).
        let logs = std::env::temp_dir().join(format!("turumba-scenario-{}", std::process::id()));
        std::fs::create_dir_all(&logs).expect("logs dir");
        let sqlite = args.topology == "sqlite";
        let (url, cleanup) = crate::fresh_db(if sqlite { "sqlite" } else { &args.postgres }, dir.path()).await;
        let http = reqwest::Client::builder().pool_max_idle_per_host(256).build().expect("client");

        // The provider and the SMSC, processes of their own.
        let (provider_port, smsc_port) = (free_port(), free_port());
        let mut helpers = vec![spawn(
            &me,
            &["telegram-server", "--port", &provider_port.to_string()],
            &[],
            &logs.join("provider.log"),
        )];
        let smsc_out = logs.join("smsc.log");
        helpers.push(spawn(&me, &["smsc", "--port", &smsc_port.to_string()], &[], &smsc_out));
        let provider = format!("http://127.0.0.1:{provider_port}");

        let data_dir = dir.path().join("data").display().to_string();
        let amqp_prefix = (!sqlite).then(|| format!("bench_{}_", &uuid::Uuid::new_v4().simple().to_string()[..8]));
        let env = |port: u16| {
            let mut env = vec![
                ("DATABASE_URL", url.clone()),
                ("TURUMBA_DATA_DIR", data_dir.clone()),
                ("TURUMBA_PORT", port.to_string()),
                ("TURUMBA_LOG", "warn".to_string()),
            ];
            if let Some(prefix) = &amqp_prefix {
                env.push(("AMQP_URL", args.amqp.clone()));
                env.push(("TURUMBA_EVENTS__AMQP_PREFIX", prefix.clone()));
            }
            env
        };
        let api_port = free_port();
        let api = format!("http://127.0.0.1:{api_port}");
        let mut servers = Vec::new();
        let mut watched = Vec::new();
        let roles: &[&str] = if sqlite { &["all"] } else { &["api", "worker"] };
        for role in roles {
            let port = if *role == "worker" { free_port() } else { api_port };
            let child = spawn(&bin, &["serve", "--role", role], &env(port), &logs.join(format!("{role}.log")));
            watched.push(Watched { name: role.to_string(), source: Source::Pid(child.id()) });
            servers.push(child);
            wait_up(&http, &format!("http://127.0.0.1:{port}"), &logs).await;
        }
        watched.push(Watched { name: "provider".into(), source: Source::Pid(helpers[0].id()) });
        watched.push(Watched { name: "smsc".into(), source: Source::Pid(helpers[1].id()) });
        // This program, with wrk when it runs the reads.
        watched.push(Watched { name: "client".into(), source: Source::Pid(std::process::id()) });
        if !sqlite {
            watched.push(Watched { name: "postgres".into(), source: Source::Comm("postgres") });
            watched.push(Watched { name: "rabbitmq".into(), source: Source::Comm("beam.smp") });
        }
        wait_up(&http, &provider, &logs).await;

        let created = Command::new(&bin)
            .args(["admin", "create-user", "--email", "bench@example.com", "--password", "bench password"])
            .args(["--account-name", "Bench"])
            .envs(env(free_port()))
            .output()
            .expect("turumba admin create-user");
        assert!(created.status.success(), "create-user: {}", String::from_utf8_lossy(&created.stderr));
        let db = turumba::db::connect(&url, 2).await.expect("the runner reads the database");
        let mut stack = Stack {
            args,
            _dir: dir,
            logs,
            cleanup,
            amqp_prefix,
            servers,
            helpers,
            meter: Meter { watched },
            http,
            db,
            api,
            provider,
            smsc_port,
            smsc_out,
            token: String::new(),
            telegram: String::new(),
            sandbox: String::new(),
            smpp: String::new(),
            figures: Vec::new(),
            problems: Vec::new(),
        };
        let login = stack
            .call("POST", "/v1/auth/login", json!({"email": "bench@example.com", "password": "bench password"}))
            .await;
        stack.token = login["access_token"].as_str().expect("token").to_string();
        let telegram = json!({"name": "bench bot", "channel_type": "telegram", "retry_count": 0,
            "credentials": {"bot_token": "123456:bench-token", "base_url": stack.provider}});
        stack.telegram = stack.call("POST", "/v1/channels", telegram).await["id"].as_str().expect("id").to_string();
        let sandbox = json!({"name": "bench sandbox", "channel_type": "sandbox", "credentials": {}});
        stack.sandbox = stack.call("POST", "/v1/channels", sandbox).await["id"].as_str().expect("id").to_string();
        let smpp = json!({"name": "smsc", "channel_type": "smpp", "credentials": {"host": "127.0.0.1",
            "port": stack.smsc_port, "system_id": "bench", "password": "bench", "source_addr": "Turumba"}});
        stack.smpp = stack.call("POST", "/v1/channels", smpp).await["id"].as_str().expect("id").to_string();
        stack
    }

    fn n(&self, full: u64) -> u64 {
        ((full as f64 * self.args.scale).round() as u64).max(1)
    }

    fn sqlite(&self) -> bool {
        self.args.topology == "sqlite"
    }

    fn request(&self, method: &str, path: &str) -> reqwest::RequestBuilder {
        let method: reqwest::Method = method.parse().expect("method");
        self.http.request(method, format!("{}{path}", self.api)).bearer_auth(&self.token)
    }

    /// One API call that must succeed; its `data`.
    async fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let mut req = self.request(method, path);
        if !body.is_null() {
            req = req.json(&body);
        }
        let r = req.send().await.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = r.status();
        let v: Value = r.json().await.unwrap_or_default();
        assert!(status.is_success(), "{method} {path} answered {status}: {v}");
        v["data"].clone()
    }

    async fn count(&self, sql: &str) -> u64 {
        let backend = self.db.get_database_backend();
        let row = self.db.query_one_raw(Statement::from_string(backend, sql)).await.expect("count").expect("a row");
        row.try_get_by_index::<i64>(0).expect("a count") as u64
    }

    /// Polls `sql` (a count) until it reaches `want`, for at most `limit`; the count last seen.
    async fn until_count(&self, sql: &str, want: u64, limit: Duration) -> u64 {
        let deadline = Instant::now() + limit;
        loop {
            let n = self.count(sql).await;
            if n >= want || Instant::now() > deadline {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The SMSC's count of submit_sm so far, and when the last one arrived (unix ms).
    fn smsc_submits(&self) -> (u64, i64) {
        let out = std::fs::read_to_string(&self.smsc_out).unwrap_or_default();
        out.lines()
            .rev()
            .find_map(|l| {
                let mut f = l.split_whitespace();
                if f.next() != Some("submits") {
                    return None;
                }
                Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
            })
            .unwrap_or((0, 0))
    }

    fn row(&self, scenario: &str, work: String, secs: f64, rate: String, usage: Usage) -> Row {
        Row { scenario: scenario.to_string(), work, secs, rate, p50: None, p99: None, usage, note: String::new() }
    }

    async fn stop_servers(&mut self) {
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
        self.servers.clear();
        if let Some(prefix) = self.amqp_prefix.take() {
            let amqp = turumba::modules::events::Amqp::new(&self.args.amqp, &prefix, 10, 5, true);
            let _ = amqp.delete_topology(&[]).await;
        }
    }

    async fn finish(mut self) {
        self.stop_servers().await;
        for h in &mut self.helpers {
            let _ = h.kill();
            let _ = h.wait();
        }
        self.db.close().await.ok();
        crate::drop_db(self.cleanup.take()).await;
    }
}

// ------------------------------------------------------------------------------------------------
// The scenarios

async fn import(s: &mut Stack) -> Vec<Row> {
    let n = s.n(100_000);
    // Every contact has a phone number (SMPP), a Telegram chat id, and one of 20 cohorts (`smpp-group`
    // sends to one: 5,000 of 100,000).
    let mut csv = String::from(
        "first_name,last_name,phone,email,channel_identities.telegram,attributes.batch,attributes.cohort,tags\n",
    );
    for i in 0..n {
        csv.push_str(&format!(
            "Person{i},Family{},+25191{i:07},person{i}@example.org,{},bench,c{},{}\n",
            i % 977,
            10_000_000 + i,
            i % 20,
            if i % 3 == 0 { "reminded;vip" } else { "reminded" }
        ));
    }
    let m = s.meter.begin();
    let started = Instant::now();
    let r = s.request("POST", "/v1/contacts/import").header("content-type", "text/csv").body(csv);
    let job: Value = r.send().await.expect("import").json().await.expect("JSON");
    let job = job["data"]["id"].as_str().unwrap_or_else(|| panic!("no import job: {job}")).to_string();
    let done = loop {
        let j = s.call("GET", &format!("/v1/contacts/imports/{job}"), Value::Null).await;
        match j["status"].as_str() {
            Some("completed") | Some("failed") => break j,
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let secs = started.elapsed().as_secs_f64();
    let created = done["created"].as_u64().unwrap_or(0);
    s.figures.push(("import rows/s", created as f64 / secs));
    if created != n {
        s.problems.push(format!("import: {created} of {n} contacts created: {done}"));
    }
    let mut row = s.row(
        "CSV import",
        format!("{n} rows → {created} contacts"),
        secs,
        format!("{:.0} rows/s", created as f64 / secs),
        s.meter.end(m),
    );
    row.note = format!("job {}", done["status"].as_str().unwrap_or("?"));
    vec![row]
}

async fn group_send(s: &mut Stack) -> Vec<Row> {
    let segment = s.call("POST", "/v1/segments", json!({"name": "bench", "filter": "attributes.batch:eq:bench"})).await;
    let m = s.meter.begin();
    let started = Instant::now();
    let body = "Hi {FIRST_NAME}, your results are ready. Reply STOP to opt out.";
    let id = s.queue_group(&s.telegram, &segment["id"], body).await;
    let accepted = started.elapsed();
    let (last, fanned_out) = s.until_group_done(&id, started).await;
    let secs = started.elapsed().as_secs_f64();
    let c = &last["counters"];
    let (total, sent) = (c["total_recipients"].as_u64().unwrap_or(0), c["sent_count"].as_u64().unwrap_or(0));
    let fan = fanned_out.map(|d| d.as_secs_f64()).unwrap_or(secs);
    s.figures.push(("group messages/s", sent as f64 / secs));
    if sent == 0 || sent != total || last["status"] != "completed" {
        s.problems.push(format!("group send: {sent} of {total} sent: {last}"));
    }
    s.figures.push(("fan-out rows/s", total as f64 / fan));
    let mut row = s.row(
        "group send, accept → all sent",
        format!("{total} recipients, {sent} sent"),
        secs,
        format!("{:.0} msg/s", sent as f64 / secs),
        s.meter.end(m),
    );
    row.note = format!(
        "accepted in {:.0} ms; fan-out {fan:.1} s ({:.0} rows/s); status {}, failed {}, skipped {}",
        ms(accepted),
        total as f64 / fan,
        last["status"].as_str().unwrap_or("?"),
        c["failed_count"],
        c["skipped_count"]
    );
    vec![row]
}

async fn single_sends(s: &mut Stack) -> Vec<Row> {
    let n = s.n(10_000);
    let sent_sql = "SELECT COUNT(*) FROM messages WHERE group_message_id IS NULL AND scheduled_message_id IS NULL \
         AND status = 'sent' AND channel_type = 'telegram'";
    let before = s.count(sent_sql).await;
    let m = s.meter.begin();
    let t = drive(n, CLIENTS, 201, |i| {
        s.request("POST", "/v1/messages").json(&json!({"channel_id": s.telegram,
            "delivery_address": format!("{}", 20_000_000 + i),
            "message_body": "Selam! Your appointment is tomorrow at 10:00."}))
    })
    .await;
    let accepted = s.meter.end(m);
    s.figures.push(("single accepts/s", t.rate()));
    if t.failed > 0 {
        s.problems.push(format!("single sends: {}", t.failures()));
    }
    let mut accept = s.row(
        "single sends, accept (POST /v1/messages)",
        format!("{n} requests, {} clients", CLIENTS),
        t.secs,
        format!("{:.0} req/s", t.rate()),
        accepted,
    );
    accept.p50 = t.p(0.5);
    accept.p99 = t.p(0.99);
    accept.note = t.failures();
    // Then until the dispatcher has sent every one (time counted from the first request).
    let m = s.meter.begin();
    let drained = Instant::now();
    let got = s.until_count(sent_sql, before + t.ok as u64, Duration::from_secs(300)).await - before;
    let total = t.secs + drained.elapsed().as_secs_f64();
    let mut sent = s.row(
        "single sends, first accept → all sent",
        format!("{got} of {} sent", t.ok),
        total,
        format!("{:.0} msg/s", got as f64 / total),
        s.meter.end(m),
    );
    sent.note = format!("usage: after the accepts only ({:.1} s)", drained.elapsed().as_secs_f64());
    if got < t.ok as u64 {
        s.problems.push(format!("single sends: {got} of {} sent", t.ok));
    }
    vec![accept, sent]
}

async fn smpp(s: &mut Stack) -> Vec<Row> {
    let n = s.n(5_000);
    let body = |i: u64| {
        json!({"channel_id": s.smpp, "delivery_address": format!("+2519{:08}", 11_000_000 + i),
            "message_body": "Selam! Your appointment is tomorrow at 10:00."})
    };
    // Warm up (the bind), as Jasmin gets its warm-up.
    drive(100, 4, 201, |i| s.request("POST", "/v1/messages").json(&body(i))).await;
    let (before, _) = s.smsc_submits();
    let deadline = Instant::now() + Duration::from_secs(60);
    while s.smsc_submits().0 < 100 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = before.max(s.smsc_submits().0);
    let m = s.meter.begin();
    let start_ms = Utc::now().timestamp_millis();
    let t = drive(n, SMPP_CLIENTS, 201, |i| s.request("POST", "/v1/messages").json(&body(100 + i))).await;
    let deadline = Instant::now() + Duration::from_secs(300);
    while s.smsc_submits().0 < before + t.ok as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (got, last_ms) = s.smsc_submits();
    let secs = (last_ms - start_ms) as f64 / 1000.0;
    let rate = (got - before) as f64 / secs;
    s.figures.push(("smpp msg/s", rate));
    if t.failed > 0 || got - before < n {
        s.problems.push(format!("smpp: {} of {n} at the SMSC {}", got - before, t.failures()));
    }
    let mut row = s.row(
        "HTTP intake → SMPP, until the SMSC has all",
        format!("{n} messages, {SMPP_CLIENTS} clients; {} at the SMSC", got - before),
        secs,
        format!("{rate:.0} msg/s"),
        s.meter.end(m),
    );
    row.p50 = t.p(0.5);
    row.p99 = t.p(0.99);
    row.note = format!("accepts {:.0} req/s {}", t.rate(), t.failures());
    vec![row]
}

/// A group message to the SMPP channel (one cohort of the imported contacts), until the SMSC has all.
async fn smpp_group(s: &mut Stack) -> Vec<Row> {
    let segment =
        s.call("POST", "/v1/segments", json!({"name": "cohort 0", "filter": "attributes.cohort:eq:c0"})).await;
    let (before, _) = s.smsc_submits();
    let m = s.meter.begin();
    let start_ms = Utc::now().timestamp_millis();
    let id = s.queue_group(&s.smpp, &segment["id"], "Selam {FIRST_NAME}! Your appointment is tomorrow at 10:00.").await;
    let (last, _) = s.until_group_done(&id, Instant::now()).await;
    let total = last["counters"]["total_recipients"].as_u64().unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(60);
    while s.smsc_submits().0 < before + total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (got, last_ms) = s.smsc_submits();
    let secs = (last_ms - start_ms) as f64 / 1000.0;
    let rate = (got - before) as f64 / secs;
    s.figures.push(("smpp group msg/s", rate));
    if total == 0 || got - before < total {
        s.problems.push(format!("smpp group: {} of {total} at the SMSC: {last}", got - before));
    }
    let mut row = s.row(
        "group message → SMPP, until the SMSC has all",
        format!("{total} recipients; {} at the SMSC", got - before),
        secs,
        format!("{rate:.0} msg/s"),
        s.meter.end(m),
    );
    row.note = format!("status {}", last["status"].as_str().unwrap_or("?"));
    vec![row]
}

async fn schedules(s: &mut Stack) -> Vec<Row> {
    let n = s.n(10_000);
    // T: far enough ahead for every schedule to be created first.
    let due = (Utc::now() + chrono::Duration::seconds(5 + n as i64 / 300)).trunc_subsecs(0);
    let created = drive(n, 32, 201, |i| {
        s.request("POST", "/v1/scheduled-messages").json(&json!({"name": format!("s{i}"),
            "channel_id": s.sandbox, "delivery_address": format!("+2519{:08}", 30_000_000 + i),
            "message_body": "Your reminder", "scheduled_at": due.to_rfc3339(), "timezone": "UTC"}))
    })
    .await;
    let left = (due - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(left.saturating_sub(Duration::from_millis(500))).await;
    let m = s.meter.begin();
    let fired_sql = "SELECT COUNT(*) FROM messages WHERE scheduled_message_id IS NOT NULL";
    s.until_count(fired_sql, created.ok as u64, Duration::from_secs(300)).await;
    let lateness = crate::schedules::lateness_after(&s.db, due).await;
    let last = lateness.last().copied().unwrap_or_default();
    if created.failed > 0 || lateness.len() < created.ok || left.is_zero() {
        s.problems.push(format!(
            "schedules: {} of {n} created ({}), {} fired, all created before T: {}",
            created.ok,
            created.failures(),
            lateness.len(),
            !left.is_zero()
        ));
    }
    let mut row = s.row(
        "schedules due at one instant, T → all fired",
        format!("{} of {} created; {} fired", created.ok, n, lateness.len()),
        last.as_secs_f64(),
        format!("{:.0} fired/s", lateness.len() as f64 / last.as_secs_f64().max(0.001)),
        s.meter.end(m),
    );
    row.p50 = Some(ms(pct(&lateness, 0.5)));
    row.p99 = Some(ms(pct(&lateness, 0.99)));
    row.note = format!(
        "p50/p99 = lateness after T; created at {:.0}/s beforehand {}",
        created.rate(),
        if left.is_zero() { "(NOT all before T: raise the lead time)" } else { "" }
    );
    vec![row]
}

async fn reads(s: &mut Stack) -> Vec<Row> {
    for i in 0..47 {
        s.call("POST", "/v1/roles", json!({"name": format!("role-{i}"), "permissions": {"contacts:read": true}})).await;
    }
    let mut rows = Vec::new();
    for (label, path) in [
        ("GET /healthz (the HTTP server's own ceiling)", "/healthz"),
        ("GET /v1/context", "/v1/context"),
        ("GET /v1/roles?limit=50 (50-row list)", "/v1/roles?limit=50"),
        ("GET /v1/contacts?limit=50 (50-row list)", "/v1/contacts?limit=50"),
    ] {
        let m = s.meter.begin();
        let url = format!("{}{path}", s.api);
        let (rps, p50, p99, note) = read_load(&s.http, &url, &s.token, CLIENTS as u64, s.args.read_seconds).await;
        if path == "/v1/context" {
            s.figures.push(("context req/s", rps));
        }
        if rps == 0.0 || note.contains("non-2xx") || note.contains("failed") {
            s.problems.push(format!("{label}: {rps} req/s, {note}"));
        }
        let mut row = s.row(
            label,
            format!("{}s", s.args.read_seconds),
            s.args.read_seconds as f64,
            format!("{rps:.0} req/s"),
            s.meter.end(m),
        );
        (row.p50, row.p99, row.note) = (Some(p50), Some(p99), note);
        rows.push(row);
    }
    rows
}

async fn history(s: &mut Stack) -> Vec<Row> {
    let want = s.n(1_000_000);
    let have = s.count("SELECT COUNT(*) FROM messages").await;
    let backend = s.db.get_database_backend();
    let seeding = Instant::now();
    // The padding rows are 60 s + 1 s apart going back from now.
    let padded = want.saturating_sub(have);
    if padded > 0 {
        // Copies of one real single-send row, one second apart going back in time.
        let columns: Vec<String> = if s.sqlite() {
            let rows =
                s.db.query_all_raw(Statement::from_string(backend, "PRAGMA table_info(messages)"))
                    .await
                    .expect("columns");
            rows.iter().filter_map(|r| r.try_get::<String>("", "name").ok()).collect()
        } else {
            let rows =
                s.db.query_all_raw(Statement::from_string(
                    backend,
                    "SELECT column_name::text AS name FROM information_schema.columns WHERE table_name = 'messages'",
                ))
                .await
                .expect("columns");
            rows.iter().filter_map(|r| r.try_get::<String>("", "name").ok()).collect()
        };
        let cols = columns.into_iter().filter(|c| c != "id" && c != "created_at").collect::<Vec<_>>().join(", ");
        let need = padded;
        let sql = if s.sqlite() {
            format!(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {need}) \
                 INSERT INTO messages (id, created_at, {cols}) \
                 SELECT randomblob(16), strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now', '-' || (i + 60) || ' seconds'), {cols} \
                 FROM n, (SELECT * FROM messages WHERE group_message_id IS NULL AND scheduled_message_id IS NULL LIMIT 1)"
            )
        } else {
            format!(
                "INSERT INTO messages (id, created_at, {cols}) \
                 SELECT gen_random_uuid(), now() - make_interval(secs => g + 60), {cols} \
                 FROM generate_series(1, {need}) g, \
                 (SELECT * FROM messages WHERE group_message_id IS NULL AND scheduled_message_id IS NULL LIMIT 1) t"
            )
        };
        s.db.execute_unprepared(&sql).await.expect("seed the history");
        if !s.sqlite() {
            s.db.execute_unprepared("ANALYZE messages").await.expect("analyze");
        }
    }
    let rows_now = s.count("SELECT COUNT(*) FROM messages").await;
    let seeded = seeding.elapsed().as_secs_f64();
    let clients = s.args.history_clients;
    let mut rows = Vec::new();
    // The first page, then a deep page: near the oldest end by a created_at filter, continued by cursor.
    let deep = (Utc::now() - chrono::Duration::seconds((60 + padded * 9 / 10) as i64)).format("%Y-%m-%dT%H:%M:%SZ");
    let page = s.call_full(&format!("/v1/messages?limit=50&filter=created_at:lt:{deep}")).await;
    let cursor = page["meta"]["next_cursor"].as_str().unwrap_or_default().to_string();
    if cursor.is_empty() {
        s.problems.push(format!("history: no next_cursor below {deep}: {}", page["meta"]));
    }
    for (label, path) in [
        ("GET /v1/messages?limit=50, first page", "/v1/messages?limit=50".to_string()),
        ("GET /v1/messages?limit=50, deep cursor page", format!("/v1/messages?limit=50&cursor={cursor}")),
    ] {
        let m = s.meter.begin();
        let url = format!("{}{path}", s.api);
        let (rps, p50, p99, note) = read_load(&s.http, &url, &s.token, clients, s.args.read_seconds).await;
        if rps == 0.0 || note.contains("non-2xx") || note.contains("failed") {
            s.problems.push(format!("{label}: {rps} req/s, {note}"));
        }
        let mut row = s.row(
            label,
            format!("{rows_now} rows in the table"),
            s.args.read_seconds as f64,
            format!("{rps:.0} req/s"),
            s.meter.end(m),
        );
        (row.p50, row.p99) = (Some(p50), Some(p99));
        row.note = format!("{note}; table padded in {seeded:.0} s");
        rows.push(row);
    }
    rows
}

impl Stack {
    /// Sends a group message (queued at once) on `channel` to a segment; its id.
    async fn queue_group(&self, channel: &str, segment: &Value, body: &str) -> String {
        let g = self
            .call(
                "POST",
                "/v1/group-messages",
                json!({"name": "bench", "channel_id": channel, "segment_ids": [segment], "status": "queued",
                    "message_body": body}),
            )
            .await;
        g["id"].as_str().expect("group id").to_string()
    }

    /// Polls a group message until it is fanned out and nothing is pending (15 minutes at most): its
    /// last state, and when (after `started`) its fan-out was first seen done.
    async fn until_group_done(&self, id: &str, started: Instant) -> (Value, Option<Duration>) {
        let (mut fanned_out, mut last) = (None, Value::Null);
        let deadline = Instant::now() + Duration::from_secs(900);
        while Instant::now() < deadline {
            last = self.call("GET", &format!("/v1/group-messages/{id}"), Value::Null).await;
            if fanned_out.is_none() && last["fanout_done"] == true {
                fanned_out = Some(started.elapsed());
            }
            if last["fanout_done"] == true && last["counters"]["pending_count"] == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (last, fanned_out)
    }

    /// A GET that must succeed; the whole envelope (for `meta`).
    async fn call_full(&self, path: &str) -> Value {
        let r = self.request("GET", path).send().await.unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = r.status();
        let v: Value = r.json().await.unwrap_or_default();
        assert!(status.is_success(), "GET {path} answered {status}: {v}");
        v
    }
}

// ------------------------------------------------------------------------------------------------
// Ceilings, the peer, the table

/// The raw insert rate of message-shaped rows into a table of their own with the messages table's
/// keys and indexes, 1,000 rows per statement and transaction, on one connection: rows per second.
async fn raw_insert_rate(db: &DatabaseConnection, sqlite: bool, n: u64) -> f64 {
    let backend = db.get_database_backend();
    let (uuid, ts, json) = if sqlite { ("BLOB", "TEXT", "TEXT") } else { ("UUID", "TIMESTAMPTZ", "JSONB") };
    let ddl = [
        "DROP TABLE IF EXISTS bench_raw_messages".to_string(),
        format!(
            "CREATE TABLE bench_raw_messages (id {uuid} PRIMARY KEY, account_id {uuid} NOT NULL, \
             channel_id {uuid} NOT NULL, contact_id {uuid}, group_message_id {uuid}, channel_type TEXT NOT NULL, \
             direction TEXT NOT NULL, status TEXT NOT NULL, delivery_address TEXT NOT NULL, message_body TEXT, \
             metadata {json}, attempts INTEGER NOT NULL, created_at {ts} NOT NULL, updated_at {ts} NOT NULL)"
        ),
        "CREATE INDEX bench_raw_account ON bench_raw_messages (account_id, created_at, id)".into(),
        "CREATE UNIQUE INDEX bench_raw_group ON bench_raw_messages (group_message_id, contact_id)".into(),
        "CREATE INDEX bench_raw_status ON bench_raw_messages (status)".into(),
    ];
    for sql in ddl {
        db.execute_unprepared(&sql).await.expect("scratch table");
    }
    let (account, channel, group) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let started = Instant::now();
    let per = 1_000u64;
    let mut i = 0;
    while i < n {
        let rows = per.min(n - i);
        let mut sql = String::from(
            "INSERT INTO bench_raw_messages (id, account_id, channel_id, contact_id, group_message_id, channel_type, \
             direction, status, delivery_address, message_body, metadata, attempts, created_at, updated_at) VALUES ",
        );
        let mut values: Vec<sea_orm::Value> = Vec::with_capacity(rows as usize * 12);
        let now = Utc::now();
        for r in 0..rows {
            if r > 0 {
                sql.push(',');
            }
            let b = values.len();
            let p = |k: usize| if sqlite { "?".to_string() } else { format!("${}", b + k) };
            sql.push_str(&format!(
                "({},{},{},{},{},'telegram','outbound','queued',{},{},{},0,{},{})",
                p(1),
                p(2),
                p(3),
                p(4),
                p(5),
                p(6),
                p(7),
                p(8),
                p(9),
                p(10)
            ));
            values.push(uuid::Uuid::now_v7().into());
            values.push(account.into());
            values.push(channel.into());
            values.push(uuid::Uuid::new_v4().into());
            values.push(group.into());
            values.push(format!("{}", 10_000_000 + i + r).into());
            values.push(format!("Hi Person{}, your results are ready. Reply STOP to opt out.", i + r).into());
            values.push(json!({}).into());
            values.push(now.into());
            values.push(now.into());
        }
        let txn = sea_orm::TransactionTrait::begin(db).await.expect("begin");
        txn.execute_raw(Statement::from_sql_and_values(backend, &sql, values)).await.expect("insert");
        txn.commit().await.expect("commit");
        i += rows;
    }
    let secs = started.elapsed().as_secs_f64();
    let _ = db.execute_unprepared("DROP TABLE IF EXISTS bench_raw_messages").await;
    n as f64 / secs
}

async fn ceilings(s: &mut Stack) -> Vec<(String, f64, String)> {
    let mut out = Vec::new();
    let n = s.n(20_000);
    // The provider server's own ceiling: its sendMessage, as the adapter calls it, 64 in flight.
    let url = format!("{}/bot123456:bench-token/sendMessage", s.provider);
    let t = drive(n, CLIENTS, 200, |i| s.http.post(&url).json(&json!({"chat_id": i, "text": "ceiling"}))).await;
    out.push(("provider server: sendMessage requests/s (64 in flight)".into(), t.rate(), "group messages/s".into()));
    // The SMSC's own ceiling: submit_sm on one bind through the same adapter.
    let (ok, d) = crate::smpp::submit_many(s.smsc_port, n, 64).await;
    out.push(("SMSC: submit_sm/s on one bind".into(), ok as f64 / d.as_secs_f64(), "smpp msg/s".into()));
    let rows = s.n(100_000);
    let sqlite = s.sqlite();
    let db_name = if sqlite { "SQLite" } else { "PostgreSQL" };
    let rate = raw_insert_rate(&s.db, sqlite, rows).await;
    out.push((format!("{db_name}: raw message-shaped inserts/s (1,000 per statement)"), rate, "fan-out rows/s".into()));
    out.push((format!("{db_name}: the same, compared with the CSV import"), rate, "import rows/s".into()));
    if !sqlite {
        let rate = crate::events::raw_rabbitmq_rate(&s.args.amqp, rows, 500).await;
        out.push((
            "RabbitMQ: persistent publishes/s with confirms (batch 500)".into(),
            rate,
            "single accepts/s".into(),
        ));
    }
    out
}

/// Jasmin 0.11 on the SMPP workload, through the peer script (Jasmin only): its messages per second.
fn jasmin(s: &Stack) -> Option<f64> {
    let me = std::env::current_exe().ok()?;
    let bin = s.args.bin.clone().unwrap_or_else(|| me.with_file_name("turumba"));
    let out = Command::new("bash")
        .arg("bench/peers/jasmin_vs_turumba.sh")
        .args([s.n(5_000).to_string(), SMPP_CLIENTS.to_string()])
        .env("BENCH_ONLY", "jasmin")
        .env("BENCH_BIN", bin)
        .env("BENCH_TOOL", &me)
        .stderr(Stdio::inherit())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    print!("{text}");
    let line = text.lines().find(|l| l.starts_with("Jasmin"))?;
    let before = line.split(" messages/s").next()?;
    before.rsplit(' ').next()?.parse().ok()
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
            "| Jasmin 0.11.1 (`/send`, {SMPP_CLIENTS} clients) | {} | 1.0 |",
            j.map_or("failed".into(), |j| format!("{j:.0}"))
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
    if problems.is_empty() {
        let _ = std::fs::remove_dir_all(&logs);
    } else {
        eprintln!("\nlogs kept in {}", logs.display());
        eprintln!("\nthe work went wrong ({}):", problems.len());
        for p in &problems {
            eprintln!("  - {p}");
        }
        std::process::exit(1);
    }
}
