//! `bench`: the load benchmark of `make bench`. Every scenario starts a
//! fresh server (a new PostgreSQL database, a new process) on loopback and
//! drives it over N HTTP/2 connections with M concurrent streams; the echo
//! scenario measures a bare tonic server built in this workspace, the
//! ceiling any unary RPC can reach here. Prints a table with the ratios that
//! matter and writes everything as JSON.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

use anyhow::{Context as _, bail};
use clap::Parser;
use futures_util::StreamExt as _;
use futures_util::future::BoxFuture;
use identity::proto::v1::auth_service_client::AuthServiceClient;
use identity::proto::v1::profile_service_client::ProfileServiceClient;
use identity::proto::v1::*;
use identity_bench::echo::EchoRequest;
use identity_bench::echo::echo_service_client::EchoServiceClient;
use identity_bench::load::{self, Failure, Plan, label};
use identity_bench::procs::{Database, Machine, Proc, TempDir, check_loopback};
use identity_bench::stats::{Recorder, Summary, percentile_ms};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};

const PASSWORD: &str = "correct horse battery staple";
/// The bcrypt cost of servers whose measurement runs no bcrypt (it only
/// makes their set-up logins quick).
const SETUP_COST: u32 = 4;

/// Measured in alternation, round by round (see `side_by_side`).
const SIDE_BY_SIDE: &[&str] = &["echo", "validate", "get_profile"];

const ALL: &[&str] = &[
    "echo",
    "validate",
    "validate_mixed",
    "validate_nocache",
    "get_profile",
    "refresh",
    "login",
    "validate_under_login_flood",
    "revocation_propagation",
];

#[derive(Parser, Debug, Clone)]
#[command(
    name = "bench",
    about = "Load benchmark of the identity service against a bare tonic baseline"
)]
struct Args {
    /// Short run (under a minute): shorter windows, fewer sessions and samples.
    #[arg(long)]
    quick: bool,
    /// Measurement window per scenario [default: 10s; quick: 2s].
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Warm-up before each window, not recorded [default: 2s; quick: 500ms].
    #[arg(long, value_parser = humantime::parse_duration)]
    warmup: Option<Duration>,
    /// HTTP/2 connections per scenario.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Concurrent streams (calls in flight) across those connections.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// bcrypt cost of the login and flood scenarios (production minimum: 12).
    #[arg(long, default_value_t = 12)]
    bcrypt_cost: u32,
    /// Concurrent logins of the login scenario.
    #[arg(long, default_value_t = 8)]
    login_concurrency: usize,
    /// Concurrent logins of the flood.
    #[arg(long, default_value_t = 100)]
    flood_logins: usize,
    /// ValidateToken calls per second (open loop) of the flood comparison
    /// [default: a quarter of the validate scenario's rate, at most 5000].
    #[arg(long)]
    flood_rate: Option<f64>,
    /// What drives ValidateToken in the flood comparison: `h2load` (the
    /// figure of record: it costs the shared cores far less than a tonic
    /// client), `rust` (this process), or `auto` (h2load when on the PATH).
    #[arg(long, value_enum, default_value_t = Generator::Auto)]
    flood_generator: Generator,
    /// Sessions (tokens) in the validation pools [default: 1000; quick: 200].
    #[arg(long)]
    sessions: Option<usize>,
    /// Revocations measured by revocation_propagation [default: 200; quick: 40].
    #[arg(long)]
    samples: Option<usize>,
    /// Scenarios to run (comma-separated) [default: all].
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Worker threads of this load generator's runtime [default: one per
    /// core]. It shares the cores with the server it measures.
    #[arg(long)]
    client_threads: Option<usize>,
    /// Where the JSON goes.
    #[arg(long, default_value = "target/bench/results.json")]
    out: PathBuf,
    /// The identity binary [default: next to this one].
    #[arg(long)]
    identity_bin: Option<PathBuf>,
    /// The echo server binary [default: next to this one].
    #[arg(long)]
    echo_bin: Option<PathBuf>,
    /// Extra settings for every identity server (`KEY=VALUE`, repeatable),
    /// e.g. `--server-env IDENTITY_BCRYPT_THREADS=1` to compare.
    #[arg(long = "server-env", value_parser = parse_key_value)]
    server_env: Vec<(String, String)>,
    /// PostgreSQL to create the databases on (loopback only).
    #[arg(
        long,
        env = "IDENTITY_TEST_PG_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pg_url: String,
}

struct Env {
    args: Args,
    identity: PathBuf,
    echo: PathBuf,
    duration: Duration,
    warmup: Duration,
    sessions: usize,
    samples: usize,
}

impl Env {
    fn plan(&self, concurrency: usize) -> Plan {
        Plan {
            concurrency,
            warmup: self.warmup,
            duration: self.duration,
            rate: None,
        }
    }
}

/// One scenario's line in the report.
#[derive(Debug, Clone, Serialize)]
struct Row {
    scenario: String,
    connections: usize,
    concurrency: usize,
    /// Open-loop rate, when fixed.
    rate: Option<f64>,
    #[serde(flatten)]
    summary: Summary,
    rss_idle_mb: Option<f64>,
    rss_load_mb: Option<f64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    notes: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Serialize)]
struct Bcrypt {
    cost: u32,
    single_thread_ms: f64,
    /// cores ÷ single-thread time.
    ceiling_per_s: f64,
}

#[derive(Debug, Clone, Serialize)]
struct Propagation {
    samples: usize,
    /// From the Logout answer on A to B's first refusal.
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// From sending Logout to A, for comparison.
    p50_from_request_ms: f64,
    p99_from_request_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
struct Target {
    name: &'static str,
    target: String,
    measured: Option<f64>,
    met: Option<bool>,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    quick: bool,
    duration_s: f64,
    warmup_s: f64,
    bcrypt: Option<Bcrypt>,
    scenarios: Vec<Row>,
    propagation: Option<Propagation>,
    ratios: BTreeMap<&'static str, f64>,
    targets: Vec<Target>,
    elapsed_s: f64,
}

fn parse_key_value(s: &str) -> anyhow::Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if k.starts_with("IDENTITY_") => Ok((k.to_owned(), v.to_owned())),
        _ => bail!("expected IDENTITY_NAME=value"),
    }
}

fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let dir = me.parent().context("no folder")?;
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} not found: build it first (`cargo build --release -p identity -p identity-bench`)",
            path.display()
        );
    }
    Ok(path)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.client_threads {
        runtime.worker_threads(threads.max(1));
    }
    let runtime = runtime.enable_all().build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    check_loopback(&args.pg_url)?;
    let started = Instant::now();
    let selected: Vec<String> = if args.scenarios.is_empty() {
        ALL.iter().map(|s| s.to_string()).collect()
    } else {
        for s in &args.scenarios {
            if !ALL.contains(&s.as_str()) {
                bail!("unknown scenario `{s}`; known: {}", ALL.join(", "));
            }
        }
        args.scenarios.clone()
    };
    let quick = args.quick;
    let env = Env {
        identity: match &args.identity_bin {
            Some(p) => p.clone(),
            None => sibling("identity")?,
        },
        echo: match &args.echo_bin {
            Some(p) => p.clone(),
            None => sibling("echo-server")?,
        },
        duration: args.duration.unwrap_or(if quick {
            Duration::from_secs(2)
        } else {
            Duration::from_secs(10)
        }),
        warmup: args.warmup.unwrap_or(if quick {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(2)
        }),
        sessions: args.sessions.unwrap_or(if quick { 200 } else { 1000 }),
        samples: args.samples.unwrap_or(if quick { 40 } else { 200 }),
        args,
    };
    let machine = Machine::probe();
    eprintln!(
        "bench: {} × {} , {:.1} GiB; window {:?}, warm-up {:?}, {} connections × {} streams",
        machine.cores,
        machine.cpu_model,
        machine.memory_gib,
        env.duration,
        env.warmup,
        env.args.connections,
        env.args.concurrency
    );
    let wants = |name: &str| selected.iter().any(|s| s == name);

    // bcrypt first, on a quiet machine.
    let bcrypt = if wants("login") || wants("validate_under_login_flood") {
        let b = measure_bcrypt(env.args.bcrypt_cost, machine.cores)?;
        eprintln!(
            "bench: bcrypt cost {}: {:.1} ms single-threaded → ceiling {:.2} logins/s on {} cores",
            b.cost, b.single_thread_ms, b.ceiling_per_s, machine.cores
        );
        Some(b)
    } else {
        None
    };

    let mut rows: Vec<Row> = Vec::new();
    let mut ratios = BTreeMap::new();
    let mut propagation = None;
    // echo, validate and get_profile run in alternation (their ratios are
    // the targets); the others one after another.
    let alternating: Vec<&String> = selected
        .iter()
        .filter(|n| SIDE_BY_SIDE.contains(&n.as_str()))
        .collect();
    if !alternating.is_empty() {
        let t = Instant::now();
        let mut prepared = Vec::new();
        for name in &alternating {
            eprintln!("bench: preparing {name} ...");
            prepared.push(match name.as_str() {
                "echo" => prepare_echo(&env).await?,
                "validate" => prepare_validate(&env, Variant::Valid).await?,
                _ => prepare_get_profile(&env).await?,
            });
        }
        let rounds = if quick { 2 } else { 5 };
        eprintln!(
            "bench: {} side by side, {rounds} rounds ...",
            alternating.len()
        );
        let (side_rows, side_ratios) = side_by_side(&env, &prepared, rounds).await;
        drop(prepared);
        rows.extend(side_rows);
        ratios.extend(side_ratios);
        eprintln!(
            "bench: side by side done in {:.1}s",
            t.elapsed().as_secs_f64()
        );
    }
    for name in selected
        .iter()
        .filter(|n| !SIDE_BY_SIDE.contains(&n.as_str()))
    {
        eprintln!("bench: {name} ...");
        let t = Instant::now();
        match name.as_str() {
            "validate_mixed" => rows.push(
                prepare_validate(&env, Variant::Mixed)
                    .await?
                    .alone(&env)
                    .await,
            ),
            "validate_nocache" => rows.push(
                prepare_validate(&env, Variant::NoCache)
                    .await?
                    .alone(&env)
                    .await,
            ),
            "refresh" => rows.push(refresh(&env).await?),
            "login" => rows.push(login(&env).await?),
            "validate_under_login_flood" => {
                let validate_rps = rows
                    .iter()
                    .find(|r| r.scenario == "validate")
                    .map(|r| r.summary.rps);
                rows.extend(flood(&env, validate_rps).await?);
            }
            "revocation_propagation" => {
                let (row, p) = revocation_propagation(&env).await?;
                rows.push(row);
                propagation = Some(p);
            }
            _ => unreachable!("checked above"),
        }
        eprintln!("bench: {name} done in {:.1}s", t.elapsed().as_secs_f64());
    }

    let find = |name: &str| rows.iter().find(|r| r.scenario == name);
    if let (Some(l), Some(b)) = (find("login"), &bcrypt) {
        ratios.insert("login_over_bcrypt_ceiling", l.summary.rps / b.ceiling_per_s);
    }
    if let (Some(q), Some(f)) = (
        find("validate_quiet_fixed_rate"),
        find("validate_under_login_flood"),
    ) {
        ratios.insert(
            "flood_p99_over_quiet_p99",
            f.summary.latency_ms.p99 / q.summary.latency_ms.p99.max(1e-3),
        );
    }
    let targets = targets(&rows, &ratios, propagation.as_ref());
    let report = Report {
        machine,
        quick,
        duration_s: env.duration.as_secs_f64(),
        warmup_s: env.warmup.as_secs_f64(),
        bcrypt,
        scenarios: rows,
        propagation,
        ratios,
        targets,
        elapsed_s: started.elapsed().as_secs_f64(),
    };
    print_report(&report);
    if env.identity.components().any(|c| c.as_os_str() == "debug") {
        println!("(debug binaries: the figures above say nothing about performance)");
    }
    if let Some(dir) = env.args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&env.args.out, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("cannot write {}", env.args.out.display()))?;
    eprintln!("bench: wrote {}", env.args.out.display());
    Ok(())
}

fn measure_bcrypt(cost: u32, cores: usize) -> anyhow::Result<Bcrypt> {
    let hash = bcrypt::hash(PASSWORD, cost)?;
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        // What Login runs: one verification at the configured cost.
        let ok = bcrypt::verify(PASSWORD, &hash)?;
        times.push(t.elapsed());
        assert!(ok);
    }
    times.sort();
    let median = times[times.len() / 2].as_secs_f64();
    Ok(Bcrypt {
        cost,
        single_thread_ms: median * 1000.0,
        ceiling_per_s: cores as f64 / median,
    })
}

async fn connect(url: &str, n: usize) -> anyhow::Result<Vec<Channel>> {
    let mut channels = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        channels.push(
            Endpoint::from_shared(url.to_owned())?
                .tcp_nodelay(true)
                .connect()
                .await
                .with_context(|| format!("cannot connect to {url}"))?,
        );
    }
    Ok(channels)
}

/// Samples the server's RSS every 100 ms while `f` runs; the peak.
async fn with_rss<T>(pid: u32, f: impl std::future::Future<Output = T>) -> (T, Option<f64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let pid_peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, peak) = (Arc::clone(&stop), Arc::clone(&pid_peak));
        let path = format!("/proc/{pid}/status");
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Some(kb) = std::fs::read_to_string(&path).ok().and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                }) {
                    peak.fetch_max(kb, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let out = f.await;
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    let kb = pid_peak.load(Ordering::Relaxed);
    (out, (kb > 0).then(|| kb as f64 / 1024.0))
}

fn row(env: &Env, name: &str, concurrency: usize, summary: Summary) -> Row {
    Row {
        scenario: name.into(),
        connections: env.args.connections,
        concurrency,
        rate: None,
        summary,
        rss_idle_mb: None,
        rss_load_mb: None,
        notes: BTreeMap::new(),
    }
}

/// An identity server of its own on a fresh database.
struct Stack {
    server: Proc,
    // Dropped after the server (fields drop in order).
    _db: Database,
    _dir: TempDir,
    idle_rss_mb: Option<f64>,
}

impl Stack {
    async fn start(env: &Env, cost: u32, extra: &[(&str, String)]) -> anyhow::Result<Stack> {
        let db = Database::create(&env.args.pg_url)?;
        let dir = TempDir::new()?;
        let server = start_identity(env, &db.url, dir.path(), cost, extra)?;
        // Idle: started, migrated, nothing asked yet.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let idle_rss_mb = server.rss_mb();
        Ok(Stack {
            server,
            _db: db,
            _dir: dir,
            idle_rss_mb,
        })
    }
}

fn start_identity(
    env: &Env,
    database_url: &str,
    data_dir: &Path,
    cost: u32,
    extra: &[(&str, String)],
) -> anyhow::Result<Proc> {
    let mut vars = vec![("IDENTITY_BCRYPT_COST", cost.to_string())];
    vars.extend(extra.iter().cloned());
    vars.extend(
        env.args
            .server_env
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone())),
    );
    Proc::identity(&env.identity, database_url, data_dir, &vars)
}

#[derive(Debug, Clone)]
struct Session {
    email: String,
    access: String,
    refresh: String,
    session_id: String,
}

/// `users` accounts and `total` sessions over them (register, then logins).
/// Set-up calls as a well-behaved client makes them: a RESOURCE_EXHAUSTED
/// answer (throttle, shed bcrypt job) is retried after a pause, a few times.
async fn with_retry<T, F, Fut>(mut call: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let mut tries = 0;
    loop {
        match call().await {
            Err(status) if status.code() == tonic::Code::ResourceExhausted && tries < 10 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            other => return other,
        }
    }
}

async fn sessions(url: &str, total: usize, users: usize) -> anyhow::Result<Vec<Session>> {
    let channel = connect(url, 1).await?.remove(0);
    let users = users.clamp(1, total.max(1));
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let registered: Vec<anyhow::Result<Session>> = futures_util::stream::iter(0..users)
        .map(|u| {
            let auth = AuthServiceClient::new(channel.clone());
            let email = format!("bench{u}.{}@example.com", &tag[..10]);
            async move {
                let r = with_retry(|| {
                    let mut auth = auth.clone();
                    let email = email.clone();
                    async move {
                        auth.register(RegisterRequest {
                            email,
                            password: PASSWORD.into(),
                            display_name: format!("Bench User {u}"),
                        })
                        .await
                    }
                })
                .await
                .context("Register")?
                .into_inner();
                let t = r.tokens.context("tokens")?;
                Ok(Session {
                    email,
                    access: t.access_token,
                    refresh: t.refresh_token,
                    session_id: t.session_id,
                })
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let registered: Vec<Session> = registered.into_iter().collect::<anyhow::Result<_>>()?;
    let emails: Vec<String> = registered.iter().map(|s| s.email.clone()).collect();
    let more: Vec<anyhow::Result<Session>> =
        futures_util::stream::iter(0..total.saturating_sub(users))
            .map(|n| {
                let auth = AuthServiceClient::new(channel.clone());
                let email = emails[n % emails.len()].clone();
                async move {
                    let t = with_retry(|| {
                        let mut auth = auth.clone();
                        let email = email.clone();
                        async move {
                            auth.login(LoginRequest {
                                email,
                                password: PASSWORD.into(),
                                ..Default::default()
                            })
                            .await
                        }
                    })
                    .await
                    .context("Login")?
                    .into_inner()
                    .tokens
                    .context("tokens")?;
                    Ok(Session {
                        email,
                        access: t.access_token,
                        refresh: t.refresh_token,
                        session_id: t.session_id,
                    })
                }
            })
            // The throttle counts a login from the time it starts: more
            // than its free attempts in flight on one account from one
            // address are held back, however right the password. Emails
            // go round-robin, so this keeps at most 4 per account.
            .buffer_unordered((4 * emails.len()).min(16))
            .collect()
            .await;
    let mut all = registered;
    for s in more {
        all.push(s?);
    }
    Ok(all)
}

/// One window's samples and the server's peak RSS during it.
type Measured = (Recorder, Option<f64>);
type Measure = Box<dyn Fn(Plan) -> BoxFuture<'static, Measured> + Send + Sync>;

/// A scenario ready to measure: its server up, its pool made, its clients
/// connected. Each call of `measure` is one window.
struct Prepared {
    name: &'static str,
    idle_rss_mb: Option<f64>,
    notes: BTreeMap<String, serde_json::Value>,
    measure: Measure,
    /// The server and its database, alive as long as this.
    _hold: Box<dyn std::any::Any + Send>,
}

impl Prepared {
    fn row(&self, env: &Env, summary: Summary, peak: Option<f64>) -> Row {
        let mut r = row(env, self.name, env.args.concurrency, summary);
        r.rss_idle_mb = self.idle_rss_mb;
        r.rss_load_mb = peak;
        r.notes = self.notes.clone();
        r
    }

    /// One window after the full warm-up.
    async fn alone(&self, env: &Env) -> Row {
        let plan = env.plan(env.args.concurrency);
        let (rec, peak) = (self.measure)(plan).await;
        self.row(env, rec.summarize(plan.duration), peak)
    }
}

/// `call` under each plan it is given, over `clients`, sampling `pid`'s RSS.
fn measure_with<C, F, Fut>(pid: u32, clients: Vec<C>, call: F) -> Measure
where
    C: Clone + Send + Sync + 'static,
    F: Fn(C, u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = load::Outcome> + Send + 'static,
{
    let clients = Arc::new(clients);
    Box::new(move |plan| {
        let (clients, call) = (Arc::clone(&clients), call.clone());
        Box::pin(async move { with_rss(pid, load::record(plan, &clients, call)).await })
    })
}

async fn prepare_echo(env: &Env) -> anyhow::Result<Prepared> {
    let server = Proc::echo(&env.echo)?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = server.rss_mb();
    let clients: Vec<_> = connect(&server.url(), env.args.connections)
        .await?
        .into_iter()
        .map(EchoServiceClient::new)
        .collect();
    // About the size of an access token.
    let payload: Arc<str> = Arc::from("x".repeat(600));
    let measure = measure_with(server.pid(), clients, move |mut c, _| {
        let payload = payload.to_string();
        async move {
            c.echo(EchoRequest { payload })
                .await
                .map(drop)
                .map_err(|s| label(&s))
        }
    });
    Ok(Prepared {
        name: "echo",
        idle_rss_mb: idle,
        notes: BTreeMap::new(),
        measure,
        _hold: Box::new(server),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// Every token valid.
    Valid,
    /// One in ten revoked (5 %) or with a broken signature (5 %).
    Mixed,
    /// Every token valid, with the caches off (a database read per call).
    NoCache,
}

/// A token with its signature's last character changed.
fn tamper(token: &str) -> String {
    let mut t = token.to_owned();
    let last = t.pop().unwrap_or('A');
    t.push(if last == 'A' { 'B' } else { 'A' });
    t
}

async fn prepare_validate(env: &Env, variant: Variant) -> anyhow::Result<Prepared> {
    let extra = match variant {
        Variant::NoCache => vec![
            ("IDENTITY_TOKEN_CACHE_SIZE", "0".to_owned()),
            ("IDENTITY_SESSION_CACHE_SIZE", "0".to_owned()),
        ],
        _ => vec![],
    };
    let stack = Stack::start(env, SETUP_COST, &extra).await?;
    let pool = sessions(&stack.server.url(), env.sessions, env.sessions / 20).await?;
    // (token, expected `active`)
    let mut tokens: Vec<(String, bool)> = Vec::with_capacity(pool.len());
    let channel = connect(&stack.server.url(), 1).await?.remove(0);
    for (i, s) in pool.iter().enumerate() {
        match (variant, i % 20) {
            (Variant::Mixed, 0) => {
                AuthServiceClient::new(channel.clone())
                    .logout(LogoutRequest {
                        refresh_token: s.refresh.clone(),
                    })
                    .await?;
                tokens.push((s.access.clone(), false));
            }
            (Variant::Mixed, 1) => tokens.push((tamper(&s.access), false)),
            _ => tokens.push((s.access.clone(), true)),
        }
    }
    let tokens = Arc::new(tokens);
    let clients: Vec<_> = connect(&stack.server.url(), env.args.connections)
        .await?
        .into_iter()
        .map(AuthServiceClient::new)
        .collect();
    let measure = measure_with(stack.server.pid(), clients, move |mut c, n| {
        let tokens = Arc::clone(&tokens);
        async move {
            let (token, expected) = &tokens[n as usize % tokens.len()];
            let r = c
                .validate_token(ValidateTokenRequest {
                    access_token: token.clone(),
                })
                .await
                .map_err(|s| label(&s))?;
            if r.get_ref().active == *expected {
                Ok(())
            } else {
                Err(Failure::WrongAnswer)
            }
        }
    });
    Ok(Prepared {
        name: match variant {
            Variant::Valid => "validate",
            Variant::Mixed => "validate_mixed",
            Variant::NoCache => "validate_nocache",
        },
        idle_rss_mb: stack.idle_rss_mb,
        notes: BTreeMap::from([("tokens".into(), pool.len().into())]),
        measure,
        _hold: Box::new(stack),
    })
}

fn bearer<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

async fn prepare_get_profile(env: &Env) -> anyhow::Result<Prepared> {
    let stack = Stack::start(env, SETUP_COST, &[]).await?;
    let pool = sessions(&stack.server.url(), env.sessions, env.sessions / 20).await?;
    let tokens: Arc<Vec<String>> = Arc::new(pool.iter().map(|s| s.access.clone()).collect());
    let clients: Vec<_> = connect(&stack.server.url(), env.args.connections)
        .await?
        .into_iter()
        .map(ProfileServiceClient::new)
        .collect();
    let measure = measure_with(stack.server.pid(), clients, move |mut c, n| {
        let token = tokens[n as usize % tokens.len()].clone();
        async move {
            let p = c
                .get_profile(bearer(&token, GetProfileRequest { id: "me".into() }))
                .await
                .map_err(|s| label(&s))?;
            if p.get_ref().id.is_empty() {
                Err(Failure::WrongAnswer)
            } else {
                Ok(())
            }
        }
    });
    Ok(Prepared {
        name: "get_profile",
        idle_rss_mb: stack.idle_rss_mb,
        notes: BTreeMap::from([("tokens".into(), pool.len().into())]),
        measure,
        _hold: Box::new(stack),
    })
}

/// The scenarios whose ratios matter, measured in alternation: every round
/// runs each for a slice of the window, in a rotating order, so that
/// whatever else the machine does hits them alike. Each ratio is the median
/// of the per-round ratios; each row merges its rounds.
async fn side_by_side(
    env: &Env,
    prepared: &[Prepared],
    rounds: usize,
) -> (Vec<Row>, BTreeMap<&'static str, f64>) {
    let slice = env.duration.div_f64(rounds as f64);
    let mut samples: Vec<Vec<Recorder>> = prepared.iter().map(|_| Vec::new()).collect();
    let mut rps: Vec<Vec<f64>> = prepared.iter().map(|_| Vec::new()).collect();
    let mut peaks: Vec<Option<f64>> = vec![None; prepared.len()];
    for round in 0..rounds {
        for k in 0..prepared.len() {
            let i = (round + k) % prepared.len();
            let plan = Plan {
                // The first round warms each server up fully; later ones
                // only refill the pipes.
                warmup: if round == 0 {
                    env.warmup
                } else {
                    env.warmup.min(Duration::from_millis(300))
                },
                duration: slice,
                ..env.plan(env.args.concurrency)
            };
            let (rec, peak) = (prepared[i].measure)(plan).await;
            rps[i].push(rec.ok_count() as f64 / slice.as_secs_f64());
            samples[i].push(rec);
            peaks[i] = match (peaks[i], peak) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
    }
    let index = |name: &str| prepared.iter().position(|p| p.name == name);
    let mut ratios = BTreeMap::new();
    let per_round = |a: usize, b: usize| {
        median(
            rps[a]
                .iter()
                .zip(&rps[b])
                .map(|(x, y)| x / y.max(1e-9))
                .collect(),
        )
    };
    if let (Some(v), Some(e)) = (index("validate"), index("echo")) {
        ratios.insert("validate_over_echo", per_round(v, e));
    }
    if let (Some(g), Some(e)) = (index("get_profile"), index("echo")) {
        ratios.insert("get_profile_over_echo", per_round(g, e));
    }
    let rows = prepared
        .iter()
        .zip(samples)
        .zip(rps)
        .zip(peaks)
        .map(|(((p, recs), rps), peak)| {
            let mut all = Recorder::default();
            for r in recs {
                all.merge(r);
            }
            let mut row = p.row(env, all.summarize(slice * rounds as u32), peak);
            row.notes.insert("rounds".into(), rounds.into());
            row.notes.insert(
                "req_per_s_by_round".into(),
                rps.iter().map(|r| (r * 10.0).round() / 10.0).collect(),
            );
            row
        })
        .collect();
    (rows, ratios)
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

async fn refresh(env: &Env) -> anyhow::Result<Row> {
    let stack = Stack::start(env, SETUP_COST, &[]).await?;
    let concurrency = env.args.concurrency;
    // One session per stream: each stream spends its own latest token.
    let pool = sessions(&stack.server.url(), concurrency, concurrency / 8).await?;
    let current: Arc<Vec<tokio::sync::Mutex<String>>> = Arc::new(
        pool.iter()
            .map(|s| tokio::sync::Mutex::new(s.refresh.clone()))
            .collect(),
    );
    let clients: Vec<_> = connect(&stack.server.url(), env.args.connections)
        .await?
        .into_iter()
        .map(AuthServiceClient::new)
        .collect();
    let (summary, peak) = with_rss(
        stack.server.pid(),
        load::drive(env.plan(concurrency), &clients, move |mut c, n| {
            let current = Arc::clone(&current);
            async move {
                // Call n belongs to stream n % concurrency.
                let mut token = current[n as usize % current.len()].lock().await;
                let pair = c
                    .refresh(RefreshRequest {
                        refresh_token: token.clone(),
                    })
                    .await
                    .map_err(|s| label(&s))?
                    .into_inner()
                    .tokens
                    .ok_or(Failure::WrongAnswer)?;
                *token = pair.refresh_token;
                Ok(())
            }
        }),
    )
    .await;
    let mut r = row(env, "refresh", concurrency, summary);
    r.rss_idle_mb = stack.idle_rss_mb;
    r.rss_load_mb = peak;
    Ok(r)
}

async fn login(env: &Env) -> anyhow::Result<Row> {
    let cost = env.args.bcrypt_cost;
    let stack = Stack::start(env, cost, &[]).await?;
    let users = env.args.login_concurrency.max(1);
    let accounts = sessions(&stack.server.url(), users, users).await?;
    let emails: Arc<Vec<String>> = Arc::new(accounts.iter().map(|s| s.email.clone()).collect());
    let clients: Vec<_> = connect(&stack.server.url(), env.args.connections)
        .await?
        .into_iter()
        .map(AuthServiceClient::new)
        .collect();
    let mut plan = env.plan(env.args.login_concurrency);
    // At a few logins per second, a longer window gives the percentiles
    // something to stand on.
    plan.duration = env.duration.mul_f64(1.5);
    let (summary, peak) = with_rss(
        stack.server.pid(),
        load::drive(plan, &clients, move |mut c, n| {
            let email = emails[n as usize % emails.len()].clone();
            async move {
                c.login(LoginRequest {
                    email,
                    password: PASSWORD.into(),
                    ..Default::default()
                })
                .await
                .map(drop)
                .map_err(|s| label(&s))
            }
        }),
    )
    .await;
    let mut r = row(env, "login", env.args.login_concurrency, summary);
    r.rss_idle_mb = stack.idle_rss_mb;
    r.rss_load_mb = peak;
    r.notes.insert("bcrypt_cost".into(), cost.into());
    Ok(r)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Generator {
    Auto,
    H2load,
    Rust,
}

/// Quiet and flooded windows of the flood comparison (each side reported by
/// its median window).
const FLOOD_ROUNDS: usize = 3;

fn higher(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// The window whose p99 is the median (the lower middle one of an even count).
fn median_window(mut windows: Vec<Summary>) -> Summary {
    windows.sort_by(|a, b| a.latency_ms.p99.total_cmp(&b.latency_ms.p99));
    windows.swap_remove((windows.len() - 1) / 2)
}

/// Quiet and flooded: ValidateToken at one fixed rate, alone and while
/// `flood_logins` logins run at the configured bcrypt cost.
async fn flood(env: &Env, validate_rps: Option<f64>) -> anyhow::Result<Vec<Row>> {
    let cost = env.args.bcrypt_cost;
    let db = Database::create(&env.args.pg_url)?;
    let dir = TempDir::new()?;
    // Sessions to validate, made quickly by a low-cost server on the same
    // database and key; it is gone before the measured server starts.
    let pool = {
        let setup = start_identity(env, &db.url, dir.path(), SETUP_COST, &[])?;
        sessions(&setup.url(), env.sessions, env.sessions / 20).await?
    };
    let server = start_identity(env, &db.url, dir.path(), cost, &[])?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = server.rss_mb();
    let flood_users = if env.args.quick { 4 } else { 10 };
    let accounts = sessions(&server.url(), flood_users, flood_users).await?;
    let tokens: Arc<Vec<String>> = Arc::new(pool.iter().map(|s| s.access.clone()).collect());
    let clients: Vec<_> = connect(&server.url(), env.args.connections)
        .await?
        .into_iter()
        .map(AuthServiceClient::new)
        .collect();
    let rate = env
        .args
        .flood_rate
        .unwrap_or_else(|| validate_rps.map_or(2000.0, |r| (r / 4.0).clamp(100.0, 5000.0)));
    let plan = Plan {
        rate: Some(rate),
        ..env.plan(env.args.concurrency)
    };
    let validate_at_rate = |tokens: Arc<Vec<String>>| {
        load::drive(plan, &clients, move |mut c, n| {
            let token = tokens[n as usize % tokens.len()].clone();
            async move {
                let r = c
                    .validate_token(ValidateTokenRequest {
                        access_token: token,
                    })
                    .await
                    .map_err(|s| label(&s))?;
                if r.get_ref().active {
                    Ok(())
                } else {
                    Err(Failure::WrongAnswer)
                }
            }
        })
    };
    // The flood: its own connection, `flood_logins` logins in flight; shed
    // calls wait as long as the server's RetryInfo asks (capped at 1s).
    let (ok, shed, failed) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let flood_channel = connect(&server.url(), 1).await?.remove(0);
    let start_flood = || {
        (0..env.args.flood_logins)
            .map(|f| {
                let mut c = AuthServiceClient::new(flood_channel.clone());
                let email = accounts[f % accounts.len()].email.clone();
                let (ok, shed, failed) = (Arc::clone(&ok), Arc::clone(&shed), Arc::clone(&failed));
                tokio::spawn(async move {
                    loop {
                        match c
                            .login(LoginRequest {
                                email: email.clone(),
                                password: PASSWORD.into(),
                                ..Default::default()
                            })
                            .await
                        {
                            Ok(_) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                                shed.fetch_add(1, Ordering::Relaxed);
                                use tonic_types::StatusExt as _;
                                let wait = status
                                    .get_details_retry_info()
                                    .and_then(|r| r.retry_delay)
                                    .unwrap_or(Duration::from_secs(1))
                                    .min(Duration::from_secs(1));
                                tokio::time::sleep(wait).await;
                            }
                            Err(_) => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                        }
                    }
                })
            })
            .collect::<Vec<_>>()
    };

    // Quiet and flooded windows alternate, and each side is summarised by
    // its median window: one stall of a shared host (seen here: a quiet
    // window with a p99 of 79 ms next to flooded ones of 5 to 15 ms) must
    // not decide the ratio.
    let rounds = if env.args.quick { 1 } else { FLOOD_ROUNDS };
    let (mut quiet, mut flooded) = (Vec::new(), Vec::new());
    let (mut quiet_peak, mut flood_peak) = (None, None);
    let (mut logins_done, mut flood_secs) = (0u64, 0f64);
    let h2load = match env.args.flood_generator {
        Generator::Rust => false,
        Generator::H2load => true,
        Generator::Auto => identity_bench::h2load::available(),
    };
    let frame = identity_bench::h2load::frame(&ValidateTokenRequest {
        access_token: tokens[0].clone(),
    });
    let url = format!("{}/identity.v1.AuthService/ValidateToken", server.url());
    let window = || -> BoxFuture<'_, Summary> {
        if h2load {
            let (frame, url, dir) = (frame.clone(), url.clone(), dir.path().to_owned());
            let (warmup, duration) = (plan.warmup, plan.duration);
            let connections = env.args.connections;
            let streams = (env.args.concurrency / connections.max(1)).max(1);
            Box::pin(async move {
                tokio::task::spawn_blocking(move || {
                    identity_bench::h2load::run(
                        &identity_bench::h2load::Window {
                            url: &url,
                            frame: &frame,
                            connections,
                            streams,
                            rate,
                            warmup,
                            duration,
                        },
                        &dir,
                    )
                })
                .await
                .map_err(anyhow::Error::from)
                .and_then(|r| r)
                .unwrap_or_else(|e| {
                    eprintln!("bench: h2load window failed: {e:#}");
                    let mut failed = Recorder::default();
                    failed.error("h2load_failed");
                    failed.summarize(duration)
                })
            })
        } else {
            Box::pin(validate_at_rate(Arc::clone(&tokens)))
        }
    };
    for _ in 0..rounds {
        let (window_summary, peak) = with_rss(server.pid(), window()).await;
        quiet.push(window_summary);
        quiet_peak = higher(quiet_peak, peak);

        let flooders = start_flood();
        // Let the bcrypt pool and its queue fill before measuring.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let flood_started = Instant::now();
        let ok_before = ok.load(Ordering::Relaxed);
        let (window_summary, peak) = with_rss(server.pid(), window()).await;
        flood_secs += flood_started.elapsed().as_secs_f64();
        logins_done += ok.load(Ordering::Relaxed) - ok_before;
        flooded.push(window_summary);
        flood_peak = higher(flood_peak, peak);
        // Dropping the calls cancels them; the server skips their queued
        // hashes, and the ones running end within one hash time.
        for f in flooders {
            f.abort();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let p99s =
        |windows: &[Summary]| -> Vec<f64> { windows.iter().map(|w| w.latency_ms.p99).collect() };
    let (quiet_p99s, flood_p99s) = (p99s(&quiet), p99s(&flooded));
    let quiet = median_window(quiet);
    let flooded = median_window(flooded);

    let mut quiet_row = row(
        env,
        "validate_quiet_fixed_rate",
        env.args.concurrency,
        quiet,
    );
    quiet_row.rate = Some(rate);
    quiet_row
        .notes
        .insert("p99_ms_per_window".into(), quiet_p99s.into());
    quiet_row.rss_idle_mb = idle;
    quiet_row.rss_load_mb = quiet_peak;
    let mut flood_row = row(
        env,
        "validate_under_login_flood",
        env.args.concurrency,
        flooded,
    );
    flood_row.rate = Some(rate);
    flood_row
        .notes
        .insert("p99_ms_per_window".into(), flood_p99s.into());
    flood_row.rss_idle_mb = idle;
    flood_row.rss_load_mb = flood_peak;
    flood_row.notes.insert(
        "flood_logins_in_flight".into(),
        env.args.flood_logins.into(),
    );
    flood_row
        .notes
        .insert("flood_bcrypt_cost".into(), cost.into());
    for r in [&mut quiet_row, &mut flood_row] {
        r.notes.insert(
            "generator".into(),
            if h2load { "h2load" } else { "rust" }.into(),
        );
    }
    flood_row.notes.insert(
        "flood_logins_per_s".into(),
        (logins_done as f64 / flood_secs).into(),
    );
    flood_row.notes.insert(
        "flood_shed_total".into(),
        shed.load(Ordering::Relaxed).into(),
    );
    flood_row.notes.insert(
        "flood_failed_total".into(),
        failed.load(Ordering::Relaxed).into(),
    );
    drop(server);
    drop(db);
    Ok(vec![quiet_row, flood_row])
}

/// Two replicas on one database: revoke on A (Logout), poll B until it
/// refuses the token.
async fn revocation_propagation(env: &Env) -> anyhow::Result<(Row, Propagation)> {
    let db = Database::create(&env.args.pg_url)?;
    let dir = TempDir::new()?;
    let a = start_identity(env, &db.url, dir.path(), SETUP_COST, &[])?;
    // B starts once A has written the development signing key they share.
    let b = start_identity(env, &db.url, dir.path(), SETUP_COST, &[])?;
    let idle = b.rss_mb();
    let pool = sessions(&a.url(), env.samples, (env.samples / 10).max(1)).await?;
    let mut on_a = AuthServiceClient::new(connect(&a.url(), 1).await?.remove(0));
    let mut on_b = AuthServiceClient::new(connect(&b.url(), 1).await?.remove(0));
    let validate = |c: &mut AuthServiceClient<Channel>, token: &str| {
        let mut c = c.clone();
        let token = token.to_owned();
        async move {
            c.validate_token(ValidateTokenRequest {
                access_token: token,
            })
            .await
            .map(|r| r.into_inner().active)
        }
    };
    let mut from_ack = Vec::with_capacity(pool.len());
    let mut from_request = Vec::with_capacity(pool.len());
    let mut polls = 0u64;
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut rec = identity_bench::stats::Recorder::default();
    for s in &pool {
        // B holds the session as live (from memory) before the revocation.
        for _ in 0..2 {
            if !validate(&mut on_b, &s.access).await? {
                bail!("B refused a live session {}", s.session_id);
            }
        }
        let sent = Instant::now();
        on_a.logout(LogoutRequest {
            refresh_token: s.refresh.clone(),
        })
        .await?;
        let acked = Instant::now();
        loop {
            polls += 1;
            match validate(&mut on_b, &s.access).await {
                Ok(false) => break,
                Ok(true) => {}
                Err(status) => *errors.entry(label(&status).to_string()).or_default() += 1,
            }
            if acked.elapsed() > Duration::from_secs(30) {
                bail!("B still validates a session revoked 30s ago");
            }
        }
        let done = Instant::now();
        from_ack.push(done - acked);
        from_request.push(done - sent);
        rec.ok(done - acked);
    }
    for (label, n) in &errors {
        for _ in 0..*n {
            rec.error(label);
        }
    }
    from_ack.sort();
    from_request.sort();
    let p = Propagation {
        samples: from_ack.len(),
        p50_ms: percentile_ms(&from_ack, 50.0),
        p99_ms: percentile_ms(&from_ack, 99.0),
        max_ms: percentile_ms(&from_ack, 100.0),
        p50_from_request_ms: percentile_ms(&from_request, 50.0),
        p99_from_request_ms: percentile_ms(&from_request, 99.0),
    };
    let total: Duration = from_ack.iter().sum();
    let mut r = row(
        env,
        "revocation_propagation",
        1,
        rec.summarize(total.max(Duration::from_millis(1))),
    );
    r.rss_idle_mb = idle;
    r.rss_load_mb = b.peak_rss_mb();
    r.notes.insert("polls_of_b".into(), polls.into());
    r.notes.insert(
        "what".into(),
        "latency = Logout answered on A → B refuses".into(),
    );
    drop((a, b));
    drop(db);
    Ok((r, p))
}

fn targets(
    rows: &[Row],
    ratios: &BTreeMap<&'static str, f64>,
    propagation: Option<&Propagation>,
) -> Vec<Target> {
    let find = |name: &str| rows.iter().find(|r| r.scenario == name);
    let at_least = |name, target: f64, v: Option<f64>| Target {
        name,
        target: format!("≥ {target}"),
        measured: v,
        met: v.map(|v| v >= target),
    };
    let at_most = |name, target: f64, unit: &str, v: Option<f64>| Target {
        name,
        target: format!("≤ {target}{unit}"),
        measured: v,
        met: v.map(|v| v <= target),
    };
    let validate = find("validate");
    vec![
        at_least(
            "validate ÷ echo (req/s)",
            0.8,
            ratios.get("validate_over_echo").copied(),
        ),
        at_most(
            "validate p99 at 64 streams",
            5.0,
            " ms",
            validate
                .filter(|r| r.concurrency == 64)
                .map(|r| r.summary.latency_ms.p99),
        ),
        at_most(
            "flood p99 ÷ quiet p99",
            2.0,
            "",
            ratios.get("flood_p99_over_quiet_p99").copied(),
        ),
        at_least(
            "login ÷ bcrypt ceiling",
            0.9,
            ratios.get("login_over_bcrypt_ceiling").copied(),
        ),
        at_least(
            "get_profile ÷ echo (req/s)",
            0.4,
            ratios.get("get_profile_over_echo").copied(),
        ),
        at_most(
            "revocation propagation p99",
            1000.0,
            " ms",
            propagation.map(|p| p.p99_ms),
        ),
        at_most(
            "server RSS idle",
            30.0,
            " MB",
            rows.iter()
                .filter(|r| r.scenario != "echo")
                .filter_map(|r| r.rss_idle_mb)
                .reduce(f64::max),
        ),
        at_most(
            "server RSS under validate load",
            100.0,
            " MB",
            validate.and_then(|r| r.rss_load_mb),
        ),
    ]
}

fn print_report(report: &Report) {
    let m = &report.machine;
    println!();
    println!(
        "identity bench — {} cores, {}, {:.1} GiB, Linux {}{}",
        m.cores,
        m.cpu_model,
        m.memory_gib,
        m.kernel,
        if report.quick { " (QUICK)" } else { "" }
    );
    println!(
        "window {:.1}s after {:.1}s warm-up per scenario; latency in ms; RSS in MiB (idle / peak under load)",
        report.duration_s, report.warmup_s
    );
    println!();
    println!(
        "{:<28} {:>5} {:>7} {:>10} {:>7} {:>7} {:>7} {:>8} {:>8}  {:<16} {:>13}",
        "scenario",
        "conns",
        "streams",
        "req/s",
        "p50",
        "p90",
        "p99",
        "p99.9",
        "max",
        "errors",
        "RSS"
    );
    for r in &report.scenarios {
        let l = &r.summary.latency_ms;
        let errors = if r.summary.errors.is_empty() {
            "0".to_owned()
        } else {
            r.summary
                .errors
                .iter()
                .map(|(k, v)| format!("{k}:{v}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let streams = match r.rate {
            Some(rate) => format!("@{rate:.0}/s"),
            None => r.concurrency.to_string(),
        };
        let rss = format!(
            "{} / {}",
            r.rss_idle_mb.map_or("-".into(), |v| format!("{v:.1}")),
            r.rss_load_mb.map_or("-".into(), |v| format!("{v:.1}"))
        );
        println!(
            "{:<28} {:>5} {:>7} {:>10.1} {:>7.2} {:>7.2} {:>7.2} {:>8.2} {:>8.2}  {:<16} {:>13}",
            r.scenario,
            r.connections,
            streams,
            r.summary.rps,
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.max,
            errors,
            rss
        );
    }
    println!();
    if let Some(b) = &report.bcrypt {
        println!(
            "bcrypt cost {}: {:.1} ms single-threaded → ceiling {:.2} logins/s ({} cores ÷ {:.1} ms)",
            b.cost, b.single_thread_ms, b.ceiling_per_s, m.cores, b.single_thread_ms
        );
    }
    if let Some(p) = &report.propagation {
        println!(
            "revocation propagation (A revokes, B refuses), {} samples: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (from the Logout request: p50 {:.2}, p99 {:.2})",
            p.samples, p.p50_ms, p.p99_ms, p.max_ms, p.p50_from_request_ms, p.p99_from_request_ms
        );
    }
    if let Some(r) = report
        .scenarios
        .iter()
        .find(|r| r.scenario == "validate_under_login_flood")
    {
        let note = |k: &str| r.notes.get(k).and_then(|v| v.as_f64()).unwrap_or(0.0);
        println!(
            "login flood: {} logins in flight at cost {}: {:.2} logins/s completed, {} shed, {} failed",
            note("flood_logins_in_flight"),
            note("flood_bcrypt_cost"),
            note("flood_logins_per_s"),
            note("flood_shed_total"),
            note("flood_failed_total")
        );
        let windows = |name: &str| {
            report
                .scenarios
                .iter()
                .find(|r| r.scenario == name)
                .and_then(|r| r.notes.get("p99_ms_per_window"))
                .map(|v| v.to_string())
                .unwrap_or_default()
        };
        println!(
            "flood comparison driven by {}; p99 ms per window: quiet {}, flooded {} (each side: its median window)",
            r.notes
                .get("generator")
                .and_then(|v| v.as_str())
                .unwrap_or("rust"),
            windows("validate_quiet_fixed_rate"),
            windows("validate_under_login_flood"),
        );
    }
    println!();
    println!("ratios (measured side by side in this run):");
    for (k, v) in &report.ratios {
        println!("  {k:<28} {v:>8.3}");
    }
    println!();
    println!("targets:");
    for t in &report.targets {
        let measured = t
            .measured
            .map_or("not measured".into(), |v| format!("{v:.3}"));
        let verdict = match t.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "-",
        };
        println!(
            "  {:<34} {:>10}  {:>14}  {}",
            t.name, t.target, measured, verdict
        );
    }
    let errors: u64 = report
        .scenarios
        .iter()
        .map(|r| r.summary.error_count())
        .sum();
    println!();
    println!("errors: {errors}; elapsed {:.1}s", report.elapsed_s);
}
