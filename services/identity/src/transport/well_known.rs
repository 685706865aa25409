//! The `/.well-known/` listener: the JWK set that `AuthService.GetJwks`
//! answers and a discovery document naming it, over plain HTTP/1.1 for
//! verifiers that only speak HTTP (Envoy `jwt_authn`, Istio
//! `RequestAuthentication`, `jose`, PyJWT). docs/decisions/0012 says why it
//! is a listener of its own.
//!
//! Anyone who can reach the port may ask, so every connection is bounded:
//! a cap on connections at once, and a smaller one per client address so
//! that one client's idle sockets cannot take every place (docs/decisions/
//! 0018), one request per connection, the request head bounded in bytes,
//! header count and time, and the whole connection in time.

use crate::service::Auth;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

pub const JWKS_PATH: &str = "/.well-known/jwks.json";
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// How long verifiers may keep an answer without asking again. A new key
/// must be published (as a verifying key) at least this long before it
/// signs; docs/deploy-helm.md's rotation steps wait longer than that.
pub const MAX_AGE_SECONDS: u32 = 300;
/// A client that has not sent its whole request head by then is cut off
/// (slowloris): nothing here needs more than one small GET.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on a whole connection, reading the request and writing the answer.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(10);
/// Request head (request line and headers) at most this large, else 431.
/// hyper's smallest read buffer.
pub const MAX_HEAD_BYTES: usize = 8192;
/// Headers in one request at most, else 431.
pub const MAX_HEADERS: usize = 32;

/// Answered, without reading anything, to a connection over the cap.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
Content-Length: 17\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\
Retry-After: 1\r\nConnection: close\r\n\r\n{\"error\":\"busy\"}\n";

/// The base URL the documents name: configured, or (`--dev` only) the
/// address the listener was bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicUrl {
    /// `scheme://host[:port][/path]`, no trailing slash.
    Configured(String),
    ListenAddress,
}

impl PublicUrl {
    pub fn resolve(&self, bound: SocketAddr) -> String {
        match self {
            PublicUrl::Configured(url) => url.clone(),
            PublicUrl::ListenAddress => format!("http://{bound}"),
        }
    }
}

/// An answer with its entity tag: the first 128 bits of its SHA-256.
struct Document {
    body: Bytes,
    etag: HeaderValue,
}

impl Document {
    fn new(body: Vec<u8>) -> Document {
        let digest = Sha256::digest(&body);
        let etag = HeaderValue::from_str(&format!("\"{}\"", hex::encode(&digest[..16])))
            .unwrap_or_else(|_| HeaderValue::from_static("\"\""));
        Document {
            body: Bytes::from(body),
            etag,
        }
    }
}

/// What the listener answers.
pub struct WellKnown {
    auth: Arc<Auth>,
    jwks_uri: String,
    discovery: Document,
}

impl WellKnown {
    /// `public_url` is where clients reach this listener; `jwks_uri` is
    /// built from it alone, never from a request's Host header, so no
    /// client can make the document point verifiers at its own keys.
    pub fn new(auth: Arc<Auth>, issuer: &str, public_url: &str) -> WellKnown {
        let jwks_uri = format!("{public_url}{JWKS_PATH}");
        // Only what is true of this service: it issues access tokens, not
        // OpenID id tokens, and has no OAuth endpoints (decision 0012).
        let discovery = serde_json::json!({ "issuer": issuer, "jwks_uri": jwks_uri });
        WellKnown {
            auth,
            jwks_uri,
            discovery: Document::new(discovery.to_string().into_bytes()),
        }
    }

    pub fn jwks_uri(&self) -> &str {
        &self.jwks_uri
    }

    /// Rendered per request from the keys `GetJwks` reads, so body and
    /// ETag follow the key set whenever it changes. HS256 keys are secrets
    /// and never in it: with HS256 alone the set is empty.
    fn jwks(&self) -> Document {
        Document::new(
            serde_json::json!({ "keys": self.auth.jwks() })
                .to_string()
                .into_bytes(),
        )
    }

    fn answer<B>(&self, request: &Request<B>) -> Response<Full<Bytes>> {
        let document = match request.uri().path() {
            JWKS_PATH => self.jwks(),
            DISCOVERY_PATH => Document {
                body: self.discovery.body.clone(),
                etag: self.discovery.etag.clone(),
            },
            _ => return refusal(StatusCode::NOT_FOUND, "not_found"),
        };
        // HEAD: hyper sends the headers of the GET answer without its body.
        if request.method() != Method::GET && request.method() != Method::HEAD {
            let mut response = refusal(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        let fresh = request
            .headers()
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .any(|value| matches(value, &document.etag));
        let (status, body) = if fresh {
            (StatusCode::NOT_MODIFIED, Bytes::new())
        } else {
            (StatusCode::OK, document.body)
        };
        let mut response = Response::new(Full::new(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        secure(headers);
        headers.insert(header::ETAG, document.etag);
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_str(&format!("public, max-age={MAX_AGE_SECONDS}"))
                .unwrap_or_else(|_| HeaderValue::from_static("no-cache")),
        );
        response
    }
}

/// RFC 9110 §13.1.2: `*` or any listed tag, compared weakly.
fn matches(if_none_match: &HeaderValue, etag: &HeaderValue) -> bool {
    let Ok(list) = if_none_match.to_str() else {
        return false;
    };
    let ours = etag.to_str().unwrap_or_default();
    list.split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == ours)
}

fn secure(headers: &mut http::HeaderMap) {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

fn refusal(status: StatusCode, error: &'static str) -> Response<Full<Bytes>> {
    let body = format!("{{\"error\":\"{error}\"}}\n");
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    secure(headers);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Connections open per client, counted by what the socket says (this
/// listener reads no forwarding header: it decides before reading).
struct PerClient {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in its client's count, given back on drop.
struct ClientSlot {
    clients: Arc<PerClient>,
    client: IpAddr,
}

/// Whom a connection is charged to: an IPv4 address, or an IPv6 address's
/// /64 (one host is commonly given a whole /64, so counting single IPv6
/// addresses would cap nobody).
fn client_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !u128::from(u64::MAX);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

impl PerClient {
    /// A place for `ip`'s client, unless it holds `max` already.
    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<ClientSlot> {
        let client = client_of(ip);
        // Counters only: a panic elsewhere cannot leave one half-written.
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(client).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            clients: Arc::clone(self),
            client,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self
            .clients
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Entries live only while connections are open: the map holds at
        // most the global cap's worth of clients.
        if let Some(count) = open.get_mut(&self.client) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.client);
            }
        }
    }
}

/// Serves until the task is aborted; dropping it ends every connection.
/// At most `max_connections` at once, of which `max_per_address` from one
/// client.
pub async fn serve(
    listener: TcpListener,
    site: Arc<WellKnown>,
    max_connections: usize,
    max_per_address: usize,
) {
    let permits = Arc::new(Semaphore::new(max_connections));
    let clients = Arc::new(PerClient {
        max: max_per_address,
        open: Mutex::new(HashMap::new()),
    });
    let mut connections = JoinSet::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS)
        // One request per connection: an idle keep-alive connection would
        // hold a permit with no deadline of its own.
        .keep_alive(false);
    loop {
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, mostly: wait instead of spinning.
                tracing::warn!(error = %e, "well-known listener: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // The client's own count first: a client at its cap must not take
        // (even for a moment) a place of the global cap.
        let Some(slot) = clients.take(peer.ip()) else {
            // Never waits on the client: what does not fit the socket
            // buffer at once is not sent.
            let _ = stream.try_write(BUSY);
            continue;
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            let _ = stream.try_write(BUSY);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let site = Arc::clone(&site);
        let connection = http.serve_connection(
            TokioIo::new(stream),
            hyper::service::service_fn(move |request| {
                let response = site.answer(&request);
                async move { Ok::<_, Infallible>(response) }
            }),
        );
        connections.spawn(async move {
            let _permit = (permit, slot);
            let _ = tokio::time::timeout(CONNECTION_DEADLINE, connection).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_is_an_ipv4_address_or_an_ipv6_slash_64() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(client_of(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(client_of(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(client_of(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            client_of(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            client_of(ip("2001:db8:1:2::9"))
        );
        assert_ne!(
            client_of(ip("2001:db8:1:3::1")),
            client_of(ip("2001:db8:1:2::1"))
        );
    }

    #[test]
    fn a_client_at_its_cap_is_refused_until_one_of_its_connections_ends() {
        let clients = Arc::new(PerClient {
            max: 2,
            open: Mutex::new(HashMap::new()),
        });
        let a = "192.0.2.1".parse().unwrap();
        let (first, _second) = (clients.take(a).unwrap(), clients.take(a).unwrap());
        assert!(clients.take(a).is_none());
        assert!(clients.take("192.0.2.2".parse().unwrap()).is_some());
        drop(first);
        assert!(clients.take(a).is_some());
        drop(_second);
    }
}
