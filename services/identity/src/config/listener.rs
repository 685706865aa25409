//! The gRPC listener and its HTTP layer: address, proxies whose headers
//! are believed, gRPC-Web origins, message and stream bounds.

use super::{ConfigError, Mode, refuse};
use crate::cli::Settings;
use std::net::SocketAddr;

/// The listener section of [`super::Config`].
pub(super) struct Listener {
    pub listen_addr: SocketAddr,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub trace_trusted_proxies: Vec<ipnet::IpNet>,
    pub grpc_web_origins: Vec<http::HeaderValue>,
}

/// A list of CIDRs or single addresses (empty entries skipped).
fn networks(setting: &'static str, entries: &[String]) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    entries
        .iter()
        .map(|entry| entry.trim())
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            entry
                .parse::<ipnet::IpNet>()
                .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| refuse(setting, format!("`{entry}` is not an address or CIDR")))
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
