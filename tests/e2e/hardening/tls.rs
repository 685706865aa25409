//! TLS and mTLS: trusting clients are served and plaintext refused,
//! certificates and CRLs reload, and only clients whose certificate comes
//! from the configured CA, unrevoked and with an allowed SAN, connect.

use super::*;

async fn jwks_over(channel: Channel) -> Result<tonic::Response<GetJwksResponse>, tonic::Status> {
    AuthServiceClient::new(channel)
        .get_jwks(GetJwksRequest {})
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_trusting_clients_refuses_plaintext_and_reloads_certificates() {
    let db = TestDb::new(Backend::Sqlite);
    let (ca, next_ca) = (Ca::new("test CA"), Ca::new("next CA"));
    let leaf = ca.server();
    let (cert, key) = write_tls_files(db.dir.path(), "server", &leaf.cert_pem, &leaf.key_pem).await;
    let server = Server::start_with_options(
        &db,
        ServerOptions::default()
            .env("IDENTITY_TLS_CERT_FILE", cert.clone())
            .env("IDENTITY_TLS_KEY_FILE", key.clone())
            .env("IDENTITY_TLS_RELOAD_INTERVAL", "200ms"),
    );
    let response = jwks_over(tls_channel(server.addr, &ca.pem, None).await.unwrap())
        .await
        .unwrap();
    assert!(
        response
            .metadata()
            .get("strict-transport-security")
            .is_some(),
        "HSTS with TLS"
    );

    let plaintext = Channel::from_shared(server.url()).unwrap().connect().await;
    let refused = match plaintext {
        Err(_) => true,
        Ok(channel) => jwks_over(channel).await.is_err(),
    };
    assert!(refused, "a plaintext client must not get an answer");

    // New certificate from another CA: picked up without a restart.
    let next = next_ca.server();
    std::fs::write(&key, &next.key_pem).unwrap();
    std::fs::write(&cert, &next.cert_pem).unwrap();
    let reloaded = eventually(Duration::from_secs(10), || async {
        match tls_channel(server.addr, &next_ca.pem, None).await {
            Ok(channel) => jwks_over(channel).await.is_ok(),
            Err(_) => false,
        }
    })
    .await;
    assert!(reloaded, "the new certificate is served");
    assert!(server.logs().contains("identity.tls.reloaded"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_refuses_clients_without_a_certificate_from_the_configured_ca() {
    let db = TestDb::new(Backend::Sqlite);
    let (ca, clients_ca, stranger_ca) = (
        Ca::new("server CA"),
        Ca::new("clients CA"),
        Ca::new("stranger CA"),
    );
    let leaf = ca.server();
    let (cert, key) = write_tls_files(db.dir.path(), "server", &leaf.cert_pem, &leaf.key_pem).await;
    let client_ca_file = db.dir.path().join("clients-ca.pem");
    std::fs::write(&client_ca_file, &clients_ca.pem).unwrap();
    let server = Server::start_with_options(
        &db,
        ServerOptions::default()
            .env("IDENTITY_TLS_CERT_FILE", cert)
            .env("IDENTITY_TLS_KEY_FILE", key)
            .env(
                "IDENTITY_TLS_CLIENT_CA_FILE",
                client_ca_file.display().to_string(),
            ),
    );
    let good = clients_ca.client("billing-service");
    let channel = tls_channel(server.addr, &ca.pem, Some((&good.cert_pem, &good.key_pem)))
        .await
        .unwrap();
    jwks_over(channel)
        .await
        .expect("a client with a certificate from the configured CA is served");

    assert!(
        refused(tls_channel(server.addr, &ca.pem, None).await).await,
        "no client certificate"
    );
    let stranger = stranger_ca.client("intruder");
    assert!(
        refused(
            tls_channel(
                server.addr,
                &ca.pem,
                Some((&stranger.cert_pem, &stranger.key_pem))
            )
            .await
        )
        .await,
        "a certificate from another CA"
    );
}

/// The server would not answer over this channel (refused at the handshake
/// or, with TLS 1.3, on the first request after it).
async fn refused(channel: Result<Channel, tonic::transport::Error>) -> bool {
    match channel {
        Err(_) => true,
        Ok(channel) => jwks_over(channel).await.is_err(),
    }
}

/// Whether a client presenting `leaf` gets an answer.
async fn served(addr: std::net::SocketAddr, server_ca: &str, leaf: &Leaf) -> bool {
    !refused(tls_channel(addr, server_ca, Some((&leaf.cert_pem, &leaf.key_pem))).await).await
}

/// `attempts` connections at once with `leaf`: how many got an answer.
async fn served_concurrently(
    addr: std::net::SocketAddr,
    server_ca: &str,
    leaf: &Leaf,
    attempts: usize,
) -> usize {
    let tries = (0..attempts).map(|_| served(addr, server_ca, leaf));
    futures::future::join_all(tries)
        .await
        .into_iter()
        .filter(|&ok| ok)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_client_certificate_is_refused_and_the_crl_reloads() {
    let db = TestDb::new(Backend::Sqlite);
    let (ca, clients_ca) = (Ca::new("server CA"), Ca::new("clients CA"));
    let leaf = ca.server();
    let (cert, key) = write_tls_files(db.dir.path(), "server", &leaf.cert_pem, &leaf.key_pem).await;
    let client_ca_file = db.dir.path().join("clients-ca.pem");
    std::fs::write(&client_ca_file, &clients_ca.pem).unwrap();
    let (stolen, colleague, retired) = (
        clients_ca.client("billing-service"),
        clients_ca.client("ledger-service"),
        clients_ca.client("old-laptop"),
    );
    let crl_file = db.dir.path().join("clients.crl.pem");
    std::fs::write(&crl_file, clients_ca.crl(&[retired.serial])).unwrap();
    let server = Server::start_with_options(
        &db,
        ServerOptions::default()
            .env("IDENTITY_TLS_CERT_FILE", cert)
            .env("IDENTITY_TLS_KEY_FILE", key)
            .env(
                "IDENTITY_TLS_CLIENT_CA_FILE",
                client_ca_file.display().to_string(),
            )
            .env(
                "IDENTITY_TLS_CLIENT_CRL_FILE",
                crl_file.display().to_string(),
            )
            .env("IDENTITY_TLS_RELOAD_INTERVAL", "200ms"),
    );
    assert!(served(server.addr, &ca.pem, &stolen).await);
    assert_eq!(
        served_concurrently(server.addr, &ca.pem, &retired, 8).await,
        0,
        "a certificate revoked before the start is refused"
    );

    // The key of billing-service leaks: the operator revokes its certificate
    // and the attacker keeps knocking with it.
    std::fs::write(&crl_file, clients_ca.crl(&[retired.serial, stolen.serial])).unwrap();
    let revoked = eventually(Duration::from_secs(20), || async {
        !served(server.addr, &ca.pem, &stolen).await
    })
    .await;
    assert!(revoked, "the new CRL is picked up without a restart");
    assert_eq!(
        served_concurrently(server.addr, &ca.pem, &stolen, 8).await,
        0,
        "the revoked certificate never gets an answer again"
    );
    assert!(
        served(server.addr, &ca.pem, &colleague).await,
        "a certificate not in the CRL still connects"
    );
    assert!(server.logs().contains("identity.tls.reloaded"));
}

#[test]
fn a_client_crl_file_that_is_missing_or_holds_no_crl_stops_the_start_naming_it() {
    let dir = crate::support::TempDir::new();
    let (ca, clients_ca) = (Ca::new("server CA"), Ca::new("clients CA"));
    let leaf = ca.server();
    let path = |name: &str| dir.path().join(name).display().to_string();
    std::fs::write(path("tls.crt"), &leaf.cert_pem).unwrap();
    std::fs::write(path("tls.key"), &leaf.key_pem).unwrap();
    std::fs::write(path("clients-ca.pem"), &clients_ca.pem).unwrap();
    // A certificate where the CRL should be: an easy slip that would
    // otherwise revoke nothing.
    std::fs::write(path("not-a-crl.pem"), &clients_ca.pem).unwrap();
    for crl in [path("missing.pem"), path("not-a-crl.pem")] {
        let (code, output) = crate::support::refused_start(&[
            ("IDENTITY_TLS_CERT_FILE", &path("tls.crt")),
            ("IDENTITY_TLS_KEY_FILE", &path("tls.key")),
            ("IDENTITY_TLS_CLIENT_CA_FILE", &path("clients-ca.pem")),
            ("IDENTITY_TLS_CLIENT_CRL_FILE", &crl),
        ]);
        assert_ne!(code, Some(0), "{output}");
        assert!(
            output.contains("IDENTITY_TLS_CLIENT_CRL_FILE"),
            "{crl}: {output}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_client_certificates_with_an_allowed_san_connect() {
    let db = TestDb::new(Backend::Sqlite);
    let (ca, clients_ca) = (Ca::new("server CA"), Ca::new("clients CA"));
    let leaf = ca.server();
    let (cert, key) = write_tls_files(db.dir.path(), "server", &leaf.cert_pem, &leaf.key_pem).await;
    let client_ca_file = db.dir.path().join("clients-ca.pem");
    std::fs::write(&client_ca_file, &clients_ca.pem).unwrap();
    let billing = "spiffe://example.org/ns/prod/sa/billing";
    let server = Server::start_with_options(
        &db,
        ServerOptions::default()
            .env("IDENTITY_TLS_CERT_FILE", cert)
            .env("IDENTITY_TLS_KEY_FILE", key)
            .env(
                "IDENTITY_TLS_CLIENT_CA_FILE",
                client_ca_file.display().to_string(),
            )
            .env(
                "IDENTITY_TLS_CLIENT_ALLOWED_SANS",
                format!("ledger.internal, {billing}"),
            ),
    );
    assert!(
        served(server.addr, &ca.pem, &clients_ca.client("ledger.internal")).await,
        "an allowed DNS name"
    );
    assert!(
        served(
            server.addr,
            &ca.pem,
            &clients_ca.client_with("billing", &[], &[billing])
        )
        .await,
        "an allowed SPIFFE ID"
    );
    // Every one of these chains to the trusted CA: only the name is wrong.
    let strangers = [
        ("another workload", clients_ca.client("intruder.internal")),
        (
            "the allowed name only as the common name",
            clients_ca.client_with("ledger.internal", &["intruder.internal"], &[]),
        ),
        (
            "a SPIFFE ID extending an allowed one",
            clients_ca.client_with("billing", &[], &[&format!("{billing}-admin")]),
        ),
        (
            "a SPIFFE ID below an allowed one",
            clients_ca.client_with("billing", &[], &[&format!("{billing}/debug")]),
        ),
        (
            "an allowed DNS name in a sub-domain",
            clients_ca.client("evil.ledger.internal"),
        ),
        (
            "no subject alternative name at all",
            clients_ca.client_with("ledger.internal", &[], &[]),
        ),
    ];
    for (what, leaf) in &strangers {
        assert_eq!(
            served_concurrently(server.addr, &ca.pem, leaf, 4).await,
            0,
            "{what}"
        );
    }
    assert!(server.logs().contains("identity.tls.handshake_failed"));
}
