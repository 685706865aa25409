//! The gRPC listener and its HTTP layer: address, proxies whose headers
//! are believed, gRPC-Web origins, message and stream bounds.

use super::{ConfigError, Mode, refuse};
use crate::cli::Settings;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The listener section of [`super::Config`].
pub(super) struct Listener {
    pub listen_addr: SocketAddr,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub trace_trusted_proxies: Vec<ipnet::IpNet>,
    pub grpc_web_origins: Vec<http::HeaderValue>,
}

/// The address Istio's inbound sidecar connects to the application from
/// (its inbound passthrough source). With the port captured, every mesh
/// caller arrives from it, whoever it is.
const ISTIO_INBOUND_PASSTHROUGH: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 6);

/// Whether `network` holds Istio's inbound passthrough address, as IPv4 or
/// IPv4-mapped IPv6 (`::ffff:127.0.0.6`): a list that holds it trusts the
/// whole mesh (threat model T1.58, decision 0021).
fn holds_istio_inbound_address(network: &ipnet::IpNet) -> bool {
    network.contains(&IpAddr::V4(ISTIO_INBOUND_PASSTHROUGH))
        || network.contains(&IpAddr::V6(ISTIO_INBOUND_PASSTHROUGH.to_ipv6_mapped()))
}

/// A list of CIDRs or single addresses (empty entries skipped) of peers
/// whose word about others is believed; never one that would include every
/// caller in an Istio mesh.
fn networks(setting: &'static str, entries: &[String]) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    entries
        .iter()
        .map(|entry| entry.trim())
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let network = entry
                .parse::<ipnet::IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| refuse(setting, format!("`{entry}` is not an address or CIDR")))?;
            if holds_istio_inbound_address(&network) {
                return Err(refuse(
                    setting,
                    format!(
                        "`{entry}` holds {ISTIO_INBOUND_PASSTHROUGH}, Istio's inbound passthrough \
                         address: behind an Istio sidecar every caller arrives from it, so every \
                         mesh caller would be trusted. List the mesh ingress gateway's (or \
                         ext_authz proxy's) own addresses instead, or exclude the port from \
                         inbound capture (traffic.sidecar.istio.io/excludeInboundPorts); see \
                         docs/deploy-helm.md"
                    ),
                ));
            }
            Ok(network)
        })
        .collect()
}

pub(super) fn load(settings: &Settings, mode: Mode) -> Result<Listener, ConfigError> {
    let trusted_proxies = networks("IDENTITY_TRUSTED_PROXIES", &settings.trusted_proxies)?;
    let trace_trusted_proxies = networks(
        "IDENTITY_TRACE_TRUSTED_PROXIES",
        &settings.trace_trusted_proxies,
    )?;
    let mut grpc_web_origins = Vec::new();
    for origin in settings
        .grpc_web_origins
        .iter()
        .filter(|o| !o.trim().is_empty())
    {
        let origin = origin.trim();
        let valid = (origin.starts_with("https://") || origin.starts_with("http://"))
            && !origin.contains('*')
            && !origin
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .contains('/');
        if !valid {
            return Err(refuse(
                "IDENTITY_GRPC_WEB_ORIGINS",
                format!(
                    "`{origin}` must be an exact origin like https://app.example.com (no wildcard, no path)"
                ),
            ));
        }
        grpc_web_origins.push(http::HeaderValue::from_str(origin).map_err(|_| {
            refuse(
                "IDENTITY_GRPC_WEB_ORIGINS",
                format!("`{origin}` is not a valid origin"),
            )
        })?);
    }
    if settings.max_message_bytes < 1024 {
        return Err(refuse(
            "IDENTITY_MAX_MESSAGE_BYTES",
            "must be at least 1024",
        ));
    }
    if settings.max_concurrent_streams == 0 {
        return Err(refuse(
            "IDENTITY_MAX_CONCURRENT_STREAMS",
            "must be at least 1",
        ));
    }
    let listen_addr = settings.listen_addr.unwrap_or_else(|| match mode {
        Mode::Production => SocketAddr::from(([0, 0, 0, 0], 50051)),
        Mode::Dev => SocketAddr::from(([127, 0, 0, 1], 50051)),
    });
    Ok(Listener {
        listen_addr,
        trusted_proxies,
        trace_trusted_proxies,
        grpc_web_origins,
    })
}
