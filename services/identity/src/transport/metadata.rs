//! What the transport reads from a request besides its message.

use crate::service::Caller;
use std::time::{Duration, Instant};
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
        deadline: request
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(grpc_timeout)
            .and_then(|t| Instant::now().checked_add(t)),
        user_agent: request
            .metadata()
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .map(user_agent),
    }
}

/// The `user-agent` as stored: at most MAX_USER_AGENT_BYTES (header values
/// that pass `to_str` are visible ASCII, so any byte is a boundary).
fn user_agent(value: &str) -> String {
    let max = crate::service::auth::MAX_USER_AGENT_BYTES;
    value.get(..max).unwrap_or(value).trim().to_owned()
}

/// A `grpc-timeout` value: 1 to 8 digits and a unit (gRPC over HTTP/2).
/// Anything else is no deadline of the caller's (the server's own applies).
fn grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The token of `authorization: Bearer <token>`, if well-formed.
pub fn bearer<T>(request: &Request<T>) -> Option<String> {
    bearer_token(request.metadata().get("authorization")?.to_str().ok()?)
}

/// The one parser of an `authorization` value, for gRPC metadata and for
/// the HTTP layer that authenticates before routing alike: the scheme in
/// any case (RFC 9110), a non-empty token.
pub fn bearer_token(value: &str) -> Option<String> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::{bearer_token, grpc_timeout};
    use std::time::Duration;

    #[test]
    fn a_bearer_token_needs_the_scheme_in_any_case_and_a_token() {
        assert_eq!(bearer_token("Bearer abc").as_deref(), Some("abc"));
        assert_eq!(bearer_token("bEaReR  abc ").as_deref(), Some("abc"));
        for refused in ["Bearer", "Bearer ", "Bearer   ", "Basic abc", "abc", ""] {
            assert_eq!(bearer_token(refused), None, "{refused:?}");
        }
    }

    #[test]
    fn grpc_timeouts_parse_by_the_spec_and_nothing_else_does() {
        assert_eq!(grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(
            grpc_timeout("99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        for bad in ["", "m", "123456789m", "12x", "-1S", "1.5S", "1 S", "１S"] {
            assert_eq!(grpc_timeout(bad), None, "{bad:?}");
        }
    }
}
