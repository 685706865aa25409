//! Test support: a database per test, the real `identity` binary on an
//! ephemeral port, clients, and a TCP proxy that can cut the database off.

#![allow(dead_code)]

pub mod better_auth;
pub mod pgbouncer;
pub mod pki;
pub mod proxy;
pub mod tls_postgres;

use identity::proto::v1::auth_service_client::AuthServiceClient;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// The shared PostgreSQL server; each test gets a database of its own on it.
pub fn pg_admin_url() -> String {
    std::env::var("IDENTITY_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn pg_base(url: &str) -> &str {
    url.rsplit_once('/').map_or(url, |(base, _)| base)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// A fresh, empty database, dropped again at the end of the test.
pub struct TestDb {
    pub url: String,
    pg_name: Option<String>,
    pub dir: TempDir,
}

impl TestDb {
    pub fn new(backend: Backend) -> TestDb {
        let dir = TempDir::new();
        match backend {
            Backend::Sqlite => TestDb {
                url: format!("sqlite://{}", dir.path().join("identity.db").display()),
                pg_name: None,
                dir,
            },
            Backend::Postgres => {
                let name = format!("identity_test_{}", uuid::Uuid::new_v4().simple());
                psql(&format!("CREATE DATABASE {name}"));
                TestDb {
                    url: format!("{}/{name}", pg_base(&pg_admin_url())),
                    pg_name: Some(name),
                    dir,
                }
            }
        }
    }

    /// The URL with host and port replaced (to route through a proxy).
    pub fn url_via(&self, addr: std::net::SocketAddr) -> String {
        self.url_via_as(addr, self.pg_name())
    }

    /// The URL of database `name` at `addr` (e.g. a PgBouncer alias).
    pub fn url_via_as(&self, addr: std::net::SocketAddr, name: &str) -> String {
        let admin = pg_admin_url();
        let (scheme, rest) = admin.split_once("://").unwrap();
        let user = rest.split_once('@').map_or("", |(user, _)| user);
        format!("{scheme}://{user}@{addr}/{name}")
    }

    /// The PostgreSQL database's name.
    pub fn pg_name(&self) -> &str {
        self.pg_name
            .as_deref()
            .expect("only PostgreSQL goes through a proxy")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = &self.pg_name {
            psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

fn psql(sql: &str) {
    let status = Command::new("psql")
        .arg(pg_admin_url())
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .stdout(Stdio::null())
        .status()
        .expect("psql runs (make test installs PostgreSQL)");
    assert!(status.success(), "psql failed: {sql}");
}

/// A temporary folder removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        let path =
            std::env::temp_dir().join(format!("identity-e2e-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_identity")
}

/// `identity admin <args>` against `db`: success, stdout, stderr.
pub fn admin(db: &TestDb, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(binary())
        .arg("admin")
        .args(args)
        .env_clear()
        .env("IDENTITY_DATABASE_URL", &db.url)
        .env("IDENTITY_DATA_DIR", db.dir.path())
        .output()
        .expect("the identity binary runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs `identity serve --dev` with only `env` (and a fresh data folder),
/// expecting it to stop before serving: its exit code and its output
/// (stdout then stderr). A server that starts anyway is killed after 60 s.
pub fn refused_start(env: &[(&str, &str)]) -> (Option<i32>, String) {
    refused_start_as(&["serve", "--dev"], env)
}

/// [`refused_start`] without `--dev`: the production checks apply.
pub fn refused_production_start(env: &[(&str, &str)]) -> (Option<i32>, String) {
    refused_start_as(&["serve"], env)
}

fn refused_start_as(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = TempDir::new();
    let mut command = Command::new(binary());
    command
        .args(args)
        .env_clear()
        .env("IDENTITY_DATA_DIR", dir.path())
        .env("IDENTITY_LISTEN_ADDR", "127.0.0.1:0");
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the identity binary starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

/// A running `identity serve`, killed on drop.
pub struct Server {
    child: Child,
    pub addr: std::net::SocketAddr,
    pub logs: Arc<Mutex<Vec<String>>>,
    pub data_dir: PathBuf,
}

/// How to start a server.
pub struct ServerOptions {
    pub dev: bool,
    pub env: Vec<(String, String)>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            dev: true,
            env: Vec::new(),
        }
    }
}

impl ServerOptions {
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_owned(), value.into()));
        self
    }
}

impl Server {
    pub fn start(db: &TestDb) -> Server {
        Server::start_with(&db.url, db.dir.path(), ServerOptions::default())
    }

    pub fn start_with(database_url: &str, data_dir: &Path, options: ServerOptions) -> Server {
        let mut command = Command::new(binary());
        command.arg("serve");
        if options.dev {
            command.arg("--dev");
        }
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("IDENTITY_DATABASE_URL", database_url)
            .env("IDENTITY_LISTEN_ADDR", "127.0.0.1:0")
            .env("IDENTITY_DATA_DIR", data_dir)
            .env("IDENTITY_LOG_FORMAT", "json")
            .env("IDENTITY_BCRYPT_COST", "4")
            .env("IDENTITY_HEALTH_INTERVAL", "200ms")
            .env("IDENTITY_DATABASE_TIMEOUT", "1s")
            .env("IDENTITY_SHUTDOWN_GRACE", "5s")
            // Tests hammer one address; the rate-limit tests switch them on.
            .env("IDENTITY_RATE_LIMIT_ENABLED", "false");
        for (key, value) in &options.env {
            command.env(key, value);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the identity binary starts");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let sink = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // Recorded before the start is signalled, so a test that
                // reads the logs right after start sees this line.
                let serving = line.contains("\"serving gRPC\"");
                sink.lock().unwrap().push(line.clone());
                if serving {
                    let _ = tx.send(line);
                }
            }
        });
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "server did not start; logs:\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
        };
        let json: serde_json::Value = serde_json::from_str(&line).unwrap();
        let addr = json["address"]
            .as_str()
            .expect("address in the serving line")
            .parse()
            .unwrap();
        Server {
            child,
            addr,
            logs,
            data_dir: data_dir.to_owned(),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The server process's resident memory, in KiB (Linux).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the server is running");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .unwrap()
            .connect()
            .await
            .expect("connects to the server")
    }

    pub async fn auth(&self) -> AuthServiceClient<Channel> {
        AuthServiceClient::new(self.channel().await)
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Tests that load the machine on purpose (floods, busy loops) or that
/// need sub-second answers from a backend (Redis's 250 ms budget) take
/// turns: run side by side, one's load fails the other's timing.
pub async fn machine_to_myself() -> tokio::sync::MutexGuard<'static, ()> {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    TURN.lock().await
}

/// Polls `check` until it is true or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `sql` on the test's database (either backend) and returns the
/// first column of the first row as a number (`SELECT count(*) ...`).
pub fn scalar(db: &TestDb, sql: &str) -> i64 {
    match &db.pg_name {
        Some(_) => {
            let output = Command::new("psql")
                .arg(&db.url)
                .args(["-v", "ON_ERROR_STOP=1", "-tAc", sql])
                .output()
                .expect("psql runs");
            assert!(output.status.success(), "psql failed: {sql}");
            String::from_utf8_lossy(&output.stdout)
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("a number from {sql}"))
        }
        None => {
            use diesel::{Connection as _, RunQueryDsl as _};
            #[derive(diesel::QueryableByName)]
            struct Row {
                #[diesel(sql_type = diesel::sql_types::BigInt)]
                n: i64,
            }
            let path = db.url.strip_prefix("sqlite://").expect("a SQLite URL");
            let mut conn = diesel::SqliteConnection::establish(path).expect("opens the file");
            diesel::sql_query(format!("SELECT ({sql}) AS n"))
                .get_result::<Row>(&mut conn)
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .n
        }
    }
}

/// Runs a statement on the test's database (either backend), behind the
/// service's back; returns the rows it changed on SQLite (0 on PostgreSQL).
pub fn execute(db: &TestDb, sql: &str) -> usize {
    match &db.pg_name {
        Some(_) => {
            let status = Command::new("psql")
                .arg(&db.url)
                .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
                .stdout(Stdio::null())
                .status()
                .expect("psql runs");
            assert!(status.success(), "psql failed: {sql}");
            0
        }
        None => {
            use diesel::{Connection as _, RunQueryDsl as _};
            let path = db.url.strip_prefix("sqlite://").expect("a SQLite URL");
            let mut conn = diesel::SqliteConnection::establish(path).expect("opens the file");
            diesel::sql_query(sql)
                .execute(&mut conn)
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
        }
    }
}

/// Generates `count` distinct emails for one test.
pub fn email(tag: &str) -> String {
    format!(
        "{tag}.{}@example.com",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

pub const PASSWORD: &str = "correct horse battery staple";

/// Runs the same test body on both backends.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::support::Backend::Postgres).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::support::Backend::Sqlite).await
                }
            }
        )*
    };
}

/// Registers a local account with `PASSWORD`; returns its first token pair.
pub async fn register(
    auth: &mut AuthServiceClient<Channel>,
    email: &str,
) -> identity::proto::v1::TokenPair {
    auth.register(identity::proto::v1::RegisterRequest {
        email: email.to_owned(),
        password: PASSWORD.into(),
        display_name: String::new(),
    })
    .await
    .expect("registration succeeds")
    .into_inner()
    .tokens
    .expect("a token pair")
}

/// Logs in with `PASSWORD`; returns the new session's token pair.
pub async fn login(
    auth: &mut AuthServiceClient<Channel>,
    email: &str,
) -> identity::proto::v1::TokenPair {
    auth.login(identity::proto::v1::LoginRequest {
        email: email.to_owned(),
        password: PASSWORD.into(),
        ..Default::default()
    })
    .await
    .expect("login succeeds")
    .into_inner()
    .tokens
    .expect("a token pair")
}

/// What ValidateToken says of `token`.
pub async fn active(auth: &mut AuthServiceClient<Channel>, token: &str) -> bool {
    auth.validate_token(identity::proto::v1::ValidateTokenRequest {
        access_token: token.to_owned(),
    })
    .await
    .expect("ValidateToken answers")
    .into_inner()
    .active
}

/// A request carrying `authorization: Bearer <token>`.
pub fn bearer<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}")
            .parse()
            .expect("a token is a valid header value"),
    );
    request
}

/// A request as a trusted proxy forwards it for client `addr`
/// (`x-forwarded-for`; the server must list 127.0.0.1 in
/// IDENTITY_TRUSTED_PROXIES).
pub fn forwarded_for<T>(addr: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "x-forwarded-for",
        addr.parse().expect("an address is a valid header value"),
    );
    request
}

/// Runs `identity admin issue-service-token --role <role>` against `db`.
pub fn issue_service_token(db: &TestDb, role: &str) -> String {
    let output = std::process::Command::new(binary())
        .args([
            "admin",
            "issue-service-token",
            "--role",
            role,
            "--ttl",
            "10m",
            "--dev",
        ])
        .env_clear()
        .env("IDENTITY_DATABASE_URL", &db.url)
        .env("IDENTITY_DATA_DIR", db.dir.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// The names of the fields a BadRequest answer names.
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt as _;
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

/// INVALID_ARGUMENT naming exactly `field`.
#[track_caller]
pub fn assert_invalid(status: &tonic::Status, field: &str, case: &str) {
    assert_eq!(
        status.code(),
        tonic::Code::InvalidArgument,
        "{case}: {status:?}"
    );
    assert_eq!(violated_fields(status), [field], "{case}: {status:?}");
}

/// Polls ValidateToken (back to back, no fixed sleep) until `token` is
/// refused; the time it took from `since`. Fails past `limit`.
pub async fn refused_within(
    auth: &mut AuthServiceClient<Channel>,
    token: &str,
    since: Instant,
    limit: Duration,
) -> Duration {
    loop {
        if !active(auth, token).await {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < limit,
            "a revoked session still validates after {:?}",
            since.elapsed()
        );
        tokio::task::yield_now().await;
    }
}
