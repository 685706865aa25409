//! The external provider (ExchangeToken), flattened into `identity serve`.

use clap::Args;
use clap::builder::BoolishValueParser;
use std::time::Duration;

/// Raw provider settings as given; `config::provider::load` validates them.
#[derive(Args, Clone)]
pub struct ProviderSettings {
    /// JWK set of the external provider (Better-Auth: <base URL>/api/auth/jwks).
    /// Setting it turns AuthService.ExchangeToken on.
    #[arg(long, env = "IDENTITY_PROVIDER_JWKS_URL")]
    pub provider_jwks_url: Option<String>,

    /// `iss` that provider tokens must carry (Better-Auth: jwt.issuer, by default its base URL).
    #[arg(long, env = "IDENTITY_PROVIDER_ISSUER")]
    pub provider_issuer: Option<String>,

    /// Audience that provider tokens' `aud` must contain (Better-Auth: jwt.audience).
    /// Required in production, and different from the issuer: Better-Auth's
    /// default audience (its base URL) is every client's, so its tokens for
    /// anything else would be accepted here. Under --dev it defaults to
    /// IDENTITY_PROVIDER_ISSUER.
    #[arg(long, env = "IDENTITY_PROVIDER_AUDIENCE")]
    pub provider_audience: Option<String>,

    /// `auth_provider` of the profiles that exchanged tokens create.
    #[arg(long, env = "IDENTITY_PROVIDER_NAME", default_value = "better-auth")]
    pub provider_name: String,

    /// Signature algorithms accepted from the provider (comma-separated):
    /// EdDSA, ES256, RS256, PS256. Never `none` or HMAC.
    #[arg(
        long,
        env = "IDENTITY_PROVIDER_ALGORITHMS",
        default_value = "EdDSA",
        value_delimiter = ','
    )]
    pub provider_algorithms: Vec<String>,

    /// Clock skew tolerated on provider tokens' exp/nbf/iat (at most 5m).
    #[arg(long, env = "IDENTITY_PROVIDER_LEEWAY", default_value = "30s", value_parser = humantime::parse_duration)]
    pub provider_leeway: Duration,

    /// Least time between two JWKS fetches caused by unknown `kid`s, so that
    /// forged tokens cannot turn the service into a request amplifier.
    #[arg(long, env = "IDENTITY_PROVIDER_JWKS_MIN_REFRESH_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub provider_jwks_min_refresh_interval: Duration,

    /// Bound on one JWKS fetch (connect, headers and body).
    #[arg(long, env = "IDENTITY_PROVIDER_JWKS_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub provider_jwks_timeout: Duration,

    /// Largest JWKS response body accepted, in bytes.
    #[arg(
        long,
        env = "IDENTITY_PROVIDER_JWKS_MAX_BYTES",
        default_value_t = 64 * 1024
    )]
    pub provider_jwks_max_bytes: usize,

    /// Longest life of a session started by ExchangeToken (capped by
    /// IDENTITY_REFRESH_TOKEN_TTL); then the client exchanges a fresh
    /// provider token, so a user banned at the provider is out within it.
    #[arg(long, env = "IDENTITY_PROVIDER_SESSION_TTL", default_value = "12h", value_parser = humantime::parse_duration)]
    pub provider_session_ttl: Duration,

    /// How long cached provider keys stay trusted after the last successful
    /// JWKS fetch; past it (provider unreachable) tokens are UNAVAILABLE, so
    /// a key the provider retired meanwhile is not trusted for ever.
    #[arg(long, env = "IDENTITY_PROVIDER_JWKS_MAX_STALE", default_value = "24h", value_parser = humantime::parse_duration)]
    pub provider_jwks_max_stale: Duration,

    /// Allow a plain http:// JWKS URL in production (only inside a mesh
    /// that encrypts and authenticates the traffic). Loopback and --dev
    /// never need it.
    #[arg(long, env = "IDENTITY_PROVIDER_ALLOW_HTTP", value_parser = BoolishValueParser::new(), default_value = "false", action = clap::ArgAction::Set)]
    pub provider_allow_http: bool,
}
