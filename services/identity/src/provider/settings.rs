//! The external provider's validated settings (`config::provider` reads
//! and checks them). The `auth_provider` names reserved for the service's
//! own accounts are in `identity_core::roles`.

use jsonwebtoken::Algorithm;
use std::time::Duration;

/// The validated provider configuration.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub jwks_url: http::Uri,
    pub issuer: String,
    pub audience: String,
    pub name: String,
    pub algorithms: Vec<Algorithm>,
    pub leeway: Duration,
    pub min_refresh_interval: Duration,
    pub timeout: Duration,
    pub max_bytes: usize,
    pub session_ttl: Duration,
    pub max_stale: Duration,
}
