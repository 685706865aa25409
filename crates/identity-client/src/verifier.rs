//! The verifier: keys, the revocation stream, and the decision per token.

use crate::error::{BuildError, VerifyError};
use crate::keys::{Fetch, Fetching, KeyCache, Rules};
use crate::knowledge::{Decision, Knowledge, TokenFacts};
use crate::principal::{Principal, now_unix, unix_time};
use crate::proto::v1::auth_service_client::AuthServiceClient;
use crate::proto::v1::{GetJwksRequest, ValidateTokenRequest, ValidateTokenResponse};
use crate::watch;
use identity_core::tokens::{AccessClaims, PublicJwk};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

/// Verified tokens remembered by default: a few MB at most (an entry is
/// the token's claims and its 32-byte key).
const DEFAULT_TOKEN_CACHE_SIZE: usize = 10_000;

/// How long a `ValidateToken` answer of "inactive" is reused for the
/// session before asking again.
const INACTIVE_REUSE_SECS: i64 = 30;

/// What [`Verifier::verify`] does when the revocation stream is silent
/// (no heartbeat within `max_staleness`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Fallback {
    /// Refuse every token with [`VerifyError::Stale`] (the default).
    #[default]
    Refuse,
    /// Ask identity's `ValidateToken` for each token, within the remote
    /// timeout ([`VerifierBuilder::remote_timeout`]), at the remote endpoint
    /// ([`VerifierBuilder::remote_endpoint`], by default the same one).
    Remote,
}

/// How the verifier authenticates its `WatchRevocations` stream.
#[derive(Clone)]
pub(crate) enum WatchCredentials {
    /// Nothing in the metadata: the endpoint's TLS client identity (mTLS).
    None,
    /// `authorization: Bearer <token>`: a service token holding
    /// `revocations:watch`.
    Token(String),
    /// A service client holding `revocations:watch`: `ServiceLogin` for a
    /// token, again before it expires.
    Client { id: String, secret: String },
}

impl std::fmt::Debug for WatchCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WatchCredentials::None => f.write_str("None"),
            WatchCredentials::Token(_) => f.write_str("Token(<redacted>)"),
            WatchCredentials::Client { id, .. } => write!(f, "Client({id}, <redacted>)"),
        }
    }
}

/// Builds a [`Verifier`]; see [`Verifier::builder`].
#[derive(Debug)]
pub struct VerifierBuilder {
    endpoint: Endpoint,
    remote_endpoint: Option<Endpoint>,
    credentials: WatchCredentials,
    issuer: String,
    audience: String,
    leeway: Duration,
    max_staleness: Duration,
    fallback: Fallback,
    remote_timeout: Duration,
    jwks_min_interval: Duration,
    token_cache_size: usize,
}

impl VerifierBuilder {
    /// The service token (`identity admin issue-service-token --role
    /// revocations:watch`, or a service client's token holding that role)
    /// the revocation stream is opened with. Without one the stream relies
    /// on the endpoint's TLS client identity
    /// (`Endpoint::tls_config(ClientTlsConfig::new().identity(..))`).
    pub fn service_token(mut self, token: impl Into<String>) -> Self {
        self.credentials = WatchCredentials::Token(token.into());
        self
    }

    /// Client credentials (`identity admin create-service-client --role
    /// revocations:watch`) the stream signs in with (`ServiceLogin`),
    /// signing in again before each token expires; unlike a service token
    /// they do not run out.
    pub fn service_credentials(
        mut self,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> Self {
        self.credentials = WatchCredentials::Client {
            id: client_id.into(),
            secret: client_secret.into(),
        };
        self
    }

    /// The `iss` tokens must carry (identity's IDENTITY_ISSUER; default
    /// `identity`).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = issuer.into();
        self
    }

    /// The `aud` tokens must carry (identity's IDENTITY_AUDIENCE; default
    /// `identity`).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = audience.into();
        self
    }

    /// Clock skew allowed on `exp`, `nbf` and `iat` (identity's
    /// IDENTITY_TOKEN_LEEWAY; default 30 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// The longest the verifier answers offline since the last heartbeat
    /// (default 1 s): the bound on how late it learns of a revocation.
    pub fn max_staleness(mut self, max_staleness: Duration) -> Self {
        self.max_staleness = max_staleness;
        self
    }

    /// What to do when the stream is silent (default [`Fallback::Refuse`]).
    pub fn fallback(mut self, fallback: Fallback) -> Self {
        self.fallback = fallback;
        self
    }

    /// Where `ValidateToken` is asked (default: the endpoint given to
    /// [`Verifier::builder`]); e.g. another replica or the load balancer.
    pub fn remote_endpoint(mut self, endpoint: Endpoint) -> Self {
        self.remote_endpoint = Some(endpoint);
        self
    }

    /// Bound on each `ValidateToken` call (default 500 ms).
    pub fn remote_timeout(mut self, timeout: Duration) -> Self {
        self.remote_timeout = timeout;
        self
    }

    /// The least time between two `GetJwks` calls caused by tokens with an
    /// unknown `kid` (default 10 s).
    pub fn jwks_min_interval(mut self, interval: Duration) -> Self {
        self.jwks_min_interval = interval;
        self
    }

    /// How many verified tokens (signature and claims) are remembered, each
    /// until its `exp`, keyed by its SHA-256 (default 10,000; 0: none). A
    /// token seen again skips the signature check; the revocation stream
    /// and the staleness bound still decide every call, and the cache is
    /// dropped whenever identity's key set is fetched again.
    pub fn token_cache_size(mut self, tokens: usize) -> Self {
        self.token_cache_size = tokens;
        self
    }

    /// Fetches the keys (within the remote timeout, else an error) and
    /// starts following the revocation stream in a task of its own, which
    /// ends with the last clone of the verifier. Tokens are refused
    /// ([`VerifyError::Stale`]) until the first heartbeat arrives; see
    /// [`Verifier::wait_current`].
    pub async fn build(self) -> Result<Verifier, BuildError> {
        for (name, value) in [
            ("max_staleness", self.max_staleness),
            ("remote_timeout", self.remote_timeout),
            ("jwks_min_interval", self.jwks_min_interval),
        ] {
            if value.is_zero() {
                return Err(BuildError::Zero(name));
            }
        }
        let channel = self.endpoint.connect_lazy();
        let remote = match &self.remote_endpoint {
            Some(endpoint) => endpoint.connect_lazy(),
            None => channel.clone(),
        };
        let fetch = jwks_fetch(channel.clone(), self.remote_timeout);
        let jwks = fetch()
            .await
            .map_err(|status| BuildError::Jwks(Box::new(status)))?;
        let keys = KeyCache::new(
            &jwks,
            Rules {
                issuer: self.issuer,
                audience: self.audience,
                leeway: self.leeway,
            },
            self.jwks_min_interval,
            fetch,
            self.token_cache_size,
        )?;
        let shared = Arc::new(Shared {
            keys,
            knowledge: Mutex::new(Knowledge::default()),
            heartbeat: Mutex::new(None),
            beat: tokio::sync::Notify::new(),
            leeway: i64::try_from(self.leeway.as_secs()).unwrap_or(i64::MAX),
            max_staleness: self.max_staleness,
            fallback: self.fallback,
            remote: AuthServiceClient::new(remote),
            remote_timeout: self.remote_timeout,
        });
        let task = tokio::spawn(watch::follow(
            Arc::clone(&shared),
            AuthServiceClient::new(channel),
            self.credentials,
        ));
        Ok(Verifier {
            shared,
            _watch: Arc::new(AbortOnDrop(task)),
        })
    }
}

fn jwks_fetch(channel: Channel, timeout: Duration) -> Fetch {
    Arc::new(move || {
        let mut client = AuthServiceClient::new(channel.clone());
        let fetching: Fetching = Box::pin(async move {
            let answer = tokio::time::timeout(timeout, client.get_jwks(GetJwksRequest {}))
                .await
                .map_err(|_| tonic::Status::deadline_exceeded("GetJwks timed out"))??;
            Ok(answer
                .into_inner()
                .keys
                .into_iter()
                .map(|k| PublicJwk {
                    kty: k.kty,
                    kid: k.kid,
                    alg: k.alg,
                    use_: k.r#use,
                    crv: k.crv,
                    x: k.x,
                })
                .collect())
        });
        fetching
    })
}

/// State shared by the verifier's clones and its stream task.
pub(crate) struct Shared {
    pub(crate) keys: KeyCache,
    pub(crate) knowledge: Mutex<Knowledge>,
    /// When the last heartbeat arrived.
    heartbeat: Mutex<Option<Instant>>,
    beat: tokio::sync::Notify,
    pub(crate) leeway: i64,
    max_staleness: Duration,
    fallback: Fallback,
    remote: AuthServiceClient<Channel>,
    remote_timeout: Duration,
}

impl Shared {
    pub(crate) fn knowledge(&self) -> MutexGuard<'_, Knowledge> {
        // A panic elsewhere must not turn every verification into one.
        self.knowledge
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn heartbeat(&self) {
        *self
            .heartbeat
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
        self.beat.notify_waiters();
    }

    fn last_heartbeat(&self) -> Option<Instant> {
        *self
            .heartbeat
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `None` while current; else how long since the last heartbeat
    /// (`Some(None)`: never had one).
    fn silent_for(&self) -> Option<Option<Duration>> {
        match self.last_heartbeat() {
            Some(at) if at.elapsed() <= self.max_staleness => None,
            Some(at) => Some(Some(at.elapsed())),
            None => Some(None),
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Verifies identity's access tokens in this process: signature and claims
/// with the published keys, revocations and role changes from the
/// `WatchRevocations` stream, failing closed when the stream is silent.
/// Cheap to clone (all clones share one stream).
#[derive(Clone)]
pub struct Verifier {
    shared: Arc<Shared>,
    _watch: Arc<AbortOnDrop>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("max_staleness", &self.shared.max_staleness)
            .field("fallback", &self.shared.fallback)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A builder for a verifier of the identity service at `endpoint`
    /// (`Endpoint::from_static("https://identity.internal:50051")`, with
    /// `tls_config` for TLS and, for mTLS, a client identity).
    pub fn builder(endpoint: Endpoint) -> VerifierBuilder {
        VerifierBuilder {
            endpoint,
            remote_endpoint: None,
            credentials: WatchCredentials::None,
            issuer: "identity".into(),
            audience: "identity".into(),
            leeway: Duration::from_secs(30),
            max_staleness: Duration::from_secs(1),
            fallback: Fallback::Refuse,
            remote_timeout: Duration::from_millis(500),
            jwks_min_interval: Duration::from_secs(10),
            token_cache_size: DEFAULT_TOKEN_CACHE_SIZE,
        }
    }

    /// Waits up to `within` for the stream to be current (a heartbeat within
    /// `max_staleness`); whether it is.
    pub async fn wait_current(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let beat = self.shared.beat.notified();
            if self.shared.silent_for().is_none() {
                return true;
            }
            if tokio::time::timeout_at(deadline, beat).await.is_err() {
                return self.shared.silent_for().is_none();
            }
        }
    }

    /// Verifies an access token (without `Bearer `) and says whom it names.
    pub async fn verify(&self, token: &str) -> Result<Principal, VerifyError> {
        let verified = self
            .shared
            .keys
            .verify(token)
            .await
            .map_err(VerifyError::Refused)?;
        let claims = &verified.claims;
        if let Some(last_heartbeat) = self.shared.silent_for() {
            return match self.shared.fallback {
                Fallback::Refuse => Err(VerifyError::Stale { last_heartbeat }),
                Fallback::Remote => self.ask_remote(token, claims, None).await,
            };
        }
        let (decision, epoch) = {
            let knowledge = self.shared.knowledge();
            if knowledge.known_inactive(&claims.sid, claims.iat, now_unix()) {
                return Err(VerifyError::Inactive);
            }
            let facts = TokenFacts {
                sub: &claims.sub,
                sid: &claims.sid,
                iat: claims.iat,
                roles: &claims.roles,
            };
            (
                knowledge.decide(facts, self.shared.leeway),
                knowledge.epoch(),
            )
        };
        match decision {
            Decision::Revoked => Err(VerifyError::Revoked),
            Decision::Accept(roles) => Ok(principal(claims, roles)),
            Decision::AskRemote => self.ask_remote(token, claims, Some(epoch)).await,
        }
    }

    /// Asks ValidateToken; remembers the answer when asked at `epoch` of a
    /// current stream (and nothing changed since).
    async fn ask_remote(
        &self,
        token: &str,
        claims: &AccessClaims,
        epoch: Option<u64>,
    ) -> Result<Principal, VerifyError> {
        let mut remote = self.shared.remote.clone();
        let request = ValidateTokenRequest {
            access_token: token.to_owned(),
        };
        let answer =
            tokio::time::timeout(self.shared.remote_timeout, remote.validate_token(request))
                .await
                .map_err(|_| VerifyError::Timeout(self.shared.remote_timeout))?
                .map_err(|status| VerifyError::Unavailable(Box::new(status)))?
                .into_inner();
        // The same token: identity vouches for the session it names.
        if !answer.active || answer.session_id != claims.sid || answer.subject != claims.sub {
            if let Some(epoch) = epoch {
                self.shared.knowledge().inactive(
                    epoch,
                    &claims.sid,
                    claims.iat,
                    now_unix() + INACTIVE_REUSE_SECS,
                );
            }
            return Err(VerifyError::Inactive);
        }
        if let Some(epoch) = epoch {
            self.shared
                .knowledge()
                .vouch(epoch, &claims.sub, &claims.sid, &answer.roles);
        }
        Ok(remote_principal(answer, claims))
    }
}

fn principal(claims: &AccessClaims, roles: Vec<String>) -> Principal {
    Principal {
        subject: claims.sub.clone(),
        profile_id: claims.sub.clone(),
        session_id: claims.sid.clone(),
        roles,
        auth_provider: claims.auth_provider.clone(),
        auth_id: claims.auth_id.clone(),
        expire_time: unix_time(claims.exp),
    }
}

fn remote_principal(answer: ValidateTokenResponse, claims: &AccessClaims) -> Principal {
    Principal {
        subject: answer.subject,
        profile_id: answer.profile_id,
        session_id: answer.session_id,
        roles: answer.roles,
        auth_provider: answer.auth_provider,
        auth_id: answer.auth_id,
        expire_time: unix_time(answer.expire_time.map_or(claims.exp, |t| t.seconds)),
    }
}
