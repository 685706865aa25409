//! The real `identity` binary: a server on an ephemeral port (killed on
//! drop), start-ups that must be refused, the health service's answer, and
//! the `identity admin` commands run against a test's database.

use super::{TempDir, TestDb};
use identity::proto::v1::auth_service_client::AuthServiceClient;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_identity")
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
        Server::start_with_options(db, ServerOptions::default())
    }

    /// A server on `db` (and its data folder) with `options`.
    pub fn start_with_options(db: &TestDb, options: ServerOptions) -> Server {
        Server::start_with(&db.url, db.dir.path(), options)
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
        // A failing test shows what its server said last: a flake seen once
        // in CI explains itself there.
        if std::thread::panicking() {
            // Never a second panic while unwinding (it would abort).
            if let Ok(lines) = self.logs.lock() {
                eprintln!(
                    "--- the server's last log lines ---\n{}",
                    lines[lines.len().saturating_sub(80)..].join("\n")
                );
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the health service says of `service` ("" for the whole server);
/// UNKNOWN when it does not answer.
pub async fn health(server: &Server, service: &str) -> ServingStatus {
    HealthClient::new(server.channel().await)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .map(|r| r.into_inner().status())
        .unwrap_or(ServingStatus::Unknown)
}

/// `identity admin <args>` against `db`: success, stdout, stderr.
pub fn admin_command(db: &TestDb, args: &[&str]) -> (bool, String, String) {
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

/// Runs `identity admin issue-service-token --role <role>` against `db`.
pub fn issue_service_token(db: &TestDb, role: &str) -> String {
    let (ok, stdout, stderr) = admin_command(
        db,
        &[
            "issue-service-token",
            "--role",
            role,
            "--ttl",
            "10m",
            "--dev",
        ],
    );
    assert!(ok, "{stderr}");
    stdout.trim().to_owned()
}

/// Client id and secret, as `create-service-client` or
/// `rotate-service-client` print them.
pub struct Credentials {
    pub id: String,
    pub secret: String,
}

/// The credentials in what `create-service-client` or
/// `rotate-service-client` printed.
pub fn credentials(stdout: &str) -> Credentials {
    let value = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} in {stdout}"))
            .to_owned()
    };
    Credentials {
        id: value("IDENTITY_CLIENT_ID"),
        secret: value("IDENTITY_CLIENT_SECRET"),
    }
}
