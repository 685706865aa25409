//! What the transport reads from a request besides its message.

use crate::service::Caller;
use tonic::Request;

/// The caller's address as resolved by `client_addr::ClientAddrLayer`
/// (falls back to the TCP peer when the layer is absent).
pub fn caller<T>(request: &Request<T>) -> Caller {
    let resolved = request
        .extensions()
        .get::<super::client_addr::ClientAddr>()
        .map(|c| c.0)
        .unwrap_or_else(|| request.remote_addr().map(|a| a.ip()));
    Caller {
        client_addr: resolved.map(|ip| ip.to_string()),
    }
}

/// The token of `authorization: Bearer <token>`, if well-formed.
pub fn bearer<T>(request: &Request<T>) -> Option<String> {
    let value = request.metadata().get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}
