//! The real use cases, wired as `server.rs` wires them but in-process: no
//! listener, no gRPC, a migrated SQLite file of their own, bcrypt at its
//! lowest cost and a freshly generated signing key. Unit tests of
//! `service/` drive them directly, in milliseconds.

use crate::infra::bcrypt::Hasher;
use crate::infra::limits::{LimitSettings, Limiter};
use crate::service::audit::AuditSink;
use crate::service::exchange::{ExchangeSettings, TokenExchange};
use crate::service::revocation::{FastPath, RevocationSettings};
use crate::service::{Auth, AuthSettings, Caller, IssuedTokens, Principal, Profiles};
use identity_core::provider::TokenVerifier;
use identity_core::tokens::{AccessClaims, Ed25519Key, TokenKeys, generate_ed25519_pem};
use identity_store::{DatabaseUrl, Id, PoolSettings, Profile, Store};
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// bcrypt's smallest cost: a hash takes about a millisecond.
pub const BCRYPT_COST: u32 = 4;

/// A password zxcvbn scores 4, unrelated to any email used here.
pub const PASSWORD: &str = "kV9#tq2Lw!pZ";
/// Another strong one, for password changes.
pub const NEW_PASSWORD: &str = "Rb4%mx8Qj@sN";

/// The provider name exchanged profiles carry.
pub const PROVIDER: &str = "better-auth";
/// IDENTITY_PROVIDER_SESSION_TTL of [`Services::exchange`].
pub const PROVIDER_SESSION_TTL: Duration = Duration::from_secs(3600);

/// What a test may choose; the rest is fixed.
#[derive(Clone)]
pub struct Options {
    /// IDENTITY_BOOTSTRAP_ADMINS (normalised emails).
    pub bootstrap_admins: Vec<String>,
    /// Rate limits; by default on, with no quota (the throttle still acts).
    pub limits: LimitSettings,
    /// IDENTITY_BCRYPT_THREADS.
    pub bcrypt_threads: usize,
    /// IDENTITY_REFRESH_REUSE_GRACE (the service's default, 10 s).
    pub refresh_reuse_grace: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            bootstrap_admins: Vec::new(),
            limits: LimitSettings {
                enabled: true,
                per_address: HashMap::new(),
                per_account: HashMap::new(),
                redis_url: None,
                redis_ca_pem: None,
                max_keys: 1000,
            },
            bcrypt_threads: 2,
            refresh_reuse_grace: Duration::from_secs(10),
        }
    }
}

/// One service's use cases over one database. Dropping it stops its
/// background tasks and deletes the database.
pub struct Services {
    pub store: Store,
    pub keys: Arc<TokenKeys>,
    pub auth: Arc<Auth>,
    pub profiles: Arc<Profiles>,
    /// The pool `auth` hashes on.
    pub hasher: Arc<Hasher>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    dir: PathBuf,
}

fn token_keys() -> Arc<TokenKeys> {
    let pem = generate_ed25519_pem().expect("an Ed25519 key");
    let key = Ed25519Key::from_pem(pem.expose_secret(), "test key").expect("a PEM key");
    Arc::new(
        TokenKeys::new(
            vec![key],
            None,
            "identity".into(),
            "identity".into(),
            Duration::from_secs(30),
        )
        .expect("token keys"),
    )
}

fn revocation_settings() -> RevocationSettings {
    RevocationSettings {
        revocation_max_staleness: Duration::from_secs(1),
        revocation_reconcile_interval: Duration::from_secs(5),
        token_cache_size: 1000,
        session_cache_size: 1000,
        revocation_heartbeat: Duration::from_millis(250),
        revocation_max_watchers: 16,
        revocation_max_watchers_per_address: 16,
        revocation_max_watchers_per_principal: 16,
        revocation_watch_backlog: 64,
        revocation_watch_send_timeout: Duration::from_secs(10),
        profile_cache_size: 1000,
    }
}

impl Services {
    pub async fn start() -> Services {
        Services::with(Options::default()).await
    }

    pub async fn with(options: Options) -> Services {
        let dir = std::env::temp_dir().join(format!("identity-unit-{}", Id::new()));
        let url = DatabaseUrl::parse(&format!("sqlite://{}", dir.join("identity.db").display()))
            .expect("a SQLite URL");
        Store::migrate(&url).await.expect("migrations");
        let store = Store::open(
            &url,
            &PoolSettings {
                max_size: 4,
                timeout: Duration::from_secs(5),
            },
        )
        .expect("a SQLite pool");
        let keys = token_keys();
        let hasher = Arc::new(
            Hasher::start(BCRYPT_COST, options.bcrypt_threads, 64).expect("a bcrypt pool"),
        );
        let access_token_ttl = Duration::from_secs(30 * 60);
        let revocation = revocation_settings();
        let fast = FastPath::new(&revocation, access_token_ttl + Duration::from_secs(30));
        let auth = Arc::new(Auth::new(
            store.clone(),
            Arc::clone(&keys),
            Arc::clone(&hasher),
            AuthSettings {
                access_token_ttl,
                refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
                bootstrap_admins: options.bootstrap_admins,
                password_min_score: 3,
                ipv6_prefix: 64,
                request_timeout: Duration::from_secs(10),
                refresh_reuse_grace: options.refresh_reuse_grace,
            },
            Arc::new(Limiter::new(&options.limits).expect("local rate limits")),
            AuditSink::start(store.clone(), 4096, 1024),
            Arc::clone(&fast),
        ));
        let profiles = Arc::new(Profiles::new(
            store.clone(),
            Arc::clone(&keys),
            auth.audit_sink(),
            Arc::clone(&auth),
            Arc::clone(&fast),
        ));
        // SQLite is one node: this process is the authority on revocations.
        let tasks = fast.start(&revocation, &store, &url, None);
        Services {
            store,
            keys,
            auth,
            profiles,
            hasher,
            tasks,
            dir,
        }
    }

    /// ExchangeToken over these services, asking `verifier` about provider
    /// tokens.
    pub fn exchange(&self, verifier: Arc<dyn TokenVerifier>) -> TokenExchange {
        TokenExchange::new(
            Arc::clone(&self.auth),
            self.store.clone(),
            verifier,
            ExchangeSettings {
                provider: PROVIDER.into(),
                session_ttl: PROVIDER_SESSION_TTL,
                leeway: Duration::from_secs(30),
            },
        )
    }

    /// Registers `email` with [`PASSWORD`].
    pub async fn register(&self, email: &str) -> (Profile, IssuedTokens) {
        self.auth
            .register(&caller(), email, secret(PASSWORD), "Ada")
            .await
            .expect("registration")
    }

    /// Logs `email` in with `password`, from no known device.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
    ) -> Result<IssuedTokens, crate::service::Error> {
        self.auth
            .login(&caller(), email, secret(password), "")
            .await
            .map(|logged_in| logged_in.tokens)
    }

    /// Refreshes with `refresh_token`, from the usual caller.
    pub async fn refresh(
        &self,
        refresh_token: &str,
    ) -> Result<IssuedTokens, crate::service::Error> {
        self.auth.refresh(&caller(), refresh_token).await
    }

    /// The claims of `tokens`' access token if it is fully valid now
    /// (signature, claims and a live session).
    pub async fn claims(&self, tokens: &IssuedTokens) -> Option<AccessClaims> {
        self.auth
            .validate(&caller(), tokens.access_token.expose_secret())
            .await
            .expect("validation answers")
            .map(|(claims, _)| claims)
    }

    /// The caller behind `tokens`, as the transport makes it.
    pub async fn principal(&self, tokens: &IssuedTokens) -> Principal {
        let claims = self
            .claims(tokens)
            .await
            .expect("a live access token for the principal");
        Principal::from_claims(&claims, caller().client_addr).expect("ids in the claims")
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A caller from one documentation address.
pub fn caller() -> Caller {
    Caller {
        client_addr: Some("192.0.2.10".into()),
        ..Caller::default()
    }
}

pub fn secret(text: &str) -> SecretString {
    SecretString::from(text.to_owned())
}
