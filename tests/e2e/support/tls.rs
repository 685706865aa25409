//! TLS clients of the server, and its certificate files.

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// Writes `cert` and `key` as `<name>.crt` and `<name>.key` in `dir`; their
/// paths.
pub async fn write_tls_files(
    dir: &std::path::Path,
    name: &str,
    cert: &str,
    key: &str,
) -> (String, String) {
    let (cert_path, key_path) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    (
        cert_path.display().to_string(),
        key_path.display().to_string(),
    )
}

/// A TLS channel to `addr` as `localhost`, trusting `ca`, presenting the
/// `client` certificate and key when given.
pub async fn tls_channel(
    addr: std::net::SocketAddr,
    ca: &str,
    client: Option<(&str, &str)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some((cert, key)) = client {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Channel::from_shared(format!("https://localhost:{}", addr.port()))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await
}

/// The options of a server that requires client certificates: its own
/// certificate signed by `ca`, and `clients_ca` as the CA of its clients
/// (files in the database's directory). More settings chain on.
pub async fn mtls_options(
    db: &super::TestDb,
    ca: &super::pki::Ca,
    clients_ca: &super::pki::Ca,
) -> super::ServerOptions {
    let leaf = ca.server();
    let (cert, key) = write_tls_files(db.dir.path(), "server", &leaf.cert_pem, &leaf.key_pem).await;
    let client_ca_file = db.dir.path().join("clients-ca.pem");
    std::fs::write(&client_ca_file, &clients_ca.pem).unwrap();
    super::ServerOptions::default()
        .env("IDENTITY_TLS_CERT_FILE", cert)
        .env("IDENTITY_TLS_KEY_FILE", key)
        .env(
            "IDENTITY_TLS_CLIENT_CA_FILE",
            client_ca_file.display().to_string(),
        )
}
