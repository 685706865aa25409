//! The external provider's validated settings (`config::provider` reads
//! and checks them) and the `auth_provider` names reserved for the
//! service's own accounts.

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

/// `auth_provider` values the service itself uses.
pub const RESERVED_PROVIDER_NAMES: &[&str] = &["local", "service"];

/// Whether `name` is, or passes for, one of [`RESERVED_PROVIDER_NAMES`]:
/// compared trimmed and without regard to case, so `Local` or ` SERVICE`
/// cannot be made to look like the service's own accounts to a reader or a
/// case-insensitive consumer.
pub fn is_reserved_provider(name: &str) -> bool {
    let name = name.trim();
    RESERVED_PROVIDER_NAMES
        .iter()
        .any(|reserved| reserved.eq_ignore_ascii_case(name))
}
