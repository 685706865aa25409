//! The database: its URL (parsed here, once), the revocation listener's
//! URL, the pool and the migrations at start.

use super::secrets::secret_setting;
use super::{ConfigError, Mode, refuse};
use crate::cli::Settings;
use identity_store::{Backend, DatabaseUrl, PgUrl, PoolSettings, UrlError};

/// The database section of [`super::Config`].
pub(super) struct Database {
    pub url: DatabaseUrl,
    pub revocation_listen_url: Option<PgUrl>,
    pub pool: PoolSettings,
    pub migrate_on_start: bool,
}

/// IDENTITY_DATABASE_URL, parsed once: what `serve` and the commands that
/// take a database hand to the store.
pub fn database_url_setting(url: &str) -> Result<DatabaseUrl, ConfigError> {
    DatabaseUrl::parse(url).map_err(|problem| refuse("IDENTITY_DATABASE_URL", problem.to_string()))
}

pub(super) fn load(settings: &Settings, mode: Mode) -> Result<Database, ConfigError> {
    let production = mode == Mode::Production;
    let database_url = secret_setting(
        "IDENTITY_DATABASE_URL",
        "IDENTITY_DATABASE_URL_FILE",
        settings.database_url.clone(),
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
    let database_url = database_url_setting(&database_url)?;
    let backend = database_url.backend();
    if let DatabaseUrl::Postgres(url) = &database_url {
        identity_store::pg_tls::client_config(url.security())
            .map_err(|problem| refuse("IDENTITY_DATABASE_URL", problem))?;
    }
    let revocation_listen_url = secret_setting(
        "IDENTITY_REVOCATION_LISTEN_URL",
        "IDENTITY_REVOCATION_LISTEN_URL_FILE",
        settings.revocation.revocation_listen_url.clone(),
        settings.revocation.revocation_listen_url_file.as_deref(),
    )?;
    let revocation_listen_url = match revocation_listen_url {
        None => None,
        Some(url) => {
            const SETTING: &str = "IDENTITY_REVOCATION_LISTEN_URL";
            let url = match (backend, PgUrl::parse(&url)) {
                (Backend::Postgres, Ok(url)) => url,
                (Backend::Postgres, Err(problem)) if problem != UrlError::NotPostgres => {
                    return Err(refuse(SETTING, problem.to_string()));
                }
                _ => {
                    return Err(refuse(
                        SETTING,
                        "must be a postgres:// URL of the database of IDENTITY_DATABASE_URL (which must be PostgreSQL)",
                    ));
                }
            };
            identity_store::pg_tls::client_config(url.security())
                .map_err(|problem| refuse(SETTING, problem))?;
            Some(url)
        }
    };
    if production && backend == Backend::Sqlite && !settings.allow_sqlite {
        return Err(refuse(
            "IDENTITY_DATABASE_URL",
            "is SQLite, which production refuses (one node, no shared revocation); use PostgreSQL or set IDENTITY_ALLOW_SQLITE=true",
        ));
    }
    if settings.database_pool_size == 0 {
        return Err(refuse("IDENTITY_DATABASE_POOL_SIZE", "must be at least 1"));
    }
    Ok(Database {
        url: database_url,
        revocation_listen_url,
        pool: PoolSettings {
            max_size: settings.database_pool_size,
            timeout: settings.database_timeout,
        },
        migrate_on_start: settings.migrate_on_start.unwrap_or(!production),
    })
}
