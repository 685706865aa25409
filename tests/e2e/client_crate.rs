//! The identity-client crate against real replicas over real sockets: a
//! verifier in another service refuses revoked sessions and stale roles as
//! fast as identity's own replicas do, fails closed when its replica stops
//! (or asks another), follows a key rotation, and its tower layer guards a
//! tonic server.

use crate::revocation::replicas;
use crate::service_clients::create_client;
use crate::support::proxy::Proxy;
use crate::support::{
    Auth, Backend, MAX_STALENESS, PASSWORD, Profiles, SLACK, Server, ServerOptions, TestDb, bearer,
    email, issue_service_token, login, register, register_profile, set_roles, write_key,
};
use identity::proto::v1::{ChangePasswordRequest, LogoutRequest};
use identity_client::{Fallback, Principal, Verifier, VerifierLayer, VerifyError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::Endpoint;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const STARTUP: Duration = Duration::from_secs(10);

fn endpoint(server: &Server) -> Endpoint {
    Endpoint::from_shared(server.url()).unwrap()
}

/// A verifier of `server`, watching with a `revocations:watch` token of
/// `db`, current before it is returned.
async fn verifier(db: &TestDb, server: &Server, fallback: Option<&Server>) -> Verifier {
    let mut builder = Verifier::builder(endpoint(server))
        .service_token(issue_service_token(db, "revocations:watch"));
    if let Some(remote) = fallback {
        builder = builder
            .fallback(Fallback::Remote)
            .remote_endpoint(endpoint(remote))
            .remote_timeout(Duration::from_secs(2));
    }
    let verifier = builder.build().await.expect("the verifier starts");
    assert!(
        verifier.wait_current(STARTUP).await,
        "no heartbeat from the replica"
    );
    verifier
}

/// Polls `verify` until it refuses; the refusal and how long it took.
async fn refusal_within(
    verifier: &Verifier,
    token: &str,
    since: Instant,
    limit: Duration,
) -> (VerifyError, Duration) {
    loop {
        match verifier.verify(token).await {
            Err(error) => return (error, since.elapsed()),
            Ok(_) => assert!(
                since.elapsed() < limit,
                "still accepted after {:?}",
                since.elapsed()
            ),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_revoked_on_another_replica_is_refused_within_max_staleness() {
    let db = TestDb::new(Backend::Postgres);
    let (a, b) = replicas(&db, ServerOptions::default);
    let verifier = verifier(&db, &a, None).await;
    let mut on_b = b.auth().await;
    let address = email("client");
    let first = register(&mut on_b, &address).await;
    let other = login(&mut on_b, &address).await;
    let principal = verifier
        .verify(&first.access_token)
        .await
        .expect("accepted");
    assert_eq!(principal.session_id, first.session_id);
    verifier
        .verify(&other.access_token)
        .await
        .expect("accepted");

    on_b.logout(LogoutRequest {
        refresh_token: first.refresh_token.clone(),
    })
    .await
    .unwrap();
    let since = Instant::now();
    let (error, took) =
        refusal_within(&verifier, &first.access_token, since, MAX_STALENESS + SLACK).await;
    eprintln!("revoked on B, refused by A's watcher after {took:?}");
    assert!(matches!(error, VerifyError::Revoked), "{error:?}");
    verifier
        .verify(&other.access_token)
        .await
        .expect("the other session stays valid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_replica_makes_the_client_refuse_after_max_staleness_or_ask_another() {
    let db = TestDb::new(Backend::Postgres);
    let (a, b) = replicas(&db, ServerOptions::default);
    let strict = verifier(&db, &a, None).await;
    let lenient = verifier(&db, &a, Some(&b)).await;
    let mut on_b = b.auth().await;
    let tokens = register(&mut on_b, &email("outage")).await;
    strict.verify(&tokens.access_token).await.expect("accepted");
    lenient
        .verify(&tokens.access_token)
        .await
        .expect("accepted");

    drop(a);
    let stopped = Instant::now();
    let (error, took) = refusal_within(
        &strict,
        &tokens.access_token,
        stopped,
        MAX_STALENESS + SLACK,
    )
    .await;
    eprintln!("replica stopped, refused after {took:?}");
    assert!(matches!(error, VerifyError::Stale { .. }), "{error:?}");
    while stopped.elapsed() < MAX_STALENESS * 2 {
        let principal = lenient
            .verify(&tokens.access_token)
            .await
            .expect("the fallback asks the live replica");
        assert_eq!(principal.session_id, tokens.session_id);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The fallback's answers are identity's: a logout counts at once.
    on_b.logout(LogoutRequest {
        refresh_token: tokens.refresh_token.clone(),
    })
    .await
    .unwrap();
    let error = lenient.verify(&tokens.access_token).await.unwrap_err();
    assert!(matches!(error, VerifyError::Inactive), "{error:?}");
}

/// A free port on 127.0.0.1, so that a restarted replica keeps its address.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotation_is_followed_without_refusing_one_valid_token() {
    let db = TestDb::new(Backend::Postgres);
    let (old_key, _) = write_key(db.dir.path(), "old.pem");
    let (new_key, new_kid) = write_key(db.dir.path(), "new.pem");
    // `issue-service-token --dev` signs the watcher's token with the data
    // folder's key: the old one, which every step still accepts.
    std::fs::copy(&old_key, db.dir.path().join("signing-key.pem")).unwrap();
    let (port_a, port_b) = (free_port(), free_port());
    let with_keys = |keys: String, port: u16| {
        Server::start_with_options(
            &db,
            ServerOptions::default()
                .env("IDENTITY_SIGNING_KEY_FILE", keys)
                .env("IDENTITY_LISTEN_ADDR", format!("127.0.0.1:{port}")),
        )
    };
    let a = with_keys(old_key.display().to_string(), port_a);
    let b = with_keys(old_key.display().to_string(), port_b);
    let verifier = verifier(&db, &a, Some(&b)).await;
    let old_token = register(&mut b.auth().await, &email("rotate"))
        .await
        .access_token;
    verifier.verify(&old_token).await.expect("accepted");

    // Verifies the old key's token back to back through the whole rotation.
    let refusals = Arc::new(Mutex::new(Vec::new()));
    let checks = Arc::new(Mutex::new(0usize));
    let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let probe = tokio::spawn({
        let (verifier, refusals, checks, running) = (
            verifier.clone(),
            Arc::clone(&refusals),
            Arc::clone(&checks),
            Arc::clone(&running),
        );
        let token = old_token.clone();
        async move {
            while running.load(std::sync::atomic::Ordering::SeqCst) {
                if let Err(error) = verifier.verify(&token).await {
                    refusals.lock().unwrap().push(format!("{error:?}"));
                }
                *checks.lock().unwrap() += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });

    // Each replica restarts in turn with the new key first (it signs) and
    // the old one still verifying: first the one the verifier asks when
    // its stream is silent, then the one it watches.
    let both = format!("{},{}", new_key.display(), old_key.display());
    assert!(b.terminate().success());
    let b = with_keys(both.clone(), port_b);
    assert!(a.terminate().success());
    let a = with_keys(both, port_a);
    assert!(
        verifier.wait_current(STARTUP).await,
        "the verifier resumes watching the restarted replica"
    );
    for server in [&a, &b] {
        let new_token = register(&mut server.auth().await, &email("rotated"))
            .await
            .access_token;
        assert_eq!(
            jsonwebtoken::decode_header(&new_token)
                .unwrap()
                .kid
                .unwrap(),
            new_kid
        );
        verifier
            .verify(&new_token)
            .await
            .expect("a token of the new key is accepted");
    }

    running.store(false, std::sync::atomic::Ordering::SeqCst);
    probe.await.unwrap();
    let checks = *checks.lock().unwrap();
    assert!(checks > 10, "only {checks} checks");
    assert_eq!(
        *refusals.lock().unwrap(),
        Vec::<String>::new(),
        "the old key's token was refused during the rotation ({checks} checks)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_role_disappears_from_the_principal() {
    let db = TestDb::new(Backend::Postgres);
    let root_email = email("root");
    let server = Server::start_with_options(
        &db,
        ServerOptions::default().env("IDENTITY_BOOTSTRAP_ADMINS", &root_email),
    );
    let verifier = verifier(&db, &server, None).await;
    let mut auth: Auth = server.auth().await;
    let mut profiles = Profiles::new(server.channel().await);
    let root = register(&mut auth, &root_email).await;
    let deputy = register_profile(&mut auth, &email("deputy")).await;
    let deputy_id = deputy.profile.unwrap().id;
    set_roles(&mut profiles, &root.access_token, &deputy_id, &["admin"]).await;
    let token = deputy.tokens.unwrap().access_token;
    let roles = |p: &Principal| p.roles.clone();
    let principal = verifier.verify(&token).await.expect("accepted");
    assert_eq!(principal.profile_id, deputy_id);
    assert_eq!(
        roles(&principal),
        ["admin"],
        "the role granted after the token was issued is reported"
    );

    set_roles(&mut profiles, &root.access_token, &deputy_id, &[]).await;
    let since = Instant::now();
    loop {
        let principal = verifier.verify(&token).await.expect("still a valid token");
        if principal.roles.is_empty() {
            break;
        }
        assert!(
            since.elapsed() < MAX_STALENESS + SLACK,
            "the removed role is still reported after {:?}",
            since.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("role gone from the principal after {:?}", since.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layer_refuses_missing_and_bad_tokens_and_hands_the_principal_on() {
    let db = TestDb::new(Backend::Sqlite);
    let server = Server::start(&db);
    let verifier = verifier(&db, &server, None).await;
    let tokens = register(&mut server.auth().await, &email("layer")).await;

    let seen: Arc<Mutex<Option<Principal>>> = Arc::default();
    let record = {
        let seen = Arc::clone(&seen);
        tonic::service::InterceptorLayer::new(move |request: tonic::Request<()>| {
            *seen.lock().unwrap() = request.extensions().get::<Principal>().cloned();
            Ok(request)
        })
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_, health) = tonic_health::server::health_reporter();
    let guarded = tokio::spawn(
        tonic::transport::Server::builder()
            .layer(
                tower::ServiceBuilder::new()
                    .layer(VerifierLayer::new(verifier))
                    .layer(record),
            )
            .add_service(health)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    let check = |token: Option<&str>| {
        let message = HealthCheckRequest::default();
        match token {
            Some(token) => bearer(token, message),
            None => tonic::Request::new(message),
        }
    };

    for (case, request) in [
        ("no authorization", check(None)),
        ("not a JWT", check(Some("garbage"))),
        (
            "a tampered token",
            check(Some(&format!("{}x", tokens.access_token))),
        ),
    ] {
        let status = client.check(request).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{case}");
        assert!(
            seen.lock().unwrap().is_none(),
            "{case}: reached the service"
        );
    }
    let mut basic = tonic::Request::new(HealthCheckRequest::default());
    basic
        .metadata_mut()
        .insert("authorization", "Basic dXNlcjpwYXNz".parse().unwrap());
    let status = client.check(basic).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "not a bearer");

    client
        .check(check(Some(&tokens.access_token)))
        .await
        .expect("a valid token passes");
    let principal = seen
        .lock()
        .unwrap()
        .clone()
        .expect("the principal reached the service");
    assert_eq!(principal.session_id, tokens.session_id);
    assert_eq!(principal.auth_provider, "local");
    assert_eq!(principal.subject, principal.profile_id);
    guarded.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_client_holding_revocations_watch_opens_the_stream_and_a_wrong_secret_does_not() {
    let db = TestDb::new(Backend::Sqlite);
    let server = Server::start(&db);
    let client = create_client(&db, "revocations:watch");
    let verifier = Verifier::builder(endpoint(&server))
        .service_credentials(&client.id, &client.secret)
        .build()
        .await
        .expect("the verifier starts");
    assert!(
        verifier.wait_current(STARTUP).await,
        "ServiceLogin's token opens the stream"
    );
    let tokens = register(&mut server.auth().await, &email("creds")).await;
    verifier
        .verify(&tokens.access_token)
        .await
        .expect("accepted");

    let impostor = Verifier::builder(endpoint(&server))
        .service_credentials(&client.id, "not the secret")
        .build()
        .await
        .expect("the keys are public");
    assert!(!impostor.wait_current(Duration::from_secs(2)).await);
    let error = impostor.verify(&tokens.access_token).await.unwrap_err();
    assert!(
        matches!(
            error,
            VerifyError::Stale {
                last_heartbeat: None
            }
        ),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_cut_the_client_resumes_from_its_cursor_and_hears_what_it_missed() {
    let db = TestDb::new(Backend::Sqlite);
    let server = Server::start(&db);
    let proxy = Proxy::start(server.addr).await;
    let verifier =
        Verifier::builder(Endpoint::from_shared(format!("http://{}", proxy.addr)).unwrap())
            .service_token(issue_service_token(&db, "revocations:watch"))
            .build()
            .await
            .expect("the verifier starts");
    assert!(verifier.wait_current(STARTUP).await);
    let mut auth = server.auth().await;
    let tokens = register(&mut auth, &email("cut")).await;
    verifier
        .verify(&tokens.access_token)
        .await
        .expect("accepted");

    proxy.cut();
    let cut = Instant::now();
    auth.logout(LogoutRequest {
        refresh_token: tokens.refresh_token.clone(),
    })
    .await
    .unwrap();
    let (error, _) =
        refusal_within(&verifier, &tokens.access_token, cut, MAX_STALENESS + SLACK).await;
    assert!(
        matches!(error, VerifyError::Stale { .. }),
        "cut off, it refuses for want of heartbeats: {error:?}"
    );

    proxy.restore();
    assert!(verifier.wait_current(STARTUP).await, "it reconnects");
    // Replayed after the cursor: the stream's own knowledge, not a reset
    // (which would have asked ValidateToken: Inactive).
    let error = verifier.verify(&tokens.access_token).await.unwrap_err();
    assert!(matches!(error, VerifyError::Revoked), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_ends_every_other_session_for_the_client_and_keeps_the_callers() {
    let db = TestDb::new(Backend::Sqlite);
    let server = Server::start(&db);
    let verifier = verifier(&db, &server, None).await;
    let mut auth = server.auth().await;
    let address = email("password");
    let other = register(&mut auth, &address).await;
    let caller = login(&mut auth, &address).await;
    verifier
        .verify(&other.access_token)
        .await
        .expect("accepted");
    verifier
        .verify(&caller.access_token)
        .await
        .expect("accepted");

    auth.change_password(bearer(
        &caller.access_token,
        ChangePasswordRequest {
            current_password: PASSWORD.into(),
            new_password: format!("{PASSWORD} and then some"),
        },
    ))
    .await
    .unwrap();
    let since = Instant::now();
    let (error, _) =
        refusal_within(&verifier, &other.access_token, since, MAX_STALENESS + SLACK).await;
    assert!(matches!(error, VerifyError::Revoked), "{error:?}");
    let kept = verifier
        .verify(&caller.access_token)
        .await
        .expect("the caller's session is the one kept");
    assert_eq!(kept.session_id, caller.session_id);
}
