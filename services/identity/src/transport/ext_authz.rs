//! `envoy.service.auth.v3.Authorization/Check`: Envoy's (and Istio's)
//! external authorization. The proxy asks before forwarding an HTTP
//! request; the answer is the request's bearer token verified exactly as
//! ValidateToken verifies it (docs/decisions/0015-ext-authz.md).
//!
//! Allowed: OK, and the upstream gets `x-identity-subject`,
//! `x-identity-session` and `x-identity-roles` set by us, overwriting any the
//! client sent, and every other `x-identity-*` header of the client removed.
//! Refused: DENIED with HTTP 401 and an RFC 6750 challenge. Failures of
//! ours (database down, rate limit) are gRPC errors, on which the proxy
//! fails closed unless told otherwise.

use super::metadata;
use crate::proto::ext_authz::authorization_server::Authorization;
use crate::service::Auth;
use crate::service::auth::Proxy;
use envoy_types::pb::envoy::config::core::v3::address::Address as AddressKind;
use envoy_types::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use envoy_types::pb::envoy::config::core::v3::{HeaderValue, HeaderValueOption};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{
    CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse,
};
use envoy_types::pb::envoy::r#type::v3::{HttpStatus, StatusCode as HttpStatusCode};
use envoy_types::pb::google::rpc;
use identity_core::tokens::MAX_TOKEN_BYTES;
use ipnet::IpNet;
use std::net::IpAddr;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The headers the upstream may rely on: only we set them.
pub const SUBJECT: &str = "x-identity-subject";
pub const SESSION: &str = "x-identity-session";
pub const ROLES: &str = "x-identity-roles";
const RESERVED_PREFIX: &str = "x-identity-";

/// The longest `authorization` value looked at: the longest token we accept
/// and its scheme. Longer is refused before anything is parsed.
const MAX_AUTHORIZATION_BYTES: usize = MAX_TOKEN_BYTES + "Bearer ".len();

pub struct ExtAuthzApi {
    auth: Arc<Auth>,
    trusted_proxies: Arc<Vec<IpNet>>,
}

impl ExtAuthzApi {
    pub fn new(auth: Arc<Auth>, trusted_proxies: Vec<IpNet>) -> Self {
        ExtAuthzApi {
            auth,
            trusted_proxies: Arc::new(trusted_proxies),
        }
    }

    /// A configured proxy (IDENTITY_TRUSTED_PROXIES, as for
    /// `x-forwarded-for`): a mesh proxy asking for all its clients. Anyone
    /// else could use Check as a ValidateToken without ValidateToken's
    /// per-address limit, so is limited like it. A client certificate
    /// proves who the caller is, not that it speaks for others: every
    /// verifying service of the mesh may hold one (decision 0018).
    fn proxy<T>(&self, request: &Request<T>) -> Proxy {
        let peer = request.remote_addr().map(|a| a.ip().to_canonical());
        if peer.is_some_and(|ip| self.trusted_proxies.iter().any(|n| n.contains(&ip))) {
            Proxy::Trusted
        } else {
            Proxy::Untrusted
        }
    }
}

#[tonic::async_trait]
impl Authorization for ExtAuthzApi {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let mut caller = metadata::caller(&request);
        let proxy = self.proxy(&request);
        let check = request.into_inner();
        let attributes = check.attributes.unwrap_or_default();
        if proxy == Proxy::Trusted {
            // Only a trusted proxy's word on who its client is counts: the
            // security events then name the client, not the proxy.
            if let Some(source) = attributes.source.as_ref().and_then(source_ip) {
                caller.client_addr = Some(source.to_string());
            }
        }
        let http = attributes.request.and_then(|r| r.http).unwrap_or_default();
        let token = match authorization(&http) {
            Presented::Token(token) => token,
            // Not a token: nothing to verify, no store to ask, no event (a
            // mesh passes every anonymous request through here).
            Presented::Nothing => return Ok(denied(Challenge::Missing)),
            Presented::Malformed => return Ok(denied(Challenge::InvalidToken)),
        };
        match self.auth.authorize(&caller, &token, proxy).await? {
            Some((claims, _)) => Ok(allowed(
                &claims.sub,
                &claims.sid,
                &claims.roles,
                client_identity_headers(&http),
            )),
            None => Ok(denied(Challenge::InvalidToken)),
        }
    }
}

/// The client's address as the proxy reports it (`attributes.source`).
fn source_ip(
    peer: &envoy_types::pb::envoy::service::auth::v3::attribute_context::Peer,
) -> Option<IpAddr> {
    match peer.address.as_ref()?.address.as_ref()? {
        AddressKind::SocketAddress(socket) => socket
            .address
            .parse::<IpAddr>()
            .ok()
            .map(|ip| ip.to_canonical()),
        _ => None,
    }
}

enum Presented {
    Nothing,
    Malformed,
    Token(String),
}

/// The bearer token of the HTTP request, read by the one parser of
/// `authorization` values (`metadata::bearer_token`) after the checks the
/// gRPC path gets from the HTTP stack: a bounded length, one value, visible
/// ASCII. Envoy sends lower-cased names in `headers` (several values joined
/// by commas, which no token contains) or, with `encode_raw_headers`, every
/// line in `header_map`.
fn authorization(http: &HttpRequest) -> Presented {
    let mut values: Vec<&[u8]> = Vec::new();
    if let Some(value) = http.headers.get("authorization") {
        values.push(value.as_bytes());
    }
    if let Some(map) = &http.header_map {
        for header in &map.headers {
            if header.key.eq_ignore_ascii_case("authorization") {
                values.push(if header.raw_value.is_empty() {
                    header.value.as_bytes()
                } else {
                    &header.raw_value
                });
            }
        }
    }
    let value = match values.as_slice() {
        [] => return Presented::Nothing,
        [value] => *value,
        _ => return Presented::Malformed,
    };
    if value.len() > MAX_AUTHORIZATION_BYTES {
        return Presented::Malformed;
    }
    let Some(text) = http::HeaderValue::from_bytes(value)
        .ok()
        .and_then(|v| v.to_str().ok().map(str::to_owned))
    else {
        return Presented::Malformed;
    };
    match metadata::bearer_token(&text) {
        Some(token) => Presented::Token(token),
        None => Presented::Malformed,
    }
}

/// The client's own `x-identity-*` header names, lower-cased: whatever we
/// do not set ourselves must not reach the upstream.
fn client_identity_headers(http: &HttpRequest) -> Vec<String> {
    let raw = http
        .header_map
        .iter()
        .flat_map(|m| m.headers.iter().map(|h| h.key.as_str()));
    let mut names: Vec<String> = http
        .headers
        .keys()
        .map(String::as_str)
        .chain(raw)
        .map(str::to_ascii_lowercase)
        // `x_identity_roles` too: CGI-style frameworks (WSGI, Rack, PHP)
        // read it as the same header as `x-identity-roles`.
        // `x_identity_roles` too: CGI-style frameworks (WSGI, Rack, PHP)
        // read it as the same header as `x-identity-roles`.
        .filter(|name| name.replace('_', "-").starts_with(RESERVED_PREFIX))
        .filter(|name| ![SUBJECT, SESSION, ROLES].contains(&name.as_str()))
        .collect();
    names.sort();
    names.dedup();
    names
}

fn set(key: &str, value: String) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.to_owned(),
            value,
            raw_value: Vec::new(),
        }),
        // Replace, never add to, a value the client sent.
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..HeaderValueOption::default()
    }
}

fn allowed(
    subject: &str,
    session: &str,
    roles: &[String],
    remove: Vec<String>,
) -> Response<CheckResponse> {
    Response::new(CheckResponse {
        status: Some(rpc::Status {
            code: tonic::Code::Ok as i32,
            ..rpc::Status::default()
        }),
        http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
            headers: vec![
                set(SUBJECT, subject.to_owned()),
                set(SESSION, session.to_owned()),
                set(ROLES, roles.join(",")),
            ],
            headers_to_remove: remove,
            ..OkHttpResponse::default()
        })),
        ..CheckResponse::default()
    })
}

#[derive(Clone, Copy)]
enum Challenge {
    /// No credentials: RFC 6750 §3.1 says no error code.
    Missing,
    InvalidToken,
}

fn denied(challenge: Challenge) -> Response<CheckResponse> {
    let value = match challenge {
        Challenge::Missing => "Bearer",
        Challenge::InvalidToken => "Bearer error=\"invalid_token\"",
    };
    Response::new(CheckResponse {
        status: Some(rpc::Status {
            code: tonic::Code::Unauthenticated as i32,
            message: "missing, invalid or expired credentials".to_owned(),
            details: Vec::new(),
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus {
                code: HttpStatusCode::Unauthorized as i32,
            }),
            headers: vec![set("www-authenticate", value.to_owned())],
            body: String::new(),
        })),
        ..CheckResponse::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::core::v3::HeaderMap;

    fn request(headers: &[(&str, &str)]) -> HttpRequest {
        HttpRequest {
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..HttpRequest::default()
        }
    }

    fn token(http: &HttpRequest) -> Option<String> {
        match authorization(http) {
            Presented::Token(token) => Some(token),
            _ => None,
        }
    }

    #[test]
    fn the_token_is_read_by_the_one_bearer_parser() {
        assert_eq!(
            token(&request(&[("authorization", "Bearer abc")])).as_deref(),
            Some("abc")
        );
        assert!(matches!(authorization(&request(&[])), Presented::Nothing));
        for malformed in [
            "Basic abc",
            "Bearer",
            "Bearer ",
            "abc",
            "Bearer é",
            "Bearer a\u{7}b",
        ] {
            assert!(
                matches!(
                    authorization(&request(&[("authorization", malformed)])),
                    Presented::Malformed
                ),
                "{malformed:?}"
            );
        }
        let long = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES + 1));
        assert!(matches!(
            authorization(&request(&[("authorization", &long)])),
            Presented::Malformed
        ));
    }

    #[test]
    fn raw_header_lines_count_and_two_authorization_lines_are_malformed() {
        let line = |key: &str, value: &str| HeaderValue {
            key: key.to_owned(),
            value: String::new(),
            raw_value: value.as_bytes().to_vec(),
        };
        let mut http = HttpRequest {
            header_map: Some(HeaderMap {
                headers: vec![line("Authorization", "Bearer abc")],
            }),
            ..HttpRequest::default()
        };
        assert_eq!(token(&http).as_deref(), Some("abc"));
        if let Some(map) = http.header_map.as_mut() {
            map.headers.push(line("authorization", "Bearer def"));
        }
        assert!(matches!(authorization(&http), Presented::Malformed));
    }

    #[test]
    fn every_client_identity_header_we_do_not_set_is_removed() {
        let http = request(&[
            ("x-identity-subject", "admin"),
            ("x-identity-admin", "true"),
            ("X-Identity-Tenant", "other"),
            ("x_identity_roles", "admin"),
            ("X_Identity-Subject", "someone"),
            ("x-request-id", "1"),
        ]);
        assert_eq!(
            client_identity_headers(&http),
            [
                "x-identity-admin",
                "x-identity-tenant",
                "x_identity-subject",
                "x_identity_roles"
            ]
        );
    }
}
