//! TLS (rustls, ring) for the gRPC port, with optional client certificates
//! (mTLS: a CA, revocation lists, an allow-list of names) and reloading: the
//! files are re-read when they change (polled) or on SIGHUP, without
//! dropping established connections.

use arc_swap::ArcSwap;
use identity_store::pem::BundleError;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::client::danger::HandshakeSignatureValid;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime,
};
use tokio_rustls::rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use tokio_rustls::rustls::server::{VerifierBuilderError, WebPkiClientVerifier};
use tokio_rustls::rustls::{
    self, CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use x509_parser::extensions::GeneralName;

/// The TLS files of the gRPC port, as `config` validated them (each one
/// readable, the mTLS ones only with a client CA).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    /// Only with `client_ca`.
    pub client_crl: Option<PathBuf>,
    /// Only with `client_ca`; empty: any name. DNS names are lower case.
    pub client_allowed_sans: Vec<String>,
}

/// Why the TLS files cannot be used; each names the setting and the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("IDENTITY_TLS_CERT_FILE {0}")]
    CertFile(BundleError),
    #[error("IDENTITY_TLS_KEY_FILE {}: {reason}", path.display())]
    KeyFile { path: PathBuf, reason: pem::Error },
    #[error("IDENTITY_TLS_CERT_FILE/IDENTITY_TLS_KEY_FILE: {0}")]
    CertAndKey(rustls::Error),
    #[error("IDENTITY_TLS_CLIENT_CA_FILE {0}")]
    ClientCaFile(BundleError),
    #[error("IDENTITY_TLS_CLIENT_CA_FILE {}: {reason}", path.display())]
    ClientCa {
        path: PathBuf,
        reason: rustls::Error,
    },
    #[error("IDENTITY_TLS_CLIENT_CA_FILE {}: {reason}", ca.display())]
    ClientVerifier {
        ca: PathBuf,
        reason: VerifierBuilderError,
    },
    #[error(
        "IDENTITY_TLS_CLIENT_CA_FILE {} / IDENTITY_TLS_CLIENT_CRL_FILE {}: {reason}",
        ca.display(),
        crl.display()
    )]
    ClientVerifierWithCrl {
        ca: PathBuf,
        crl: PathBuf,
        reason: VerifierBuilderError,
    },
    #[error("IDENTITY_TLS_CLIENT_CRL_FILE {}: {reason}", path.display())]
    CrlRead { path: PathBuf, reason: io::Error },
    #[error("IDENTITY_TLS_CLIENT_CRL_FILE {}: {reason}", path.display())]
    CrlParse { path: PathBuf, reason: pem::Error },
    #[error("IDENTITY_TLS_CLIENT_CRL_FILE {}: no X509 CRL in it", path.display())]
    CrlEmpty { path: PathBuf },
    #[error("{0}")]
    Rustls(rustls::Error),
}

/// Builds a server configuration from the files; errors name the setting.
pub fn load(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = identity_store::pem::read_certificates(&files.cert)
        .map_err(TlsError::CertFile)?
        .certificates;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|reason| TlsError::KeyFile {
        path: files.key.clone(),
        reason,
    })?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Rustls)?;
    let mut config = match &files.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in identity_store::pem::read_certificates(ca)
                .map_err(TlsError::ClientCaFile)?
                .certificates
            {
                roots.add(cert).map_err(|reason| TlsError::ClientCa {
                    path: ca.clone(),
                    reason,
                })?;
            }
            let mut verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            if let Some(crl) = &files.client_crl {
                // rustls' defaults are kept on purpose: every certificate of
                // the chain is checked and one whose issuer has no CRL in
                // the file is refused (an incomplete file fails closed).
                verifier = verifier.with_crls(read_crls(crl)?);
            }
            let verifier = verifier.build().map_err(|reason| match &files.client_crl {
                Some(crl) => TlsError::ClientVerifierWithCrl {
                    ca: ca.clone(),
                    crl: crl.clone(),
                    reason,
                },
                None => TlsError::ClientVerifier {
                    ca: ca.clone(),
                    reason,
                },
            })?;
            if files.client_allowed_sans.is_empty() {
                builder.with_client_cert_verifier(verifier)
            } else {
                builder.with_client_cert_verifier(Arc::new(AllowedNames {
                    inner: verifier,
                    allowed: files.client_allowed_sans.clone(),
                }))
            }
        }
        None => builder.with_no_client_auth(),
    }
    .with_single_cert(certs, key)
    .map_err(TlsError::CertAndKey)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// A PEM file with at least one CRL (an empty file would silently revoke
/// nothing).
fn read_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|reason| TlsError::CrlRead {
        path: path.to_owned(),
        reason,
    })?;
    let crls = CertificateRevocationListDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|reason| TlsError::CrlParse {
            path: path.to_owned(),
            reason,
        })?;
    if crls.is_empty() {
        return Err(TlsError::CrlEmpty {
            path: path.to_owned(),
        });
    }
    Ok(crls)
}

/// mTLS with IDENTITY_TLS_CLIENT_ALLOWED_SANS: the chain (and revocation)
/// is checked by webpki first, then the certificate must carry one of the
/// allowed subject alternative names. The common name is never looked at:
/// SANs are what a CA vouches for.
#[derive(Debug)]
struct AllowedNames {
    inner: Arc<dyn ClientCertVerifier>,
    /// DNS names in lower case, URIs as written.
    allowed: Vec<String>,
}

impl AllowedNames {
    fn admits(&self, end_entity: &CertificateDer<'_>) -> bool {
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(end_entity.as_ref()) else {
            return false;
        };
        let Ok(Some(sans)) = cert.subject_alternative_name() else {
            return false;
        };
        sans.value.general_names.iter().any(|name| match name {
            GeneralName::DNSName(dns) => self.allowed.contains(&dns.to_ascii_lowercase()),
            GeneralName::URI(uri) => self.allowed.iter().any(|allowed| allowed == uri),
            _ => false,
        })
    }
}

/// Who a client certificate speaks for, as one principal: its DNS names
/// (in lower case) and URIs, sorted and joined with `,`, which is what
/// IDENTITY_TLS_CLIENT_ALLOWED_SANS admits by; without any (or with a name
/// holding a `,`), the SHA-256 of the certificate (hex), so that two such
/// certificates are never one principal. Certificates renewed with the same names stay the same
/// principal; the common name is never read (SANs are what a CA vouches for).
pub fn certificate_identity(end_entity: &[u8]) -> String {
    use sha2::Digest as _;
    let mut names: Vec<String> = x509_parser::parse_x509_certificate(end_entity)
        .ok()
        .and_then(|(_, cert)| {
            cert.subject_alternative_name().ok().flatten().map(|sans| {
                sans.value
                    .general_names
                    .iter()
                    .filter_map(|name| match name {
                        GeneralName::DNSName(dns) => {
                            Some(format!("dns:{}", dns.to_ascii_lowercase()))
                        }
                        GeneralName::URI(uri) => Some(format!("uri:{uri}")),
                        _ => None,
                    })
                    .collect()
            })
        })
        .unwrap_or_default();
    // A name holding the separator would make the joined list ambiguous
    // (one name `a,uri:b` reads as the two names `a` and `uri:b`): such a
    // certificate is a principal of its own, by digest.
    if names.is_empty() || names.iter().any(|name| name.contains(',')) {
        return format!("sha256:{}", hex::encode(sha2::Sha256::digest(end_entity)));
    }
    names.sort_unstable();
    names.dedup();
    names.join(",")
}

impl ClientCertVerifier for AllowedNames {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if self.admits(end_entity) {
            Ok(verified)
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn modified(files: &TlsFiles) -> Vec<Option<SystemTime>> {
    let mut paths = vec![&files.cert, &files.key];
    paths.extend(files.client_ca.as_ref());
    paths.extend(files.client_crl.as_ref());
    paths
        .into_iter()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

/// The current TLS configuration, swapped atomically on reload.
#[derive(Clone)]
pub struct Reloadable {
    current: Arc<ArcSwap<ServerConfig>>,
}

impl Reloadable {
    pub fn new(files: &TlsFiles) -> Result<Self, TlsError> {
        Ok(Reloadable {
            current: Arc::new(ArcSwap::from_pointee(load(files)?)),
        })
    }

    /// Watches the files (and SIGHUP); a bad new file keeps the old config.
    pub fn watch(&self, files: TlsFiles, interval: Duration) -> tokio::task::JoinHandle<()> {
        let current = Arc::clone(&self.current);
        tokio::spawn(async move {
            let mut seen = modified(&files);
            #[cfg(unix)]
            let mut hup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            loop {
                #[cfg(unix)]
                let hangup = async {
                    match hup.as_mut() {
                        Some(signal) => {
                            signal.recv().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                #[cfg(not(unix))]
                let hangup = std::future::pending::<()>();
                let forced = tokio::select! {
                    () = tokio::time::sleep(interval) => false,
                    () = hangup => true,
                };
                let now = modified(&files);
                if !forced && now == seen {
                    continue;
                }
                seen = now;
                match load(&files) {
                    Ok(config) => {
                        current.store(Arc::new(config));
                        tracing::info!(
                            event.name = "identity.tls.reloaded",
                            "TLS certificate reloaded"
                        );
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "TLS reload failed; keeping the previous certificate")
                    }
                }
            }
        })
    }

    /// Accepts TCP connections and completes handshakes off the accept loop,
    /// so a slow or failing client never blocks others.
    pub fn incoming(
        &self,
        listener: TcpListener,
    ) -> ReceiverStream<Result<TlsStream<TcpStream>, io::Error>> {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let current = Arc::clone(&self.current);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = TlsAcceptor::from(current.load_full());
                let sender = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
                    {
                        Ok(Ok(stream)) => {
                            let _ = sender.send(Ok(stream)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::info!(event.name = "identity.tls.handshake_failed", client.address = %peer.ip(), error = %e, "TLS handshake refused")
                        }
                        Err(_) => {
                            tracing::info!(client.address = %peer.ip(), "TLS handshake timed out")
                        }
                    }
                });
                if tx.is_closed() {
                    return;
                }
            }
        });
        ReceiverStream::new(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crl_file_without_a_crl_is_refused_naming_the_setting() {
        let dir = std::env::temp_dir().join(format!("identity-crl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let err = read_crls(&empty).unwrap_err().to_string();
        assert!(err.starts_with("IDENTITY_TLS_CLIENT_CRL_FILE"), "{err}");
        assert!(err.contains("no X509 CRL"), "{err}");
        let err = read_crls(&dir.join("missing.pem")).unwrap_err().to_string();
        assert!(err.starts_with("IDENTITY_TLS_CLIENT_CRL_FILE"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn certificate(dns: &[&str], uris: &[&str]) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = dns
            .iter()
            .map(|n| rcgen::SanType::DnsName((*n).try_into().unwrap()))
            .chain(
                uris.iter()
                    .map(|u| rcgen::SanType::URI((*u).try_into().unwrap())),
            )
            .collect();
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn a_certificate_is_its_sorted_names_or_else_its_digest() {
        let one = certificate(&["B.example", "a.example"], &["spiffe://td/verifier"]);
        assert_eq!(
            certificate_identity(&one),
            "dns:a.example,dns:b.example,uri:spiffe://td/verifier"
        );
        // Renewed (another key, same names): the same principal.
        let renewed = certificate(&["a.example", "b.example"], &["spiffe://td/verifier"]);
        assert_eq!(certificate_identity(&renewed), certificate_identity(&one));
        let (x, y) = (certificate(&[], &[]), certificate(&[], &[]));
        assert!(certificate_identity(&x).starts_with("sha256:"));
        assert_eq!(certificate_identity(&x).len(), "sha256:".len() + 64);
        assert_ne!(certificate_identity(&x), certificate_identity(&y));
        assert!(certificate_identity(b"not a certificate").starts_with("sha256:"));
    }

    #[test]
    fn a_name_holding_the_separator_cannot_pass_for_another_certificates_names() {
        let victim = certificate(&["verifier.internal"], &["spiffe://x/v"]);
        let forger = certificate(&["verifier.internal,uri:spiffe://x/v"], &[]);
        assert_ne!(certificate_identity(&forger), certificate_identity(&victim));
        assert!(certificate_identity(&forger).starts_with("sha256:"));
        let forger_uri = certificate(&[], &["spiffe://x/v,dns:verifier.internal"]);
        assert_ne!(
            certificate_identity(&forger_uri),
            certificate_identity(&victim)
        );
    }
}
