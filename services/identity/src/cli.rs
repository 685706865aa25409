//! Command line: subcommands and every setting, each with its environment
//! variable (`identity serve --help` lists them all).

mod http;
mod keys;
mod provider;
mod revocation;

pub use http::HttpArgs;
pub use keys::KeyArgs;
pub use provider::ProviderSettings;
pub use revocation::RevocationArgs;

use clap::builder::BoolishValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "identity",
    version,
    about = "gRPC identity service: tokens, sessions and user profiles",
    long_about = "gRPC identity service: issues, refreshes, revokes and validates tokens and keeps \
                  user profiles.\n\nEvery setting is an IDENTITY_* environment variable (shown with \
                  each option); a TOML file named by IDENTITY_CONFIG_FILE may supply the same \
                  settings by their long option names with underscores (listen_addr = ...). \
                  Precedence: command line > environment > file > built-in default."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve the gRPC API. Without --dev, refuses insecure settings.
    Serve(Box<ServeArgs>),
    /// Apply pending database migrations to IDENTITY_DATABASE_URL and exit.
    Migrate(MigrateArgs),
    /// Write a new Ed25519 signing key (PKCS#8 PEM) to a file or stdout.
    Keygen(KeygenArgs),
    /// Ask a running server's gRPC health service; exit 0 when SERVING.
    Healthcheck(HealthcheckArgs),
    /// Read the audit trail.
    Audit(AuditArgs),
    /// Administration against the configured database.
    Admin(AdminArgs),
}

#[derive(Args)]
pub struct AdminArgs {
    #[arg(
        long,
        env = "IDENTITY_DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    pub database_url: Option<String>,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Give a role (e.g. admin) to a user, named by login email or profile id.
    GrantRole { user: String, role: String },
    /// Take a role away from a user.
    RevokeRole { user: String, role: String },
    /// Bootstrapping only: print an access token (at most 24h) for a service
    /// principal. Services sign in with client credentials instead (see
    /// create-service-client).
    IssueServiceToken(IssueServiceTokenArgs),
    /// Create client credentials for a service (e.g. `--role provisioner` for
    /// the external provider's sign-up hook): prints IDENTITY_CLIENT_ID and
    /// IDENTITY_CLIENT_SECRET once (the secret is stored only hashed). The
    /// service signs in with AuthService.ServiceLogin. Never `admin`.
    CreateServiceClient {
        /// Role of the client: provisioner (may create role-less profiles of
        /// external providers), profiles:read (may read any profile) or
        /// revocations:watch (may call AuthService.WatchRevocations).
        #[arg(long)]
        role: String,
        /// Name of its service principal (auth_provider `service`, auth_id
        /// NAME; 1-64 of a-z 0-9 . _ -) [default: the client id].
        #[arg(long)]
        name: Option<String>,
    },
    /// Give a client a new secret (printed once): the old one stops working
    /// and every session the client started is revoked on every replica.
    RotateServiceClient { client_id: String },
    /// Disable a client for good: it can no longer sign in and every session
    /// it started is revoked on every replica.
    DisableServiceClient { client_id: String },
}

#[derive(Args)]
pub struct IssueServiceTokenArgs {
    /// Role of the token: `provisioner` (may create role-less profiles of
    /// external providers), `profiles:read` (may read any profile with
    /// GetProfile and LookupProfile, nothing else) or `revocations:watch` (may
    /// call AuthService.WatchRevocations). Never `admin`: admins are people
    /// (IDENTITY_BOOTSTRAP_ADMINS, grant-role).
    #[arg(long)]
    pub role: String,
    /// Lifetime of the token (1m to 24h).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// Name of the service principal (its profile's auth_id, auth_provider
    /// `service`) [default: the role, `:` as `-`].
    #[arg(long)]
    pub name: Option<String>,
    /// The server's signing keys (the first signs), HS256 secret, `iss` and
    /// `aud`, as for `identity serve`.
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Use the key that `identity serve --dev` generated under the data folder.
    #[arg(long)]
    pub dev: bool,
    /// Data folder of `identity serve --dev` (with --dev).
    #[arg(long, env = "IDENTITY_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
}

#[derive(Args)]
pub struct ServeArgs {
    /// Development mode: embedded SQLite under IDENTITY_DATA_DIR, a generated
    /// signing key kept there, plaintext on 127.0.0.1, lower bcrypt cost.
    /// Never for production.
    #[arg(long)]
    pub dev: bool,
    #[command(flatten)]
    pub settings: Settings,
}

#[derive(Args)]
pub struct MigrateArgs {
    /// Database to migrate: postgres://... or sqlite://path.
    #[arg(long, env = "IDENTITY_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
}

#[derive(Args)]
pub struct KeygenArgs {
    /// Write the PEM here (created with mode 0600) instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Args)]
pub struct HealthcheckArgs {
    /// Server to probe (plaintext gRPC).
    #[arg(
        long,
        env = "IDENTITY_HEALTHCHECK_ADDR",
        default_value = "http://127.0.0.1:50051"
    )]
    pub addr: String,
    /// Service name to check; empty means the whole server.
    #[arg(long, default_value = "")]
    pub service: String,
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

#[derive(Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Print recent audit events as JSON lines.
    Tail {
        #[arg(long, env = "IDENTITY_DATABASE_URL", hide_env_values = true)]
        database_url: String,
        /// How far back, e.g. 1h, 7d.
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        since: Duration,
        /// Only events about this profile id.
        #[arg(long)]
        profile: Option<String>,
        #[arg(long, default_value_t = 1000)]
        limit: i64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Raw settings as given. `config::Config::load` validates them; nothing
/// else reads this struct. It has no `Debug` on purpose: it holds secrets.
#[derive(Args, Clone)]
pub struct Settings {
    /// TOML file with more settings (keys: the option names, e.g. listen_addr).
    #[arg(long = "config", env = "IDENTITY_CONFIG_FILE")]
    pub config_file: Option<PathBuf>,

    /// gRPC listen address [default: 127.0.0.1:50051 with --dev, else 0.0.0.0:50051].
    #[arg(long, env = "IDENTITY_LISTEN_ADDR")]
    pub listen_addr: Option<SocketAddr>,

    /// Optional second, plaintext listener serving only grpc.health.v1 (for
    /// kubelet probes when the main port uses TLS).
    #[arg(long, env = "IDENTITY_HEALTH_LISTEN_ADDR")]
    pub health_listen_addr: Option<SocketAddr>,

    /// postgres://user:pass@host/db or sqlite://path [required in production;
    /// --dev: sqlite://<data dir>/identity.db].
    #[arg(long, env = "IDENTITY_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// File holding IDENTITY_DATABASE_URL (e.g. a mounted Secret), so the
    /// password is not in the environment; a trailing newline is ignored.
    #[arg(long, env = "IDENTITY_DATABASE_URL_FILE")]
    pub database_url_file: Option<PathBuf>,

    /// Largest number of pooled database connections.
    #[arg(long, env = "IDENTITY_DATABASE_POOL_SIZE", default_value_t = 16)]
    pub database_pool_size: usize,

    /// Bound on getting a database connection; past it RPCs answer UNAVAILABLE.
    #[arg(long, env = "IDENTITY_DATABASE_TIMEOUT", default_value = "3s", value_parser = humantime::parse_duration)]
    pub database_timeout: Duration,

    /// Apply pending migrations at start [default: true with --dev, else false].
    #[arg(long, env = "IDENTITY_MIGRATE_ON_START", value_parser = BoolishValueParser::new())]
    pub migrate_on_start: Option<bool>,

    /// Folder for --dev state (SQLite file, generated signing key).
    #[arg(long, env = "IDENTITY_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// The signing keys, `iss` and `aud`: shared with `identity admin
    /// issue-service-token`, which signs as the server does.
    #[command(flatten)]
    pub keys: KeyArgs,

    /// Access token lifetime (1m to 24h).
    #[arg(long, env = "IDENTITY_ACCESS_TOKEN_TTL", default_value = "30m", value_parser = humantime::parse_duration)]
    pub access_token_ttl: Duration,

    /// Absolute session lifetime: refresh tokens never outlive it.
    #[arg(long, env = "IDENTITY_REFRESH_TOKEN_TTL", default_value = "30days", value_parser = humantime::parse_duration)]
    pub refresh_token_ttl: Duration,

    /// A spent refresh token presented again within this long, while its
    /// successor is unused, is a retry: answered with the same successor
    /// instead of revoking the session (at most 1m; 0s: never).
    #[arg(long, env = "IDENTITY_REFRESH_REUSE_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub refresh_reuse_grace: Duration,

    /// Clock skew tolerated on exp/nbf/iat (at most 5m).
    #[arg(long, env = "IDENTITY_TOKEN_LEEWAY", default_value = "30s", value_parser = humantime::parse_duration)]
    pub token_leeway: Duration,

    /// bcrypt cost (work factor 2^cost) [default: 12; --dev: 10]. Production minimum 12.
    #[arg(long, env = "IDENTITY_BCRYPT_COST")]
    pub bcrypt_cost: Option<u32>,

    /// Threads that run bcrypt [default: the number of cores].
    #[arg(long, env = "IDENTITY_BCRYPT_THREADS")]
    pub bcrypt_threads: Option<usize>,

    /// bcrypt jobs that may wait; beyond it calls are shed with RESOURCE_EXHAUSTED.
    #[arg(long, env = "IDENTITY_BCRYPT_QUEUE", default_value_t = 64)]
    pub bcrypt_queue: usize,

    /// Allow a SQLite database in production (single replica only).
    #[arg(long, env = "IDENTITY_ALLOW_SQLITE", value_parser = BoolishValueParser::new(), default_value = "false", action = clap::ArgAction::Set)]
    pub allow_sqlite: bool,

    /// Allow plaintext gRPC in production (only behind a mesh that does mTLS).
    #[arg(long, env = "IDENTITY_ALLOW_PLAINTEXT", value_parser = BoolishValueParser::new(), default_value = "false", action = clap::ArgAction::Set)]
    pub allow_plaintext: bool,

    /// TLS certificate chain (PEM) for the gRPC port.
    #[arg(long, env = "IDENTITY_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,

    /// TLS private key (PEM) for the gRPC port.
    #[arg(long, env = "IDENTITY_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,

    /// CA bundle (PEM): when set, clients must present a certificate it signed (mTLS).
    #[arg(long, env = "IDENTITY_TLS_CLIENT_CA_FILE")]
    pub tls_client_ca_file: Option<PathBuf>,

    /// Certificate revocation lists (PEM, one per client CA) for mTLS: a
    /// revoked client certificate is refused at the handshake. Reloaded with
    /// the certificates.
    #[arg(long, env = "IDENTITY_TLS_CLIENT_CRL_FILE")]
    pub tls_client_crl_file: Option<PathBuf>,

    /// mTLS: only client certificates with one of these subject alternative
    /// names (DNS names or URIs such as spiffe://..., exact match) connect.
    #[arg(long, env = "IDENTITY_TLS_CLIENT_ALLOWED_SANS", value_delimiter = ',')]
    pub tls_client_allowed_sans: Vec<String>,

    /// How long in-flight calls may finish after SIGTERM/SIGINT.
    #[arg(long, env = "IDENTITY_SHUTDOWN_GRACE", default_value = "20s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    /// How often the database is probed for the health service.
    #[arg(long, env = "IDENTITY_HEALTH_INTERVAL", default_value = "2s", value_parser = humantime::parse_duration)]
    pub health_interval: Duration,

    /// Rate limits on the authentication RPCs. `false` is accepted only
    /// with --dev (load tests, benchmarks).
    #[arg(long, env = "IDENTITY_RATE_LIMIT_ENABLED", value_parser = BoolishValueParser::new(), default_value = "true", action = clap::ArgAction::Set)]
    pub rate_limit_enabled: bool,

    /// Register calls per client address (COUNT/PERIOD).
    #[arg(long, env = "IDENTITY_RATE_LIMIT_REGISTER", default_value = "10/1m")]
    pub rate_limit_register: String,

    /// Register calls per email.
    #[arg(
        long,
        env = "IDENTITY_RATE_LIMIT_REGISTER_ACCOUNT",
        default_value = "5/1m"
    )]
    pub rate_limit_register_account: String,

    /// Login calls per client address.
    #[arg(long, env = "IDENTITY_RATE_LIMIT_LOGIN", default_value = "30/1m")]
    pub rate_limit_login: String,

    /// Login calls per account (email), from every address together.
    #[arg(
        long,
        env = "IDENTITY_RATE_LIMIT_LOGIN_ACCOUNT",
        default_value = "100/1m"
    )]
    pub rate_limit_login_account: String,

    /// Refresh calls per client address.
    #[arg(long, env = "IDENTITY_RATE_LIMIT_REFRESH", default_value = "60/1m")]
    pub rate_limit_refresh: String,

    /// ValidateToken calls per client address (other services call it a lot).
    #[arg(long, env = "IDENTITY_RATE_LIMIT_VALIDATE", default_value = "20000/1m")]
    pub rate_limit_validate: String,

    /// ExchangeToken calls per client address.
    #[arg(long, env = "IDENTITY_RATE_LIMIT_EXCHANGE", default_value = "30/1m")]
    pub rate_limit_exchange: String,

    /// WatchRevocations streams opened per client address, counted before
    /// the watcher is authorized (which reads the database). A verifier
    /// opens one stream per replica and reopens it rarely: 120 at once let
    /// a fleet of verifiers restarting together behind one address (a NAT,
    /// a node, a proxy not in IDENTITY_TRUSTED_PROXIES) all reconnect,
    /// while an address opening streams in a loop gets two a second.
    #[arg(long, env = "IDENTITY_RATE_LIMIT_WATCH", default_value = "120/1m")]
    pub rate_limit_watch: String,

    /// redis://host:6379/0 — counters shared by every replica (one global
    /// limit). rediss:// for TLS, the server's certificate and host name
    /// checked against the system roots or IDENTITY_RATE_LIMIT_REDIS_CA_FILE.
    #[arg(long, env = "IDENTITY_RATE_LIMIT_REDIS_URL", hide_env_values = true)]
    pub rate_limit_redis_url: Option<String>,

    /// File holding IDENTITY_RATE_LIMIT_REDIS_URL; a trailing newline is ignored.
    #[arg(long, env = "IDENTITY_RATE_LIMIT_REDIS_URL_FILE")]
    pub rate_limit_redis_url_file: Option<std::path::PathBuf>,

    /// PEM bundle of the CA that signed the Redis server's certificate
    /// (rediss:// only); without it, the system roots.
    #[arg(long, env = "IDENTITY_RATE_LIMIT_REDIS_CA_FILE")]
    pub rate_limit_redis_ca_file: Option<std::path::PathBuf>,

    /// IPv6 clients are rate-limited and throttled per prefix of this many
    /// bits (32-128): one subscriber usually holds a whole /64.
    #[arg(long, env = "IDENTITY_RATE_LIMIT_IPV6_PREFIX", default_value_t = 64)]
    pub rate_limit_ipv6_prefix: u8,

    /// Keys (client addresses, accounts) each local rate limiter holds at
    /// most; beyond it new keys share one counter. Quiet keys are pruned
    /// every 10 s.
    #[arg(long, env = "IDENTITY_RATE_LIMIT_MAX_KEYS", default_value_t = 100_000)]
    pub rate_limit_max_keys: usize,

    /// Proxies (CIDRs, comma-separated) whose x-forwarded-for is believed.
    #[arg(long, env = "IDENTITY_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,

    /// Peers (CIDRs, comma-separated) whose W3C trace context (traceparent,
    /// tracestate) is continued; anyone else's call starts a new trace that
    /// only links to theirs. mTLS clients (a verified certificate) always are.
    #[arg(long, env = "IDENTITY_TRACE_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trace_trusted_proxies: Vec<String>,

    /// Smallest zxcvbn score (0-4) a new password needs.
    #[arg(long, env = "IDENTITY_PASSWORD_MIN_SCORE", default_value_t = 3)]
    pub password_min_score: u8,

    /// How often the TLS files are checked for changes (SIGHUP reloads at once).
    #[arg(long, env = "IDENTITY_TLS_RELOAD_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub tls_reload_interval: Duration,

    /// Origins (comma-separated, exact) allowed to call through gRPC-Web;
    /// gRPC-Web is off when empty. No wildcard.
    #[arg(long, env = "IDENTITY_GRPC_WEB_ORIGINS", value_delimiter = ',')]
    pub grpc_web_origins: Vec<String>,

    /// Largest request message, in bytes.
    #[arg(long, env = "IDENTITY_MAX_MESSAGE_BYTES", default_value_t = 64 * 1024)]
    pub max_message_bytes: usize,

    /// Concurrent streams per HTTP/2 connection.
    #[arg(long, env = "IDENTITY_MAX_CONCURRENT_STREAMS", default_value_t = 256)]
    pub max_concurrent_streams: u32,

    /// Deadline for one call (the caller's grpc-timeout, if shorter, wins).
    #[arg(long, env = "IDENTITY_REQUEST_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// Admin HTTP listener for Prometheus metrics (GET /metrics); off when unset.
    #[arg(long, env = "IDENTITY_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// How long audit rows are kept.
    #[arg(long, env = "IDENTITY_AUDIT_RETENTION", default_value = "90days", value_parser = humantime::parse_duration)]
    pub audit_retention: Duration,

    /// How long an ended (expired or revoked) session and its refresh
    /// tokens are kept before housekeeping deletes them.
    #[arg(long, env = "IDENTITY_SESSION_RETENTION", default_value = "7days", value_parser = humantime::parse_duration)]
    pub session_retention: Duration,

    /// How often housekeeping deletes ended sessions past their retention.
    #[arg(long, env = "IDENTITY_HOUSEKEEPING_INTERVAL", default_value = "5m", value_parser = humantime::parse_duration)]
    pub housekeeping_interval: Duration,

    /// Sessions deleted per statement (each in its own short transaction).
    #[arg(long, env = "IDENTITY_HOUSEKEEPING_BATCH_SIZE", default_value_t = 1000)]
    pub housekeeping_batch_size: usize,

    /// Emails (comma-separated) that get the admin role when they register.
    /// The only way to an admin without the `identity admin` command.
    #[arg(long, env = "IDENTITY_BOOTSTRAP_ADMINS", value_delimiter = ',')]
    pub bootstrap_admins: Vec<String>,

    /// Log format [default: text with --dev, else json].
    #[arg(long, env = "IDENTITY_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,

    /// Log filter (tracing EnvFilter syntax).
    #[arg(long, env = "IDENTITY_LOG", default_value = "info")]
    pub log: String,

    #[command(flatten)]
    pub provider: ProviderSettings,

    #[command(flatten)]
    pub revocation: RevocationArgs,

    #[command(flatten)]
    pub http: HttpArgs,
}
