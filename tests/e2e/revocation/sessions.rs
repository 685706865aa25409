//! Revoked sessions: refused at once on the replica that revoked them,
//! within the bound on the others, after a missed announcement, and after
//! a revocation made outside the service.

use super::*;
use crate::on_both_backends;

on_both_backends!(
    cached_tokens_of_revoked_sessions_are_refused_at_once,
    a_sign_in_right_after_a_password_change_is_never_refused,
    validation_is_answered_from_memory_and_reconciliation_heals_outside_revocations,
);

/// Validated twice, so that both the token and its session are in memory.
async fn warm(auth: &mut Auth, tokens: &[&TokenPair]) {
    for t in tokens {
        assert!(active(auth, &t.access_token).await);
        assert!(active(auth, &t.access_token).await);
    }
}

async fn cached_tokens_of_revoked_sessions_are_refused_at_once(backend: Backend) {
    let db = TestDb::new(backend);
    // The re-use below comes right after the refresh: without the retry
    // grace it is theft (the grace: refresh_grace.rs).
    let server = Server::start_with_options(
        &db,
        ServerOptions::default().env("IDENTITY_REFRESH_REUSE_GRACE", "0s"),
    );
    let mut auth = server.auth().await;
    let mut profiles = ProfileServiceClient::new(server.channel().await);
    let address = email("cached");
    let first = register(&mut auth, &address).await;
    let second = login(&mut auth, &address).await;
    let third = login(&mut auth, &address).await;
    let fourth = login(&mut auth, &address).await;
    warm(&mut auth, &[&first, &second, &third, &fourth]).await;
    profiles
        .get_profile(bearer(
            &first.access_token,
            GetProfileRequest { id: "me".into() },
        ))
        .await
        .unwrap();

    // Logout: refused by the very next call, ValidateToken and bearer alike.
    auth.logout(LogoutRequest {
        refresh_token: first.refresh_token.clone(),
    })
    .await
    .unwrap();
    assert!(!active(&mut auth, &first.access_token).await);
    let status = profiles
        .get_profile(bearer(
            &first.access_token,
            GetProfileRequest { id: "me".into() },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    // Refresh-token re-use revokes the whole session, its cached access
    // tokens included (the one before and the one after rotation).
    let rotated = auth
        .refresh(RefreshRequest {
            refresh_token: second.refresh_token.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();
    warm(&mut auth, &[&rotated]).await;
    let reused = auth
        .refresh(RefreshRequest {
            refresh_token: second.refresh_token.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(reused.code(), Code::Unauthenticated);
    assert!(!active(&mut auth, &second.access_token).await);
    assert!(!active(&mut auth, &rotated.access_token).await);

    // Password change: every other session goes, the caller's stays.
    let new_password = format!("{PASSWORD} again and more");
    auth.change_password(bearer(
        &third.access_token,
        ChangePasswordRequest {
            current_password: PASSWORD.into(),
            new_password: new_password.clone(),
        },
    ))
    .await
    .unwrap();
    assert!(!active(&mut auth, &fourth.access_token).await);
    assert!(active(&mut auth, &third.access_token).await);

    // Profile deletion: its last session goes too.
    let fifth = login_with(&mut auth, &address, &new_password).await;
    warm(&mut auth, &[&fifth]).await;
    profiles
        .delete_profile(bearer(
            &third.access_token,
            DeleteProfileRequest {
                id: "me".into(),
                etag: String::new(),
                current_password: new_password.clone(),
            },
        ))
        .await
        .unwrap();
    assert!(!active(&mut auth, &third.access_token).await);
    assert!(!active(&mut auth, &fifth.access_token).await);
}

/// The password change is applied at once and its announcement comes back
/// up to a quarter of `IDENTITY_REVOCATION_MAX_STALENESS` later; the user
/// who signs in with the new password meanwhile must keep the new session
/// (the late copy once refused it until the access token expired).
async fn a_sign_in_right_after_a_password_change_is_never_refused(backend: Backend) {
    let db = TestDb::new(backend);
    let server = Server::start(&db);
    let mut auth = server.auth().await;
    let address = email("signs-in-again");
    let mut current = register(&mut auth, &address).await;
    let mut password = PASSWORD.to_owned();
    for round in 0..3 {
        let new_password = format!("{PASSWORD} round {round}");
        auth.change_password(bearer(
            &current.access_token,
            ChangePasswordRequest {
                current_password: password.clone(),
                new_password: new_password.clone(),
            },
        ))
        .await
        .unwrap();
        password = new_password;
        let again = login_with(&mut auth, &address, &password).await;
        // Past the announcement's return (the poll or NOTIFY) and then some.
        let until = Instant::now() + Duration::from_millis(600);
        while Instant::now() < until {
            assert!(
                active(&mut auth, &again.access_token).await,
                "round {round}: the session signed in after the change was refused"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        current = again;
    }
}

/// Revokes a session behind the service's back (no announcement).
fn revoke_with_sql(db: &TestDb, backend: Backend, session_id: &str) {
    let session = uuid::Uuid::parse_str(session_id).unwrap();
    match backend {
        Backend::Postgres => {
            execute(
                db,
                &format!(
                    "UPDATE sessions SET revoked_at = now(), revoke_reason = 'test' WHERE id = '{session}'"
                ),
            );
        }
        Backend::Sqlite => {
            use diesel::{Connection as _, RunQueryDsl as _};
            let path = db.url.strip_prefix("sqlite://").unwrap();
            let mut conn = diesel::SqliteConnection::establish(path).unwrap();
            let changed = diesel::sql_query(
                "UPDATE sessions SET revoked_at = ?, revoke_reason = 'test' WHERE id = ?",
            )
            .bind::<diesel::sql_types::TimestamptzSqlite, _>(chrono::Utc::now())
            .bind::<diesel::sql_types::Text, _>(session.hyphenated().to_string())
            .execute(&mut conn)
            .unwrap();
            assert_eq!(changed, 1);
        }
    }
}

async fn validation_is_answered_from_memory_and_reconciliation_heals_outside_revocations(
    backend: Backend,
) {
    let db = TestDb::new(backend);
    let address = email("outside");
    // No reconciliation during this phase: what memory answers is visible.
    let server = Server::start_with_options(
        &db,
        ServerOptions::default().env("IDENTITY_REVOCATION_RECONCILE_INTERVAL", "1h"),
    );
    let mut auth = server.auth().await;
    let first = register(&mut auth, &address).await;
    warm(&mut auth, &[&first]).await;
    revoke_with_sql(&db, backend, &first.session_id);
    assert!(
        active(&mut auth, &first.access_token).await,
        "validation reads memory, not the database (a revocation made by SQL \
         waits for the reconciliation)"
    );
    drop(server);

    let server = Server::start_with_options(
        &db,
        ServerOptions::default().env("IDENTITY_REVOCATION_RECONCILE_INTERVAL", "300ms"),
    );
    let mut auth = server.auth().await;
    assert!(!active(&mut auth, &first.access_token).await);
    let second = login(&mut auth, &address).await;
    warm(&mut auth, &[&second]).await;
    let revoked_at = Instant::now();
    revoke_with_sql(&db, backend, &second.session_id);
    let took = refused_within(
        &mut auth,
        &second.access_token,
        revoked_at,
        Duration::from_secs(10),
    )
    .await;
    println!("{backend:?}: a revocation made by SQL was refused after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_revoked_on_one_replica_is_refused_by_the_other_within_the_bound() {
    let db = TestDb::new(Backend::Postgres);
    let (a, b) = replicas(&db, || {
        ServerOptions::default()
            .env("IDENTITY_REVOCATION_MAX_STALENESS", "1s")
            // Only the announcements may carry the revocations here.
            .env("IDENTITY_REVOCATION_RECONCILE_INTERVAL", "1h")
            // The re-use right after the refresh is theft, not a retry.
            .env("IDENTITY_REFRESH_REUSE_GRACE", "0s")
    });
    let (mut on_a, mut on_b) = (a.auth().await, b.auth().await);
    let address = email("replicas");
    let first = register(&mut on_a, &address).await;
    let mut sessions = Vec::new();
    for _ in 0..5 {
        sessions.push(login(&mut on_a, &address).await);
    }
    warm(&mut on_b, &[&first]).await;
    for s in &sessions {
        warm(&mut on_b, &[s]).await;
    }
    let mut took = Vec::new();

    // Logout on A.
    on_a.logout(LogoutRequest {
        refresh_token: first.refresh_token.clone(),
    })
    .await
    .unwrap();
    let since = Instant::now();
    assert!(!active(&mut on_a, &first.access_token).await);
    took.push(refused_within(&mut on_b, &first.access_token, since, MAX_STALENESS + SLACK).await);

    // Refresh-token re-use on A.
    let s = &sessions[0];
    on_a.refresh(RefreshRequest {
        refresh_token: s.refresh_token.clone(),
    })
    .await
    .unwrap();
    on_a.refresh(RefreshRequest {
        refresh_token: s.refresh_token.clone(),
    })
    .await
    .unwrap_err();
    let since = Instant::now();
    took.push(refused_within(&mut on_b, &s.access_token, since, MAX_STALENESS + SLACK).await);

    // Password change on A: B refuses the other sessions, keeps the caller's.
    let new_password = format!("{PASSWORD} and then some");
    on_a.change_password(bearer(
        &sessions[1].access_token,
        ChangePasswordRequest {
            current_password: PASSWORD.into(),
            new_password: new_password.clone(),
        },
    ))
    .await
    .unwrap();
    let since = Instant::now();
    took.push(
        refused_within(
            &mut on_b,
            &sessions[2].access_token,
            since,
            MAX_STALENESS + SLACK,
        )
        .await,
    );
    assert!(active(&mut on_b, &sessions[1].access_token).await);

    // Profile deletion on A.
    ProfileServiceClient::new(a.channel().await)
        .delete_profile(bearer(
            &sessions[1].access_token,
            DeleteProfileRequest {
                id: "me".into(),
                etag: String::new(),
                current_password: new_password.clone(),
            },
        ))
        .await
        .unwrap();
    let since = Instant::now();
    took.push(
        refused_within(
            &mut on_b,
            &sessions[1].access_token,
            since,
            MAX_STALENESS + SLACK,
        )
        .await,
    );
    println!("replica B refused after {took:?} (logout, re-use, password change, deletion)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_missed_announcements_never_validates_a_revoked_session() {
    let db = TestDb::new(Backend::Postgres);
    identity_store::Store::migrate(&db.url.parse().unwrap())
        .await
        .unwrap();
    let proxy = Proxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let options = || {
        ServerOptions::default()
            .env("IDENTITY_MIGRATE_ON_START", "false")
            .env("IDENTITY_REVOCATION_MAX_STALENESS", "1s")
            .env("IDENTITY_REVOCATION_RECONCILE_INTERVAL", "1h")
    };
    let a = Server::start_with_options(&db, options());
    // B reaches the database through the proxy: its listener can be cut.
    let b = Server::start_with(&db.url_via(proxy.addr), db.dir.path(), options());
    let (mut on_a, mut on_b) = (a.auth().await, b.auth().await);
    let address = email("missed");
    let tokens = register(&mut on_a, &address).await;
    warm(&mut on_b, &[&tokens]).await;

    proxy.cut();
    let listening = |server: &Server| {
        server
            .logs()
            .matches("identity.revocation.listener_up")
            .count()
    };
    assert_eq!(listening(&b), 1);
    on_a.logout(LogoutRequest {
        refresh_token: tokens.refresh_token.clone(),
    })
    .await
    .unwrap();
    let revoked_at = Instant::now();
    // B hears nothing of it. It must not call the session live once its
    // memory may be stale; without a database it can only be UNAVAILABLE.
    while revoked_at.elapsed() < MAX_STALENESS * 2 {
        let sent = Instant::now();
        match on_b
            .validate_token(ValidateTokenRequest {
                access_token: tokens.access_token.clone(),
            })
            .await
        {
            Ok(r) => assert!(
                !r.get_ref().active || sent < revoked_at + MAX_STALENESS,
                "B validated a revoked session {:?} after the revocation",
                sent - revoked_at
            ),
            Err(status) => assert_eq!(status.code(), Code::Unavailable, "{status:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Back: the listener reconnects and trusts memory again, but the
    // announcement it missed is gone. Asked nothing meanwhile (a database
    // read would mask the case), B must still refuse the session.
    proxy.restore();
    assert!(
        crate::support::eventually(Duration::from_secs(20), || async { listening(&b) == 2 }).await,
        "B's revocation listener did not come back"
    );
    assert!(!active(&mut on_b, &tokens.access_token).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_of_other_replicas_do_not_make_a_replica_forget_its_live_sessions() {
    let db = TestDb::new(Backend::Postgres);
    let (a, _b) = replicas(&db, || {
        ServerOptions::default()
            .env("IDENTITY_REVOCATION_MAX_STALENESS", "1s")
            // What A answers below comes from memory or from the database,
            // never from a reconciliation.
            .env("IDENTITY_REVOCATION_RECONCILE_INTERVAL", "1h")
    });
    let mut on_a = a.auth().await;
    let tokens = register(&mut on_a, &email("heartbeats")).await;
    warm(&mut on_a, &[&tokens]).await;
    // Revoked behind the service's back: a database read refuses it, an
    // answer from memory does not. Meanwhile B's heartbeats, and some sent
    // the way another replica sends them, cross the channel.
    revoke_with_sql(&db, Backend::Postgres, &tokens.session_id);
    let since = Instant::now();
    while since.elapsed() < MAX_STALENESS * 2 {
        crate::support::execute(
            &db,
            &format!(
                "SELECT pg_notify('identity_revocations', 'heartbeat:{}')",
                uuid::Uuid::new_v4().simple()
            ),
        );
        assert!(
            active(&mut on_a, &tokens.access_token).await,
            "A forgot its live sessions on another replica's heartbeat \
             (and read the database) {:?} in",
            since.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
