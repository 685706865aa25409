//! The provider's keys (JWKS): a rotated key is fetched once, a flood of
//! unknown kids costs the provider one request, cached keys outlive the
//! provider, and keys come only from a server whose certificate is trusted.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_provider_key_is_fetched_once_without_a_restart() {
    let provider = BetterAuth::start();
    let db = TestDb::new(Backend::Sqlite);
    let server = identity(&db, &provider, "500ms");
    let mut auth = server.auth().await;
    provider_serving(&server).await;
    let user = signed_up(&provider, "Rotating").await;

    let old = provider.token(&user).await;
    let old_again = provider.sign(json!({"sub": user.id, "nonce": "old"})).await;
    exchange(&mut auth, &old)
        .await
        .expect("token of the first key");
    let before = provider.jwks_hits().await;
    assert_eq!(before, 1, "only the start-up fetch so far");

    let new_kid = provider.rotate().await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let new = provider.token(&user).await;
    assert_eq!(
        decode_part(new.split('.').next().unwrap())["kid"],
        new_kid.as_str(),
        "the provider signs with the new key"
    );
    // Sequential and concurrent exchanges of new-key tokens.
    exchange(&mut auth, &new)
        .await
        .expect("the new key is fetched on demand");
    let channel = server.channel().await;
    let mut tokens = Vec::new();
    for nonce in 0..5 {
        tokens.push(provider.sign(json!({"sub": user.id, "nonce": nonce})).await);
    }
    let results = futures::future::join_all(tokens.into_iter().map(|jwt| {
        let mut auth = AuthServiceClient::new(channel.clone());
        async move { exchange(&mut auth, &jwt).await }
    }))
    .await;
    for result in results {
        result.expect("new-key tokens keep exchanging");
    }
    exchange(&mut auth, &old_again)
        .await
        .expect("the old key is still published");
    assert_eq!(
        provider.jwks_hits().await,
        before + 1,
        "one refetch for the new kid, not one per request"
    );
    assert!(
        server.logs().contains("unknown_kid"),
        "the refetch is logged with its reason"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unknown_kids_costs_the_provider_at_most_one_request() {
    let provider = BetterAuth::start();
    let db = TestDb::new(Backend::Sqlite);
    let server = identity(&db, &provider, "3s");
    provider_serving(&server).await;
    let user = signed_up(&provider, "Flooded").await;
    // Past the interval since the start-up fetch: one refetch is due.
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let before = provider.jwks_hits().await;

    let channel = server.channel().await;
    let forged: Vec<String> = (0..100)
        .map(|i| stranger_token(&format!("random-{i}-{}", uuid::Uuid::new_v4()), &user.id))
        .collect();
    let started = std::time::Instant::now();
    let results = futures::future::join_all(forged.into_iter().map(|jwt| {
        let mut auth = AuthServiceClient::new(channel.clone());
        async move { exchange(&mut auth, &jwt).await }
    }))
    .await;
    let elapsed = started.elapsed();
    for result in results {
        assert_refused(result, "random kid");
    }
    let hits = provider.jwks_hits().await - before;
    assert!(
        elapsed < Duration::from_secs(3) || hits <= 2,
        "the burst took {elapsed:?}"
    );
    assert_eq!(
        hits, 1,
        "100 unknown kids, one JWKS request (burst took {elapsed:?})"
    );

    // The genuine user is not locked out by the flood.
    let mut auth = server.auth().await;
    exchange(&mut auth, &provider.token(&user).await)
        .await
        .expect("cached keys still verify");
    assert_eq!(provider.jwks_hits().await - before, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_provider_down_cached_keys_work_and_the_rest_stays_serving() {
    let mut provider = BetterAuth::start();
    let db = TestDb::new(Backend::Sqlite);
    let server = identity(&db, &provider, "300ms");
    let mut auth = server.auth().await;
    provider_serving(&server).await;
    let user = signed_up(&provider, "Resilient").await;
    exchange(&mut auth, &provider.token(&user).await)
        .await
        .unwrap();
    let cached = provider.token(&user).await;

    provider.stop();
    tokio::time::sleep(Duration::from_millis(400)).await;

    let done = exchange(&mut auth, &cached)
        .await
        .expect("a token of a cached key exchanges while the provider is down");
    assert!(!done.created);
    let status = exchange(&mut auth, &stranger_token("rotated-meanwhile", &user.id))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let status = exchange(&mut auth, &stranger_token("another-new-kid", &user.id))
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::Unavailable,
        "within the interval too: {status:?}"
    );

    assert!(
        eventually(Duration::from_secs(10), || async {
            health(&server, "identity.provider").await == ServingStatus::NotServing
        })
        .await,
        "the provider dependency reports NOT_SERVING"
    );
    assert_eq!(health(&server, "").await, ServingStatus::Serving);
    assert_eq!(
        health(&server, "identity.v1.AuthService").await,
        ServingStatus::Serving
    );
    // The rest of the API works: local accounts, validation.
    let local = auth
        .register(RegisterRequest {
            email: email("local"),
            password: PASSWORD.into(),
            display_name: String::new(),
        })
        .await
        .expect("Register works without the provider")
        .into_inner();
    let validated = auth
        .validate_token(ValidateTokenRequest {
            access_token: done.tokens.unwrap().access_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(validated.active);
    assert!(local.tokens.is_some());
    assert!(server.logs().contains("identity.provider.jwks_unavailable"));
}

/// Serves `upstream` (plain HTTP) over TLS with `leaf`, on loopback.
async fn tls_front(upstream: std::net::SocketAddr, leaf: &crate::support::pki::Leaf) -> u16 {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                }
            });
        }
    });
    port
}

/// The JWKS decides which tokens are believed, so it is fetched only from a
/// server whose certificate chains to a trusted root: the system's, or the
/// bundle an operator names with SSL_CERT_FILE (e.g. a private CA).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_server_with_an_untrusted_certificate_is_never_believed() {
    let provider = BetterAuth::start();
    let user = signed_up(&provider, "Behind TLS").await;
    let jwt = provider.token(&user).await;
    let upstream: std::net::SocketAddr = provider
        .jwks_url()
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let ca = crate::support::pki::Ca::new("private provider CA");
    let port = tls_front(upstream, &ca.server()).await;
    let options = || {
        ServerOptions::default()
            .env(
                "IDENTITY_PROVIDER_JWKS_URL",
                format!("https://localhost:{port}/api/auth/jwks"),
            )
            .env("IDENTITY_PROVIDER_ISSUER", ISSUER)
            .env("IDENTITY_PROVIDER_AUDIENCE", AUDIENCE)
            .env("IDENTITY_PROVIDER_JWKS_MIN_REFRESH_INTERVAL", "1s")
            .env("IDENTITY_PROVIDER_JWKS_TIMEOUT", "2s")
    };

    // The private CA is not among the system's roots.
    let db = TestDb::new(Backend::Sqlite);
    let untrusting = Server::start_with_options(&db, options());
    let status = exchange(&mut untrusting.auth().await, &jwt)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let logs = untrusting.logs();
    assert!(
        logs.contains("certificate") || logs.contains("UnknownIssuer"),
        "the log says why the keys could not be fetched:\n{logs}"
    );
    drop(untrusting);

    // Trusted once the operator names the CA bundle.
    let db = TestDb::new(Backend::Sqlite);
    let bundle = db.dir.path().join("provider-ca.pem");
    std::fs::write(&bundle, &ca.pem).unwrap();
    let trusting = Server::start_with_options(
        &db,
        options().env("SSL_CERT_FILE", bundle.display().to_string()),
    );
    let done = exchange(&mut trusting.auth().await, &jwt)
        .await
        .unwrap_or_else(|s| panic!("{s:?}\n{}", trusting.logs()));
    assert_eq!(done.profile.unwrap().auth_id, user.id);
}
