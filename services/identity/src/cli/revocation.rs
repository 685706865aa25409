//! The fast validation path and revocation across replicas, flattened into
//! `identity serve`.

use clap::Args;
use std::time::Duration;

/// Settings of the fast validation path, flattened into `identity serve`.
#[derive(Args, Clone)]
pub struct RevocationArgs {
    /// Longest a replica answers "live" from memory without having heard
    /// from PostgreSQL's revocation channel (checked by a heartbeat 4 times
    /// per period), or on SQLite without having read the announcements
    /// table (polled 4 times per period); past it, validations read the
    /// database. The bound on how late a revocation reaches another replica
    /// (on SQLite: one made by `identity admin`).
    #[arg(long, env = "IDENTITY_REVOCATION_MAX_STALENESS", default_value = "1s", value_parser = humantime::parse_duration)]
    pub revocation_max_staleness: Duration,

    /// How often the sessions held in memory are re-checked against the
    /// database: heals a missed announcement or a revocation made outside
    /// the service (e.g. by SQL).
    #[arg(long, env = "IDENTITY_REVOCATION_RECONCILE_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub revocation_reconcile_interval: Duration,

    /// Verified access tokens kept in memory (0: verify every signature).
    #[arg(long, env = "IDENTITY_TOKEN_CACHE_SIZE", default_value_t = 20_000)]
    pub token_cache_size: usize,

    /// Sessions whose state is kept in memory (0: every validation reads
    /// the database).
    #[arg(long, env = "IDENTITY_SESSION_CACHE_SIZE", default_value_t = 100_000)]
    pub session_cache_size: usize,

    /// Profiles kept in memory for authenticated calls (0: every call reads
    /// the caller's profile from the database). Kept fresh like session
    /// state; each lives at most one reconciliation interval.
    #[arg(long, env = "IDENTITY_PROFILE_CACHE_SIZE", default_value_t = 10_000)]
    pub profile_cache_size: usize,

    /// How often AuthService.WatchRevocations sends a heartbeat, while this
    /// replica's revocation knowledge is current (10ms to 60s, below
    /// IDENTITY_REVOCATION_MAX_STALENESS).
    #[arg(long, env = "IDENTITY_REVOCATION_HEARTBEAT", default_value = "250ms", value_parser = humantime::parse_duration)]
    pub revocation_heartbeat: Duration,

    /// Most WatchRevocations streams served at once; beyond it new ones
    /// answer RESOURCE_EXHAUSTED (OVERLOADED).
    #[arg(long, env = "IDENTITY_REVOCATION_MAX_WATCHERS", default_value_t = 4096)]
    pub revocation_max_watchers: usize,

    /// Most WatchRevocations streams of one client address (an IPv6
    /// address counts by its IDENTITY_RATE_LIMIT_IPV6_PREFIX), so that one
    /// client cannot hold every place of IDENTITY_REVOCATION_MAX_WATCHERS.
    /// Above IDENTITY_REVOCATION_MAX_WATCHERS it means that cap (clamped).
    #[arg(
        long,
        env = "IDENTITY_REVOCATION_MAX_WATCHERS_PER_ADDRESS",
        default_value_t = 16
    )]
    pub revocation_max_watchers_per_address: usize,

    /// Most WatchRevocations streams of one principal (a bearer's subject,
    /// or a client certificate's names), from any number of addresses.
    /// Above IDENTITY_REVOCATION_MAX_WATCHERS it means that cap (clamped).
    #[arg(
        long,
        env = "IDENTITY_REVOCATION_MAX_WATCHERS_PER_PRINCIPAL",
        default_value_t = 256
    )]
    pub revocation_max_watchers_per_principal: usize,

    /// Revocations kept for WatchRevocations to replay to a watcher that
    /// resumes, and how far (events and heartbeats) a watcher may fall
    /// behind before its stream is ended (16 to 65536).
    #[arg(
        long,
        env = "IDENTITY_REVOCATION_WATCH_BACKLOG",
        default_value_t = 1024
    )]
    pub revocation_watch_backlog: usize,

    /// How long a WatchRevocations stream's queued messages may wait for
    /// the client to take them (HTTP/2 flow control) before the stream is
    /// ended as too slow and its place freed (100ms to 300s).
    #[arg(long, env = "IDENTITY_REVOCATION_WATCH_SEND_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub revocation_watch_send_timeout: Duration,

    /// PostgreSQL URL of the same database for the revocation listener's
    /// two connections [default: IDENTITY_DATABASE_URL]. They need sessions
    /// of their own: a direct connection or a PgBouncer session pool, never
    /// transaction pooling (a LISTEN there hears nothing). Set it when
    /// IDENTITY_DATABASE_URL goes through transaction pooling.
    #[arg(long, env = "IDENTITY_REVOCATION_LISTEN_URL", hide_env_values = true)]
    pub revocation_listen_url: Option<String>,

    /// File holding IDENTITY_REVOCATION_LISTEN_URL (it may carry a
    /// password); a trailing newline is ignored.
    #[arg(long, env = "IDENTITY_REVOCATION_LISTEN_URL_FILE")]
    pub revocation_listen_url_file: Option<std::path::PathBuf>,
}
