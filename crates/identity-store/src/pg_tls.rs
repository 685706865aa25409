//! Connections to PostgreSQL, plaintext or TLS (rustls with ring), for the
//! pool, the migrations and the revocation listener alike.
//!
//! The URL takes libpq's `sslmode` and `sslrootcert` parameters:
//! `sslmode=verify-full` (or `require`) encrypts the connection and checks
//! the server's certificate chain and host name against `sslrootcert` (a PEM
//! bundle) or, without it, the system's roots. Unlike libpq, `require` also
//! verifies: an unverified TLS connection is open to any machine in the
//! middle, which is what TLS is there to stop (docs/decisions/0006).
//! `disable`, `prefer` or no `sslmode` connect in plaintext, as before.
//! `verify-ca` (chain without host name) is refused rather than weakened.

use crate::url::{PgUrl, UrlError};
use diesel::ConnectionError;
use diesel_async::AsyncPgConnection;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::ServerName;

/// What the URL asks of the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Security {
    Plaintext,
    /// TLS, certificate verified; roots from this PEM file, else the system's.
    Verified {
        root_cert: Option<String>,
    },
}

/// Why a URL's root bundle cannot be used (the URL's own parameters are
/// checked when it is parsed: `crate::UrlError`). Each names the parameter;
/// the caller puts the setting's name in front.
#[derive(Debug, thiserror::Error)]
pub enum PgTlsError {
    #[error("sslrootcert {0}")]
    RootBundle(crate::pem::BundleError),
    #[error("sslrootcert {path}: {reason}")]
    RootCert { path: String, reason: rustls::Error },
    #[error("sslmode=verify-full: no system CA certificates; set sslrootcert")]
    NoSystemRoots,
    #[error("{0}")]
    Rustls(rustls::Error),
}

/// Where the query may start: after the credentials, so that a raw `?` in
/// a password is not read as one. The credentials end at the last `@` of
/// the authority (from `://` to the first `/`, which a password cannot hold
/// raw), so that an `@` in the query (`application_name=a@b`) is not taken
/// for their end either. A URL without a path has no such mark: there the
/// last `@` of all ends them.
fn end_of_credentials(url: &str) -> usize {
    let start = url.find("://").map_or(0, |at| at + 3);
    match url[start..].find('/') {
        Some(slash) => url[start..start + slash]
            .rfind('@')
            .map_or(0, |at| start + at + 1),
        None => url.rfind('@').map_or(0, |at| at + 1),
    }
}

/// Splits our TLS parameters off `url`: what tokio-postgres gets, and how to
/// secure it. Errors name the parameter. `crate::PgUrl::parse` is the one
/// caller outside the tests.
pub(crate) fn parse(url: &str) -> Result<(String, Security), UrlError> {
    let after_credentials = end_of_credentials(url);
    let Some(split) = url[after_credentials..].find('?') else {
        return Ok((url.to_owned(), Security::Plaintext));
    };
    let (base, query) = (
        &url[..after_credentials + split],
        &url[after_credentials + split + 1..],
    );
    let mut kept = Vec::new();
    let mut mode = None;
    let mut root_cert = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => mode = Some(value.to_owned()),
            "sslrootcert" => root_cert = Some(percent_decode(value)?),
            _ => kept.push(pair),
        }
    }
    let security = match mode.as_deref() {
        None | Some("disable" | "allow" | "prefer") => {
            if root_cert.is_some() {
                return Err(UrlError::RootCertWithoutVerification);
            }
            Security::Plaintext
        }
        Some("require" | "verify-full") => Security::Verified { root_cert },
        Some("verify-ca") => return Err(UrlError::VerifyCa),
        Some(other) => return Err(UrlError::UnknownSslMode(other.to_owned())),
    };
    let mut cleaned = base.to_owned();
    if security != Security::Plaintext {
        kept.push("sslmode=require");
    }
    if !kept.is_empty() {
        cleaned.push('?');
        cleaned.push_str(&kept.join("&"));
    }
    Ok((cleaned, security))
}

fn percent_decode(value: &str) -> Result<String, UrlError> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = value
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(UrlError::RootCertEncoding)?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| UrlError::RootCertNotUtf8)
}

/// The rustls client settings for `security` (None: plaintext), built anew.
fn build_client_config(
    security: &Security,
) -> Result<Option<Arc<rustls::ClientConfig>>, PgTlsError> {
    let Security::Verified { root_cert } = security else {
        return Ok(None);
    };
    let mut roots = rustls::RootCertStore::empty();
    match root_cert {
        Some(path) => {
            let bundle = crate::pem::read_certificates(std::path::Path::new(path))
                .map_err(PgTlsError::RootBundle)?;
            for cert in bundle.certificates {
                roots.add(cert).map_err(|reason| PgTlsError::RootCert {
                    path: path.clone(),
                    reason,
                })?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(PgTlsError::NoSystemRoots);
            }
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(PgTlsError::Rustls)?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Some(Arc::new(config)))
}

/// The rustls client settings for `security` (None: plaintext), built once
/// per process for each setting: the check at start-up, every pool
/// connection and every listener reconnect would otherwise re-read the
/// bundle (or the system roots). Failures are not kept: a bundle fixed on
/// disk is read again.
pub fn client_config(security: &Security) -> Result<Option<Arc<rustls::ClientConfig>>, PgTlsError> {
    type Built = Vec<(Security, Option<Arc<rustls::ClientConfig>>)>;
    static BUILT: std::sync::Mutex<Built> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, config)) = built.iter().find(|(s, _)| s == security) {
        return Ok(config.clone());
    }
    let config = build_client_config(security)?;
    built.push((security.clone(), config.clone()));
    Ok(config)
}

/// Opens one connection as `url` says (see the module docs).
pub async fn establish(url: &PgUrl) -> Result<AsyncPgConnection, ConnectionError> {
    let config = tokio_postgres::Config::from_str(url.connect_str())
        .map_err(|e| ConnectionError::BadConnection(e.to_string()))?;
    // diesel's connection errors carry text only.
    let tls =
        client_config(url.security()).map_err(|e| ConnectionError::BadConnection(e.to_string()))?;
    // With its causes: "error performing TLS handshake" alone does not say
    // that the certificate was refused.
    let map = |e: tokio_postgres::Error| {
        let mut text = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            text.push_str(": ");
            text.push_str(&c.to_string());
            cause = c.source();
        }
        ConnectionError::BadConnection(text)
    };
    match tls {
        None => {
            let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(map)?;
            AsyncPgConnection::try_from_client_and_connection(client, connection).await
        }
        Some(tls) => {
            let (client, connection) = config.connect(MakeRustls(tls)).await.map_err(map)?;
            AsyncPgConnection::try_from_client_and_connection(client, connection).await
        }
    }
}

#[derive(Clone)]
struct MakeRustls(Arc<rustls::ClientConfig>);

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> io::Result<RustlsConnect> {
        let name = ServerName::try_from(domain.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(RustlsConnect {
            config: Arc::clone(&self.0),
            name,
        })
    }
}

struct RustlsConnect {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let tls = tokio_rustls::TlsConnector::from(self.config)
                .connect(self.name, stream)
                .await?;
            Ok(RustlsStream(tls))
        })
    }
}

struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        // SCRAM channel binding is not offered; the certificate check is
        // what binds the connection to the server.
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_taken_off_the_url_and_weak_modes_refused() {
        let (url, s) = parse("postgres://u@db:5432/identity").unwrap();
        assert_eq!(
            (url.as_str(), s),
            ("postgres://u@db:5432/identity", Security::Plaintext)
        );
        let (url, s) = parse(
            "postgres://u@db/identity?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem",
        )
        .unwrap();
        assert_eq!(
            url,
            "postgres://u@db/identity?application_name=x&sslmode=require"
        );
        assert_eq!(
            s,
            Security::Verified {
                root_cert: Some("/etc/ca.pem".into())
            }
        );
        let (_, s) = parse("postgres://db/x?sslmode=require").unwrap();
        assert_eq!(s, Security::Verified { root_cert: None });
        assert!(
            parse("postgres://db/x?sslmode=verify-ca")
                .unwrap_err()
                .to_string()
                .contains("verify-full")
        );
        assert!(
            parse("postgres://db/x?sslmode=bogus")
                .unwrap_err()
                .to_string()
                .contains("bogus")
        );
        assert!(
            parse("postgres://db/x?sslrootcert=/ca.pem")
                .unwrap_err()
                .to_string()
                .contains("verify-full")
        );
        assert!(parse("postgres://db/x?sslmode=verify-full&sslrootcert=%zz").is_err());
        // A `?` inside the password is not the query.
        let (url, s) = parse("postgres://u:pa?ss@db/x?sslmode=verify-full").unwrap();
        assert_eq!(url, "postgres://u:pa?ss@db/x?sslmode=require");
        assert_eq!(s, Security::Verified { root_cert: None });
        // Nor is an `@` inside the query the end of the credentials.
        let (url, s) =
            parse("postgres://u:p@db/x?sslmode=verify-full&application_name=a@b").unwrap();
        assert_eq!(
            url,
            "postgres://u:p@db/x?application_name=a@b&sslmode=require"
        );
        assert_eq!(s, Security::Verified { root_cert: None });
        assert!(
            parse("postgres://u:p@db/x?application_name=a@b&sslmode=verify-ca")
                .unwrap_err()
                .to_string()
                .contains("verify-full")
        );
        let (_, s) = parse("postgres://db/x?sslmode=verify-full&sslrootcert=/ca@1.pem").unwrap();
        assert_eq!(
            s,
            Security::Verified {
                root_cert: Some("/ca@1.pem".into())
            }
        );
    }

    #[test]
    fn a_missing_or_empty_root_bundle_is_named() {
        let missing = Security::Verified {
            root_cert: Some("/nonexistent/ca.pem".into()),
        };
        assert!(
            client_config(&missing)
                .unwrap_err()
                .to_string()
                .contains("/nonexistent/ca.pem")
        );
        let empty = std::env::temp_dir().join(format!("empty-{}.pem", std::process::id()));
        std::fs::write(&empty, "").unwrap();
        let err = client_config(&Security::Verified {
            root_cert: Some(empty.display().to_string()),
        })
        .unwrap_err();
        let _ = std::fs::remove_file(&empty);
        assert!(err.to_string().contains("no certificate"), "{err}");
    }
}
