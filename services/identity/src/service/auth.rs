//! Registration, login, refresh, logout, validation and password change.
//!
//! This file holds `Auth`, its types and what the use cases share; each
//! use case lives in its own submodule as an `impl Auth` block.

use crate::infra::bcrypt::{HashError, Hasher};
use crate::infra::limits::{Limiter, Scope};
use crate::service::Error;
use crate::service::audit::AuditSink;
use crate::service::error::Exhausted;
use crate::service::events::{Emit, EventName, SecurityEvent};
use crate::service::profiles::Principal;
use crate::service::revocation::FastPath;
use chrono::{DateTime, Utc};
use identity_core::client_key::client_key;
use identity_core::rate_limit::Action;
use identity_core::refresh;
use identity_core::throttle::{Throttle, ThrottlePolicy, Wait};
use identity_core::tokens::{AccessClaims, PublicJwk, TokenKeys};
use identity_store::notify::Revoked;
use identity_store::{Id, NewSession, Profile, SessionOrigin, Store};
use secrecy::SecretString;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod credentials;
mod login;
mod register;
mod service_login;
pub use service_login::ServiceLoggedIn;
mod sessions;
pub use sessions::{ListedSession, RevokeAll};
mod tokens;
mod watch;
pub use tokens::Proxy;
pub use watch::{Delivery, Watcher};

/// Who is calling, as far as the transport knows.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub client_addr: Option<String>,
    /// The caller's own deadline (`grpc-timeout`), if it sent one.
    pub deadline: Option<Instant>,
    /// Its `user-agent` metadata, at most [`MAX_USER_AGENT_BYTES`]: kept
    /// with the sessions it starts, for ListSessions.
    pub user_agent: Option<String>,
}

/// A longer `user-agent` is cut (at a character boundary) before it is
/// stored: it is the caller's text, shown back, never trusted.
pub const MAX_USER_AGENT_BYTES: usize = 256;

/// The caller behind an authenticated request, as far as the service knows
/// it (the authentication layer passes on no deadline).
impl From<&Principal> for Caller {
    fn from(principal: &Principal) -> Self {
        Caller {
            client_addr: principal.client_addr.clone(),
            deadline: None,
            user_agent: None,
        }
    }
}

impl Caller {
    fn addr(&self) -> Option<&str> {
        self.client_addr.as_deref()
    }
}

/// Presented device tokens longer than this are refused without hashing.
pub const MAX_DEVICE_TOKEN_BYTES: usize = 256;

/// Device tokens a profile keeps; logging in from more devices forgets the
/// least recently used (they become unknown devices again).
pub const MAX_DEVICES_PER_PROFILE: usize = 20;

/// A successful Login: the tokens, and the device token that marks this
/// device as known to the account next time.
pub struct LoggedIn {
    pub tokens: IssuedTokens,
    pub device_token: SecretString,
}

/// Why a signed-in user's password is checked again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reauth {
    ChangePassword,
    ChangeEmail,
    DeleteAccount,
}

impl Reauth {
    pub fn as_str(self) -> &'static str {
        match self {
            Reauth::ChangePassword => "change_password",
            Reauth::ChangeEmail => "change_email",
            Reauth::DeleteAccount => "delete_account",
        }
    }

    fn refused_event(self) -> SecurityEvent {
        match self {
            Reauth::ChangePassword => SecurityEvent::new(EventName::PasswordChangeRefused),
            _ => SecurityEvent::new(EventName::ReauthenticationFailed).purpose(self.as_str()),
        }
    }
}

/// A token pair as issued.
pub struct IssuedTokens {
    pub access_token: SecretString,
    pub refresh_token: SecretString,
    pub access_expires_at: DateTime<Utc>,
    pub refresh_expires_at: DateTime<Utc>,
    pub session_id: Id,
}

#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    /// How long a spent refresh token presented again is taken for a retry
    /// of its Refresh rather than theft (IDENTITY_REFRESH_REUSE_GRACE; zero:
    /// never). See docs/decisions/0011.
    pub refresh_reuse_grace: Duration,
    /// Normalised emails that get the admin role when they register.
    pub bootstrap_admins: Vec<String>,
    /// Smallest zxcvbn score a new password needs.
    pub password_min_score: u8,
    /// IPv6 clients are limited per prefix of this length (see
    /// identity_core::client_key).
    pub ipv6_prefix: u8,
    /// The server's deadline for one call (IDENTITY_REQUEST_TIMEOUT):
    /// password hashing that cannot finish within it is refused at once.
    pub request_timeout: Duration,
}

pub struct Auth {
    store: Store,
    keys: Arc<TokenKeys>,
    hasher: Arc<Hasher>,
    settings: AuthSettings,
    limits: Arc<Limiter>,
    throttle: Throttle,
    audit: AuditSink,
    fast: Arc<FastPath>,
}

fn busy(e: HashError) -> Error {
    match e {
        HashError::Busy => Error::Busy {
            retry_after: Duration::from_secs(1),
            cause: Exhausted::Overloaded,
        },
        HashError::Failed => Error::Internal("password hashing failed".into()),
    }
}

/// The answer to a throttled attempt: RESOURCE_EXHAUSTED with RetryInfo.
fn throttled(wait: Wait) -> Error {
    Error::Busy {
        retry_after: wait.duration().max(Duration::from_millis(1)),
        cause: Exhausted::Throttled,
    }
}

fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl Auth {
    /// `fast`: validation from memory (service::revocation), shared with
    /// [`crate::service::Profiles`].
    pub fn new(
        store: Store,
        keys: Arc<TokenKeys>,
        hasher: Arc<Hasher>,
        settings: AuthSettings,
        limits: Arc<Limiter>,
        audit: AuditSink,
        fast: Arc<FastPath>,
    ) -> Self {
        Auth {
            store,
            keys,
            hasher,
            settings,
            limits,
            throttle: Throttle::new(ThrottlePolicy::default()),
            audit,
            fast,
        }
    }

    /// The latest a password hash of this call may finish: the caller's
    /// own deadline (`grpc-timeout`) or the server's bound, whichever comes
    /// first. A hash that cannot finish by then is refused before it starts:
    /// its answer would reach nobody.
    fn hash_deadline(&self, caller: &Caller) -> Option<Instant> {
        let server = Instant::now().checked_add(self.settings.request_timeout);
        match (caller.deadline, server) {
            (Some(own), Some(server)) => Some(own.min(server)),
            (own, server) => own.or(server),
        }
    }

    pub fn bcrypt_queued(&self) -> usize {
        self.hasher.queued()
    }

    pub fn audit_sink(&self) -> AuditSink {
        self.audit.clone()
    }

    /// This process changed profile `id`: drop what memory holds of it.
    pub fn profile_changed(&self, id: Id) {
        self.fast.revoked(Revoked::ProfileChanged(id));
    }

    /// The key the caller's address is limited and throttled under.
    fn client_key(&self, caller: &Caller) -> Option<String> {
        caller
            .addr()
            .map(|a| client_key(a, self.settings.ipv6_prefix))
    }

    /// Applies the rate limits of `action` to the caller's address and, if
    /// given, to an account (keyed by pseudonym: emails never become keys).
    pub async fn limit(
        &self,
        action: Action,
        caller: &Caller,
        account: Option<&str>,
    ) -> Result<(), Error> {
        let client = self.client_key(caller);
        self.limit_keys(action, caller, client.as_deref(), account)
            .await
    }

    async fn limit_keys(
        &self,
        action: Action,
        caller: &Caller,
        client: Option<&str>,
        account: Option<&str>,
    ) -> Result<(), Error> {
        let account = account.map(|a| self.keys.pseudonym(a));
        match self.limits.check(action, client, account.as_deref()).await {
            Ok(()) => Ok(()),
            Err(limited) => {
                let scope = match limited.scope {
                    Scope::Address => "address",
                    Scope::Account => "account",
                };
                Err(self.refused_by_limit(
                    caller,
                    action.as_str(),
                    scope,
                    limited.retry_after,
                    Exhausted::RateLimited,
                ))
            }
        }
    }

    /// A call turned away by a limit (a rate limit, a watcher cap): the
    /// rate-limited event, the metric, and the answer. No audit row: a
    /// limit is hit most by floods, whose rows would crowd out the ones
    /// that matter; the log event and the metric say enough
    /// (service::audit).
    pub(super) fn refused_by_limit(
        &self,
        caller: &Caller,
        rpc: &'static str,
        scope: &'static str,
        retry_after: Duration,
        cause: Exhausted,
    ) -> Error {
        crate::telemetry::metrics::metrics().rate_limited(rpc);
        SecurityEvent::new(EventName::RateLimited)
            .rpc(rpc)
            .scope(scope)
            .retry_after_ms(retry_after.as_millis() as u64)
            .client(caller.addr())
            .emit(&self.audit);
        Error::Busy {
            retry_after: retry_after.max(Duration::from_millis(1)),
            cause,
        }
    }

    pub fn jwks(&self) -> &[PublicJwk] {
        self.keys.jwks()
    }

    pub(crate) fn new_session(
        &self,
        profile: Id,
        caller: &Caller,
        now: DateTime<Utc>,
    ) -> (NewSession, SecretString) {
        let token = refresh::generate();
        let session = NewSession {
            id: Id::new(),
            profile_id: profile,
            created_at: now,
            expires_at: now + to_chrono(self.settings.refresh_token_ttl),
            refresh_token_hash: token.hash,
            origin: SessionOrigin {
                client_addr: caller.client_addr.clone(),
                user_agent: caller.user_agent.clone(),
            },
        };
        (session, token.token)
    }

    pub(crate) fn issue(
        &self,
        profile: &Profile,
        session_id: Id,
        session_expires_at: DateTime<Utc>,
        refresh_token: SecretString,
        now: DateTime<Utc>,
    ) -> Result<IssuedTokens, Error> {
        // An access token never outlives its session.
        let access_expires_at =
            (now + to_chrono(self.settings.access_token_ttl)).min(session_expires_at);
        let claims = AccessClaims {
            iss: self.keys.issuer().to_owned(),
            aud: self.keys.audience().to_owned(),
            sub: profile.id.to_string(),
            iat: now.timestamp(),
            nbf: now.timestamp(),
            exp: access_expires_at.timestamp(),
            jti: Id::new().to_string(),
            sid: session_id.to_string(),
            roles: profile.roles.clone(),
            auth_provider: profile.auth_provider.clone(),
            auth_id: profile.auth_id.clone(),
        };
        let access_token = self
            .keys
            .sign(&claims)
            .map_err(|e| Error::Internal(e.to_string()))?;
        Ok(IssuedTokens {
            access_token: SecretString::from(access_token),
            refresh_token,
            access_expires_at: DateTime::from_timestamp(claims.exp, 0).unwrap_or(access_expires_at),
            refresh_expires_at: session_expires_at,
            session_id,
        })
    }
}

#[cfg(test)]
mod tests;
