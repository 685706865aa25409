//! TLS (rustls, ring) for the gRPC port, with optional client certificates
//! (mTLS) and reloading: the certificate files are re-read when they change
//! (polled) or on SIGHUP, without dropping established connections.

use crate::config::TlsFiles;
use arc_swap::ArcSwap;
use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::PrivateKeyDer;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

/// Builds a server configuration from the files; errors name the setting.
pub fn load(files: &TlsFiles) -> Result<ServerConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = crate::pem::read_certificates(&files.cert)
        .map_err(|e| format!("IDENTITY_TLS_CERT_FILE {e}"))?
        .certificates;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| format!("IDENTITY_TLS_KEY_FILE {}: {e}", files.key.display()))?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let mut config = match &files.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in crate::pem::read_certificates(ca)
                .map_err(|e| format!("IDENTITY_TLS_CLIENT_CA_FILE {e}"))?
                .certificates
            {
                roots
                    .add(cert)
                    .map_err(|e| format!("IDENTITY_TLS_CLIENT_CA_FILE {}: {e}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("IDENTITY_TLS_CLIENT_CA_FILE {}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    }
    .with_single_cert(certs, key)
    .map_err(|e| format!("IDENTITY_TLS_CERT_FILE/IDENTITY_TLS_KEY_FILE: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

fn modified(files: &TlsFiles) -> Vec<Option<SystemTime>> {
    let mut paths = vec![&files.cert, &files.key];
    paths.extend(files.client_ca.as_ref());
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
    pub fn new(files: &TlsFiles) -> Result<Self, String> {
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
