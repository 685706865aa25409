//! Database URLs, parsed once where they are configured: which backend, and
//! for PostgreSQL how the connection is secured (`sslmode`, `sslrootcert`;
//! see `pg_tls`). The pool, the migrations and the revocation listener take
//! the parsed value, never a string to parse again.

use crate::Backend;
use crate::pg_tls::Security;
use std::str::FromStr;

/// Why a database URL was refused. The messages name the part to fix and
/// never repeat the URL (it may carry a password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("must start with postgres://, postgresql:// or sqlite://")]
    UnknownScheme,
    #[error("must start with postgres:// or postgresql://")]
    NotPostgres,
    #[error("sslrootcert needs sslmode=verify-full")]
    RootCertWithoutVerification,
    #[error("sslmode=verify-ca is not supported (it skips the host name check): use verify-full")]
    VerifyCa,
    #[error("sslmode={0} is unknown: use verify-full (or disable)")]
    UnknownSslMode(String),
    #[error("sslrootcert: bad percent-encoding")]
    RootCertEncoding,
    #[error("sslrootcert: not UTF-8")]
    RootCertNotUtf8,
}

/// A PostgreSQL URL and the TLS it asks for. `Debug` shows only the
/// latter: the URL may carry a password.
#[derive(Clone, PartialEq, Eq)]
pub struct PgUrl {
    /// As given, our TLS parameters included.
    given: String,
    /// What tokio-postgres gets: our TLS parameters taken off.
    connect: String,
    security: Security,
}

impl PgUrl {
    pub fn parse(url: &str) -> Result<PgUrl, UrlError> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(UrlError::NotPostgres);
        }
        let (connect, security) = crate::pg_tls::parse(url)?;
        Ok(PgUrl {
            given: url.to_owned(),
            connect,
            security,
        })
    }

    pub fn security(&self) -> &Security {
        &self.security
    }

    /// The URL as given, credentials included: never log it.
    pub fn expose(&self) -> &str {
        &self.given
    }

    /// The URL tokio-postgres connects to.
    pub(crate) fn connect_str(&self) -> &str {
        &self.connect
    }
}

impl std::fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgUrl")
            .field("security", &self.security)
            .finish_non_exhaustive()
    }
}

/// A SQLite URL: `sqlite://path` or `sqlite:path`.
#[derive(Clone, PartialEq, Eq)]
pub struct SqliteUrl {
    given: String,
}

impl SqliteUrl {
    /// The database file.
    pub fn path(&self) -> &str {
        self.given
            .strip_prefix("sqlite://")
            .or_else(|| self.given.strip_prefix("sqlite:"))
            .unwrap_or(&self.given)
    }
}

impl std::fmt::Debug for SqliteUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A file path holds no secret.
        f.debug_tuple("SqliteUrl").field(&self.path()).finish()
    }
}

/// The database the service, the migrations or an admin command use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Postgres(PgUrl),
    Sqlite(SqliteUrl),
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<DatabaseUrl, UrlError> {
        if url.starts_with("sqlite:") {
            Ok(DatabaseUrl::Sqlite(SqliteUrl {
                given: url.to_owned(),
            }))
        } else {
            match PgUrl::parse(url) {
                Err(UrlError::NotPostgres) => Err(UrlError::UnknownScheme),
                parsed => parsed.map(DatabaseUrl::Postgres),
            }
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            DatabaseUrl::Postgres(_) => Backend::Postgres,
            DatabaseUrl::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// The URL as given, credentials included: never log it.
    pub fn expose(&self) -> &str {
        match self {
            DatabaseUrl::Postgres(url) => url.expose(),
            DatabaseUrl::Sqlite(url) => &url.given,
        }
    }
}

impl FromStr for DatabaseUrl {
    type Err = UrlError;

    fn from_str(url: &str) -> Result<DatabaseUrl, UrlError> {
        DatabaseUrl::parse(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_decides_the_backend_and_nothing_else_is_accepted() {
        let pg = DatabaseUrl::parse("postgresql://u:pw@db/x?sslmode=verify-full").unwrap();
        assert_eq!(pg.backend(), Backend::Postgres);
        assert_eq!(pg.expose(), "postgresql://u:pw@db/x?sslmode=verify-full");
        let DatabaseUrl::Postgres(parsed) = &pg else {
            unreachable!("a PostgreSQL URL")
        };
        assert_eq!(
            parsed.connect_str(),
            "postgresql://u:pw@db/x?sslmode=require"
        );

        for (url, path) in [("sqlite://data/x.db", "data/x.db"), ("sqlite:x.db", "x.db")] {
            let sqlite = DatabaseUrl::parse(url).unwrap();
            assert_eq!(sqlite.backend(), Backend::Sqlite);
            let DatabaseUrl::Sqlite(parsed) = &sqlite else {
                unreachable!("a SQLite URL")
            };
            assert_eq!(parsed.path(), path);
        }

        for url in ["mysql://db/x", "db/x", ""] {
            assert_eq!(
                DatabaseUrl::parse(url),
                Err(UrlError::UnknownScheme),
                "{url}"
            );
        }
        assert_eq!(PgUrl::parse("sqlite://x.db"), Err(UrlError::NotPostgres));
        assert_eq!(
            DatabaseUrl::parse("postgres://db/x?sslmode=verify-ca"),
            Err(UrlError::VerifyCa)
        );
    }

    #[test]
    fn debug_output_never_shows_the_password() {
        let url = DatabaseUrl::parse("postgres://u:hunter2@db/x").unwrap();
        let printed = format!("{url:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("Plaintext"), "{printed}");
    }
}
