//! The external identity provider (Better-Auth): its settings, its JWK set
//! and the verifier ExchangeToken uses. I/O lives here (the JWKS fetch);
//! the rules are in `identity_core::provider`, the use case in
//! `service::exchange`, which `server.rs` builds with this verifier (as an
//! `identity_core::provider::TokenVerifier`: neither imports the other).

pub mod jwks;
pub mod settings;

pub use settings::ProviderConfig;

use identity_core::provider::{
    ProviderClaims, Rules, TokenVerifier, VerifyFailure, Verifying, inspect, verify,
};
use identity_core::tokens::Refusal;
use jwks::{JwksCache, JwksSettings, Lookup};
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Health service name that reports whether the provider's JWK set can be
/// fetched. Only this name goes NOT_SERVING when the provider is down: the
/// rest of the API keeps serving (cached keys still verify).
pub const HEALTH_SERVICE: &str = "identity.provider";

/// Verifies provider tokens against the cached JWK set.
pub struct ProviderVerifier {
    rules: Rules,
    jwks: Arc<JwksCache>,
}

impl ProviderVerifier {
    pub fn new(config: &ProviderConfig) -> Result<ProviderVerifier, rustls::Error> {
        Ok(ProviderVerifier {
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
            })?,
        })
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

impl TokenVerifier for ProviderVerifier {
    fn verify<'a>(&'a self, token: &'a str) -> Verifying<'a> {
        Box::pin(ProviderVerifier::verify(self, token))
    }
}

/// The running provider integration: the verifier and the task that keeps
/// the JWK set fresh. Dropping it stops the task.
pub struct Running {
    verifier: Arc<ProviderVerifier>,
    refresher: JoinHandle<()>,
}

impl Running {
    pub fn verifier(&self) -> Arc<ProviderVerifier> {
        Arc::clone(&self.verifier)
    }

    /// Whether the JWK set can be fetched (`None` before the first try);
    /// `server.rs` follows it with the [`HEALTH_SERVICE`] health status.
    pub fn reachable(&self) -> watch::Receiver<Option<bool>> {
        self.verifier.jwks().reachable()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.refresher.abort();
    }
}

/// Starts the provider integration: the first JWKS fetch runs in the
/// background (a failure is logged, not fatal).
pub fn start(config: &ProviderConfig) -> Result<Running, rustls::Error> {
    let verifier = Arc::new(ProviderVerifier::new(config)?);
    let refresher = tokio::spawn(Arc::clone(verifier.jwks()).run());
    tracing::info!(
        jwks_url = %config.jwks_url,
        issuer = %config.issuer,
        audience = %config.audience,
        provider = %config.name,
        algorithms = ?config.algorithms,
        "ExchangeToken enabled"
    );
    Ok(Running {
        verifier,
        refresher,
    })
}
