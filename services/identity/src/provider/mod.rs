//! The external identity provider (Better-Auth): its settings, its JWK set
//! and the verifier ExchangeToken uses. I/O lives here (the JWKS fetch);
//! the rules are in `identity_core::provider`, the use case in `service::exchange`.

pub mod jwks;
pub mod settings;

pub use settings::{ProviderConfig, ProviderSettings};

use crate::service::Auth;
use crate::service::exchange::TokenExchange;
use identity_core::provider::{ProviderClaims, Rules, inspect, verify};
use identity_core::tokens::Refusal;
use jwks::{JwksCache, JwksSettings, Lookup};
use std::sync::Arc;
use tokio::task::JoinHandle;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// Health service name that reports whether the provider's JWK set can be
/// fetched. Only this name goes NOT_SERVING when the provider is down: the
/// rest of the API keeps serving (cached keys still verify).
pub const HEALTH_SERVICE: &str = "identity.provider";

/// Why a provider token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyFailure {
    Refused(Refusal),
    /// The token needs a key that is not cached and the provider cannot be
    /// asked right now.
    Unavailable,
}

/// Verifies provider tokens against the cached JWK set.
pub struct ProviderVerifier {
    rules: Rules,
    jwks: Arc<JwksCache>,
}

impl ProviderVerifier {
    pub fn new(config: &ProviderConfig) -> ProviderVerifier {
        ProviderVerifier {
            rules: Rules {
                issuer: config.issuer.clone(),
                audience: config.audience.clone(),
                leeway: config.leeway,
                algorithms: config.algorithms.clone(),
            },
            jwks: JwksCache::new(JwksSettings {
                url: config.jwks_url.clone(),
                algorithms: config.algorithms.clone(),
                min_refresh_interval: config.min_refresh_interval,
                timeout: config.timeout,
                max_bytes: config.max_bytes,
                max_stale: config.max_stale,
            }),
        }
    }

    pub fn jwks(&self) -> &Arc<JwksCache> {
        &self.jwks
    }

    pub async fn verify(&self, token: &str) -> Result<ProviderClaims, VerifyFailure> {
        let head = inspect(token, &self.rules.algorithms).map_err(VerifyFailure::Refused)?;
        let key = match self.jwks.key(&head.kid).await {
            Lookup::Found(key) => key,
            Lookup::Unknown => return Err(VerifyFailure::Refused(Refusal::UnknownKey)),
            Lookup::Unavailable => return Err(VerifyFailure::Unavailable),
        };
        let now = jsonwebtoken::get_current_timestamp() as i64;
        verify(token, &head, &key, &self.rules, now).map_err(VerifyFailure::Refused)
    }
}

/// The running provider integration: the exchange use case and the tasks
/// that keep the JWK set fresh and report its health. Dropping it stops
/// the tasks.
pub struct Running {
    exchange: Arc<TokenExchange>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    pub fn exchange(&self) -> Arc<TokenExchange> {
        Arc::clone(&self.exchange)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Starts the provider integration when one is configured: the first JWKS
/// fetch runs in the background (a failure is logged, not fatal), and the
/// `identity.provider` health status follows the provider's reachability.
pub async fn start(
    config: Option<&ProviderConfig>,
    auth: &Arc<Auth>,
    reporter: &HealthReporter,
) -> Option<Running> {
    let config = config?;
    let verifier = Arc::new(ProviderVerifier::new(config));
    reporter
        .set_service_status(HEALTH_SERVICE, ServingStatus::NotServing)
        .await;
    let mut reachable = verifier.jwks().reachable();
    let health = {
        let reporter = reporter.clone();
        tokio::spawn(async move {
            while reachable.changed().await.is_ok() {
                let status = match *reachable.borrow_and_update() {
                    Some(true) => ServingStatus::Serving,
                    _ => ServingStatus::NotServing,
                };
                reporter.set_service_status(HEALTH_SERVICE, status).await;
            }
        })
    };
    let refresher = tokio::spawn(Arc::clone(verifier.jwks()).run());
    tracing::info!(
        jwks_url = %config.jwks_url,
        issuer = %config.issuer,
        audience = %config.audience,
        provider = %config.name,
        algorithms = ?config.algorithms,
        "ExchangeToken enabled"
    );
    Some(Running {
        exchange: Arc::new(TokenExchange::new(
            Arc::clone(auth),
            verifier,
            config.name.clone(),
            config.session_ttl,
            config.leeway,
        )),
        tasks: vec![refresher, health],
    })
}
