//! The service's error type. Transport maps it to gRPC in one place
//! (`transport::status`); nothing here carries a secret or a database
//! message meant for callers.

use identity_core::error::{FieldViolation, Invalid, InvalidInput};
use identity_store::StoreError;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid argument: {}", .0.iter().map(|v| v.field.as_str()).collect::<Vec<_>>().join(", "))]
    Invalid(Vec<FieldViolation>),
    /// Login or password check failed; never says which part was wrong.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// Missing, invalid, expired or revoked bearer token or refresh token.
    #[error("unauthenticated")]
    Unauthenticated,
    /// ExchangeToken: this provider token was exchanged before (each one
    /// starts at most one session).
    #[error("provider token already exchanged")]
    TokenAlreadyExchanged,
    #[error("permission denied")]
    PermissionDenied,
    #[error("not found")]
    NotFound,
    #[error("already exists: {0}")]
    AlreadyExists(&'static str),
    #[error("stale etag")]
    StaleEtag,
    /// The request is well formed but this RPC will not do it; the text
    /// says what will (it reaches the caller).
    #[error("failed precondition: {0}")]
    FailedPrecondition(&'static str),
    /// Refused for now; the caller may retry after the delay. `cause` says
    /// which bound it met, so that callers can tell them apart.
    #[error("resource exhausted: {cause:?}")]
    Busy {
        retry_after: Duration,
        cause: Exhausted,
    },
    #[error("unavailable")]
    Unavailable,
    /// A WatchRevocations stream fell further behind than the backlog; the
    /// watcher resumes from its last cursor.
    #[error("watcher too slow")]
    WatcherTooSlow,
    /// A feature this server was not configured for (e.g. ExchangeToken
    /// without IDENTITY_PROVIDER_JWKS_URL).
    #[error("not enabled: {0}")]
    NotEnabled(&'static str),
    #[error("internal: {0}")]
    Internal(String),
}

/// Which bound refused a call that may be retried later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exhausted {
    /// A rate limit (per client address or per account) of this RPC.
    RateLimited,
    /// Too many failed password attempts (per client, device or account),
    /// or the throttle's table is full of recent attempts.
    Throttled,
    /// The bcrypt pool's queue is full, or the hash could not finish before
    /// the call's deadline given the work queued ahead.
    Overloaded,
    /// A cap on WatchRevocations streams (in all, per client address or
    /// per principal): answered as overloaded, naming the cap's setting.
    Watchers(crate::service::watch::Cap),
}

impl Error {
    pub fn invalid(field: &str, description: impl Into<Invalid>) -> Self {
        Error::Invalid(vec![description.into().at(field)])
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => Error::AlreadyExists(what),
            StoreError::Unavailable(detail) => {
                tracing::warn!(error = %detail, "database unavailable");
                Error::Unavailable
            }
            StoreError::Other(detail) => Error::Internal(detail),
        }
    }
}

impl From<InvalidInput> for Error {
    fn from(e: InvalidInput) -> Self {
        Error::Invalid(e.0)
    }
}
