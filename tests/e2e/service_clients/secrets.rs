//! Client secrets: a rotated one no longer logs in and its sessions end, a
//! disabled client's sessions end on every replica, and guessing is
//! throttled without locking the client out.

use super::*;
use crate::on_both_backends;

on_both_backends!(a_rotated_secret_no_longer_logs_in_and_its_sessions_end);

/// A secret that leaked is rotated: the leaked one must stop working, and
/// whatever it already obtained must end too.
async fn a_rotated_secret_no_longer_logs_in_and_its_sessions_end(backend: Backend) {
    let db = TestDb::new(backend);
    // The command is another process than the server: only its
    // announcement may tell the server (PostgreSQL's channel, SQLite's
    // table), within the staleness bound; no reconciliation helps here.
    let server = Server::start_with_options(
        &db,
        ServerOptions::default()
            .env("IDENTITY_REVOCATION_MAX_STALENESS", "1s")
            .env("IDENTITY_REVOCATION_RECONCILE_INTERVAL", "1h"),
    );
    let mut auth = server.auth().await;
    let leaked = create_client(&db, "provisioner");
    assert_eq!(
        scalar(
            &db,
            &format!(
                "SELECT count(*) FROM service_clients WHERE secret_hash = '{}'",
                leaked.secret
            )
        ),
        0,
        "the secret is stored only hashed"
    );
    let stolen = service_login(&mut auth, &leaked.id, &leaked.secret)
        .await
        .expect("the client logs in");
    // Twice: the token and its session are now answered from memory.
    assert!(active(&mut auth, &stolen.access_token).await);
    assert!(active(&mut auth, &stolen.access_token).await);

    let (ok, stdout, stderr) = admin_command(&db, &["rotate-service-client", &leaked.id]);
    assert!(ok, "{stderr}");
    let rotated = credentials(&stdout);
    assert_eq!(rotated.id, leaked.id);
    assert_ne!(rotated.secret, leaked.secret);
    let since = Instant::now();

    let status = service_login(&mut auth, &leaked.id, &leaked.secret)
        .await
        .expect_err("the old secret no longer logs in");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let took = refused_within(
        &mut auth,
        &stolen.access_token,
        since,
        MAX_STALENESS + SLACK,
    )
    .await;
    println!("{backend:?}: the rotated client's session was refused after {took:?}");
    let fresh = service_login(&mut auth, &rotated.id, &rotated.secret)
        .await
        .expect("the new secret logs in");
    assert!(active(&mut auth, &fresh.access_token).await);
    assert_eq!(
        scalar(
            &db,
            "SELECT count(*) FROM audit_events WHERE event_name IN \
             ('identity.service_client.created', 'identity.service_client.rotated')"
        ),
        2
    );
}

/// Disabling a client must end its access everywhere at once, not when its
/// tokens happen to expire; and a disabled client must look like any
/// unknown client to whoever still holds its secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_service_client_loses_its_sessions_on_every_replica() {
    let db = TestDb::new(Backend::Postgres);
    let options = || {
        ServerOptions::default()
            .env("IDENTITY_REVOCATION_MAX_STALENESS", "1s")
            // Only the announcement may carry the revocation here.
            .env("IDENTITY_REVOCATION_RECONCILE_INTERVAL", "1h")
    };
    let a = Server::start_with_options(&db, options());
    // Started once A has written the development key, so both share it.
    let b = Server::start_with_options(&db, options());
    let (mut on_a, mut on_b) = (a.auth().await, b.auth().await);
    let client = create_client(&db, "provisioner");
    let tokens = [
        service_login(&mut on_a, &client.id, &client.secret)
            .await
            .unwrap(),
        service_login(&mut on_b, &client.id, &client.secret)
            .await
            .unwrap(),
    ];
    for t in &tokens {
        // Twice: the token and its session are in each replica's memory.
        for auth in [&mut on_a, &mut on_b] {
            assert!(active(auth, &t.access_token).await);
            assert!(active(auth, &t.access_token).await);
        }
    }

    let (ok, stdout, stderr) = admin_command(&db, &["disable-service-client", &client.id]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("2 live session(s) revoked"), "{stdout}");
    let since = Instant::now();
    let mut took = Vec::new();
    for t in &tokens {
        for auth in [&mut on_a, &mut on_b] {
            took.push(refused_within(auth, &t.access_token, since, MAX_STALENESS + SLACK).await);
        }
    }
    println!("refused after {took:?}");

    let disabled = service_login(&mut on_b, &client.id, &client.secret)
        .await
        .unwrap_err();
    let unknown = service_login(
        &mut on_b,
        "svc_0123456789abcdef0123456789abcdef",
        &client.secret,
    )
    .await
    .unwrap_err();
    let wrong = create_client(&db, "provisioner");
    let wrong = service_login(&mut on_b, &wrong.id, &client.secret)
        .await
        .unwrap_err();
    for status in [&disabled, &unknown, &wrong] {
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        assert_eq!(status.message(), disabled.message(), "no enumeration");
    }
    let (ok, _, stderr) = admin_command(&db, &["rotate-service-client", &client.id]);
    assert!(!ok && stderr.contains("disabled"), "{stderr}");
}

/// Secrets are hopeless to guess, but the endpoint must not become a free
/// oracle either: guesses are throttled per client id like Login's per
/// account, with RetryInfo, and the real service from its own address still
/// gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_a_service_secret_is_throttled_with_retry_info() {
    let db = TestDb::new(Backend::Sqlite);
    let server = Server::start_with_options(
        &db,
        ServerOptions::default().env("IDENTITY_TRUSTED_PROXIES", "127.0.0.1/32"),
    );
    let auth = server.auth().await;
    let client = create_client(&db, "provisioner");
    let mut guesses = JoinSet::new();
    for n in 0..20 {
        let (mut auth, id) = (auth.clone(), client.id.clone());
        guesses.spawn(async move {
            auth.service_login(forwarded_for(
                "203.0.113.9",
                ServiceLoginRequest {
                    client_id: id,
                    client_secret: format!("idsec_guess{n}"),
                },
            ))
            .await
            .unwrap_err()
        });
    }
    let (mut evaluated, mut throttled) = (0, 0);
    while let Some(answer) = guesses.join_next().await {
        let status = answer.unwrap();
        match status.code() {
            Code::Unauthenticated => evaluated += 1,
            Code::ResourceExhausted => {
                assert!(
                    status.get_details_retry_info().is_some(),
                    "a throttled answer says when to retry"
                );
                throttled += 1;
            }
            other => panic!("unexpected {other:?}: {}", status.message()),
        }
    }
    assert!(
        evaluated <= 5 && throttled >= 15,
        "{evaluated} of 20 guesses were evaluated; 5 are free"
    );
    let mut auth = auth.clone();
    auth.service_login(forwarded_for(
        "198.51.100.7",
        ServiceLoginRequest {
            client_id: client.id.clone(),
            client_secret: client.secret.clone(),
        },
    ))
    .await
    .expect("the real service, from its own address, is not slowed down");
    assert!(
        scalar(
            &db,
            "SELECT count(*) FROM audit_events WHERE event_name = 'identity.service_login.failed'"
        ) >= evaluated
    );
}

/// Client ids are not secret. Strangers spreading wrong secrets over many
/// addresses (with the rate limits on) must not lock the real service out,
/// as the account-wide pause of Login would: a 256-bit secret needs no
/// account-wide limit, and the sign-up and ban hooks depend on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_guessing_from_many_addresses_cannot_lock_a_service_client_out() {
    let db = TestDb::new(Backend::Sqlite);
    let server = Server::start_with_options(
        &db,
        ServerOptions::default()
            .env("IDENTITY_TRUSTED_PROXIES", "127.0.0.1/32")
            .env("IDENTITY_RATE_LIMIT_ENABLED", "true"),
    );
    let auth = server.auth().await;
    let client = create_client(&db, "provisioner");
    let mut guesses = JoinSet::new();
    for n in 0..120u32 {
        let (mut auth, id) = (auth.clone(), client.id.clone());
        guesses.spawn(async move {
            auth.service_login(forwarded_for(
                &format!("198.51.{}.{}", n / 200, n % 200 + 1),
                ServiceLoginRequest {
                    client_id: id,
                    client_secret: format!("idsec_guess{n}"),
                },
            ))
            .await
            .unwrap_err()
            .code()
        });
        if n % 10 == 9 {
            while guesses.try_join_next().is_some() {}
        }
    }
    while let Some(code) = guesses.join_next().await {
        let code = code.unwrap();
        assert!(
            matches!(code, Code::Unauthenticated | Code::ResourceExhausted),
            "{code:?}"
        );
    }
    let mut auth = auth.clone();
    auth.service_login(forwarded_for(
        "203.0.113.5",
        ServiceLoginRequest {
            client_id: client.id.clone(),
            client_secret: client.secret.clone(),
        },
    ))
    .await
    .expect("the real service, from its own address, still signs in");
}
