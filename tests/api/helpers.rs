//! `TestApp::spawn(backend)` and typed request helpers.

use std::path::PathBuf;

use reqwest::{Method, StatusCode};
use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};
use turumba::app::{Application, BuildOptions};
use turumba::config::Settings;

#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite,
    Postgres(String),
}

impl Backend {
    /// The PostgreSQL backend when `TURUMBA_TEST_DATABASE_URL` is set. Without it the test is skipped
    /// with a printed reason, except in CI (`CI` set), where skipping is a failure.
    pub fn postgres() -> Option<Backend> {
        match std::env::var("TURUMBA_TEST_DATABASE_URL") {
            Ok(url) if !url.is_empty() => Some(Backend::Postgres(url)),
            _ => {
                if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") {
                    panic!("TURUMBA_TEST_DATABASE_URL must be set in CI: the PostgreSQL suite may not be skipped");
                }
                eprintln!("skipped: set TURUMBA_TEST_DATABASE_URL=postgres://… to run this test on PostgreSQL");
                None
            }
        }
    }
}

/// Runs each listed `async fn name(backend: Backend)` once on SQLite and once on PostgreSQL.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(b) = $crate::helpers::Backend::postgres() {
                        super::$name(b).await
                    }
                }
            )*
        }
    };
}

/// A fresh, empty database for one test: a temp SQLite file, or a new PostgreSQL database.
pub async fn fresh_database(backend: &Backend, dir: &std::path::Path) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}/turumba.db", dir.display()),
        Backend::Postgres(base) => {
            let name = format!("turumba_t_{}", uuid::Uuid::new_v4().simple());
            let admin = Database::connect(base.clone()).await.expect("connect to TURUMBA_TEST_DATABASE_URL");
            admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("create test database");
            admin.close().await.ok();
            let (prefix, _) = base.rsplit_once('/').expect("database URL has a path");
            format!("{prefix}/{name}")
        }
    }
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub state: actix_web::web::Data<turumba::app::AppState>,
    pub settings: Settings,
    pub handle: actix_web::dev::ServerHandle,
    _dir: tempfile::TempDir,
}

pub struct TestUser {
    pub email: String,
    pub password: String,
    pub user_id: String,
    pub account_id: String,
    pub token: String,
    pub refresh_token: String,
}

pub struct Resp {
    pub status: StatusCode,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Resp {
    pub fn data(&self) -> &Value {
        &self.body["data"]
    }
    pub fn id(&self) -> String {
        self.body["data"]["id"].as_str().expect("data.id").to_string()
    }
    /// Asserts status and, for errors, the envelope shape and code.
    #[track_caller]
    pub fn expect(&self, status: u16, code: Option<&str>) -> &Self {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.body);
        if status >= 400 {
            assert_eq!(self.body["success"], false, "error envelope: {}", self.body);
            assert!(self.body["message"].is_string(), "error envelope: {}", self.body);
            assert!(self.body["details"].is_object(), "error envelope: {}", self.body);
            if let Some(code) = code {
                assert_eq!(self.body["error"], code, "error code; body: {}", self.body);
            }
        } else if status != 204 {
            assert_eq!(self.body["success"], true, "success envelope: {}", self.body);
        }
        self
    }
    pub fn error_fields(&self) -> Vec<String> {
        self.body["details"]["errors"]
            .as_array()
            .map(|a| a.iter().map(|e| e["field"].as_str().unwrap_or_default().to_string()).collect())
            .unwrap_or_default()
    }
}

pub struct Req<'a> {
    app: &'a TestApp,
    builder: reqwest::RequestBuilder,
}

impl Req<'_> {
    pub fn token(mut self, token: &str) -> Self {
        self.builder = self.builder.bearer_auth(token);
        self
    }
    pub fn account(mut self, account_id: &str) -> Self {
        self.builder = self.builder.header("X-Account-Id", account_id);
        self
    }
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.builder = self.builder.header(k, v);
        self
    }
    pub fn query(mut self, pairs: &[(&str, String)]) -> Self {
        self.builder = self.builder.query(pairs);
        self
    }
    pub fn json(mut self, body: Value) -> Self {
        self.builder = self.builder.json(&body);
        self
    }
    pub fn raw(mut self, content_type: &str, body: impl Into<reqwest::Body>) -> Self {
        self.builder = self.builder.header("content-type", content_type).body(body);
        self
    }
    pub async fn send(self) -> Resp {
        let _ = self.app;
        let res = self.builder.send().await.expect("request sent");
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.expect("body read");
        let body =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        Resp { status, body, headers }
    }
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> TestApp {
        Self::spawn_full(backend, tweak, BuildOptions::default()).await
    }

    pub async fn spawn_full(backend: Backend, tweak: impl FnOnce(&mut Settings), opts: BuildOptions) -> TestApp {
        // TURUMBA_TEST_LOG=warn (an env filter) shows the server's log lines in the test output.
        if let Ok(filter) = std::env::var("TURUMBA_TEST_LOG") {
            let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let url = fresh_database(&backend, dir.path()).await;
        let mut settings = Settings::for_test(dir.path(), &url);
        settings.database.max_connections = 5;
        settings.http.workers = 1;
        settings.events.relay_poll_interval_ms = 100;
        tweak(&mut settings);
        Self::serve(settings, opts, dir).await
    }

    /// Builds the application with `settings` and serves it in the background.
    async fn serve(settings: Settings, opts: BuildOptions, dir: tempfile::TempDir) -> TestApp {
        let app = Application::build(settings.clone(), opts).await.expect("app builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        let (state, handle) = (app.state(), app.handle());
        tokio::spawn(app.run_until_stopped());
        TestApp { address, client: reqwest::Client::new(), state, settings, handle, _dir: dir }
    }

    /// A second server of the same deployment (another process): this app's database and secret key,
    /// serving the API only (its relay, dispatcher and scheduler off).
    pub async fn spawn_beside(&self, tweak: impl FnOnce(&mut Settings)) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut settings = self.settings.clone();
        tweak(&mut settings);
        let opts = BuildOptions { migrate: false, relay: false, dispatch: false, ..Default::default() };
        Self::serve(settings, opts, dir).await
    }

    pub fn data_dir(&self) -> PathBuf {
        self.settings.data_dir.clone()
    }

    pub fn req(&self, method: Method, path: &str) -> Req<'_> {
        Req { app: self, builder: self.client.request(method, format!("{}{}", self.address, path)) }
    }
    pub fn get(&self, path: &str) -> Req<'_> {
        self.req(Method::GET, path)
    }
    pub fn post(&self, path: &str) -> Req<'_> {
        self.req(Method::POST, path)
    }
    pub fn patch(&self, path: &str) -> Req<'_> {
        self.req(Method::PATCH, path)
    }
    pub fn delete(&self, path: &str) -> Req<'_> {
        self.req(Method::DELETE, path)
    }

    /// A verified user with their own account (created like `turumba admin create-user`), logged in.
    pub async fn user(&self, name: &str) -> TestUser {
        let email = format!("{name}-{}@example.com", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let password = "correct horse battery".to_string();
        self.state
            .accounts
            .create_verified_user(&email, &password, name, &format!("{name} org"))
            .await
            .expect("user created");
        self.login(&email, &password).await
    }

    pub async fn login(&self, email: &str, password: &str) -> TestUser {
        let r = self.post("/v1/auth/login").json(json!({"email": email, "password": password})).send().await;
        r.expect(200, None);
        let d = r.data();
        TestUser {
            email: email.to_string(),
            password: password.to_string(),
            user_id: d["user"]["id"].as_str().unwrap().to_string(),
            account_id: d["user"]["default_account_id"].as_str().unwrap_or_default().to_string(),
            token: d["access_token"].as_str().unwrap().to_string(),
            refresh_token: d["refresh_token"].as_str().unwrap().to_string(),
        }
    }

    /// Creates a role with no permissions in the caller's active account; asserts the 201 and returns it.
    pub async fn create_role(&self, token: &str, name: impl std::fmt::Display) -> Resp {
        let r =
            self.post("/v1/roles").token(token).json(json!({"name": name.to_string(), "permissions": {}})).send().await;
        r.expect(201, None);
        r
    }

    /// Role id by name in an account.
    pub async fn role_id(&self, user: &TestUser, account_id: &str, name: &str) -> String {
        self.role_id_with(&user.token, account_id, name).await
    }

    pub async fn role_id_with(&self, token: &str, account_id: &str, name: &str) -> String {
        let r = self.get(&format!("/v1/roles?filter=name:eq:{name}")).token(token).account(account_id).send().await;
        r.expect(200, None);
        r.data()[0]["id"].as_str().expect("role exists").to_string()
    }

    /// Adds `member` to `owner`'s account with the named role.
    pub async fn add_member(&self, owner: &TestUser, member: &TestUser, role: &str) {
        let role_id = self.role_id(owner, &owner.account_id, role).await;
        self.post(&format!("/v1/accounts/{}/members", owner.account_id))
            .token(&owner.token)
            .json(json!({"email": member.email, "role_id": role_id}))
            .send()
            .await
            .expect(201, None);
    }
}

/// Polls `check` every 50 ms until it returns true or `secs` pass; panics with `what` on timeout.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("timed out after {secs}s waiting for: {what}");
}

/// The RabbitMQ URL for tests, or `None` (skip, printed) when unset outside CI.
pub fn amqp_url() -> Option<String> {
    match std::env::var("TURUMBA_TEST_AMQP_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") {
                panic!("TURUMBA_TEST_AMQP_URL must be set in CI: the RabbitMQ suite may not be skipped");
            }
            eprintln!("skipped: set TURUMBA_TEST_AMQP_URL=amqp://… to run this test against RabbitMQ");
            None
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { handle.stop(false).await });
        }
    }
}

/// A TCP forwarder in front of a real service, switchable off and on: a broker outage on demand.
pub struct Proxy {
    pub port: u16,
    enabled: std::sync::Arc<std::sync::atomic::AtomicBool>,
    links: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: String) -> Proxy {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
        let port = listener.local_addr().unwrap().port();
        let enabled = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let links: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>> = Default::default();
        let (e, l) = (enabled.clone(), links.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !e.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                l.lock().unwrap().push(task.abort_handle());
            }
        });
        Proxy { port, enabled, links, accept }
    }

    /// Refuses new connections and cuts the open ones.
    pub fn down(&self) {
        self.enabled.store(false, std::sync::atomic::Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    pub fn up(&self) {
        self.enabled.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.down();
        self.accept.abort();
    }
}
