//! The one typed configuration, loaded and validated once at start. A bad
//! setting stops the program with a message that names it.
//!
//! `Config::load` reads one section after another, each in its own file.
//! `crate::cli` owns every clap struct (the command line as given); config
//! only validates, so the imports go one way: config → cli.

mod accounts;
mod database;
mod file;
mod housekeeping;
pub mod http_listener;
pub mod keys;
mod limits;
mod listener;
pub mod provider;
pub mod revocation;
mod secrets;
mod tls;
mod tokens;

pub use database::database_url_setting;
pub use file::parse_cli;
pub use keys::{KeySettings, MIN_SECRET_BYTES, weak_secret};
pub use limits::PRODUCTION_MIN_BCRYPT_COST;

use crate::cli::{self, Settings};
use crate::infra::limits::LimitSettings;
use crate::telemetry::LogFormat;
use crate::transport::tls::TlsFiles;
use identity_store::{Backend, DatabaseUrl, PgUrl, PoolSettings};
use std::net::SocketAddr;
use std::time::Duration;

/// A refused setting: `setting` is the environment variable to fix.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {problem}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub problem: String,
}

/// `problem` is a text or one of the typed errors of the rules applied.
fn refuse(setting: &'static str, problem: impl std::fmt::Display) -> ConfigError {
    ConfigError {
        setting,
        problem: problem.to_string(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Dev,
    Production,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Mode,
    pub listen_addr: SocketAddr,
    pub health_listen_addr: Option<SocketAddr>,
    /// Parsed once, here; its `Debug` hides the URL (it may hold a password).
    pub database_url: DatabaseUrl,
    /// IDENTITY_REVOCATION_LISTEN_URL, when the listener must not use
    /// `database_url` (transaction pooling).
    pub revocation_listen_url: Option<PgUrl>,
    pub backend: Backend,
    pub pool: PoolSettings,
    pub migrate_on_start: bool,
    pub keys: KeySettings,
    pub issuer: String,
    pub audience: String,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    /// IDENTITY_REFRESH_REUSE_GRACE: at most a minute; zero turns it off.
    pub refresh_reuse_grace: Duration,
    pub token_leeway: Duration,
    pub bcrypt_cost: u32,
    pub bcrypt_threads: usize,
    pub bcrypt_queue: usize,
    pub tls: Option<TlsFiles>,
    pub shutdown_grace: Duration,
    pub health_interval: Duration,
    pub log_format: LogFormat,
    pub log_filter: String,
    pub bootstrap_admins: Vec<String>,
    pub limits: LimitSettings,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// IPv6 clients are limited per prefix of this length.
    pub rate_limit_ipv6_prefix: u8,
    /// Peers whose trace context is continued (mTLS clients always are).
    pub trace_trusted_proxies: Vec<ipnet::IpNet>,
    pub password_min_score: u8,
    pub tls_reload_interval: Duration,
    pub grpc_web_origins: Vec<http::HeaderValue>,
    pub max_message_bytes: usize,
    pub max_concurrent_streams: u32,
    pub request_timeout: Duration,
    pub metrics_addr: Option<SocketAddr>,
    /// The `/.well-known/` listener (JWK set, discovery); `None`: off.
    pub http: Option<http_listener::HttpListener>,
    pub audit_retention: Duration,
    /// Housekeeping of ended sessions (service::housekeeping).
    pub housekeeping: crate::service::housekeeping::HousekeepingSettings,
    /// The external provider of ExchangeToken; `None` turns it off.
    pub provider: Option<crate::provider::ProviderConfig>,
    /// The fast validation path and revocation across replicas.
    pub revocation: crate::service::revocation::RevocationSettings,
}

impl Config {
    pub fn load(settings: Settings, dev: bool) -> Result<Config, ConfigError> {
        let mode = if dev { Mode::Dev } else { Mode::Production };
        let provider = provider::load(&settings.provider, mode == Mode::Production)?;
        let revocation = revocation::load(&settings.revocation)?;
        let database = database::load(&settings, mode)?;
        let keys = keys::load(&settings.keys, mode, &settings.data_dir)?;
        let bcrypt = limits::bcrypt(&settings, mode)?;
        tokens::check(&settings)?;
        let tls = tls::load(&settings, mode)?;
        let bootstrap_admins = accounts::bootstrap_admins(&settings)?;
        let password_min_score = accounts::password_min_score(&settings, mode)?;
        let limits = limits::rate_limits(&settings, mode)?;
        let listener = listener::load(&settings, mode)?;
        let housekeeping = housekeeping::load(&settings)?;
        let http = http_listener::load(&settings, mode)?;

        Ok(Config {
            mode,
            listen_addr: listener.listen_addr,
            health_listen_addr: settings.health_listen_addr,
            backend: database.url.backend(),
            database_url: database.url,
            revocation_listen_url: database.revocation_listen_url,
            pool: database.pool,
            migrate_on_start: database.migrate_on_start,
            keys,
            issuer: settings.keys.issuer,
            audience: settings.keys.audience,
            access_token_ttl: settings.access_token_ttl,
            refresh_token_ttl: settings.refresh_token_ttl,
            refresh_reuse_grace: settings.refresh_reuse_grace,
            token_leeway: settings.token_leeway,
            bcrypt_cost: bcrypt.cost,
            bcrypt_threads: bcrypt.threads,
            bcrypt_queue: bcrypt.queue,
            tls,
            shutdown_grace: settings.shutdown_grace,
            health_interval: settings.health_interval,
            log_format: match settings.log_format {
                Some(cli::LogFormat::Json) => LogFormat::Json,
                Some(cli::LogFormat::Text) => LogFormat::Text,
                None => match mode {
                    Mode::Production => LogFormat::Json,
                    Mode::Dev => LogFormat::Text,
                },
            },
            log_filter: settings.log,
            bootstrap_admins,
            limits,
            trusted_proxies: listener.trusted_proxies,
            rate_limit_ipv6_prefix: settings.rate_limit_ipv6_prefix,
            trace_trusted_proxies: listener.trace_trusted_proxies,
            password_min_score,
            tls_reload_interval: settings.tls_reload_interval,
            grpc_web_origins: listener.grpc_web_origins,
            max_message_bytes: settings.max_message_bytes,
            max_concurrent_streams: settings.max_concurrent_streams,
            request_timeout: settings.request_timeout,
            metrics_addr: settings.metrics_addr,
            http,
            audit_retention: settings.audit_retention,
            housekeeping,
            provider,
            revocation,
        })
    }

    /// The database URL as given, password included: for the tests only,
    /// which compare it; the service uses the parsed [`DatabaseUrl`].
    #[cfg(test)]
    pub fn database_url(&self) -> &str {
        self.database_url.expose()
    }

    /// Where the revocation listener connects, as given (password
    /// included): IDENTITY_REVOCATION_LISTEN_URL, else the database's. For
    /// the tests only, like [`Self::database_url`].
    #[cfg(test)]
    pub fn revocation_listen_url(&self) -> &str {
        self.revocation_listen_url
            .as_ref()
            .map_or(self.database_url.expose(), PgUrl::expose)
    }
}

#[cfg(test)]
mod tests;
