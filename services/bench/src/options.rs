//! The command line of `bench` and what it resolves to: windows, pool
//! sizes and the binaries to start.

use crate::load::Plan;
use anyhow::{Context as _, bail};
use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "bench",
    about = "Load benchmark of the identity service against a bare tonic baseline"
)]
pub struct Args {
    /// Short run (under a minute): shorter windows, fewer sessions and samples.
    #[arg(long)]
    pub quick: bool,
    /// Measurement window per scenario [default: 10s; quick: 2s].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Warm-up before each window, not recorded [default: 2s; quick: 500ms].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub warmup: Option<Duration>,
    /// HTTP/2 connections per scenario.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Concurrent streams (calls in flight) across those connections.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// bcrypt cost of the login and flood scenarios (production minimum: 12).
    #[arg(long, default_value_t = 12)]
    pub bcrypt_cost: u32,
    /// Concurrent logins of the login scenario.
    #[arg(long, default_value_t = 8)]
    pub login_concurrency: usize,
    /// Concurrent logins of the flood.
    #[arg(long, default_value_t = 100)]
    pub flood_logins: usize,
    /// ValidateToken calls per second (open loop) of the flood comparison
    /// [default: a quarter of the validate scenario's rate, at most 5000].
    #[arg(long)]
    pub flood_rate: Option<f64>,
    /// What drives ValidateToken in the flood comparison: `h2load` (the
    /// figure of record: it costs the shared cores far less than a tonic
    /// client), `rust` (this process), or `auto` (h2load when on the PATH).
    #[arg(long, value_enum, default_value_t = Generator::Auto)]
    pub flood_generator: Generator,
    /// What drives the closed-loop unary scenarios whose body h2load can
    /// send unchanged (echo, validate, get_profile, validate_nocache):
    /// `h2load` (the figures of record), `rust` (this process, a tonic
    /// client), or `auto` (h2load when on the PATH). Streams, open loop,
    /// rotating tokens and logins always use the Rust generator.
    #[arg(long, value_enum, default_value_t = Generator::Auto)]
    pub unary_generator: Generator,
    /// HTTP/2 connections of an h2load closed-loop window.
    #[arg(long, default_value_t = 50)]
    pub h2load_connections: usize,
    /// Concurrent streams per connection of an h2load closed-loop window.
    #[arg(long, default_value_t = 10)]
    pub h2load_streams: usize,
    /// Instead of the scenarios: a soak of this length (e.g. `10m`), a mixed
    /// workload at a fixed rate (90 % ValidateToken, 5 % GetProfile, 3 %
    /// Refresh, 1 % Login, 1 % Logout) sampling the server's RSS, open files,
    /// pool connections and p99 every `--soak-interval`; zero errors
    /// required, and the trend of RSS and p99 over time judged.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub soak: Option<Duration>,
    /// Run the soak's server with its default token and session cache caps
    /// instead of 2,000 each: at the defaults the caches are still filling
    /// when a ten-minute soak ends, and their growth reads as a trend.
    #[arg(long)]
    pub soak_default_caches: bool,
    /// Sampling interval of the soak.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub soak_interval: Duration,
    /// Calls per second of the soak (open loop).
    #[arg(long, default_value_t = 2000.0)]
    pub soak_rate: f64,
    /// Instead of the scenarios: seed N profiles (with credentials) and 2N
    /// sessions in PostgreSQL and compare p99 at 10,000 rows and at N
    /// (Login, GetProfile uncached, ListProfiles first and deep page,
    /// Refresh, ValidateToken uncached, ExchangeToken of a new user against
    /// the bench's provider fixture), with the EXPLAIN of the hot queries;
    /// then a server's RSS with its caches filled past their caps.
    #[arg(long)]
    pub scale: Option<usize>,
    /// The token, session and profile cache caps the `--scale` RSS check
    /// fills (to 1.2× each) and starts its server with [default: the
    /// server's own defaults, read from `identity serve --help`].
    #[arg(long, value_parser = parse_caps)]
    pub cache_caps: Option<CacheCaps>,
    /// The Better-Auth server of the e2e tests (server.mjs and its
    /// node_modules) that `better_auth_get_session` starts.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/provider"))]
    pub better_auth_dir: PathBuf,
    /// Sessions (tokens) in the validation pools [default: 1000; quick: 200].
    #[arg(long)]
    pub sessions: Option<usize>,
    /// Revocations measured by revocation_propagation [default: 200; quick: 40].
    #[arg(long)]
    pub samples: Option<usize>,
    /// Scenarios to run (comma-separated) [default: all].
    #[arg(long, value_delimiter = ',')]
    pub scenarios: Vec<String>,
    /// Worker threads of this load generator's runtime [default: one per
    /// core]. It shares the cores with the server it measures.
    #[arg(long)]
    pub client_threads: Option<usize>,
    /// Where the JSON goes.
    #[arg(long, default_value = "target/bench/results.json")]
    pub out: PathBuf,
    /// The identity binary [default: next to this one].
    #[arg(long)]
    pub identity_bin: Option<PathBuf>,
    /// The echo server binary [default: next to this one].
    #[arg(long)]
    pub echo_bin: Option<PathBuf>,
    /// Extra settings for every identity server (`KEY=VALUE`, repeatable),
    /// e.g. `--server-env IDENTITY_BCRYPT_THREADS=1` to compare.
    #[arg(long = "server-env", value_parser = parse_key_value)]
    pub server_env: Vec<(String, String)>,
    /// PostgreSQL to create the databases on (loopback only).
    #[arg(
        long,
        env = "IDENTITY_TEST_PG_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub pg_url: String,
}

/// One run's settings: the options with their defaults filled in.
pub struct Env {
    pub args: Args,
    pub identity: PathBuf,
    pub echo: PathBuf,
    pub duration: Duration,
    pub warmup: Duration,
    pub sessions: usize,
    pub samples: usize,
    /// Whether h2load drives the closed-loop unary scenarios it can express.
    pub unary_h2load: bool,
}

impl Env {
    /// The defaults filled in (`--quick` picks the short ones) and the
    /// binaries found.
    pub fn new(args: Args) -> anyhow::Result<Env> {
        let quick = args.quick;
        Ok(Env {
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
            unary_h2load: match args.unary_generator {
                Generator::Rust => false,
                Generator::H2load => true,
                Generator::Auto => crate::h2load::available(),
            },
            args,
        })
    }

    pub fn plan(&self, concurrency: usize) -> Plan {
        Plan {
            concurrency,
            warmup: self.warmup,
            duration: self.duration,
            rate: None,
        }
    }

    /// One window of a side-by-side comparison: the first round warms each
    /// server up fully, later ones only refill the pipes.
    pub fn round_plan(&self, round: usize, slice: Duration) -> Plan {
        Plan {
            warmup: if round == 0 {
                self.warmup
            } else {
                self.warmup.min(Duration::from_millis(300))
            },
            duration: slice,
            ..self.plan(self.args.concurrency)
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Generator {
    Auto,
    H2load,
    Rust,
}

/// Entries of the token, session and profile caches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CacheCaps {
    pub tokens: usize,
    pub sessions: usize,
    pub profiles: usize,
}

fn parse_caps(s: &str) -> anyhow::Result<CacheCaps> {
    let caps: Vec<usize> = s
        .split(',')
        .map(|c| c.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .context("expected three numbers: TOKENS,SESSIONS,PROFILES")?;
    match caps[..] {
        // A cap of 0 turns a cache off: nothing to fill, nothing to measure.
        [tokens, sessions, profiles] if tokens > 0 && sessions > 0 && profiles > 0 => {
            Ok(CacheCaps {
                tokens,
                sessions,
                profiles,
            })
        }
        _ => bail!("expected three positive numbers: TOKENS,SESSIONS,PROFILES"),
    }
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
