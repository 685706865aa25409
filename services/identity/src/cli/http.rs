//! The plain-HTTP listener for the JWK set and the discovery document,
//! flattened into `identity serve`.

use clap::Args;
use std::net::SocketAddr;

/// Settings of the `/.well-known/` listener (docs/decisions/0012).
#[derive(Args, Clone)]
pub struct HttpArgs {
    /// Plain-HTTP listener serving only GET /.well-known/jwks.json and
    /// /.well-known/openid-configuration; off when unset.
    #[arg(long, env = "IDENTITY_HTTP_LISTEN_ADDR")]
    pub http_listen_addr: Option<SocketAddr>,

    /// Base URL (scheme://host[:port][/path]) under which clients reach that
    /// listener; `jwks_uri` is built from it, never from a request's Host
    /// header [default: IDENTITY_ISSUER when it is an http(s) URL; --dev:
    /// http://<IDENTITY_HTTP_LISTEN_ADDR>].
    #[arg(long, env = "IDENTITY_HTTP_PUBLIC_URL")]
    pub http_public_url: Option<String>,

    /// Connections the listener serves at once; more are answered 503 and
    /// closed.
    #[arg(long, env = "IDENTITY_HTTP_MAX_CONNECTIONS", default_value_t = 256)]
    pub http_max_connections: usize,

    /// Of those, connections one client address holds at once (an IPv6
    /// address counts by its /64); more from it are answered 503 and
    /// closed. At most IDENTITY_HTTP_MAX_CONNECTIONS counts.
    #[arg(
        long,
        env = "IDENTITY_HTTP_MAX_CONNECTIONS_PER_ADDRESS",
        default_value_t = 32
    )]
    pub http_max_connections_per_address: usize,
}
