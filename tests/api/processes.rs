//! Real `turumba serve` processes, started the way a deployment starts them (one per role, each on its
//! own port, sharing a database and a broker), for the tests that need a process to die, be cut off or
//! run out of disk: see `faults`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use serde_json::{Value, json};

use crate::helpers::{Backend, fresh_database};

pub const BIN: &str = env!("CARGO_BIN_EXE_turumba");
/// The servers' claim lease (`TURUMBA_DISPATCH__LEASE_SECS`): a message whose dispatcher died is
/// claimed again this long after it was claimed (120 s by default; short here so a test need not wait).
pub const LEASE_SECS: u64 = 8;
/// Messages a dispatcher pass claims (`TURUMBA_DISPATCH__BATCH`, 200 by default).
pub const DISPATCH_BATCH: i64 = 100;
/// Dispatcher passes at once (`TURUMBA_DISPATCH__LOOPS`, the default).
pub const DISPATCH_LOOPS: i64 = 2;

/// A port nobody listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The binary, run through `launcher` (a program and its arguments) when there is one.
fn through(launcher: &[String]) -> Command {
    match launcher.split_first() {
        Some((program, args)) => {
            let mut cmd = Command::new(program);
            cmd.args(args).arg(BIN);
            cmd
        }
        None => Command::new(BIN),
    }
}

/// One `turumba serve --role …` process.
pub struct Server {
    pub role: &'static str,
    pub port: u16,
    pub child: Child,
    log: std::path::PathBuf,
    killed: bool,
}

impl Server {
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_none()
    }

    /// SIGKILL: no shutdown, no flush, nothing finished.
    pub fn kill(&mut self) {
        self.killed = true;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A deployment of real server processes on one database (and broker), with its settings.
pub struct Stack {
    pub dir: tempfile::TempDir,
    /// The database as the test reaches it (the servers may reach it through a proxy).
    pub db_url: String,
    /// The servers' data directory as the test reaches it.
    pub data_dir: std::path::PathBuf,
    env: Vec<(String, String)>,
    /// A command the servers are started through (`unshare … sh -c …`), or none.
    pub launcher: Vec<String>,
    /// A command `turumba admin` runs through (`nsenter …` into the servers' mount namespace), or none.
    pub admin_launcher: Vec<String>,
    amqp: Option<(String, String)>,
    pub servers: Vec<Server>,
    pub http: reqwest::Client,
}

impl Stack {
    /// A fresh database (and a broker prefix of its own); `via_db` maps the URL the servers use (a
    /// proxy in front of the database).
    pub async fn new(b: &Backend, amqp: Option<String>, via_db: Option<&dyn Fn(&str) -> String>) -> Stack {
        remember_panics();
        let dir = tempfile::tempdir().unwrap();
        let db_url = fresh_database(b, dir.path()).await;
        let server_db = via_db.map(|f| f(&db_url)).unwrap_or_else(|| db_url.clone());
        let mut env = vec![
            ("DATABASE_URL".to_string(), server_db),
            ("TURUMBA_DATA_DIR".to_string(), dir.path().display().to_string()),
            ("TURUMBA_LOG".to_string(), "warn".to_string()),
            ("TURUMBA_HTTP__WORKERS".to_string(), "2".to_string()),
            ("TURUMBA_DISPATCH__SEND_TIMEOUT_SECS".to_string(), "4".to_string()),
            ("TURUMBA_DISPATCH__LEASE_SECS".to_string(), LEASE_SECS.to_string()),
            ("TURUMBA_DISPATCH__BATCH".to_string(), DISPATCH_BATCH.to_string()),
            ("TURUMBA_DISPATCH__LOOPS".to_string(), DISPATCH_LOOPS.to_string()),
            ("TURUMBA_DISPATCH__FANOUT_LEASE_SECS".to_string(), LEASE_SECS.to_string()),
        ];
        let amqp = amqp.map(|url| (url, format!("fault_{}_", &uuid::Uuid::new_v4().simple().to_string()[..8])));
        if let Some((url, prefix)) = &amqp {
            env.push(("AMQP_URL".into(), url.clone()));
            env.push(("TURUMBA_EVENTS__AMQP_PREFIX".into(), prefix.clone()));
        }
        let data_dir = dir.path().to_path_buf();
        Stack {
            dir,
            db_url,
            data_dir,
            env,
            launcher: Vec::new(),
            admin_launcher: Vec::new(),
            amqp,
            servers: Vec::new(),
            http: reqwest::Client::new(),
        }
    }

    pub fn set(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.to_string()));
    }

    /// Starts `turumba serve --role <role>` and waits until it answers `/healthz`; returns its index.
    pub async fn start(&mut self, role: &'static str) -> usize {
        let port = free_port();
        let log = self.dir.path().join(format!("{role}-{port}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = through(&self.launcher)
            .args(["serve", "--role", role])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("TURUMBA_PORT", port.to_string())
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("turumba starts");
        self.servers.push(Server { role, port, child, log, killed: false });
        let i = self.servers.len() - 1;
        self.ready(i).await;
        i
    }

    pub async fn ready(&mut self, i: usize) {
        let url = format!("http://127.0.0.1:{}/healthz", self.servers[i].port);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            assert!(self.servers[i].alive(), "{} exited:\n{}", self.servers[i].role, self.servers[i].log());
            if self.http.get(&url).send().await.is_ok_and(|r| r.status() == 200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{} did not answer /healthz:\n{}", self.servers[i].role, self.servers[i].log());
    }

    /// Kills server `i` with SIGKILL and starts the same role again (a new port); returns its index.
    pub async fn kill_and_restart(&mut self, i: usize) -> usize {
        self.servers[i].kill();
        let role = self.servers[i].role;
        self.start(role).await
    }

    /// The newest server with the API (role `api` or `all`) that was not killed.
    pub fn api(&self) -> String {
        let s =
            self.servers.iter().rev().find(|s| !s.killed && matches!(s.role, "api" | "all")).expect("an API server");
        format!("http://127.0.0.1:{}", s.port)
    }

    /// Whether every server that was not killed on purpose still runs.
    pub fn all_alive(&mut self) -> bool {
        self.servers.iter_mut().filter(|s| !s.killed).all(Server::alive)
    }

    /// `turumba admin …` on the servers' database, through `admin_launcher`: (success, stdout).
    pub fn admin(&self, args: &[&str]) -> (bool, String) {
        let out = through(&self.admin_launcher)
            .arg("admin")
            .args(args)
            .env("DATABASE_URL", &self.db_url)
            .env("TURUMBA_DATA_DIR", &self.data_dir)
            .env("TURUMBA_LOG", "warn")
            .output()
            .expect("turumba admin runs");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A verified user made by `turumba admin create-user`, signed in through the API.
    pub async fn sign_in(&self) -> Client {
        self.sign_in_as("faults@example.com", "fault password").await
    }

    pub async fn sign_in_as(&self, email: &str, password: &str) -> Client {
        let args = ["create-user", "--email", email, "--password", password, "--account-name", "Faults"];
        let (ok, out) = self.admin(&args);
        assert!(ok, "admin create-user: {out}");
        self.log_in(email, password).await
    }

    /// A client signed in through `POST /v1/auth/login`.
    pub async fn log_in(&self, email: &str, password: &str) -> Client {
        let mut c = Client { http: self.http.clone(), base: self.api(), token: String::new() };
        let (s, d) = c.call("POST", "/v1/auth/login", Some(json!({"email": email, "password": password}))).await;
        assert_eq!(s, 200, "{d}");
        c.token = d["data"]["access_token"].as_str().unwrap().to_string();
        c
    }

    pub async fn db(&self) -> DatabaseConnection {
        Database::connect(self.db_url.clone()).await.expect("the test reads the database")
    }

    /// Once the work is done, nothing waits on the broker: every built-in consumer's queue has its
    /// reader and is empty, the dead-letter queue is empty, and the queues earlier builds declared
    /// without a reader (each kept every event routed to it for ever) are not declared.
    pub async fn broker_holds_nothing(&self) {
        let (url, prefix) = self.amqp.as_ref().expect("a stack with a broker");
        let a = turumba::modules::events::Amqp::new(url, prefix, 10, 5, true);
        for q in turumba::app::consumer_queues() {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let stats = a.queue_stats(q).await;
                if matches!(stats, Ok((0, readers)) if readers >= 1) {
                    break;
                }
                assert!(Instant::now() < deadline, "queue {q}: (messages, consumers) = {stats:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        assert_eq!(a.queue_stats("messaging.dlq").await, Ok((0, 0)), "nothing dead-lettered");
        let mut unread = vec!["group_message_processing", "scheduled_message_processing", "message.status.update"];
        unread.extend(["webhook.inbound", "message.dispatch.telegram", "message.dispatch.sms"]);
        for q in unread {
            assert!(a.queue_stats(q).await.is_err(), "a queue nobody reads was declared: {q}");
        }
    }

    /// Stops every server and removes the broker topology of this run.
    pub async fn finish(mut self) {
        for s in &mut self.servers {
            s.kill();
        }
        if let Some((url, prefix)) = &self.amqp {
            let a = turumba::modules::events::Amqp::new(url, prefix, 10, 5, true);
            let _ = a.delete_topology(&turumba::app::consumer_queues()).await;
        }
    }
}

std::thread_local! {
    /// What the last panic on this thread said (see [`remember_panics`]).
    static LAST_PANIC: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Keeps each thread's last panic message, so a failed test can say it again after the servers' logs
/// (printed while unwinding, they would otherwise bury it).
fn remember_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let before = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            LAST_PANIC.with(|p| *p.borrow_mut() = info.to_string());
            before(info);
        }));
    });
}

impl Drop for Stack {
    fn drop(&mut self) {
        for s in &mut self.servers {
            s.kill();
            // A failed test shows what each server logged last.
            if std::thread::panicking() {
                let log = s.log();
                eprintln!(
                    "--- {} (port {}) log, last lines:\n{}",
                    s.role,
                    s.port,
                    &log[log.len().saturating_sub(6000)..]
                );
            }
        }
        if std::thread::panicking() {
            LAST_PANIC.with(|p| eprintln!("--- the failure: {}", p.borrow()));
        }
    }
}

/// The API as a web app calls it.
#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
}

impl Client {
    /// (status, body); a transport failure is status 0 (a request that got no answer at all).
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req =
            self.http.request(method.parse().unwrap(), format!("{}{path}", self.base)).timeout(Duration::from_secs(60));
        if !self.token.is_empty() {
            req = req.bearer_auth(&self.token);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        match req.send().await {
            Ok(r) => {
                let s = r.status().as_u16();
                (s, r.json().await.unwrap_or(Value::Null))
            }
            Err(e) => (0, json!({"transport": e.to_string()})),
        }
    }

    pub async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (s, d) = self.call(method, path, body).await;
        assert!((200..300).contains(&s), "{method} {path} → {s} {d}");
        d["data"].clone()
    }
}

impl Client {
    /// Repeats `POST path` until it answers 201, for at most `secs`: the created resource.
    pub async fn post_until_created(&self, path: &str, body: Value, secs: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let (s, d) = self.call("POST", path, Some(body.clone())).await;
            if s == 201 {
                return d["data"].clone();
            }
            assert!(Instant::now() < deadline, "POST {path} never answered 201 in {secs} s; last: {s} {d}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

pub async fn count(db: &DatabaseConnection, sql: &str) -> i64 {
    let row = db.query_one_raw(Statement::from_string(db.get_database_backend(), sql)).await.unwrap().unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}
