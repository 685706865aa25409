//! Persistence: profiles, credentials, sessions, refresh tokens and the audit
//! trail, on PostgreSQL (production) or SQLite (embedded default).
//!
//! Depends on `identity-core` for what it stores and on nothing that knows
//! gRPC (`tests/e2e/crate_walls.rs`).

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod announcements;
pub mod listen;
pub mod notify;
pub mod pem;
pub mod pg_tls;
mod postgres;
mod sqlite;
pub mod types;
mod url;

pub use types::*;
pub use url::{DatabaseUrl, PgUrl, SqliteUrl, UrlError};

use chrono::{DateTime, Utc};
use std::time::Duration;

/// Errors of the store layer. Messages carry no SQL and no input values:
/// they may reach logs, never callers.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint refused the write (the name says which).
    #[error("conflict on {0}")]
    Conflict(&'static str),
    /// The database cannot be reached or answered too slowly.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug or a broken database.
    #[error("database error: {0}")]
    Other(String),
}

impl From<diesel::result::Error> for StoreError {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind as K, Error as E};
        match e {
            E::DatabaseError(K::UniqueViolation, info) => {
                let constraint = info.constraint_name().unwrap_or_default();
                let message = info.message();
                // SQLite names no constraint, only the columns.
                if constraint.contains("email") || message.contains("credentials.email") {
                    StoreError::Conflict("email")
                } else if constraint.contains("auth_id") || message.contains("profiles.auth_id") {
                    StoreError::Conflict("auth_id")
                } else {
                    StoreError::Conflict("id")
                }
            }
            E::DatabaseError(K::ClosedConnection, info) => {
                StoreError::Unavailable(info.message().to_owned())
            }
            E::BrokenTransactionManager => StoreError::Unavailable("broken connection".into()),
            E::DatabaseError(K::Unknown, info) if is_transient(info.message()) => {
                StoreError::Unavailable(info.message().to_owned())
            }
            other => {
                let text = other.to_string();
                if is_transient(&text) {
                    StoreError::Unavailable(text)
                } else {
                    StoreError::Other(text)
                }
            }
        }
    }
}

/// Connection-level failures surface from tokio-postgres as plain text.
fn is_transient(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "connection closed",
        "connection reset",
        "broken pipe",
        "unexpected eof",
        "error communicating",
        "database is locked",
        "timed out",
        "terminating connection",
    ]
    .iter()
    .any(|needle| m.contains(needle))
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for StoreError {
    fn from(e: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_size: usize,
    /// Bounds waiting for, opening and recycling a connection, so an outage
    /// turns into UNAVAILABLE quickly instead of hanging callers.
    pub timeout: Duration,
}

/// Which database a URL names ([`DatabaseUrl::backend`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// A handle on the database, cheap to clone.
#[derive(Clone)]
pub enum Store {
    Postgres(postgres::Pool),
    Sqlite(sqlite::Pool),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it may hold a password.
        match self {
            Store::Postgres(_) => f.write_str("Store::Postgres"),
            Store::Sqlite(_) => f.write_str("Store::Sqlite"),
        }
    }
}

/// Runs one query function on whichever backend this store uses.
/// Each call is a child span (`db.system`, `db.operation.name`) of the RPC.
macro_rules! on_backend {
    ($store:expr, $func:ident ( $($arg:expr),* $(,)? )) => {{
        use tracing::Instrument as _;
        match $store {
            Store::Postgres(pool) => async {
                let mut conn = pool.get().await?;
                postgres::$func(&mut conn, $($arg),*).await.map_err(StoreError::from)
            }
            .instrument(tracing::info_span!(
                "db",
                otel.name = concat!("db ", stringify!($func)),
                otel.kind = "client",
                db.system = "postgresql",
                db.operation.name = stringify!($func)
            ))
            .await,
            Store::Sqlite(pool) => async {
                let mut conn = pool.get().await?;
                sqlite::$func(&mut conn, $($arg),*).await.map_err(StoreError::from)
            }
            .instrument(tracing::info_span!(
                "db",
                otel.name = concat!("db ", stringify!($func)),
                otel.kind = "client",
                db.system = "sqlite",
                db.operation.name = stringify!($func)
            ))
            .await,
        }
    }};
}

/// A pool of `manager`'s connections, sized and timed by `settings`: the
/// same for both backends.
fn build_pool<M: deadpool::managed::Manager>(
    manager: M,
    settings: &PoolSettings,
) -> Result<deadpool::managed::Pool<M>, StoreError> {
    deadpool::managed::Pool::builder(manager)
        .max_size(settings.max_size)
        .wait_timeout(Some(settings.timeout))
        .create_timeout(Some(settings.timeout))
        .recycle_timeout(Some(settings.timeout))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|e| StoreError::Other(e.to_string()))
}

impl Store {
    /// Opens a pool for `url` (no connection is made until first use).
    pub fn open(url: &DatabaseUrl, settings: &PoolSettings) -> Result<Store, StoreError> {
        match url {
            DatabaseUrl::Postgres(url) => postgres::pool(url, settings).map(Store::Postgres),
            DatabaseUrl::Sqlite(url) => sqlite::pool(url, settings).map(Store::Sqlite),
        }
    }

    /// Applies the embedded migrations that are not applied yet; returns
    /// their versions.
    pub async fn migrate(url: &DatabaseUrl) -> Result<Vec<String>, StoreError> {
        match url {
            DatabaseUrl::Postgres(url) => postgres::migrate(url.clone()).await,
            DatabaseUrl::Sqlite(url) => sqlite::migrate(url.clone()).await,
        }
    }

    /// Connections (size, available, waiting) for the pool gauges.
    pub fn pool_status(&self) -> (usize, usize, usize) {
        let status = match self {
            Store::Postgres(pool) => pool.status(),
            Store::Sqlite(pool) => pool.status(),
        };
        (status.size, status.available, status.waiting)
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        on_backend!(self, ping())
    }

    /// True when the bootstrap admin role was granted (see
    /// [`NewAccount::bootstrap_admin`]).
    pub async fn create_local_account(
        &self,
        account: &NewAccount,
        audit: &[AuditEvent],
    ) -> Result<bool, StoreError> {
        on_backend!(self, create_local_account(account, audit))
    }

    /// False when the verified login (email and password hash) is no longer
    /// the credential (changed since it was verified): no session is
    /// started then. `None` for sessions that no password started (provider
    /// and service tokens).
    pub async fn start_session(
        &self,
        session: &NewSession,
        verified: Option<&VerifiedLogin<'_>>,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        on_backend!(self, start_session(session, verified, audit))
    }

    pub async fn find_profile(&self, id: Id) -> Result<Option<Profile>, StoreError> {
        on_backend!(self, find_profile(id))
    }

    pub async fn find_credential(&self, email: &str) -> Result<Option<CredentialRow>, StoreError> {
        on_backend!(self, find_credential(email))
    }

    pub async fn password_hash_of(&self, profile: Id) -> Result<Option<String>, StoreError> {
        on_backend!(self, password_hash_of(profile))
    }

    pub async fn upgrade_password_hash(
        &self,
        profile: Id,
        old_hash: &str,
        new_hash: &str,
    ) -> Result<bool, StoreError> {
        on_backend!(
            self,
            upgrade_password_hash(profile, old_hash, new_hash, Utc::now())
        )
    }

    pub async fn find_session(&self, id: Id) -> Result<Option<Session>, StoreError> {
        on_backend!(self, find_session(id))
    }

    pub async fn revoke_session(
        &self,
        id: Id,
        reason: &str,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        on_backend!(self, revoke_session(id, reason, Utc::now(), audit))
    }

    /// One page of the profile's live sessions, newest first, strictly
    /// before the session `before`.
    pub async fn list_sessions(
        &self,
        profile: Id,
        before: Option<Id>,
        limit: i64,
    ) -> Result<Vec<SessionDetails>, StoreError> {
        on_backend!(self, list_sessions(profile, before, Utc::now(), limit))
    }

    /// Revokes every live session of `profile` but `except`, announced to
    /// every replica and audited (with the count) in one transaction.
    pub async fn revoke_all_sessions(
        &self,
        profile: Id,
        except: Option<Id>,
        reason: &str,
        audit: &AuditEvent,
    ) -> Result<usize, StoreError> {
        on_backend!(
            self,
            revoke_all_sessions(profile, except, reason, Utc::now(), audit)
        )
    }

    /// `next_hash` is the successor's hash, the same for every
    /// presentation of one token (`identity_core::refresh::successor`), so
    /// that a retry within `reuse_grace` can be recognised.
    pub async fn spend_refresh_token(
        &self,
        presented_hash: &str,
        next_hash: &str,
        now: DateTime<Utc>,
        reuse_grace: Duration,
        client_addr: Option<&str>,
    ) -> Result<SpendOutcome, StoreError> {
        on_backend!(
            self,
            spend_refresh_token(presented_hash, next_hash, now, reuse_grace, client_addr)
        )
    }

    pub async fn session_of_refresh_token(
        &self,
        hash: &str,
    ) -> Result<Option<Session>, StoreError> {
        on_backend!(self, session_of_refresh_token(hash))
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn change_password(
        &self,
        profile: Id,
        expected_old_hash: &str,
        new_hash: &str,
        keep_session: Id,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        on_backend!(
            self,
            change_password(
                profile,
                expected_old_hash,
                new_hash,
                keep_session,
                Utc::now(),
                audit
            )
        )
    }

    /// Renames the login (and the profile's email) if the password hash is
    /// still `verified_hash`, revoking every session but `keep`; false when
    /// the credential changed meanwhile.
    pub async fn change_email(
        &self,
        profile: Id,
        verified_hash: &str,
        new_email: &str,
        keep_session: Id,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let now = chrono::SubsecRound::trunc_subsecs(Utc::now(), 6);
        on_backend!(
            self,
            change_email(profile, verified_hash, new_email, keep_session, now, audit)
        )
    }

    pub async fn create_profile(
        &self,
        profile: &Profile,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        on_backend!(self, create_profile(profile, audit))
    }

    pub async fn find_profile_by_auth(
        &self,
        provider: &str,
        auth_id: &str,
    ) -> Result<Option<Profile>, StoreError> {
        on_backend!(self, find_profile_by_auth(provider, auth_id))
    }

    pub async fn find_profile_by_login_email(
        &self,
        email: &str,
    ) -> Result<Option<Profile>, StoreError> {
        on_backend!(self, find_profile_by_login_email(email))
    }

    /// False when the profile changed (or vanished) since `expected`.
    pub async fn update_profile(
        &self,
        next: &Profile,
        expected: i64,
        audit: &[AuditEvent],
    ) -> Result<bool, StoreError> {
        on_backend!(self, update_profile(next, expected, audit))
    }

    /// False when there was no such profile (at that revision).
    pub async fn delete_profile(
        &self,
        id: Id,
        expected: Option<i64>,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        on_backend!(self, delete_profile(id, expected, Utc::now(), audit))
    }

    pub async fn list_profiles(
        &self,
        after: Option<Id>,
        provider: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Profile>, StoreError> {
        on_backend!(self, list_profiles(after, provider, limit))
    }

    pub async fn delete_audit_before(&self, cutoff: DateTime<Utc>) -> Result<usize, StoreError> {
        on_backend!(self, delete_audit_before(cutoff))
    }

    pub async fn record_audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        on_backend!(self, record_audit(event))
    }

    pub async fn recent_audit(
        &self,
        since: DateTime<Utc>,
        profile: Option<Id>,
        limit: i64,
    ) -> Result<Vec<AuditRow>, StoreError> {
        on_backend!(self, recent_audit(since, profile, limit))
    }

    /// Audit rows newest first, as selected by `filter`, after `after`
    /// (the last row of the previous page).
    pub async fn list_audit(
        &self,
        filter: &identity_core::audit_filter::AuditFilter,
        after: Option<(DateTime<Utc>, Id)>,
        limit: i64,
    ) -> Result<Vec<AuditRow>, StoreError> {
        on_backend!(self, list_audit(filter, after, limit))
    }

    /// Of `ids`, the sessions still live now (reconciliation of the
    /// in-memory revocation state).
    pub async fn live_sessions_among(&self, ids: &[Id]) -> Result<Vec<Id>, StoreError> {
        on_backend!(self, live_sessions_among(ids, Utc::now()))
    }

    /// The profile of an external account, created if it has none yet;
    /// `true` when this call created it (concurrent callers: exactly one).
    pub async fn provision_profile(
        &self,
        candidate: &Profile,
        audit: &AuditEvent,
    ) -> Result<(Profile, bool), StoreError> {
        on_backend!(self, provision_profile(candidate, audit))
    }

    /// Refreshes an external profile's email and display name unless it was
    /// changed here since the provider last wrote it (`None` then).
    pub async fn sync_provider_fields(
        &self,
        id: Id,
        expected_revision: i64,
        email: Option<&str>,
        email_verified: bool,
        display_name: &str,
        audit: &AuditEvent,
    ) -> Result<Option<Profile>, StoreError> {
        let now = chrono::SubsecRound::trunc_subsecs(Utc::now(), 6);
        on_backend!(
            self,
            sync_provider_fields(
                id,
                expected_revision,
                email,
                email_verified,
                display_name,
                now,
                audit
            )
        )
    }

    /// Whether `token_hash` is a device token of the local account `email`.
    pub async fn is_device_of(&self, token_hash: &str, email: &str) -> Result<bool, StoreError> {
        on_backend!(self, is_device_of(token_hash, email))
    }

    /// Adds a device token while `verified` is still the credential (false
    /// otherwise); the profile keeps only its `keep` most recently used ones.
    pub async fn add_device_token(
        &self,
        token_hash: &str,
        profile: Id,
        verified: &VerifiedLogin<'_>,
        now: DateTime<Utc>,
        keep: usize,
    ) -> Result<bool, StoreError> {
        on_backend!(
            self,
            add_device_token(token_hash, profile, verified, now, keep)
        )
    }

    /// False when the token is gone (a password change revoked it).
    pub async fn touch_device_token(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        on_backend!(self, touch_device_token(token_hash, now))
    }

    /// Deletes up to `limit` sessions that ended before `ended_before`, and
    /// their refresh tokens: (sessions, refresh tokens) deleted.
    pub async fn purge_ended_sessions(
        &self,
        ended_before: DateTime<Utc>,
        limit: i64,
    ) -> Result<(usize, usize), StoreError> {
        on_backend!(self, purge_ended_sessions(ended_before, limit))
    }

    /// Spends the provider token `token_key` (remembered until
    /// `remember_until`) and starts `session`, atomically; false when the
    /// token was exchanged before (no session then). Dead entries are
    /// purged on the way, a bounded number per call.
    pub async fn start_exchanged_session(
        &self,
        token_key: &str,
        remember_until: DateTime<Utc>,
        session: &NewSession,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let now = Utc::now().timestamp();
        if let Err(e) = on_backend!(self, purge_exchanged_tokens(now)) {
            // Only housekeeping: the exchange itself does not depend on it.
            tracing::warn!(error = %e, "purging spent provider tokens failed");
        }
        let until = remember_until.timestamp();
        on_backend!(
            self,
            start_exchanged_session(token_key, until, session, audit)
        )
    }

    /// Whether the provider token `token_key` was exchanged already.
    pub async fn is_exchanged_token(&self, token_key: &str) -> Result<bool, StoreError> {
        on_backend!(self, is_exchanged_token(token_key))
    }

    /// Creates a service principal and its client credentials, with the
    /// audit rows, in one transaction.
    pub async fn create_service_client(
        &self,
        profile: &Profile,
        client: &ServiceClientRow,
        audit: &[AuditEvent],
    ) -> Result<(), StoreError> {
        on_backend!(self, create_service_client(profile, client, audit))
    }

    /// The client `client_id` (enabled or not) and its service principal.
    pub async fn find_service_client(
        &self,
        client_id: &str,
    ) -> Result<Option<ServiceClient>, StoreError> {
        on_backend!(self, find_service_client(client_id))
    }

    /// A new secret hash for an enabled client, or the client disabled for
    /// good; its sessions are revoked and the revocation announced in the
    /// same transaction. `None`: no such enabled client; else the number of
    /// sessions revoked.
    pub async fn change_service_client(
        &self,
        client_id: &str,
        change: ServiceClientChange<'_>,
        audit: &AuditEvent,
    ) -> Result<Option<usize>, StoreError> {
        let now = chrono::SubsecRound::trunc_subsecs(Utc::now(), 6);
        on_backend!(self, change_service_client(client_id, change, now, audit))
    }

    /// Starts `session` while the client is still enabled with the secret
    /// hash that was verified (false, and nothing written, otherwise).
    pub async fn start_service_session(
        &self,
        client_id: &str,
        verified_hash: &str,
        session: &NewSession,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        on_backend!(
            self,
            start_service_session(client_id, verified_hash, session, audit)
        )
    }
}
