//! The processes under test and what they spend: the stack the scenarios drive.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde_json::{Value, json};

use super::*;

/// Where a row's CPU and memory figures come from.
pub(super) enum Source {
    Pid(u32),
    /// Every process with this command name (a service's many processes: CPU only).
    Comm(&'static str),
}

pub(super) struct Watched {
    pub(super) name: String,
    pub(super) source: Source,
}

/// Clock ticks per second of `/proc/<pid>/stat`.
pub(super) fn clock_ticks() -> f64 {
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
pub(crate) fn cpu_secs_of(pid: u32) -> f64 {
    stat_secs(&pid.to_string(), &[11, 12, 13, 14])
}

/// The sum of some CPU time fields of `/proc/<pid>/stat` (`pid` may be `self`), in seconds. After the
/// command name in parentheses come state, ppid, …; utime, stime, cutime and cstime are fields 11 to
/// 14 of what follows it.
pub(crate) fn stat_secs(pid: &str, fields: &[usize]) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let values: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("").split_whitespace().collect();
    let tick = |i: &usize| values.get(*i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    fields.iter().map(tick).sum::<u64>() as f64 / clock_ticks()
}

pub(crate) fn pids_named(comm: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm))
        .collect()
}

pub(super) fn peak_mib_of(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse::<f64>().ok().map(|kb| kb / 1024.0)
}

impl Watched {
    pub(super) fn pids(&self) -> Vec<u32> {
        match self.source {
            Source::Pid(p) => vec![p],
            Source::Comm(c) => pids_named(c),
        }
    }

    pub(super) fn cpu(&self) -> f64 {
        self.pids().into_iter().map(cpu_secs_of).sum()
    }
}

/// CPU seconds and peak RSS (MiB, for single processes) of each watched process over one row.
pub(super) type Usage = Vec<(String, f64, Option<f64>)>;

pub(super) struct Meter {
    pub(super) watched: Vec<Watched>,
}

impl Meter {
    pub(super) fn begin(&self) -> Vec<f64> {
        for w in &self.watched {
            if let Source::Pid(p) = w.source {
                let _ = std::fs::write(format!("/proc/{p}/clear_refs"), "5");
            }
        }
        self.watched.iter().map(Watched::cpu).collect()
    }

    pub(super) fn end(&self, began: Vec<f64>) -> Usage {
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

pub(super) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("addr").port()
}

pub(super) fn spawn(program: &Path, args: &[&str], envs: &[(&str, String)], log: &Path) -> Child {
    Command::new(program)
        .args(args)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(File::create(log).expect("log file"))
        .stderr(File::create(log.with_extension("err")).expect("log file"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()))
}

pub(super) async fn wait_up(http: &reqwest::Client, base: &str, logs: &Path) {
    for _ in 0..300 {
        if http.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("nothing answered on {base} within 30 s (logs in {})", logs.display());
}

// ------------------------------------------------------------------------------------------------
// The stack under test

pub(super) struct Stack {
    pub(super) args: ScenarioArgs,
    pub(super) _dir: tempfile::TempDir,
    pub(super) logs: PathBuf,
    pub(super) cleanup: Option<(DatabaseConnection, String)>,
    pub(super) amqp_prefix: Option<String>,
    pub(super) servers: Vec<Child>,
    pub(super) helpers: Vec<Child>,
    pub(super) meter: Meter,
    pub(super) http: reqwest::Client,
    pub(super) db: DatabaseConnection,
    /// The database URL the servers were given.
    pub(super) url: String,
    pub(super) api: String,
    pub(super) provider: String,
    pub(super) smsc_port: u16,
    pub(super) smsc_out: PathBuf,
    pub(super) token: String,
    pub(super) telegram: String,
    pub(super) sandbox: String,
    pub(super) smpp: String,
    /// Figures the ceilings are compared with, by name.
    pub(super) figures: Vec<(&'static str, f64)>,
    /// What went wrong in the work itself (not in its speed).
    pub(super) problems: Vec<String>,
}

impl Stack {
    pub(super) async fn start(args: ScenarioArgs) -> Stack {
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
                // BENCH_SERVER_LOG: the servers' TURUMBA_LOG (e.g. `warn,turumba::modules::messaging=debug`);
                // with it the logs are kept.
                ("TURUMBA_LOG", std::env::var("BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".to_string())),
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
            url: url.clone(),
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

    pub(super) fn n(&self, full: u64) -> u64 {
        ((full as f64 * self.args.scale).round() as u64).max(1)
    }

    pub(super) fn sqlite(&self) -> bool {
        self.args.topology == "sqlite"
    }

    pub(super) fn request(&self, method: &str, path: &str) -> reqwest::RequestBuilder {
        let method: reqwest::Method = method.parse().expect("method");
        self.http.request(method, format!("{}{path}", self.api)).bearer_auth(&self.token)
    }

    /// One API call that must succeed; its `data`.
    pub(super) async fn call(&self, method: &str, path: &str, body: Value) -> Value {
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

    pub(super) async fn count(&self, sql: &str) -> u64 {
        let backend = self.db.get_database_backend();
        let row = self.db.query_one_raw(Statement::from_string(backend, sql)).await.expect("count").expect("a row");
        row.try_get_by_index::<i64>(0).expect("a count") as u64
    }

    /// Polls `sql` (a count) until it reaches `want`, for at most `limit`; the count last seen.
    pub(super) async fn until_count(&self, sql: &str, want: u64, limit: Duration) -> u64 {
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
    pub(super) fn smsc_submits(&self) -> (u64, i64) {
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

    pub(super) fn row(&self, scenario: &str, work: String, secs: f64, rate: String, usage: Usage) -> Row {
        Row { scenario: scenario.to_string(), work, secs, rate, p50: None, p99: None, usage, note: String::new() }
    }

    pub(super) async fn stop_servers(&mut self) {
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
        self.servers.clear();
        if let Some(prefix) = self.amqp_prefix.take() {
            let amqp = turumba::modules::events::Amqp::new(&self.args.amqp, &prefix, 10, 5, true);
            let _ = amqp.delete_topology(&turumba::app::consumer_queues()).await;
        }
    }

    pub(super) async fn finish(mut self) {
        self.stop_servers().await;
        for h in &mut self.helpers {
            let _ = h.kill();
            let _ = h.wait();
        }
        self.db.close().await.ok();
        crate::drop_db(self.cleanup.take()).await;
    }
}

impl Stack {
    /// Sends a group message (queued at once) on `channel` to a segment; its id.
    pub(super) async fn queue_group(&self, channel: &str, segment: &Value, body: &str) -> String {
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
    pub(super) async fn until_group_done(&self, id: &str, started: Instant) -> (Value, Option<Duration>) {
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
    pub(super) async fn call_full(&self, path: &str) -> Value {
        let r = self.request("GET", path).send().await.unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = r.status();
        let v: Value = r.json().await.unwrap_or_default();
        assert!(status.is_success(), "GET {path} answered {status}: {v}");
        v
    }
}
