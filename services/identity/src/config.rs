//! The one typed configuration, loaded and validated once at start. A bad
//! setting stops the program with a message that names it.

use crate::cli::{Cli, LogFormat, Settings};
use crate::infra::limits::LimitSettings;
use clap::{CommandFactory, FromArgMatches};
use identity_core::rate_limit::{Action, Quota};
use identity_store::{Backend, PoolSettings};
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A refused setting: `setting` is the environment variable to fix.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {problem}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub problem: String,
}

fn refuse(setting: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        problem: problem.into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Dev,
    Production,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    /// Only with `client_ca`.
    pub client_crl: Option<PathBuf>,
    /// Only with `client_ca`; empty: any name. DNS names are lower case.
    pub client_allowed_sans: Vec<String>,
}

/// Where the signing keys come from.
#[derive(Debug, Clone)]
pub struct KeySettings {
    /// PEM files; the first signs.
    pub ed25519_files: Vec<PathBuf>,
    /// In --dev without any key: generate one here and keep it.
    pub dev_generated: Option<PathBuf>,
    pub hs256_secret: Option<SecretString>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Mode,
    pub listen_addr: SocketAddr,
    pub health_listen_addr: Option<SocketAddr>,
    pub database_url: SecretString,
    /// IDENTITY_REVOCATION_LISTEN_URL, when the listener must not use
    /// `database_url` (transaction pooling).
    pub revocation_listen_url: Option<SecretString>,
    pub backend: Backend,
    pub pool: PoolSettings,
    pub migrate_on_start: bool,
    pub keys: KeySettings,
    pub issuer: String,
    pub audience: String,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
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
    pub audit_retention: Duration,
    /// Housekeeping of ended sessions (service::housekeeping).
    pub housekeeping: crate::service::housekeeping::HousekeepingSettings,
    /// The external provider of ExchangeToken; `None` turns it off.
    pub provider: Option<crate::provider::ProviderConfig>,
    /// The fast validation path and revocation across replicas.
    pub revocation: crate::service::revocation::RevocationSettings,
}

/// Secrets that must never be accepted: documentation examples and the
/// usual placeholders. Compared case-insensitively.
const PLACEHOLDER_SECRETS: &[&str] = &[
    "secret",
    "changeme",
    "change-me",
    "change_me",
    "password",
    "your-secret-key",
    "your_secret_key",
    "supersecret",
    "mysecret",
    "default",
    "example",
    "test",
    "development",
    "replace-me-with-at-least-32-random-bytes",
];

pub const MIN_SECRET_BYTES: usize = 32;
pub const PRODUCTION_MIN_BCRYPT_COST: u32 = 12;

/// Why an HS256 secret is unacceptable, if it is.
pub fn weak_secret(secret: &str) -> Option<String> {
    let lower = secret.to_ascii_lowercase();
    if PLACEHOLDER_SECRETS
        .iter()
        .any(|p| lower == *p || lower.contains("changeme") || lower.contains("replace-me"))
    {
        return Some(
            "is a well-known placeholder; generate one with `openssl rand -base64 48`".into(),
        );
    }
    if secret.len() < MIN_SECRET_BYTES {
        return Some(format!(
            "is {} bytes; at least {MIN_SECRET_BYTES} are required (`openssl rand -base64 48`)",
            secret.len()
        ));
    }
    let mut distinct: Vec<u8> = secret.bytes().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 8 {
        return Some("has too little variety to be random (`openssl rand -base64 48`)".into());
    }
    None
}

/// Parses the command line with a TOML file's values as defaults.
pub fn parse_cli<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let mut command = Cli::command();
    if let Some(file) = config_file_from(&args) {
        let defaults = read_toml_defaults(&file).map_err(|problem| {
            command.error(
                clap::error::ErrorKind::InvalidValue,
                format!("IDENTITY_CONFIG_FILE {}: {problem}", file.display()),
            )
        })?;
        let known: Vec<String> = command
            .find_subcommand("serve")
            .map(|s| s.get_arguments().map(|a| a.get_id().to_string()).collect())
            .unwrap_or_default();
        for (key, _) in &defaults {
            if !known.contains(key) || key == "config_file" {
                return Err(command.error(
                    clap::error::ErrorKind::UnknownArgument,
                    format!(
                        "IDENTITY_CONFIG_FILE {}: unknown setting `{key}`",
                        file.display()
                    ),
                ));
            }
        }
        command = command.mut_subcommand("serve", |mut serve| {
            for (key, value) in defaults {
                serve = serve.mut_arg(key, |arg| arg.default_value(value));
            }
            serve
        });
    }
    let matches = command.try_get_matches_from(args)?;
    Cli::from_arg_matches(&matches)
}

fn config_file_from(args: &[OsString]) -> Option<PathBuf> {
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let text = arg.to_string_lossy();
        if text == "--config" {
            return iter.next().map(PathBuf::from);
        }
        if let Some(path) = text.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os("IDENTITY_CONFIG_FILE").map(PathBuf::from)
}

fn read_toml_defaults(path: &Path) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| e.message().to_owned())?;
    table
        .into_iter()
        .map(|(key, value)| {
            let text = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Array(items) => items
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| format!("`{key}`: arrays hold strings"))
                    })
                    .collect::<Result<Vec<_>, _>>()?
                    .join(","),
                _ => {
                    return Err(format!(
                        "`{key}`: use a string, integer, boolean or array of strings"
                    ));
                }
            };
            Ok((key, text))
        })
        .collect()
}

fn read_file_setting(setting: &'static str, path: &Path) -> Result<(), ConfigError> {
    std::fs::metadata(path)
        .map(drop)
        .map_err(|e| refuse(setting, format!("{}: {e}", path.display())))
}

/// A secret given either inline (`setting`) or as a file (`file_setting`),
/// e.g. a mounted Kubernetes Secret that keeps it out of the environment.
/// An empty inline value counts as unset. The file's trailing line break is
/// dropped: `kubectl create secret --from-file` and editors leave one, and
/// it would otherwise become part of a password.
fn secret_setting(
    setting: &'static str,
    file_setting: &'static str,
    value: Option<String>,
    file: Option<&Path>,
) -> Result<Option<String>, ConfigError> {
    let value = value.filter(|v| !v.is_empty());
    let Some(path) = file else {
        return Ok(value);
    };
    if value.is_some() {
        return Err(refuse(
            file_setting,
            format!("{setting} and {file_setting} are both set: use one"),
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| refuse(file_setting, format!("{}: {e}", path.display())))?;
    let text = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    if text.is_empty() {
        return Err(refuse(file_setting, format!("{} is empty", path.display())));
    }
    Ok(Some(text.to_owned()))
}

/// The mTLS name allow-list: DNS names (compared in lower case, no
/// wildcards) or URIs with a scheme (spiffe://...), compared exactly.
fn allowed_sans(entries: &[String]) -> Result<Vec<String>, ConfigError> {
    const SETTING: &str = "IDENTITY_TLS_CLIENT_ALLOWED_SANS";
    entries
        .iter()
        .map(|entry| entry.trim())
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            if entry.contains("://") {
                Ok(entry.to_owned())
            } else if entry.contains('*') {
                Err(refuse(
                    SETTING,
                    format!("{entry:?}: wildcards are not supported, list each name"),
                ))
            } else if entry.contains(|c: char| c.is_whitespace() || c == '/') {
                Err(refuse(
                    SETTING,
                    format!("{entry:?} is neither a DNS name nor a URI"),
                ))
            } else {
                Ok(entry.to_ascii_lowercase())
            }
        })
        .collect()
}

/// A list of CIDRs or single addresses (empty entries skipped).
fn networks(setting: &'static str, entries: &[String]) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    entries
        .iter()
        .map(|entry| entry.trim())
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            entry
                .parse::<ipnet::IpNet>()
                .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| refuse(setting, format!("`{entry}` is not an address or CIDR")))
        })
        .collect()
}

impl Config {
    pub fn load(settings: Settings, dev: bool) -> Result<Config, ConfigError> {
        let mode = if dev { Mode::Dev } else { Mode::Production };
        let production = mode == Mode::Production;
        let provider = crate::provider::ProviderConfig::load(&settings.provider, production)?;
        let revocation =
            crate::service::revocation::RevocationSettings::load(&settings.revocation)?;

        let database_url = secret_setting(
            "IDENTITY_DATABASE_URL",
            "IDENTITY_DATABASE_URL_FILE",
            settings.database_url,
            settings.database_url_file.as_deref(),
        )?;
        let database_url = match (database_url, mode) {
            (Some(url), _) if !url.trim().is_empty() => url,
            (_, Mode::Dev) => format!(
                "sqlite://{}",
                settings.data_dir.join("identity.db").display()
            ),
            (_, Mode::Production) => {
                return Err(refuse(
                    "IDENTITY_DATABASE_URL",
                    "is required in production (postgres://user:password@host:5432/identity)",
                ));
            }
        };
        let backend = Backend::of_url(&database_url).ok_or_else(|| {
            refuse(
                "IDENTITY_DATABASE_URL",
                "must start with postgres://, postgresql:// or sqlite://",
            )
        })?;
        if backend == Backend::Postgres {
            let (_, security) = identity_store::pg_tls::parse(&database_url)
                .map_err(|problem| refuse("IDENTITY_DATABASE_URL", problem.to_string()))?;
            identity_store::pg_tls::client_config(&security)
                .map_err(|problem| refuse("IDENTITY_DATABASE_URL", problem.to_string()))?;
        }
        let revocation_listen_url = secret_setting(
            "IDENTITY_REVOCATION_LISTEN_URL",
            "IDENTITY_REVOCATION_LISTEN_URL_FILE",
            settings.revocation.revocation_listen_url.clone(),
            settings.revocation.revocation_listen_url_file.as_deref(),
        )?;
        if let Some(url) = &revocation_listen_url {
            if backend != Backend::Postgres || Backend::of_url(url) != Some(Backend::Postgres) {
                return Err(refuse(
                    "IDENTITY_REVOCATION_LISTEN_URL",
                    "must be a postgres:// URL of the database of IDENTITY_DATABASE_URL (which must be PostgreSQL)",
                ));
            }
            let (_, security) = identity_store::pg_tls::parse(url)
                .map_err(|problem| refuse("IDENTITY_REVOCATION_LISTEN_URL", problem.to_string()))?;
            identity_store::pg_tls::client_config(&security)
                .map_err(|problem| refuse("IDENTITY_REVOCATION_LISTEN_URL", problem.to_string()))?;
        }
        if production && backend == Backend::Sqlite && !settings.allow_sqlite {
            return Err(refuse(
                "IDENTITY_DATABASE_URL",
                "is SQLite, which production refuses (one node, no shared revocation); use PostgreSQL or set IDENTITY_ALLOW_SQLITE=true",
            ));
        }
        if settings.database_pool_size == 0 {
            return Err(refuse("IDENTITY_DATABASE_POOL_SIZE", "must be at least 1"));
        }

        let secret_key = secret_setting(
            "IDENTITY_SECRET_KEY",
            "IDENTITY_SECRET_KEY_FILE",
            settings.secret_key,
            settings.secret_key_file.as_deref(),
        )?;
        let hs256_secret = match secret_key {
            Some(secret) if !secret.is_empty() => {
                if let Some(problem) = weak_secret(&secret) {
                    return Err(refuse("IDENTITY_SECRET_KEY", problem));
                }
                Some(SecretString::from(secret))
            }
            _ => None,
        };
        for file in &settings.signing_key_file {
            read_file_setting("IDENTITY_SIGNING_KEY_FILE", file)?;
        }
        let dev_generated =
            (settings.signing_key_file.is_empty() && hs256_secret.is_none() && !production)
                .then(|| settings.data_dir.join("signing-key.pem"));
        if production && settings.signing_key_file.is_empty() && hs256_secret.is_none() {
            return Err(refuse(
                "IDENTITY_SIGNING_KEY_FILE",
                "no signing key: set IDENTITY_SIGNING_KEY_FILE to an Ed25519 PEM (`identity keygen --out key.pem`) or IDENTITY_SECRET_KEY to at least 32 random bytes",
            ));
        }

        let bcrypt_cost = settings
            .bcrypt_cost
            .unwrap_or(if production { 12 } else { 10 });
        if !(4..=31).contains(&bcrypt_cost) {
            return Err(refuse("IDENTITY_BCRYPT_COST", "must be between 4 and 31"));
        }
        if production && bcrypt_cost < PRODUCTION_MIN_BCRYPT_COST {
            return Err(refuse(
                "IDENTITY_BCRYPT_COST",
                format!(
                    "is {bcrypt_cost}; production requires at least {PRODUCTION_MIN_BCRYPT_COST}"
                ),
            ));
        }
        let bcrypt_threads = settings
            .bcrypt_threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from));
        if bcrypt_threads == 0 {
            return Err(refuse("IDENTITY_BCRYPT_THREADS", "must be at least 1"));
        }

        let minute = Duration::from_secs(60);
        if settings.access_token_ttl < minute || settings.access_token_ttl > 24 * 60 * minute {
            return Err(refuse(
                "IDENTITY_ACCESS_TOKEN_TTL",
                "must be between 1m and 24h",
            ));
        }
        if settings.refresh_token_ttl < settings.access_token_ttl {
            return Err(refuse(
                "IDENTITY_REFRESH_TOKEN_TTL",
                "must be at least IDENTITY_ACCESS_TOKEN_TTL",
            ));
        }
        if settings.token_leeway > 5 * minute {
            return Err(refuse("IDENTITY_TOKEN_LEEWAY", "must be at most 5m"));
        }
        if settings.issuer.trim().is_empty() {
            return Err(refuse("IDENTITY_ISSUER", "must not be empty"));
        }
        if settings.audience.trim().is_empty() {
            return Err(refuse("IDENTITY_AUDIENCE", "must not be empty"));
        }

        let tls = match (settings.tls_cert_file, settings.tls_key_file) {
            (Some(cert), Some(key)) => {
                read_file_setting("IDENTITY_TLS_CERT_FILE", &cert)?;
                read_file_setting("IDENTITY_TLS_KEY_FILE", &key)?;
                if let Some(ca) = &settings.tls_client_ca_file {
                    read_file_setting("IDENTITY_TLS_CLIENT_CA_FILE", ca)?;
                }
                let client_allowed_sans = allowed_sans(&settings.tls_client_allowed_sans)?;
                if settings.tls_client_ca_file.is_none() {
                    if settings.tls_client_crl_file.is_some() {
                        return Err(refuse(
                            "IDENTITY_TLS_CLIENT_CRL_FILE",
                            "is only valid with IDENTITY_TLS_CLIENT_CA_FILE (mTLS)",
                        ));
                    }
                    if !client_allowed_sans.is_empty() {
                        return Err(refuse(
                            "IDENTITY_TLS_CLIENT_ALLOWED_SANS",
                            "is only valid with IDENTITY_TLS_CLIENT_CA_FILE (mTLS)",
                        ));
                    }
                }
                if let Some(crl) = &settings.tls_client_crl_file {
                    read_file_setting("IDENTITY_TLS_CLIENT_CRL_FILE", crl)?;
                }
                Some(TlsFiles {
                    cert,
                    key,
                    client_ca: settings.tls_client_ca_file,
                    client_crl: settings.tls_client_crl_file,
                    client_allowed_sans,
                })
            }
            (Some(_), None) => {
                return Err(refuse(
                    "IDENTITY_TLS_KEY_FILE",
                    "is required with IDENTITY_TLS_CERT_FILE",
                ));
            }
            (None, Some(_)) => {
                return Err(refuse(
                    "IDENTITY_TLS_CERT_FILE",
                    "is required with IDENTITY_TLS_KEY_FILE",
                ));
            }
            (None, None) => {
                if settings.tls_client_ca_file.is_some() {
                    return Err(refuse(
                        "IDENTITY_TLS_CERT_FILE",
                        "is required for mTLS (IDENTITY_TLS_CLIENT_CA_FILE)",
                    ));
                }
                if settings.tls_client_crl_file.is_some()
                    || settings
                        .tls_client_allowed_sans
                        .iter()
                        .any(|name| !name.trim().is_empty())
                {
                    return Err(refuse(
                        "IDENTITY_TLS_CLIENT_CA_FILE",
                        "is required with IDENTITY_TLS_CLIENT_CRL_FILE or IDENTITY_TLS_CLIENT_ALLOWED_SANS",
                    ));
                }
                None
            }
        };
        if production && tls.is_none() && !settings.allow_plaintext {
            return Err(refuse(
                "IDENTITY_TLS_CERT_FILE",
                "production serves TLS only: set IDENTITY_TLS_CERT_FILE and IDENTITY_TLS_KEY_FILE, or IDENTITY_ALLOW_PLAINTEXT=true behind a mesh that terminates mTLS",
            ));
        }

        let mut bootstrap_admins = Vec::new();
        for email in settings
            .bootstrap_admins
            .iter()
            .filter(|e| !e.trim().is_empty())
        {
            bootstrap_admins.push(identity_core::validation::email(email).map_err(|problem| {
                refuse("IDENTITY_BOOTSTRAP_ADMINS", format!("an entry {problem}"))
            })?);
        }

        if production && !settings.rate_limit_enabled {
            return Err(refuse(
                "IDENTITY_RATE_LIMIT_ENABLED",
                "rate limits can be switched off only with --dev (load tests); remove the setting",
            ));
        }
        let quota = |setting: &'static str, text: &str| {
            Quota::parse(text).map_err(|p| refuse(setting, p.to_string()))
        };
        let per_address = HashMap::from([
            (
                Action::Register,
                quota(
                    "IDENTITY_RATE_LIMIT_REGISTER",
                    &settings.rate_limit_register,
                )?,
            ),
            (
                Action::Login,
                quota("IDENTITY_RATE_LIMIT_LOGIN", &settings.rate_limit_login)?,
            ),
            (
                Action::Refresh,
                quota("IDENTITY_RATE_LIMIT_REFRESH", &settings.rate_limit_refresh)?,
            ),
            (
                Action::Validate,
                quota(
                    "IDENTITY_RATE_LIMIT_VALIDATE",
                    &settings.rate_limit_validate,
                )?,
            ),
            (
                Action::Exchange,
                quota(
                    "IDENTITY_RATE_LIMIT_EXCHANGE",
                    &settings.rate_limit_exchange,
                )?,
            ),
        ]);
        let per_account = HashMap::from([
            (
                Action::Register,
                quota(
                    "IDENTITY_RATE_LIMIT_REGISTER_ACCOUNT",
                    &settings.rate_limit_register_account,
                )?,
            ),
            (
                Action::Login,
                quota(
                    "IDENTITY_RATE_LIMIT_LOGIN_ACCOUNT",
                    &settings.rate_limit_login_account,
                )?,
            ),
        ]);
        let redis_url = secret_setting(
            "IDENTITY_RATE_LIMIT_REDIS_URL",
            "IDENTITY_RATE_LIMIT_REDIS_URL_FILE",
            settings.rate_limit_redis_url,
            settings.rate_limit_redis_url_file.as_deref(),
        )?;
        let redis_url = match redis_url.filter(|u| !u.trim().is_empty()) {
            Some(url)
                if url.starts_with("redis://")
                    || url.starts_with("rediss://")
                    || url.starts_with("redis+unix://") =>
            {
                if url.contains("#insecure") {
                    return Err(refuse(
                        "IDENTITY_RATE_LIMIT_REDIS_URL",
                        "#insecure (no certificate check) is refused; name the CA with IDENTITY_RATE_LIMIT_REDIS_CA_FILE",
                    ));
                }
                Some(url)
            }
            Some(_) => {
                return Err(refuse(
                    "IDENTITY_RATE_LIMIT_REDIS_URL",
                    "must start with redis:// or rediss:// (TLS)",
                ));
            }
            None => None,
        };
        let redis_ca_pem = match &settings.rate_limit_redis_ca_file {
            None => None,
            Some(path) => {
                const SETTING: &str = "IDENTITY_RATE_LIMIT_REDIS_CA_FILE";
                if !redis_url
                    .as_deref()
                    .is_some_and(|u| u.starts_with("rediss://"))
                {
                    return Err(refuse(
                        SETTING,
                        "needs a rediss:// IDENTITY_RATE_LIMIT_REDIS_URL",
                    ));
                }
                let bundle = identity_store::pem::read_certificates(path)
                    .map_err(|e| refuse(SETTING, e.to_string()))?;
                Some(bundle.pem)
            }
        };
        let redis_url = redis_url.map(SecretString::from);
        let trusted_proxies = networks("IDENTITY_TRUSTED_PROXIES", &settings.trusted_proxies)?;
        let trace_trusted_proxies = networks(
            "IDENTITY_TRACE_TRUSTED_PROXIES",
            &settings.trace_trusted_proxies,
        )?;
        if !(32..=128).contains(&settings.rate_limit_ipv6_prefix) {
            return Err(refuse(
                "IDENTITY_RATE_LIMIT_IPV6_PREFIX",
                "must be between 32 and 128 (bits of an IPv6 address that name one client)",
            ));
        }
        if settings.password_min_score > 4 {
            return Err(refuse(
                "IDENTITY_PASSWORD_MIN_SCORE",
                "must be between 0 and 4",
            ));
        }
        if production && settings.password_min_score < 3 {
            return Err(refuse(
                "IDENTITY_PASSWORD_MIN_SCORE",
                "production requires at least 3",
            ));
        }
        let mut grpc_web_origins = Vec::new();
        for origin in settings
            .grpc_web_origins
            .iter()
            .filter(|o| !o.trim().is_empty())
        {
            let origin = origin.trim();
            let valid = (origin.starts_with("https://") || origin.starts_with("http://"))
                && !origin.contains('*')
                && !origin
                    .trim_start_matches("https://")
                    .trim_start_matches("http://")
                    .contains('/');
            if !valid {
                return Err(refuse(
                    "IDENTITY_GRPC_WEB_ORIGINS",
                    format!(
                        "`{origin}` must be an exact origin like https://app.example.com (no wildcard, no path)"
                    ),
                ));
            }
            grpc_web_origins.push(http::HeaderValue::from_str(origin).map_err(|_| {
                refuse(
                    "IDENTITY_GRPC_WEB_ORIGINS",
                    format!("`{origin}` is not a valid origin"),
                )
            })?);
        }
        if settings.max_message_bytes < 1024 {
            return Err(refuse(
                "IDENTITY_MAX_MESSAGE_BYTES",
                "must be at least 1024",
            ));
        }
        if settings.rate_limit_max_keys == 0 {
            return Err(refuse("IDENTITY_RATE_LIMIT_MAX_KEYS", "must be at least 1"));
        }
        if settings.housekeeping_interval.is_zero() {
            return Err(refuse(
                "IDENTITY_HOUSEKEEPING_INTERVAL",
                "must be longer than zero",
            ));
        }
        if !(1..=100_000).contains(&settings.housekeeping_batch_size) {
            return Err(refuse(
                "IDENTITY_HOUSEKEEPING_BATCH_SIZE",
                "must be between 1 and 100000",
            ));
        }
        if settings.max_concurrent_streams == 0 {
            return Err(refuse(
                "IDENTITY_MAX_CONCURRENT_STREAMS",
                "must be at least 1",
            ));
        }

        let listen_addr = settings.listen_addr.unwrap_or_else(|| {
            if production {
                SocketAddr::from(([0, 0, 0, 0], 50051))
            } else {
                SocketAddr::from(([127, 0, 0, 1], 50051))
            }
        });

        Ok(Config {
            mode,
            listen_addr,
            health_listen_addr: settings.health_listen_addr,
            database_url: SecretString::from(database_url),
            revocation_listen_url: revocation_listen_url.map(SecretString::from),
            backend,
            pool: PoolSettings {
                max_size: settings.database_pool_size,
                timeout: settings.database_timeout,
            },
            migrate_on_start: settings.migrate_on_start.unwrap_or(!production),
            keys: KeySettings {
                ed25519_files: settings.signing_key_file,
                dev_generated,
                hs256_secret,
            },
            issuer: settings.issuer,
            audience: settings.audience,
            access_token_ttl: settings.access_token_ttl,
            refresh_token_ttl: settings.refresh_token_ttl,
            token_leeway: settings.token_leeway,
            bcrypt_cost,
            bcrypt_threads,
            bcrypt_queue: settings.bcrypt_queue,
            tls,
            shutdown_grace: settings.shutdown_grace,
            health_interval: settings.health_interval,
            log_format: settings.log_format.unwrap_or(if production {
                LogFormat::Json
            } else {
                LogFormat::Text
            }),
            log_filter: settings.log,
            bootstrap_admins,
            limits: LimitSettings {
                enabled: settings.rate_limit_enabled,
                per_address,
                per_account,
                redis_url,
                redis_ca_pem,
                max_keys: settings.rate_limit_max_keys,
            },
            trusted_proxies,
            rate_limit_ipv6_prefix: settings.rate_limit_ipv6_prefix,
            trace_trusted_proxies,
            password_min_score: settings.password_min_score,
            tls_reload_interval: settings.tls_reload_interval,
            grpc_web_origins,
            max_message_bytes: settings.max_message_bytes,
            max_concurrent_streams: settings.max_concurrent_streams,
            request_timeout: settings.request_timeout,
            metrics_addr: settings.metrics_addr,
            audit_retention: settings.audit_retention,
            housekeeping: crate::service::housekeeping::HousekeepingSettings {
                session_retention: settings.session_retention,
                interval: settings.housekeeping_interval,
                batch_size: settings.housekeeping_batch_size,
            },
            provider,
            revocation,
        })
    }

    pub fn database_url(&self) -> &str {
        self.database_url.expose_secret()
    }

    /// Where the revocation listener connects.
    pub fn revocation_listen_url(&self) -> &str {
        self.revocation_listen_url
            .as_ref()
            .unwrap_or(&self.database_url)
            .expose_secret()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Command;

    fn secret_from_file(contents: &str) -> Result<Option<String>, ConfigError> {
        let path = std::env::temp_dir().join(format!("identity-secret-{}", uuid::Uuid::new_v4()));
        std::fs::write(&path, contents).unwrap();
        let read = secret_setting(
            "IDENTITY_SECRET_KEY",
            "IDENTITY_SECRET_KEY_FILE",
            None,
            Some(&path),
        );
        let _ = std::fs::remove_file(&path);
        read
    }

    #[test]
    fn a_secret_file_loses_one_trailing_line_break_only() {
        assert_eq!(secret_from_file("abc\n").unwrap().as_deref(), Some("abc"));
        assert_eq!(secret_from_file("abc\r\n").unwrap().as_deref(), Some("abc"));
        assert_eq!(secret_from_file("abc").unwrap().as_deref(), Some("abc"));
        assert_eq!(
            secret_from_file(" abc \n\n").unwrap().as_deref(),
            Some(" abc \n")
        );
        let empty = secret_from_file("\n").unwrap_err();
        assert_eq!(empty.setting, "IDENTITY_SECRET_KEY_FILE");
    }

    #[test]
    fn an_empty_inline_secret_yields_to_its_file() {
        let path = std::env::temp_dir().join(format!("identity-secret-{}", uuid::Uuid::new_v4()));
        std::fs::write(&path, "from-file\n").unwrap();
        let read = secret_setting(
            "IDENTITY_SECRET_KEY",
            "IDENTITY_SECRET_KEY_FILE",
            Some(String::new()),
            Some(&path),
        );
        let _ = std::fs::remove_file(&path);
        assert_eq!(read.unwrap().as_deref(), Some("from-file"));
    }

    fn load(args: &[&str]) -> Result<Config, ConfigError> {
        let mut argv = vec!["identity", "serve"];
        argv.extend_from_slice(args);
        let cli = parse_cli(argv).expect("arguments parse");
        match cli.command {
            Command::Serve(serve) => Config::load(serve.settings, serve.dev),
            _ => unreachable!("serve was parsed"),
        }
    }

    const STRONG: &str = "--secret-key=q8Vf2kP0xZr7LmN4tY6wB1cD9eH3jS5a";

    #[test]
    fn production_without_a_key_names_the_key_setting() {
        let err = load(&["--database-url=postgres://db/x", "--allow-plaintext=true"]).unwrap_err();
        assert_eq!(err.setting, "IDENTITY_SIGNING_KEY_FILE");
    }

    #[test]
    fn short_and_placeholder_secrets_are_refused() {
        for secret in [
            "--secret-key=short",
            "--secret-key=changeme",
            "--secret-key=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ] {
            let err = load(&[
                "--database-url=postgres://db/x",
                "--allow-plaintext=true",
                secret,
            ])
            .unwrap_err();
            assert_eq!(err.setting, "IDENTITY_SECRET_KEY", "{secret}");
        }
    }

    #[test]
    fn production_refuses_sqlite_and_plaintext_unless_allowed() {
        let err = load(&[
            "--database-url=sqlite://x.db",
            "--allow-plaintext=true",
            STRONG,
        ])
        .unwrap_err();
        assert_eq!(err.setting, "IDENTITY_DATABASE_URL");
        assert!(
            load(&[
                "--database-url=sqlite://x.db",
                "--allow-plaintext=true",
                "--allow-sqlite=true",
                STRONG
            ])
            .is_ok()
        );
        let err = load(&["--database-url=postgres://db/x", STRONG]).unwrap_err();
        assert_eq!(err.setting, "IDENTITY_TLS_CERT_FILE");
    }

    #[test]
    fn production_refuses_a_low_bcrypt_cost() {
        let err = load(&[
            "--database-url=postgres://db/x",
            "--allow-plaintext=true",
            STRONG,
            "--bcrypt-cost=10",
        ])
        .unwrap_err();
        assert_eq!(err.setting, "IDENTITY_BCRYPT_COST");
    }

    #[test]
    fn the_ipv6_prefix_is_bounded() {
        for bad in [
            "--rate-limit-ipv6-prefix=31",
            "--rate-limit-ipv6-prefix=129",
        ] {
            let err = load(&["--dev", "--data-dir=/tmp/identity-test", bad]).unwrap_err();
            assert_eq!(err.setting, "IDENTITY_RATE_LIMIT_IPV6_PREFIX", "{bad}");
        }
        let config = load(&["--dev", "--data-dir=/tmp/identity-test"]).unwrap();
        assert_eq!(config.rate_limit_ipv6_prefix, 64);
    }

    #[test]
    fn housekeeping_and_limiter_sizes_are_checked_and_named() {
        let config = load(&["--dev", "--data-dir=/tmp/identity-test"]).unwrap();
        assert_eq!(
            config.housekeeping.session_retention,
            Duration::from_secs(7 * 24 * 3600)
        );
        assert_eq!(config.housekeeping.interval, Duration::from_secs(300));
        assert_eq!(config.housekeeping.batch_size, 1000);
        assert_eq!(config.limits.max_keys, 100_000);
        for (arg, setting) in [
            (
                "--housekeeping-batch-size=0",
                "IDENTITY_HOUSEKEEPING_BATCH_SIZE",
            ),
            (
                "--housekeeping-batch-size=100001",
                "IDENTITY_HOUSEKEEPING_BATCH_SIZE",
            ),
            (
                "--housekeeping-interval=0s",
                "IDENTITY_HOUSEKEEPING_INTERVAL",
            ),
            ("--rate-limit-max-keys=0", "IDENTITY_RATE_LIMIT_MAX_KEYS"),
        ] {
            let err = load(&["--dev", "--data-dir=/tmp/identity-test", arg]).unwrap_err();
            assert_eq!(err.setting, setting, "{arg}");
        }
    }

    #[test]
    fn dev_mode_needs_nothing() {
        let config = load(&["--dev", "--data-dir=/tmp/identity-test"]).unwrap();
        assert_eq!(config.backend, Backend::Sqlite);
        assert!(config.keys.dev_generated.is_some());
        assert_eq!(config.listen_addr.to_string(), "127.0.0.1:50051");
        assert_eq!(config.access_token_ttl, Duration::from_secs(1800));
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let secret = "q8Vf2kP0xZr7LmN4tY6wB1cD9eH3jS5a";
        let config = load(&[
            "--database-url=postgres://user:hunter2pass@db/x",
            "--allow-plaintext=true",
            STRONG,
        ])
        .unwrap();
        let printed = format!("{config:?}");
        assert!(!printed.contains(secret), "{printed}");
        assert!(!printed.contains("hunter2pass"), "{printed}");
    }

    #[test]
    fn the_revocation_listen_url_is_a_secret_of_postgres_only() {
        let base = [
            "--database-url=postgres://pool@bouncer:6432/x",
            "--allow-plaintext=true",
            STRONG,
        ];
        let config = load(&base).unwrap();
        assert_eq!(
            config.revocation_listen_url(),
            "postgres://pool@bouncer:6432/x"
        );

        let path = std::env::temp_dir().join(format!("identity-listen-{}", uuid::Uuid::new_v4()));
        std::fs::write(&path, "postgres://listener:hunter3pass@db:5432/x\n").unwrap();
        let file = format!("--revocation-listen-url-file={}", path.display());
        let config = load(&[&base[..], &[file.as_str()]].concat());
        let _ = std::fs::remove_file(&path);
        let config = config.unwrap();
        assert_eq!(
            config.revocation_listen_url(),
            "postgres://listener:hunter3pass@db:5432/x"
        );
        assert_eq!(config.database_url(), "postgres://pool@bouncer:6432/x");
        let printed = format!("{config:?}");
        assert!(!printed.contains("hunter3pass"), "{printed}");

        for wrong in [
            "--revocation-listen-url=sqlite://x.db",
            "--revocation-listen-url=postgres://db/x?sslmode=verify-ca",
        ] {
            let err = load(&[&base[..], &[wrong]].concat()).unwrap_err();
            assert_eq!(err.setting, "IDENTITY_REVOCATION_LISTEN_URL", "{wrong}");
        }
        let err = load(&[
            "--dev",
            "--data-dir=/tmp/identity-test",
            "--revocation-listen-url=postgres://db/x",
        ])
        .unwrap_err();
        assert_eq!(err.setting, "IDENTITY_REVOCATION_LISTEN_URL");
    }

    #[test]
    fn trace_trusted_proxies_are_addresses_or_cidrs() {
        let config = load(&[
            "--dev",
            "--trace-trusted-proxies=10.0.0.0/8, 192.0.2.7,,fd00::/8",
        ])
        .unwrap();
        let expected: Vec<ipnet::IpNet> = ["10.0.0.0/8", "192.0.2.7/32", "fd00::/8"]
            .iter()
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(config.trace_trusted_proxies, expected);
        assert!(config.trusted_proxies.is_empty(), "a setting of its own");
        for bad in ["ingress-nginx", "10.0.0.0/33"] {
            let err = load(&["--dev", &format!("--trace-trusted-proxies={bad}")]).unwrap_err();
            assert_eq!(err.setting, "IDENTITY_TRACE_TRUSTED_PROXIES", "{bad}");
            assert!(err.problem.contains(bad), "{err}");
        }
    }

    #[test]
    fn a_toml_file_supplies_defaults_and_rejects_unknown_keys() {
        let dir = std::env::temp_dir().join(format!("identity-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("config.toml");
        std::fs::write(
            &file,
            "issuer = \"https://id.example\"\naccess_token_ttl = \"10m\"\n",
        )
        .unwrap();
        let config = load(&["--dev", &format!("--config={}", file.display())]).unwrap();
        assert_eq!(config.issuer, "https://id.example");
        assert_eq!(config.access_token_ttl, Duration::from_secs(600));
        std::fs::write(&file, "isuer = \"typo\"\n").unwrap();
        let err = parse_cli([
            "identity",
            "serve",
            "--dev",
            &format!("--config={}", file.display()),
        ])
        .err()
        .unwrap();
        assert!(err.to_string().contains("isuer"));
    }

    #[test]
    fn client_crl_and_allowed_sans_need_the_client_ca_and_are_named_when_wrong() {
        let dir = std::env::temp_dir().join(format!("identity-mtls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["tls.crt", "tls.key", "ca.pem", "crl.pem"] {
            std::fs::write(dir.join(name), "").unwrap();
        }
        let arg = |flag: &str, file: &str| format!("--{flag}={}", dir.join(file).display());
        let (cert, key, ca, crl) = (
            arg("tls-cert-file", "tls.crt"),
            arg("tls-key-file", "tls.key"),
            arg("tls-client-ca-file", "ca.pem"),
            arg("tls-client-crl-file", "crl.pem"),
        );
        let base = ["--dev", "--data-dir=/tmp/identity-test"];
        let with = |extra: &[&str]| {
            let mut args = base.to_vec();
            args.extend_from_slice(extra);
            load(&args)
        };
        let sans = "--tls-client-allowed-sans=billing.internal,spiffe://example.org/sa/billing";

        let err = with(&[&cert, &key, &crl]).unwrap_err();
        assert_eq!(err.setting, "IDENTITY_TLS_CLIENT_CRL_FILE");
        let err = with(&[&cert, &key, sans]).unwrap_err();
        assert_eq!(err.setting, "IDENTITY_TLS_CLIENT_ALLOWED_SANS");
        let err = with(&[&crl]).unwrap_err();
        assert_eq!(err.setting, "IDENTITY_TLS_CLIENT_CA_FILE");
        let missing = arg("tls-client-crl-file", "missing.pem");
        let err = with(&[&cert, &key, &ca, &missing]).unwrap_err();
        assert_eq!(err.setting, "IDENTITY_TLS_CLIENT_CRL_FILE");
        let err = with(&[&cert, &key, &ca, "--tls-client-allowed-sans=*.internal"]).unwrap_err();
        assert_eq!(err.setting, "IDENTITY_TLS_CLIENT_ALLOWED_SANS");

        let config = with(&[
            &cert,
            &key,
            &ca,
            &crl,
            "--tls-client-allowed-sans= Billing.Internal ,spiffe://example.org/sa/billing,",
        ])
        .unwrap();
        let tls = config.tls.unwrap();
        assert!(tls.client_crl.is_some());
        assert_eq!(
            tls.client_allowed_sans,
            ["billing.internal", "spiffe://example.org/sa/billing"]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
