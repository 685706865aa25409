//! Registration, login, refresh, logout, validation and password change.

use crate::infra::bcrypt::{HashError, Hasher};
use crate::infra::limits::{Limiter, Scope};
use crate::service::Error;
use crate::service::audit::AuditSink;
use crate::service::events::{Emit, EventName, SecurityEvent, Subject};
use crate::service::profiles::{ADMIN_ROLE, Principal};
use crate::service::revocation::FastPath;
use chrono::{DateTime, SubsecRound, Utc};
use identity_core::client_key::client_key;
use identity_core::passwords;
use identity_core::rate_limit::Action;
use identity_core::throttle::{Attempt, Throttle, ThrottlePolicy, Wait};
use identity_core::tokens::{AccessClaims, PublicJwk, Refusal, TokenKeys};
use identity_core::{Violations, refresh, validation};
use identity_store::notify::Revoked;
use identity_store::{
    Id, NewAccount, NewSession, Profile, SessionOrigin, SpendOutcome, Store, VerifiedLogin,
};
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod service_login;
pub use service_login::ServiceLoggedIn;
mod sessions;
pub use sessions::{ListedSession, RevokeAll};

pub const LOCAL_PROVIDER: &str = "local";

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
        },
        HashError::Failed => Error::Internal("password hashing failed".into()),
    }
}

/// The answer to a throttled attempt: RESOURCE_EXHAUSTED with RetryInfo.
fn throttled(wait: Wait) -> Error {
    Error::Busy {
        retry_after: wait.duration().max(Duration::from_millis(1)),
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
                // No audit row: a limit is hit most by floods, whose rows
                // would crowd out the ones that matter. The log event and
                // the metric say enough (service::audit).
                crate::telemetry::metrics::metrics().rate_limited(action.as_str());
                SecurityEvent::new(EventName::RateLimited)
                    .rpc(action.as_str())
                    .scope(scope)
                    .retry_after_ms(limited.retry_after.as_millis() as u64)
                    .client(caller.addr())
                    .emit(&self.audit);
                Err(Error::Busy {
                    retry_after: limited.retry_after.max(Duration::from_millis(1)),
                })
            }
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
            scope: String::new(),
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

    pub async fn register(
        &self,
        caller: &Caller,
        email: &str,
        password: SecretString,
        display_name: &str,
    ) -> Result<(Profile, IssuedTokens), Error> {
        let mut violations = Violations::new();
        let email = validation::email(email);
        let display_name = validation::display_name(display_name, false);
        // The quota answers before the password's strength is weighed: zxcvbn
        // is CPU that a caller over quota must not get for free.
        self.limit(Action::Register, caller, email.as_deref().ok())
            .await?;
        let inputs = (
            email.as_deref().unwrap_or_default().to_owned(),
            display_name.as_deref().unwrap_or_default().to_owned(),
            self.settings.password_min_score,
        );
        // Off the async workers: a long, varied password takes zxcvbn a while.
        let (password, password_ok) = tokio::task::spawn_blocking(move || {
            let (email, display_name, min_score) = inputs;
            let ok =
                passwords::check_new(password.expose_secret(), &email, &display_name, min_score);
            (password, ok)
        })
        .await
        .map_err(|e| Error::Internal(format!("password strength check: {e}")))?;
        let email = violations.check("email", email);
        violations.check("password", password_ok);
        let display_name = violations.check("display_name", display_name);
        if let Err(e) = violations.into_result() {
            SecurityEvent::new(EventName::RegisterRefused)
                .reason("invalid_input")
                .client(caller.addr())
                .emit(&self.audit);
            return Err(e.into());
        }
        let (email, display_name) = (email.unwrap_or_default(), display_name.unwrap_or_default());
        let listed = self.settings.bootstrap_admins.contains(&email);

        let password_hash = self
            .hasher
            .hash(password, self.hash_deadline(caller))
            .await
            .map_err(busy)?;
        let now = Utc::now().trunc_subsecs(6);
        let id = Id::new();
        let mut profile = Profile {
            email: Some(email.clone()),
            display_name,
            ..Profile::new(id, LOCAL_PROVIDER, &id.to_string(), now)
        };
        let (session, refresh_token) = self.new_session(id, caller, now);
        let registered = SecurityEvent::new(EventName::RegisterSucceeded)
            .profile(id)
            .session(session.id)
            .client(caller.addr());
        // Listed emails become admin only while no admin exists: decided by
        // the store inside the insert's transaction.
        let admin_roles = [ADMIN_ROLE.to_owned()];
        let bootstrap = SecurityEvent::new(EventName::RoleChanged)
            .profile(id)
            .client(caller.addr())
            .roles(&admin_roles)
            .reason("IDENTITY_BOOTSTRAP_ADMINS");
        let account = NewAccount {
            profile: profile.clone(),
            email,
            password_hash,
            session: session.clone(),
            bootstrap_admin: listed.then(|| bootstrap.audit_row()),
        };
        let admin = match self
            .store
            .create_local_account(&account, &[registered.audit_row()])
            .await
        {
            Ok(granted) => granted,
            Err(e) => {
                let e = Error::from(e);
                if matches!(e, Error::AlreadyExists(_)) {
                    SecurityEvent::new(EventName::RegisterRefused)
                        .reason("email_taken")
                        .email_pseudonym(self.keys.pseudonym(&account.email))
                        .client(caller.addr())
                        .emit(&self.audit);
                }
                return Err(e);
            }
        };
        if admin {
            profile.roles.push(ADMIN_ROLE.to_owned());
            bootstrap.emit_committed();
        } else if listed {
            SecurityEvent::new(EventName::RoleRefused)
                .profile(id)
                .roles(&admin_roles)
                .reason("bootstrap_admin_exists")
                .client(caller.addr())
                .emit(&self.audit);
        }
        registered.emit_committed();
        let tokens = self.issue(&profile, session.id, session.expires_at, refresh_token, now)?;
        Ok((profile, tokens))
    }

    pub async fn login(
        &self,
        caller: &Caller,
        email: &str,
        password: SecretString,
        device_token: &str,
    ) -> Result<LoggedIn, Error> {
        let mut violations = Violations::new();
        let email = violations.check("email", validation::email(email));
        violations.check(
            "password",
            passwords::check_presented(password.expose_secret()),
        );
        if device_token.len() > MAX_DEVICE_TOKEN_BYTES {
            violations.check::<()>(
                "device_token",
                Err(format!("must be at most {MAX_DEVICE_TOKEN_BYTES} bytes").into()),
            );
        }
        violations.into_result()?;
        let email = email.unwrap_or_default();
        let client = self.client_key(caller);
        self.limit_keys(Action::Login, caller, client.as_deref(), None)
            .await?;
        let throttle_key = self.keys.pseudonym(&email);
        // A device this account has logged in from before is exempt from the
        // account-wide limits that any stranger can exhaust.
        let device_hash = (!device_token.is_empty()).then(|| refresh::hash(device_token));
        let known_device = match &device_hash {
            Some(hash) => self.store.is_device_of(hash, &email).await?,
            None => false,
        };
        let attempt = match &device_hash {
            Some(token_hash) if known_device => Attempt::Device { token_hash },
            _ => {
                self.limit_keys(Action::Login, caller, None, Some(&email))
                    .await?;
                Attempt::Unknown {
                    client: client.as_deref().unwrap_or("unknown"),
                }
            }
        };
        let reservation = match self
            .throttle
            .reserve(&throttle_key, attempt, Instant::now())
        {
            Ok(reservation) => reservation,
            Err(wait) => {
                crate::telemetry::metrics::metrics().login_failed("throttled");
                SecurityEvent::new(EventName::LoginFailed)
                    .reason("throttled")
                    .scope(wait.scope())
                    .subject(Subject::Email(throttle_key.clone()))
                    .email_pseudonym(throttle_key)
                    .client(caller.addr())
                    .emit(&self.audit);
                return Err(throttled(wait));
            }
        };

        let (account, ok) = match self.check_password(caller, &email, password.clone()).await {
            Ok(checked) => checked,
            Err(e) => {
                // Never evaluated: not a failure of the owner's account.
                self.throttle.release(reservation);
                return Err(e);
            }
        };
        let account = match account {
            Some(account) if ok => account,
            account => {
                let failed = SecurityEvent::new(EventName::LoginFailed).client(caller.addr());
                let (reason, failed) = match &account {
                    None => {
                        let pseudonym = self.keys.pseudonym(&email);
                        let failed = failed
                            .subject(Subject::Email(pseudonym.clone()))
                            .email_pseudonym(pseudonym);
                        ("unknown_account", failed)
                    }
                    Some(a) => {
                        let id = a.profile.id;
                        (
                            "bad_password",
                            failed.subject(Subject::Profile(id)).profile(id),
                        )
                    }
                };
                crate::telemetry::metrics::metrics().login_failed(reason);
                // The reservation stands as this failure.
                drop(reservation);
                failed.reason(reason).emit_awaited(&self.store).await?;
                return Err(Error::InvalidCredentials);
            }
        };

        self.throttle.succeeded(reservation);
        let (profile, verified_hash) = (account.profile, account.password_hash);
        let verified = VerifiedLogin {
            email: &email,
            password_hash: &verified_hash,
        };
        let now = Utc::now();
        let (session, refresh_token) = self.new_session(profile.id, caller, now);
        let logged_in = SecurityEvent::new(EventName::LoginSucceeded)
            .profile(profile.id)
            .session(session.id)
            .client(caller.addr());
        if !self
            .store
            .start_session(&session, Some(&verified), &logged_in.audit_row())
            .await?
        {
            // The password changed between verification and now: what was
            // verified is no longer the credential.
            SecurityEvent::new(EventName::LoginFailed)
                .reason("credential_changed")
                .subject(Subject::Profile(profile.id))
                .profile(profile.id)
                .client(caller.addr())
                .emit(&self.audit);
            crate::telemetry::metrics::metrics().login_failed("credential_changed");
            return Err(Error::InvalidCredentials);
        }
        logged_in.emit_committed();
        let tokens = self.issue(&profile, session.id, session.expires_at, refresh_token, now)?;
        let device_token = self
            .remember_device(profile.id, device_token, known_device, &verified)
            .await?;
        if self.hasher.needs_rehash(&verified_hash) {
            let verified_hash = verified_hash.clone();
            // The cost setting rose since this hash was made: upgrade it now
            // that we hold the plaintext. Best effort, off the response path,
            // and after the session and the device token exist (the upgrade
            // changes the hash they are checked against).
            let (store, hasher, id) = (self.store.clone(), Arc::clone(&self.hasher), profile.id);
            tokio::spawn(async move {
                if let Ok(new_hash) = hasher.hash(password, None).await {
                    match store
                        .upgrade_password_hash(id, &verified_hash, &new_hash)
                        .await
                    {
                        Ok(true) => {
                            tracing::info!(profile.id = %id, cost = hasher.cost(), "password rehashed at the configured cost")
                        }
                        Ok(false) => {}
                        Err(e) => {
                            tracing::warn!(profile.id = %id, error = %e, "password rehash failed")
                        }
                    }
                }
            });
        }
        Ok(LoggedIn {
            tokens,
            device_token,
        })
    }

    /// Reads the credential of `email` and checks `password` against it (or
    /// against a dummy hash: unknown emails take as long).
    async fn check_password(
        &self,
        caller: &Caller,
        email: &str,
        password: SecretString,
    ) -> Result<(Option<identity_store::CredentialRow>, bool), Error> {
        let account = self.store.find_credential(email).await?;
        let stored_hash = account.as_ref().map(|a| a.password_hash.clone());
        let ok = self
            .hasher
            .verify(password, stored_hash, self.hash_deadline(caller))
            .await
            .map_err(busy)?;
        Ok((account, ok))
    }

    /// The device token to hand back: the presented one while it is still
    /// valid, else a new one (stored hashed, tied to the profile).
    async fn remember_device(
        &self,
        profile: Id,
        presented: &str,
        known: bool,
        verified: &VerifiedLogin<'_>,
    ) -> Result<SecretString, Error> {
        let now = Utc::now();
        if known
            && self
                .store
                .touch_device_token(&refresh::hash(presented), now)
                .await?
        {
            return Ok(SecretString::from(presented.to_owned()));
        }
        let fresh = refresh::generate();
        if !self
            .store
            .add_device_token(&fresh.hash, profile, verified, now, MAX_DEVICES_PER_PROFILE)
            .await?
        {
            // The password changed since it was verified: the session just
            // started is revoked with the others, and no device is known.
            return Err(Error::InvalidCredentials);
        }
        Ok(fresh.token)
    }

    pub async fn refresh(
        &self,
        caller: &Caller,
        refresh_token: &str,
    ) -> Result<IssuedTokens, Error> {
        validation::required(refresh_token, refresh::MAX_REFRESH_TOKEN_BYTES)
            .map_err(|d| Error::invalid("refresh_token", d))?;
        self.limit(Action::Refresh, caller, None).await?;
        let presented = refresh::hash(refresh_token);
        // Derived, not random: a retry of this call computes the same one.
        let next = refresh::successor(self.keys.refresh_successor_key(), refresh_token);
        let now = Utc::now();
        match self
            .store
            .spend_refresh_token(
                &presented,
                &next.hash,
                now,
                self.settings.refresh_reuse_grace,
                caller.addr(),
            )
            .await?
        {
            SpendOutcome::Rotated { session, profile } => {
                self.issue(&profile, session.id, session.expires_at, next.token, now)
            }
            SpendOutcome::Retried { session, profile } => {
                SecurityEvent::new(EventName::RefreshRetried)
                    .profile(session.profile_id)
                    .session(session.id)
                    .client(caller.addr())
                    .emit(&self.audit);
                self.issue(&profile, session.id, session.expires_at, next.token, now)
            }
            SpendOutcome::Reused { session_id, event } => {
                event.emit_committed();
                self.fast.revoked(Revoked::Session(session_id));
                // Its audit row is the reuse's, written in the same transaction.
                SecurityEvent::new(EventName::SessionRevoked)
                    .session(session_id)
                    .reason("refresh_token_reused")
                    .emit_committed();
                Err(Error::Unauthenticated)
            }
            SpendOutcome::SessionEnded => {
                SecurityEvent::new(EventName::TokenRefused)
                    .token_kind("refresh")
                    .reason("session_ended")
                    .client(caller.addr())
                    .emit(&self.audit);
                Err(Error::Unauthenticated)
            }
            SpendOutcome::Unknown => {
                SecurityEvent::new(EventName::TokenRefused)
                    .token_kind("refresh")
                    .reason("unknown")
                    .client(caller.addr())
                    .emit(&self.audit);
                Err(Error::Unauthenticated)
            }
        }
    }

    /// Verifies a bearer access token completely: signature, claims and
    /// that its session is still live. The one path for ValidateToken,
    /// ChangePassword, Logout and every ProfileService call.
    pub async fn verify_access_token(
        &self,
        token: &str,
    ) -> Result<Result<AccessClaims, Refusal>, Error> {
        // Same checks, answered from memory when it can (service::revocation).
        self.fast.verify(&self.keys, &self.store, token).await
    }

    /// ValidateToken: `None` means inactive (the reason is logged, not told);
    /// else the claims and whether the profile's email is verified now.
    pub async fn validate(
        &self,
        caller: &Caller,
        token: &str,
    ) -> Result<Option<(AccessClaims, bool)>, Error> {
        self.limit(Action::Validate, caller, None).await?;
        let Some(mut claims) = self.check_token(caller, token).await? else {
            return Ok(None);
        };
        // The roles the profile holds now, not those signed into the token:
        // a role an admin took away must not be reported until the token
        // expires. Read like every authorization check (the profile cache,
        // fresh within the revocation bound).
        let Some(id) = Id::parse(&claims.sub) else {
            return Ok(None);
        };
        match self.fast.profile(&self.store, id).await? {
            Some(profile) => {
                claims.roles =
                    identity_core::roles::effective(&profile.auth_provider, profile.roles);
                Ok(Some((claims, profile.email_verified)))
            }
            None => Ok(None),
        }
    }

    /// Verification with the refusal logged, without the ValidateToken rate
    /// limit (authenticated calls have their own).
    async fn check_token(
        &self,
        caller: &Caller,
        token: &str,
    ) -> Result<Option<AccessClaims>, Error> {
        match self.verify_access_token(token).await? {
            Ok(claims) => Ok(Some(claims)),
            Err(refusal) => {
                SecurityEvent::new(EventName::TokenRefused)
                    .token_kind("access")
                    .reason(refusal.as_str())
                    .client(caller.addr())
                    .emit(&self.audit);
                Ok(None)
            }
        }
    }

    /// For calls that require a caller: UNAUTHENTICATED unless the bearer
    /// token is fully valid.
    pub async fn authenticate(
        &self,
        caller: &Caller,
        bearer: Option<&str>,
    ) -> Result<AccessClaims, Error> {
        let token = bearer.ok_or(Error::Unauthenticated)?;
        self.check_token(caller, token)
            .await?
            .ok_or(Error::Unauthenticated)
    }

    /// Revokes the session of a refresh token or, without one, of the
    /// bearer access token. Unknown refresh tokens succeed quietly (RFC 7009).
    pub async fn logout(
        &self,
        caller: &Caller,
        refresh_token: &str,
        bearer: Option<&str>,
    ) -> Result<(), Error> {
        let session_id = if refresh_token.is_empty() {
            let claims = self.authenticate(caller, bearer).await?;
            Id::parse(&claims.sid).ok_or(Error::Unauthenticated)?
        } else {
            validation::required(refresh_token, refresh::MAX_REFRESH_TOKEN_BYTES)
                .map_err(|d| Error::invalid("refresh_token", d))?;
            match self
                .store
                .session_of_refresh_token(&refresh::hash(refresh_token))
                .await?
            {
                Some(session) => session.id,
                None => return Ok(()),
            }
        };
        let session = self.store.find_session(session_id).await?;
        let event = SecurityEvent::new(EventName::SessionRevoked)
            .session(session_id)
            .reason("logout")
            .client(caller.addr());
        let event = match &session {
            Some(s) => event.profile(s.profile_id),
            None => event,
        };
        let revoked = self
            .store
            .revoke_session(session_id, "logout", &event.audit_row())
            .await?;
        self.fast.revoked(Revoked::Session(session_id));
        if revoked {
            event.emit_committed();
        }
        Ok(())
    }

    /// Verifies the signed-in user's current password before a sensitive
    /// change (password, email, deletion): Login's per-address quota and
    /// throttle, keyed by the profile, so a stolen access token is no
    /// password oracle. Answers the verified hash, for the change to compare
    /// under its lock.
    pub async fn reverify(
        &self,
        principal: &Principal,
        purpose: Reauth,
        current: SecretString,
    ) -> Result<String, Error> {
        passwords::check_presented(current.expose_secret())
            .map_err(|d| Error::invalid("current_password", d))?;
        let profile = principal.profile_id;
        let caller = Caller::from(principal);
        let refused = |reason: &'static str| {
            purpose
                .refused_event()
                .profile(profile)
                .session(principal.session_id)
                .client(caller.addr())
                .reason(reason)
                .emit(&self.audit);
        };
        let client = self.client_key(&caller);
        self.limit_keys(Action::Login, &caller, client.as_deref(), None)
            .await?;
        // Accounts from an external provider have no password here.
        let stored = self.store.password_hash_of(profile).await?;
        let attempt = Attempt::Unknown {
            client: client.as_deref().unwrap_or("unknown"),
        };
        // The same counters as Login's for this account: guesses through
        // Login and through re-verification add up to one budget.
        let account = match self
            .fast
            .profile(&self.store, profile)
            .await?
            .and_then(|p| p.email)
        {
            Some(email) => self.keys.pseudonym(&email),
            None => format!("profile:{profile}"),
        };
        let reservation = self
            .throttle
            .reserve(&account, attempt, Instant::now())
            .map_err(|wait| {
                refused("throttled");
                throttled(wait)
            })?;
        let ok = match self
            .hasher
            .verify(current, stored.clone(), self.hash_deadline(&caller))
            .await
        {
            Ok(ok) => ok,
            Err(e) => {
                self.throttle.release(reservation);
                return Err(busy(e));
            }
        };
        let Some(stored) = stored.filter(|_| ok) else {
            // The reservation stands as this failure.
            drop(reservation);
            refused("bad_password");
            return Err(Error::InvalidCredentials);
        };
        self.throttle.succeeded(reservation);
        Ok(stored)
    }

    /// Moves the login to `new_email` after the password was verified again,
    /// and ends every other session: whoever holds them lost the account's
    /// old address.
    pub async fn change_email(
        &self,
        principal: &Principal,
        current: SecretString,
        new_email: &str,
    ) -> Result<(), Error> {
        let mut violations = Violations::new();
        violations.check(
            "current_password",
            passwords::check_presented(current.expose_secret()),
        );
        let new_email = violations.check("new_email", validation::email(new_email));
        violations.into_result()?;
        let new_email = new_email.unwrap_or_default();
        let verified = self
            .reverify(principal, Reauth::ChangeEmail, current)
            .await?;
        let (profile, session) = (principal.profile_id, principal.session_id);
        let event = SecurityEvent::new(EventName::EmailChanged)
            .profile(profile)
            .session(session)
            .client(principal.client_addr.as_deref())
            .email_pseudonym(self.keys.pseudonym(&new_email));
        let changed = self
            .store
            .change_email(profile, &verified, &new_email, session, &event.audit_row())
            .await;
        // Whatever the outcome, this replica's copy may be stale.
        self.fast.revoked(Revoked::ProfileChanged(profile));
        match changed {
            Ok(true) => {}
            // The password changed since it was verified: retry.
            Ok(false) => return Err(Error::StaleEtag),
            Err(e) => {
                return Err(match Error::from(e) {
                    Error::AlreadyExists(_) => Error::AlreadyExists("new_email"),
                    other => other,
                });
            }
        }
        self.fast.revoked(Revoked::Profile {
            profile,
            except: Some(session),
        });
        event.emit_committed();
        Ok(())
    }

    pub async fn change_password(
        &self,
        principal: &Principal,
        current: SecretString,
        new: SecretString,
    ) -> Result<(), Error> {
        let mut violations = Violations::new();
        violations.check(
            "current_password",
            passwords::check_presented(current.expose_secret()),
        );
        let profile_email = self
            .store
            .find_profile(principal.profile_id)
            .await?
            .and_then(|p| p.email)
            .unwrap_or_default();
        violations.check(
            "new_password",
            passwords::check_new(
                new.expose_secret(),
                &profile_email,
                "",
                self.settings.password_min_score,
            ),
        );
        if !current.expose_secret().is_empty() && current.expose_secret() == new.expose_secret() {
            violations.check::<()>(
                "new_password",
                Err("must differ from the current password".into()),
            );
        }
        violations.into_result()?;

        let (profile, session) = (principal.profile_id, principal.session_id);
        let caller = Caller::from(principal);
        let stored = self
            .reverify(principal, Reauth::ChangePassword, current)
            .await?;
        let new_hash = self
            .hasher
            .hash(new, self.hash_deadline(&caller))
            .await
            .map_err(busy)?;
        let event = SecurityEvent::new(EventName::PasswordChanged)
            .profile(profile)
            .session(session)
            .client(caller.addr());
        if !self
            .store
            .change_password(profile, &stored, &new_hash, session, &event.audit_row())
            .await?
        {
            // Changed concurrently by another call: make the caller retry.
            return Err(Error::StaleEtag);
        }
        self.fast.revoked(Revoked::Profile {
            profile,
            except: Some(session),
        });
        event.emit_committed();
        Ok(())
    }
}

#[cfg(test)]
mod tests;
