//! Test support: a database per test, the real `identity` binary on an
//! ephemeral port, clients, and a TCP proxy that can cut the database off.
//! Set-up that more than one test file needs lives here, never copied.

#![allow(dead_code)]

pub mod better_auth;
mod client;
mod jwt;
mod metrics;
pub mod pgbouncer;
pub mod pki;
pub mod proxy;
mod server;
mod tls;
pub mod tls_postgres;
mod well_known;
mod wire;

pub use client::*;
pub use jwt::*;
pub use metrics::*;
pub use server::*;
pub use tls::*;
pub use well_known::*;
pub use wire::*;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The grpcurl binary: $GRPCURL, the one `make tools` puts in .venv, or
/// the PATH's.
pub fn grpcurl() -> PathBuf {
    if let Ok(path) = std::env::var("GRPCURL") {
        return PathBuf::from(path);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/grpcurl");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("grpcurl")
    }
}

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
        Some(_) => pg_text(db, sql)
            .parse()
            .unwrap_or_else(|_| panic!("a number from {sql}")),
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

/// Runs `sql` on the test's PostgreSQL database and returns what it prints
/// (`psql -tA`: unaligned rows, one a line), trimmed.
pub fn pg_text(db: &TestDb, sql: &str) -> String {
    assert!(db.pg_name.is_some(), "psql reads PostgreSQL only: {sql}");
    let output = Command::new("psql")
        .arg(&db.url)
        .args(["-v", "ON_ERROR_STOP=1", "-tAc", sql])
        .output()
        .expect("psql runs");
    assert!(output.status.success(), "psql failed: {sql}");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// An address no other test uses, tagged `tag` for the reader.
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

/// The role that may read and change every profile.
pub const ADMIN: &str = "admin";

/// The revocation bound the replica tests configure (the default).
pub const MAX_STALENESS: Duration = Duration::from_secs(1);
/// Room for the polling call itself on a busy machine.
pub const SLACK: Duration = Duration::from_millis(500);

/// A well-formed id (the server's own kind, UUIDv7) that names nothing.
pub fn random_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// A timestamp as (seconds, nanos), to compare and order.
pub fn time(t: &Option<prost_types::Timestamp>) -> (i64, i32) {
    let t = t.as_ref().expect("a timestamp");
    (t.seconds, t.nanos)
}
