//! Who is calling, by network address: the TCP peer, or — only when the
//! peer is one of the configured proxies — the nearest untrusted address in
//! `x-forwarded-for`. Computed once per request by a layer, so rate limits,
//! throttling and audit rows all agree.

use ipnet::IpNet;
use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

/// The resolved client address, in the request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<IpAddr>);

/// Resolves `x-forwarded-for` against the trusted proxy list: all the
/// header's lines, in order, are one list (a proxy may add a line of its own
/// rather than append to the client's); walk it from the right (the hop
/// nearest us), skip trusted proxies, take the first other.
pub fn resolve<'a, L>(peer: Option<IpAddr>, forwarded_for: L, trusted: &[IpNet]) -> Option<IpAddr>
where
    L: IntoIterator<Item = &'a str>,
    L::IntoIter: DoubleEndedIterator,
{
    let peer = peer?;
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let mut nearest = peer;
    for hop in forwarded_for
        .into_iter()
        .rev()
        .flat_map(|line| line.rsplit(','))
    {
        match hop.trim().parse::<IpAddr>().map(|ip| ip.to_canonical()) {
            Ok(ip) if is_trusted(&ip) => nearest = ip,
            Ok(ip) => return Some(ip),
            // A malformed entry ends what we can believe.
            Err(_) => return Some(nearest),
        }
    }
    Some(nearest)
}

/// The TCP peer of the connection a request came on (plain or TLS).
pub fn peer(extensions: &http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .or_else(|| {
            extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|info| info.get_ref().remote_addr())
        })
        // A dual-stack listener sees IPv4 peers as `::ffff:a.b.c.d`; the
        // trusted proxies and every key are written as plain IPv4.
        .map(|addr| addr.ip().to_canonical())
}

/// Whether the connection presented a client certificate, which the TLS
/// handshake verified against IDENTITY_TLS_CLIENT_CA_FILE (without it, no
/// certificate is asked for).
pub fn is_mtls_peer(extensions: &http::Extensions) -> bool {
    extensions
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(TlsConnectInfo::peer_certs)
        .is_some_and(|certs| !certs.is_empty())
}

/// The identity (`transport::tls::certificate_identity`) of the client
/// certificate a request's connection presented, which the handshake
/// verified; `None` without one.
pub fn mtls_identity_of<T>(request: &tonic::Request<T>) -> Option<String> {
    let certs = request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(TlsConnectInfo::peer_certs)?;
    certs
        .first()
        .map(|end_entity| super::tls::certificate_identity(end_entity.as_ref()))
}

#[derive(Clone)]
pub struct ClientAddrLayer {
    trusted: Arc<Vec<IpNet>>,
}

impl ClientAddrLayer {
    pub fn new(trusted: Vec<IpNet>) -> Self {
        ClientAddrLayer {
            trusted: Arc::new(trusted),
        }
    }
}

impl<S> tower::Layer<S> for ClientAddrLayer {
    type Service = ClientAddrService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ClientAddrService {
            inner,
            trusted: Arc::clone(&self.trusted),
        }
    }
}

#[derive(Clone)]
pub struct ClientAddrService<S> {
    inner: S,
    trusted: Arc<Vec<IpNet>>,
}

impl<S, B> tower::Service<http::Request<B>> for ClientAddrService<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let peer = peer(request.extensions());
        if self.trusted.is_empty() {
            // No proxy is trusted, so the header cannot matter: not looked
            // up (a header-map search on every call).
            request.extensions_mut().insert(ClientAddr(peer));
            return self.inner.call(request);
        }
        // Bytes that are not text spoil only the entry they are in (it
        // becomes malformed and ends the walk there), never the entries a
        // trusted proxy appended after it on the same line.
        let lines: Vec<_> = request
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()))
            .collect();
        let client = resolve(peer, lines.iter().map(|l| l.as_ref()), &self.trusted);
        request.extensions_mut().insert(ClientAddr(client));
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        // Untrusted peer: the header is ignored.
        assert_eq!(
            resolve(Some(ip("198.51.100.7")), ["203.0.113.1"], &trusted),
            Some(ip("198.51.100.7"))
        );
        // Trusted peer: the nearest untrusted hop.
        assert_eq!(
            resolve(
                Some(ip("10.0.0.2")),
                ["203.0.113.9, 203.0.113.1, 10.0.0.5"],
                &trusted
            ),
            Some(ip("203.0.113.1"))
        );
        // A client cannot spoof past the nearest untrusted hop.
        assert_eq!(
            resolve(Some(ip("10.0.0.2")), ["garbage, 203.0.113.1"], &trusted),
            Some(ip("203.0.113.1"))
        );
        assert_eq!(
            resolve(Some(ip("10.0.0.2")), ["203.0.113.1, garbage"], &trusted),
            Some(ip("10.0.0.2"))
        );
        assert_eq!(
            resolve(Some(ip("10.0.0.2")), [], &trusted),
            Some(ip("10.0.0.2"))
        );
    }

    #[test]
    fn every_forwarded_for_line_is_one_list_in_order() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        // The client forged the first line; the proxy added the second.
        assert_eq!(
            resolve(
                Some(ip("10.0.0.2")),
                ["203.0.113.66", "198.51.100.23"],
                &trusted
            ),
            Some(ip("198.51.100.23"))
        );
        // Trusted hops are skipped across lines too.
        assert_eq!(
            resolve(
                Some(ip("10.0.0.2")),
                ["203.0.113.66, 198.51.100.23", "10.0.0.7", "10.0.0.5"],
                &trusted
            ),
            Some(ip("198.51.100.23"))
        );
        // An unreadable line stops the walk where it stands.
        assert_eq!(
            resolve(
                Some(ip("10.0.0.2")),
                ["203.0.113.66", "", "10.0.0.7"],
                &trusted
            ),
            Some(ip("10.0.0.7"))
        );
    }

    #[test]
    fn a_client_byte_that_is_not_text_does_not_hide_the_address_the_proxy_appended() {
        let trusted = vec!["127.0.0.1/32".parse().unwrap()];
        let line = String::from_utf8_lossy(b"\xff, 198.51.100.24").into_owned();
        assert_eq!(
            resolve(Some(ip("127.0.0.1")), [line.as_str()], &trusted),
            Some(ip("198.51.100.24"))
        );
    }

    #[test]
    fn ipv4_mapped_hops_match_ipv4_addresses() {
        let trusted = vec!["127.0.0.1/32".parse().unwrap()];
        assert_eq!(
            resolve(Some(ip("127.0.0.1")), ["::ffff:203.0.113.66"], &trusted),
            Some(ip("203.0.113.66"))
        );
    }
}
