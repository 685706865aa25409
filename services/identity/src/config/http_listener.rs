//! The plain-HTTP `/.well-known/` listener (docs/decisions/0012): where it
//! listens, the base URL its documents name, and its connection cap.

use super::{ConfigError, Mode, refuse};
use crate::cli::Settings;
use crate::transport::well_known::PublicUrl;
use std::net::SocketAddr;

const PUBLIC_URL: &str = "IDENTITY_HTTP_PUBLIC_URL";
const MAX_CONNECTIONS: &str = "IDENTITY_HTTP_MAX_CONNECTIONS";
const MAX_PER_ADDRESS: &str = "IDENTITY_HTTP_MAX_CONNECTIONS_PER_ADDRESS";

/// The listener section of [`super::Config`]; `None` when it is off.
#[derive(Debug, Clone)]
pub struct HttpListener {
    pub addr: SocketAddr,
    pub public_url: PublicUrl,
    pub max_connections: usize,
    /// Of those, at most this many from one address (never above
    /// `max_connections`).
    pub max_per_address: usize,
}

/// `scheme://host[:port][/path]` without credentials, query or fragment;
/// the trailing slash dropped so that paths append cleanly.
fn base_url(
    setting: &'static str,
    url: &str,
    mode: Mode,
    allow_plaintext: bool,
) -> Result<String, ConfigError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| refuse(setting, "is not a URL (https://identity.example.com)"))?;
    let authority = uri
        .authority()
        .filter(|a| !a.host().is_empty())
        .ok_or_else(|| refuse(setting, "needs a host"))?;
    if authority.as_str().contains('@') {
        return Err(refuse(setting, "must not carry credentials"));
    }
    if uri.query().is_some() || url.contains('#') {
        return Err(refuse(setting, "must not carry a query or fragment"));
    }
    match uri.scheme_str() {
        Some("https") => {}
        // Relying parties trust whatever keys they fetch from jwks_uri: over
        // plaintext anyone on the path could publish their own. The same
        // exception as the gRPC port's: a mesh that encrypts.
        Some("http") if mode == Mode::Dev || allow_plaintext => {}
        Some("http") => {
            return Err(refuse(
                setting,
                "is plain http: relying parties would fetch the signing keys without TLS, where they can be swapped; use https:// (TLS at the ingress) or set IDENTITY_ALLOW_PLAINTEXT=true behind a mesh that encrypts",
            ));
        }
        _ => return Err(refuse(setting, "must be an https:// (or http://) URL")),
    }
    Ok(url.trim_end_matches('/').to_owned())
}

pub(super) fn load(settings: &Settings, mode: Mode) -> Result<Option<HttpListener>, ConfigError> {
    let http = &settings.http;
    let Some(addr) = http.http_listen_addr else {
        if http.http_public_url.is_some() {
            return Err(refuse(
                PUBLIC_URL,
                "is only valid with IDENTITY_HTTP_LISTEN_ADDR",
            ));
        }
        return Ok(None);
    };
    if !(1..=65_536).contains(&http.http_max_connections) {
        return Err(refuse(MAX_CONNECTIONS, "must be between 1 and 65536"));
    }
    if !(1..=65_536).contains(&http.http_max_connections_per_address) {
        return Err(refuse(MAX_PER_ADDRESS, "must be between 1 and 65536"));
    }
    let configured = http
        .http_public_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty());
    let issuer = settings.keys.issuer.trim();
    let public_url = match configured {
        Some(url) => {
            PublicUrl::Configured(base_url(PUBLIC_URL, url, mode, settings.allow_plaintext)?)
        }
        // OpenID discovery's own convention: the documents live under the
        // issuer, so an issuer that is a URL is where clients look.
        None if issuer.starts_with("https://") || issuer.starts_with("http://") => {
            PublicUrl::Configured(base_url(
                "IDENTITY_ISSUER",
                issuer,
                mode,
                settings.allow_plaintext,
            )?)
        }
        // Only known once bound (port 0 in tests and `make run` scripts).
        None if mode == Mode::Dev => PublicUrl::ListenAddress,
        None => {
            return Err(refuse(
                PUBLIC_URL,
                "is required with IDENTITY_HTTP_LISTEN_ADDR unless IDENTITY_ISSUER is an https:// URL: jwks_uri is built from it, never from a request's Host header",
            ));
        }
    };
    Ok(Some(HttpListener {
        addr,
        public_url,
        max_connections: http.http_max_connections,
        // Above the whole cap it would mean the whole cap: a smaller
        // IDENTITY_HTTP_MAX_CONNECTIONS alone need not lower this as well.
        max_per_address: http
            .http_max_connections_per_address
            .min(http.http_max_connections),
    }))
}

#[cfg(test)]
mod tests {
    use crate::config::tests::load;
    use crate::config::{Config, ConfigError};
    use crate::transport::well_known::PublicUrl;

    /// Production behind a mesh (plaintext allowed) with `extra`.
    fn meshed(extra: &[&str]) -> Result<Config, ConfigError> {
        let mut args = vec![
            "--database-url=postgres://db/x",
            "--secret-key=q8Vf2kP0xZr7LmN4tY6wB1cD9eH3jS5a",
            "--allow-plaintext=true",
        ];
        args.extend_from_slice(extra);
        load(&args)
    }

    /// Production with TLS on the gRPC port (plaintext not allowed).
    fn with_tls(extra: &[&str]) -> Result<Config, ConfigError> {
        let mut args = vec![
            "--database-url=postgres://db/x",
            "--secret-key=q8Vf2kP0xZr7LmN4tY6wB1cD9eH3jS5a",
            "--tls-cert-file=/dev/null",
            "--tls-key-file=/dev/null",
        ];
        args.extend_from_slice(extra);
        load(&args)
    }

    #[test]
    fn the_listener_is_off_unless_an_address_is_given() {
        assert!(meshed(&[]).unwrap().http.is_none());
        let err = meshed(&["--http-public-url=https://id.example.com"]).unwrap_err();
        assert_eq!(err.setting, "IDENTITY_HTTP_PUBLIC_URL");
    }

    #[test]
    fn the_public_url_comes_from_the_setting_or_a_url_issuer_never_from_nothing() {
        let config = meshed(&[
            "--http-listen-addr=0.0.0.0:8080",
            "--http-public-url=https://id.example.com/",
        ])
        .unwrap();
        let http = config.http.unwrap();
        assert_eq!(
            http.public_url,
            PublicUrl::Configured("https://id.example.com".into())
        );
        assert_eq!(http.max_connections, 256);
        assert_eq!(http.max_per_address, 32);

        let config = meshed(&[
            "--http-listen-addr=0.0.0.0:8080",
            "--issuer=https://issuer.example.com/tenant",
        ])
        .unwrap();
        assert_eq!(
            config.http.unwrap().public_url,
            PublicUrl::Configured("https://issuer.example.com/tenant".into())
        );

        let err = meshed(&["--http-listen-addr=0.0.0.0:8080"]).unwrap_err();
        assert_eq!(err.setting, "IDENTITY_HTTP_PUBLIC_URL");
        assert!(err.problem.contains("Host header"), "{}", err.problem);
    }

    #[test]
    fn bad_public_urls_and_connection_caps_are_refused_naming_the_setting() {
        for url in [
            "identity.example.com",
            "ftp://id.example.com",
            "https://user:pw@id.example.com",
            "https://id.example.com/?x=1",
            "https://id.example.com/#x",
        ] {
            let arg = format!("--http-public-url={url}");
            let err = meshed(&["--http-listen-addr=0.0.0.0:8080", &arg]).unwrap_err();
            assert_eq!(err.setting, "IDENTITY_HTTP_PUBLIC_URL", "{url}");
        }
        let err = meshed(&[
            "--http-listen-addr=0.0.0.0:8080",
            "--http-public-url=https://id.example.com",
            "--http-max-connections=0",
        ])
        .unwrap_err();
        assert_eq!(err.setting, "IDENTITY_HTTP_MAX_CONNECTIONS");
        let err = meshed(&[
            "--http-listen-addr=0.0.0.0:8080",
            "--http-public-url=https://id.example.com",
            "--http-max-connections-per-address=0",
        ])
        .unwrap_err();
        assert_eq!(err.setting, "IDENTITY_HTTP_MAX_CONNECTIONS_PER_ADDRESS");
        // Above the whole cap it is the whole cap.
        let config = meshed(&[
            "--http-listen-addr=0.0.0.0:8080",
            "--http-public-url=https://id.example.com",
            "--http-max-connections=4",
        ])
        .unwrap();
        assert_eq!(config.http.unwrap().max_per_address, 4);
    }

    #[test]
    fn production_refuses_a_plain_http_jwks_uri_unless_plaintext_is_allowed() {
        let err = with_tls(&[
            "--http-listen-addr=0.0.0.0:8080",
            "--http-public-url=http://identity.ns.svc:8080",
        ])
        .unwrap_err();
        assert_eq!(err.setting, "IDENTITY_HTTP_PUBLIC_URL");
        let err = with_tls(&[
            "--http-listen-addr=0.0.0.0:8080",
            "--issuer=http://identity.ns.svc:8080",
        ])
        .unwrap_err();
        assert_eq!(err.setting, "IDENTITY_ISSUER");
        let config = with_tls(&[
            "--http-listen-addr=0.0.0.0:8080",
            "--http-public-url=https://id.example.com",
        ])
        .unwrap();
        assert!(config.http.is_some());
        let config = meshed(&[
            "--http-listen-addr=0.0.0.0:8080",
            "--http-public-url=http://identity.ns.svc:8080",
        ])
        .unwrap();
        assert_eq!(
            config.http.unwrap().public_url,
            PublicUrl::Configured("http://identity.ns.svc:8080".into())
        );
    }

    #[test]
    fn dev_without_a_url_names_the_bound_address() {
        let config = load(&[
            "--dev",
            "--data-dir=/tmp/identity-test",
            "--http-listen-addr=127.0.0.1:0",
        ])
        .unwrap();
        assert_eq!(config.http.unwrap().public_url, PublicUrl::ListenAddress);
    }
}
