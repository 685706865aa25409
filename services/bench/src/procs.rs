//! Servers under test (child processes on loopback), fresh PostgreSQL
//! databases, and what /proc tells about the machine and a process.

use anyhow::{Context as _, bail};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

const KEPT_LOG_LINES: usize = 200;

/// A running server, killed on drop.
pub struct Proc {
    child: Child,
    pub addr: SocketAddr,
    logs: Arc<Mutex<VecDeque<String>>>,
    /// What it printed until it was ready, kept whole: the ring of `logs`
    /// forgets the start-up lines (the metrics address among them) once a
    /// scenario's set-up has logged 200 lines of its own.
    startup: Vec<String>,
}

fn keep(logs: &Arc<Mutex<VecDeque<String>>>, line: String) {
    // Lines of a log: a panic elsewhere leaves them usable.
    let mut logs = logs.lock().unwrap_or_else(PoisonError::into_inner);
    if logs.len() == KEPT_LOG_LINES {
        logs.pop_front();
    }
    logs.push_back(line);
}

impl Proc {
    /// Starts `command` and waits for the line `ready` recognises (which
    /// yields the listening address). Output is drained for ever after, so
    /// a chatty server never blocks on a full pipe.
    fn spawn(
        mut command: Command,
        what: &str,
        ready: impl Fn(&str) -> Option<SocketAddr> + Send + 'static,
    ) -> anyhow::Result<Proc> {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {what}"))?;
        let logs = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().context("stdout was not piped")?;
        let sink = Arc::clone(&logs);
        std::thread::spawn(move || {
            let mut startup = Some(Vec::new());
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(lines) = startup.as_mut() {
                    lines.push(line.clone());
                    if let Some(addr) = ready(&line) {
                        let _ = tx.send((addr, startup.take().unwrap_or_default()));
                    }
                }
                keep(&sink, line);
            }
        });
        let stderr = child.stderr.take().context("stderr was not piped")?;
        let sink = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                keep(&sink, line);
            }
        });
        let mut proc = Proc {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            logs,
            startup: Vec::new(),
        };
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok((addr, startup)) => {
                proc.addr = addr;
                proc.startup = startup;
                Ok(proc)
            }
            Err(_) => bail!("{what} did not start; its output:\n{}", proc.tail()),
        }
    }

    /// `identity serve --dev` on an ephemeral loopback port, rate limits
    /// off, JSON logs at the default level.
    pub fn identity(
        bin: &Path,
        database_url: &str,
        data_dir: &Path,
        env: &[(&str, String)],
    ) -> anyhow::Result<Proc> {
        let mut command = Command::new(bin);
        command
            .args(["serve", "--dev"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("IDENTITY_DATABASE_URL", database_url)
            .env("IDENTITY_LISTEN_ADDR", "127.0.0.1:0")
            .env("IDENTITY_DATA_DIR", data_dir)
            .env("IDENTITY_LOG_FORMAT", "json")
            .env("IDENTITY_RATE_LIMIT_ENABLED", "false");
        for (key, value) in env {
            command.env(key, value);
        }
        Proc::spawn(command, "identity", |line| {
            if !line.contains("\"serving gRPC\"") {
                return None;
            }
            let json: serde_json::Value = serde_json::from_str(line).ok()?;
            json["address"].as_str()?.parse().ok()
        })
    }

    /// The bare tonic echo server.
    pub fn echo(bin: &Path) -> anyhow::Result<Proc> {
        let mut command = Command::new(bin);
        command.args(["--listen", "127.0.0.1:0"]);
        Proc::spawn(command, "echo-server", |line| {
            line.strip_prefix("listening on ")?.trim().parse().ok()
        })
    }

    /// The e2e tests' Better-Auth (`node server.mjs` in `dir`: an in-memory
    /// SQLite, email and password sign-in), on an ephemeral loopback port.
    /// Started as the e2e support starts it: a clean environment, the PATH.
    pub fn better_auth(dir: &Path) -> anyhow::Result<Proc> {
        let mut command = Command::new("node");
        command
            .arg("server.mjs")
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            // What a deployment runs it with (the e2e tests say `test`).
            .env("NODE_ENV", "production");
        Proc::spawn(command, "Better-Auth (node server.mjs)", |line| {
            let json: serde_json::Value = serde_json::from_str(line).ok()?;
            let port = u16::try_from(json["port"].as_u64()?).ok()?;
            Some(SocketAddr::from(([127, 0, 0, 1], port)))
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory now, in MiB.
    pub fn rss_mb(&self) -> Option<f64> {
        status_kb(self.pid(), "VmRSS:").map(|kb| kb as f64 / 1024.0)
    }

    /// Peak resident memory so far, in MiB.
    pub fn peak_rss_mb(&self) -> Option<f64> {
        status_kb(self.pid(), "VmHWM:").map(|kb| kb as f64 / 1024.0)
    }

    /// The admin port (`/metrics`) the server announced, if it serves one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.startup.iter().find_map(|line| {
            if !line.contains("\"serving metrics on /metrics\"") {
                return None;
            }
            let json: serde_json::Value = serde_json::from_str(line).ok()?;
            json["address"].as_str()?.parse().ok()
        })
    }

    /// The last lines the server wrote.
    pub fn tail(&self) -> String {
        let logs = self.logs.lock().unwrap_or_else(PoisonError::into_inner);
        logs.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A fresh PostgreSQL database, dropped on drop.
pub struct Database {
    admin_url: String,
    name: String,
    pub url: String,
}

fn psql(admin_url: &str, sql: &str) -> anyhow::Result<()> {
    let status = Command::new("psql")
        .arg(admin_url)
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .stdout(Stdio::null())
        .status()
        .context("psql (the PostgreSQL client) is needed: `make postgres` installs it")?;
    if !status.success() {
        bail!("psql failed: {sql}");
    }
    Ok(())
}

/// Refuses anything but a loopback database: the bench sends no traffic
/// off this machine.
pub fn check_loopback(url: &str) -> anyhow::Result<()> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    if matches!(host, "127.0.0.1" | "localhost" | "::1") {
        Ok(())
    } else {
        bail!("the bench only talks to a loopback PostgreSQL, not `{host}`")
    }
}

impl Database {
    pub fn create(admin_url: &str) -> anyhow::Result<Database> {
        check_loopback(admin_url)?;
        let name = format!("identity_bench_{}", uuid::Uuid::new_v4().simple());
        psql(admin_url, &format!("CREATE DATABASE {name}"))?;
        let base = admin_url.rsplit_once('/').map_or(admin_url, |(b, _)| b);
        Ok(Database {
            admin_url: admin_url.to_owned(),
            url: format!("{base}/{name}"),
            name,
        })
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = psql(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// A temporary folder, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> anyhow::Result<TempDir> {
        let path =
            std::env::temp_dir().join(format!("identity-bench-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path)?;
        Ok(TempDir(path))
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

/// What the report says about the machine.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu_model: String,
    pub memory_gib: f64,
    pub kernel: String,
}

impl Machine {
    pub fn probe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, m)| m.trim().to_owned())
            .unwrap_or_else(|| "unknown".into());
        let memory_gib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            })
            .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            memory_gib,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scenario's set-up (thousands of logins) logs far more than the
    /// ring keeps; the metrics address must survive it, or the scenario
    /// silently loses h2load and its ratio compares two generators.
    #[test]
    fn the_metrics_address_outlives_a_chatty_set_up() {
        let mut command = Command::new("sh");
        command.args([
            "-c",
            r#"echo '{"message":"serving metrics on /metrics","address":"127.0.0.1:9464"}'
               echo '{"message":"serving gRPC","address":"127.0.0.1:50051"}'
               i=0; while [ $i -lt 500 ]; do echo '{"message":"login"}'; i=$((i+1)); done
               sleep 5"#,
        ]);
        let proc = Proc::spawn(command, "a chatty server", |line| {
            if !line.contains("\"serving gRPC\"") {
                return None;
            }
            let json: serde_json::Value = serde_json::from_str(line).ok()?;
            json["address"].as_str()?.parse().ok()
        })
        .expect("starts");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !proc.tail().contains("\"login\"") || proc.tail().contains("serving gRPC") {
            assert!(std::time::Instant::now() < deadline, "{}", proc.tail());
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(proc.metrics_addr(), "127.0.0.1:9464".parse().ok());
    }

    #[test]
    fn only_loopback_databases() {
        for ok in [
            "postgres://postgres@127.0.0.1:5432/postgres",
            "postgres://u:p@localhost/db",
            "postgresql://[::1]:5432/db",
            "postgres://127.0.0.1/db?sslmode=disable",
        ] {
            assert!(check_loopback(ok).is_ok(), "{ok}");
        }
        for bad in [
            "postgres://postgres@db.example.com:5432/postgres",
            "postgres://u:p@10.0.0.5/db",
            "postgres://127.0.0.1.evil.example/db",
        ] {
            assert!(check_loopback(bad).is_err(), "{bad}");
        }
    }
}
