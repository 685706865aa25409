//! The hardening checklist over real sockets: rate limits (local and
//! shared through Redis), brute-force throttling without lockout, password
//! policy, load shedding, TLS and mTLS, gRPC-Web with CORS and headers.

use crate::support::pki::{Ca, Leaf};
use crate::support::proxy::Proxy;
use crate::support::{
    Backend, PASSWORD, Server, ServerOptions, TestDb, bearer, email, eventually, forwarded_for,
    login_request, pg_text, register, tls_channel, write_tls_files,
};
use identity::proto::v1::auth_service_client::AuthServiceClient;
use identity::proto::v1::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

/// A documentation address (RFC 5737) unique to this call, for the
/// x-forwarded-for of a trusted proxy. No traffic ever goes to it.
fn unique_client() -> String {
    let n = uuid::Uuid::new_v4().as_u128();
    format!("203.0.{}.{}", (n % 250) as u8, ((n >> 8) % 250) as u8 + 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_beyond_the_address_quota_is_refused_with_retry_info_then_accepted_again() {
    let db = TestDb::new(Backend::Sqlite);
    let server = Server::start_with_options(
        &db,
        ServerOptions::default()
            .env("IDENTITY_RATE_LIMIT_ENABLED", "true")
            .env("IDENTITY_RATE_LIMIT_LOGIN", "3/3s"),
    );
    let mut auth = server.auth().await;
    let address = email("quota");
    register(&mut auth, &address).await;
    for _ in 0..3 {
        auth.login(login_request(&address, PASSWORD))
            .await
            .expect("within the quota");
    }
    let status = auth
        .login(login_request(&address, PASSWORD))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(
        status.message(),
        "too many requests; retry later",
        "generic message"
    );
    let delay = status
        .get_details_retry_info()
        .and_then(|r| r.retry_delay)
        .expect("RetryInfo");
    assert!(
        delay > Duration::ZERO && delay <= Duration::from_secs(3),
        "{delay:?}"
    );
    tokio::time::sleep(delay + Duration::from_millis(50)).await;
    auth.login(login_request(&address, PASSWORD))
        .await
        .expect("accepted again after the delay");
    assert!(server.logs().contains("identity.rate_limited"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attacker_failing_50_times_does_not_lock_the_owner_out() {
    let db = TestDb::new(Backend::Postgres);
    let server = Server::start_with_options(
        &db,
        ServerOptions::default()
            .env("IDENTITY_RATE_LIMIT_ENABLED", "true")
            .env("IDENTITY_TRUSTED_PROXIES", "127.0.0.1/32"),
    );
    let mut auth = server.auth().await;
    let victim = email("victim");
    register(&mut auth, &victim).await;
    let (attacker, owner) = (unique_client(), unique_client());
    let mut throttled = 0;
    for attempt in 0..50 {
        let status = auth
            .login(forwarded_for(
                &attacker,
                login_request(&victim, &format!("guess number {attempt}")),
            ))
            .await
            .unwrap_err();
        match status.code() {
            Code::Unauthenticated => {}
            Code::ResourceExhausted => {
                assert!(status.get_details_retry_info().is_some());
                throttled += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        throttled >= 40,
        "the attacker's address is slowed down ({throttled} of 50 throttled)"
    );
    auth.login(forwarded_for(&owner, login_request(&victim, PASSWORD)))
        .await
        .expect("the owner logs in from elsewhere");
    assert!(server.logs().contains("\"reason\":\"throttled\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sharing_redis_enforce_one_limit_and_fall_back_to_local_limits_without_it() {
    let _turn = crate::support::machine_to_myself().await;
    let db = TestDb::new(Backend::Postgres);
    let redis = Proxy::start("127.0.0.1:6379".parse().unwrap()).await;
    let options = || {
        ServerOptions::default()
            .env("IDENTITY_RATE_LIMIT_ENABLED", "true")
            .env("IDENTITY_TRUSTED_PROXIES", "127.0.0.1/32")
            .env("IDENTITY_RATE_LIMIT_LOGIN", "4/1m")
            .env(
                "IDENTITY_RATE_LIMIT_REDIS_URL",
                format!("redis://{}/0", redis.addr),
            )
    };
    let a = Server::start_with_options(&db, options());
    let b = Server::start_with_options(&db, options());
    let (mut on_a, mut on_b) = (a.auth().await, b.auth().await);
    let address = email("global");
    register(&mut on_a, &address).await;

    let client = unique_client();
    for round in 0..4 {
        let auth = if round % 2 == 0 { &mut on_a } else { &mut on_b };
        auth.login(forwarded_for(&client, login_request(&address, PASSWORD)))
            .await
            .expect("4 calls fit the quota");
    }
    for auth in [&mut on_a, &mut on_b] {
        let status = auth
            .login(forwarded_for(&client, login_request(&address, PASSWORD)))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::ResourceExhausted,
            "the fifth call on either replica is over one global limit"
        );
    }

    // Redis goes away: both replicas keep limiting, each with its own counters.
    redis.cut();
    let client = unique_client();
    let mut outcomes = Vec::new();
    for _ in 0..6 {
        outcomes.push(
            on_a.login(forwarded_for(&client, login_request(&address, PASSWORD)))
                .await
                .map(drop)
                .map_err(|s| s.code()),
        );
    }
    assert!(outcomes[..4].iter().all(Result::is_ok), "{outcomes:?}");
    assert!(
        outcomes[4..]
            .iter()
            .all(|o| *o == Err(Code::ResourceExhausted)),
        "{outcomes:?}"
    );
    assert!(
        a.logs().contains("identity.rate_limit.degraded"),
        "the fallback is logged"
    );
    let mut health = tonic_health::pb::health_client::HealthClient::new(a.channel().await);
    let status = |name: &str| tonic_health::pb::HealthCheckRequest {
        service: name.into(),
    };
    let limiter = health
        .check(status("identity.rate_limit"))
        .await
        .unwrap()
        .into_inner()
        .status();
    assert_eq!(
        limiter,
        tonic_health::pb::health_check_response::ServingStatus::NotServing
    );
    let overall = health
        .check(status(""))
        .await
        .unwrap()
        .into_inner()
        .status();
    assert_eq!(
        overall,
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );

    redis.restore();
    assert!(
        eventually(Duration::from_secs(10), || {
            let mut health = health.clone();
            async move {
                health
                    .check(status("identity.rate_limit"))
                    .await
                    .map(|r| r.into_inner().status())
                    .ok()
                    == Some(tonic_health::pb::health_check_response::ServingStatus::Serving)
            }
        })
        .await,
        "the shared limiter comes back"
    );
}

fn violation(status: &tonic::Status) -> (String, String) {
    let bad = status
        .get_details_bad_request()
        .expect("BadRequest details");
    let v = &bad.field_violations[0];
    (v.field.clone(), v.description.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weak_passwords_are_refused_with_the_reason_and_raised_costs_rehash_at_login() {
    let db = TestDb::new(Backend::Postgres);
    let mut options = ServerOptions::default();
    options
        .env
        .push(("IDENTITY_BCRYPT_COST".into(), "4".into()));
    let server = Server::start_with_options(&db, options);
    let mut auth = server.auth().await;
    let cases = [
        ("password123", "too easy to guess"),
        ("qwertyuiop", "too easy to guess"),
        ("ann.lee-strong-passphrase", "email"),
        ("short", "at least 8 characters"),
        (&*"x7".repeat(37), "72 bytes"),
    ];
    for (password, reason) in cases {
        let status = auth
            .register(RegisterRequest {
                email: "ann.lee@example.com".into(),
                password: password.into(),
                display_name: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{password}");
        let (field, description) = violation(&status);
        assert_eq!(field, "password");
        assert!(description.contains(reason), "{password}: {description}");
    }

    let address = email("rehash");
    let tokens = register(&mut auth, &address).await;
    let weak = bearer(
        &tokens.access_token,
        ChangePasswordRequest {
            current_password: PASSWORD.into(),
            new_password: "password1".into(),
        },
    );
    let status = auth.change_password(weak).await.unwrap_err();
    assert_eq!(violation(&status).0, "new_password");

    let stored_cost = || pg_text(&db, "SELECT substr(password_hash, 1, 7) FROM credentials");
    assert_eq!(stored_cost(), "$2b$04$");
    drop(auth);
    assert!(server.terminate().success());
    let mut options = ServerOptions::default();
    options
        .env
        .push(("IDENTITY_BCRYPT_COST".into(), "5".into()));
    let server = Server::start_with_options(&db, options);
    server
        .auth()
        .await
        .login(login_request(&address, PASSWORD))
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            stored_cost() == "$2b$05$"
        })
        .await,
        "the hash is upgraded to the new cost at login"
    );
}

fn p99(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[(samples.len() * 99 / 100).min(samples.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_is_shed_with_retry_info_and_never_fails_token_validation() {
    let db = TestDb::new(Backend::Postgres);
    let server = Server::start_with_options(
        &db,
        ServerOptions::default()
            .env("IDENTITY_BCRYPT_COST", "10")
            .env("IDENTITY_BCRYPT_QUEUE", "16"),
    );
    let mut auth = server.auth().await;
    let address = email("flood");
    let tokens = register(&mut auth, &address).await;

    let measure = |auth: AuthServiceClient<Channel>, token: String, window: Duration| async move {
        let mut auth = auth;
        let mut samples = Vec::new();
        let end = Instant::now() + window;
        while Instant::now() < end {
            let start = Instant::now();
            let answer = auth
                .validate_token(ValidateTokenRequest {
                    access_token: token.clone(),
                })
                .await;
            samples.push(start.elapsed());
            assert!(
                answer
                    .expect("ValidateToken never fails")
                    .into_inner()
                    .active
            );
        }
        samples
    };
    let mut quiet = measure(
        auth.clone(),
        tokens.access_token.clone(),
        Duration::from_secs(1),
    )
    .await;

    let validator = tokio::spawn(measure(
        auth.clone(),
        tokens.access_token.clone(),
        Duration::from_secs(3),
    ));
    let logins = (0..200).map(|i| {
        let mut auth = auth.clone();
        let password = if i % 4 == 0 {
            "wrong password here".to_owned()
        } else {
            PASSWORD.to_owned()
        };
        let address = address.clone();
        async move { auth.login(login_request(&address, &password)).await }
    });
    let results = futures::future::join_all(logins).await;
    let mut flood = validator.await.unwrap();
    let (mut ok, mut refused, mut shed) = (0, 0, 0);
    for result in results {
        match result {
            Ok(_) => ok += 1,
            Err(s) if s.code() == Code::Unauthenticated => refused += 1,
            Err(s) if s.code() == Code::ResourceExhausted => {
                assert!(
                    s.get_details_retry_info().is_some(),
                    "shed calls carry RetryInfo"
                );
                shed += 1;
            }
            Err(s) => panic!("login failed improperly: {s:?}"),
        }
    }
    assert_eq!(ok + refused + shed, 200);
    println!(
        "login flood: {ok} ok, {refused} wrong password, {shed} shed; ValidateToken p99 quiet {:?} ({} calls), during flood {:?} ({} calls)",
        p99(&mut quiet),
        quiet.len(),
        p99(&mut flood),
        flood.len()
    );
}

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

/// One raw HTTP/1.1 exchange; returns the status line and lower-cased headers.
async fn http1(
    addr: std::net::SocketAddr,
    request: String,
    body: &[u8],
) -> (String, Vec<(String, String)>) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw)).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let mut lines = head.lines();
    let status = lines.next().unwrap_or_default().to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_web_answers_allowed_origins_with_cors_and_security_headers_only() {
    let db = TestDb::new(Backend::Sqlite);
    let server = Server::start_with_options(
        &db,
        ServerOptions::default().env("IDENTITY_GRPC_WEB_ORIGINS", "https://app.example.com"),
    );
    let preflight = |origin: &str| {
        format!(
            "OPTIONS /identity.v1.AuthService/GetJwks HTTP/1.1\r\nHost: localhost\r\nOrigin: {origin}\r\n\
             Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type,x-grpc-web\r\nConnection: close\r\n\r\n"
        )
    };
    let (_, headers) = http1(server.addr, preflight("https://app.example.com"), b"").await;
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some("https://app.example.com"),
        "{headers:?}"
    );
    let (_, headers) = http1(server.addr, preflight("https://evil.example.net"), b"").await;
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        None,
        "no grant for another origin: {headers:?}"
    );

    // An actual gRPC-Web call: an empty GetJwksRequest in one frame.
    let frame = [0u8, 0, 0, 0, 0];
    let call = format!(
        "POST /identity.v1.AuthService/GetJwks HTTP/1.1\r\nHost: localhost\r\nOrigin: https://app.example.com\r\n\
         Content-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        frame.len()
    );
    let (status, headers) = http1(server.addr, call, &frame).await;
    assert!(status.contains("200"), "{status} {headers:?}");
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/grpc-web+proto")
    );
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert!(
        header(&headers, "access-control-expose-headers")
            .is_some_and(|h| h.contains("grpc-status"))
    );
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
    ] {
        assert_eq!(header(&headers, name), Some(value), "{name}: {headers:?}");
    }
    assert_eq!(
        header(&headers, "strict-transport-security"),
        None,
        "no HSTS over plaintext"
    );
}
