//! RevokeSession and RevokeAllSessions: another user's sessions are out of
//! reach (and look like missing ones), owners end their own, admins
//! anyone's, at once here and within the bound on another replica.

use super::*;
use crate::on_both_backends;
use crate::support::{
    Backend, MAX_STALENESS, SLACK, active, assert_invalid, assert_same_as_missing, email,
    eventually, random_id, refused_within, scalar,
};
use std::time::{Duration, Instant};
use tonic::Code;

on_both_backends!(
    another_users_session_is_not_found_and_stays_active,
    bad_session_and_profile_ids_are_invalid_naming_the_field,
    owners_end_their_own_sessions_and_admins_anyones_each_audited,
    revoke_all_sessions_keeps_the_callers_own_only_when_asked,
);

/// Alice signed in twice, Bob once, and an admin, on one server.
struct Neighbours {
    db: TestDb,
    server: Server,
    auth: Auth,
    admin: TokenPair,
    alice_email: String,
    alice_profile: UserProfile,
    alice_first: TokenPair,
    alice_second: TokenPair,
    bob: TokenPair,
}

impl Neighbours {
    async fn start(backend: Backend) -> Neighbours {
        let (db, server, mut auth, admin) = with_admin(backend, "console").await;
        let alice_email = email("alice");
        let alice = register_from(&mut auth, &alice_email, "203.0.113.1", "a").await;
        let alice_profile = alice.profile.unwrap();
        let alice_first = alice.tokens.unwrap();
        let alice_second = login_from(&mut auth, &alice_email, "203.0.113.1", "a").await;
        let bob = register_from(&mut auth, &email("bob"), "203.0.113.2", "b")
            .await
            .tokens
            .unwrap();
        Neighbours {
            db,
            server,
            auth,
            admin,
            alice_email,
            alice_profile,
            alice_first,
            alice_second,
            bob,
        }
    }
}

async fn another_users_session_is_not_found_and_stays_active(backend: Backend) {
    let Neighbours {
        db,
        server: _server,
        mut auth,
        alice_profile,
        alice_first,
        alice_second,
        bob,
        ..
    } = Neighbours::start(backend).await;

    // Bob tries Alice's session id: the answer is that of an unknown id.
    let hidden = revoke(&mut auth, &bob.access_token, &alice_first.session_id)
        .await
        .unwrap_err();
    let missing = revoke(&mut auth, &bob.access_token, &random_id())
        .await
        .unwrap_err();
    assert_same_as_missing(hidden, missing, "RevokeSession");
    // Her profile, listed or revoked by id: unknown as well.
    let hidden = list(
        &mut auth,
        &bob.access_token,
        ListSessionsRequest {
            profile_id: alice_profile.id.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    let missing = list(
        &mut auth,
        &bob.access_token,
        ListSessionsRequest {
            profile_id: random_id(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_same_as_missing(hidden, missing, "ListSessions");
    let hidden = revoke_all(
        &mut auth,
        &bob.access_token,
        RevokeAllSessionsRequest {
            profile_id: alice_profile.id.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    let missing = revoke_all(
        &mut auth,
        &bob.access_token,
        RevokeAllSessionsRequest {
            profile_id: random_id(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_same_as_missing(hidden, missing, "RevokeAllSessions");
    // By her (local, auth_id): a form plain users may not use at all.
    let status = revoke_all(
        &mut auth,
        &bob.access_token,
        RevokeAllSessionsRequest {
            auth_provider: "local".into(),
            auth_id: alice_profile.auth_id.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        active(&mut auth, &alice_first.access_token).await,
        "Alice's session stays"
    );
    assert!(active(&mut auth, &alice_second.access_token).await);
    assert_eq!(
        list_own(&mut auth, &alice_first.access_token).await.len(),
        2
    );
    // Audit rows of refusals are written in the background: wait for them.
    let count_denied = || {
        scalar(
            &db,
            "SELECT count(*) FROM audit_events WHERE event_name = 'identity.access.denied'",
        )
    };
    eventually(Duration::from_secs(5), || async { count_denied() >= 4 }).await;
    let denied = count_denied();
    assert!(denied >= 4, "each refusal is a security event: {denied}");
}

async fn bad_session_and_profile_ids_are_invalid_naming_the_field(backend: Backend) {
    let Neighbours {
        db: _db,
        server: _server,
        mut auth,
        admin,
        alice_profile,
        bob,
        ..
    } = Neighbours::start(backend).await;

    // Bad input names the field; never INTERNAL.
    for (case, id) in [
        ("empty", ""),
        ("not a uuid", "x"),
        ("braced", "{0190a4b0-0000-7000-8000-000000000000}"),
    ] {
        let status = revoke(&mut auth, &bob.access_token, id).await.unwrap_err();
        assert_invalid(&status, "session_id", case);
    }
    let status = revoke_all(
        &mut auth,
        &bob.access_token,
        RevokeAllSessionsRequest {
            profile_id: "not-an-id".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_invalid(&status, "profile_id", "RevokeAllSessions profile_id");
    let status = revoke_all(
        &mut auth,
        &admin.access_token,
        RevokeAllSessionsRequest {
            profile_id: alice_profile.id.clone(),
            auth_provider: "local".into(),
            auth_id: alice_profile.auth_id.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_invalid(&status, "profile_id", "both forms at once");
    let status = revoke_all(
        &mut auth,
        &admin.access_token,
        RevokeAllSessionsRequest {
            auth_provider: "better-auth".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_invalid(&status, "auth_id", "provider without auth_id");
}

async fn owners_end_their_own_sessions_and_admins_anyones_each_audited(backend: Backend) {
    let Neighbours {
        db,
        server: _server,
        mut auth,
        admin,
        alice_email,
        alice_profile,
        alice_first,
        alice_second,
        bob,
    } = Neighbours::start(backend).await;

    // The owner ends one of her own sessions: refused at once, the other lives.
    revoke(
        &mut auth,
        &alice_second.access_token,
        &alice_first.session_id,
    )
    .await
    .expect("an owner revokes her own session");
    assert!(!active(&mut auth, &alice_first.access_token).await);
    assert!(active(&mut auth, &alice_second.access_token).await);
    // Again: quietly fine (already ended).
    revoke(
        &mut auth,
        &alice_second.access_token,
        &alice_first.session_id,
    )
    .await
    .expect("revoking an ended session of one's own is no error");
    let refreshed = auth
        .refresh(RefreshRequest {
            refresh_token: alice_first.refresh_token.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        refreshed.code(),
        Code::Unauthenticated,
        "its refresh token is dead too"
    );

    // The admin ends any session, and all of a profile's.
    let alice_third = login_from(&mut auth, &alice_email, "203.0.113.1", "a").await;
    revoke(&mut auth, &admin.access_token, &alice_second.session_id)
        .await
        .expect("an admin revokes anyone's session");
    assert!(!active(&mut auth, &alice_second.access_token).await);
    assert!(active(&mut auth, &alice_third.access_token).await);
    let missing = revoke(&mut auth, &admin.access_token, &random_id())
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let count = revoke_all(
        &mut auth,
        &admin.access_token,
        RevokeAllSessionsRequest {
            profile_id: alice_profile.id.clone(),
            keep_current: true,
            ..Default::default()
        },
    )
    .await
    .expect("an admin revokes all of a profile's sessions");
    assert_eq!(count, 1, "keep_current keeps the admin's own, not Alice's");
    assert!(!active(&mut auth, &alice_third.access_token).await);
    assert!(active(&mut auth, &admin.access_token).await);
    assert!(
        active(&mut auth, &bob.access_token).await,
        "Bob is untouched"
    );

    // Each revocation is an audit row, written with it.
    let rows = |sql: &str| scalar(&db, sql);
    assert_eq!(
        rows(
            "SELECT count(*) FROM audit_events WHERE event_name = 'identity.session.revoked' \
             AND detail LIKE '%revoked_by_owner%'"
        ),
        1
    );
    assert_eq!(
        rows(
            "SELECT count(*) FROM audit_events WHERE event_name = 'identity.session.revoked' \
             AND detail LIKE '%revoked_by_admin%'"
        ),
        1
    );
    assert_eq!(
        rows(
            "SELECT count(*) FROM audit_events WHERE event_name = 'identity.session.revoked_all' \
             AND detail LIKE '%revoked_by_admin%'"
        ),
        1
    );
}

async fn revoke_all_sessions_keeps_the_callers_own_only_when_asked(backend: Backend) {
    let db = TestDb::new(backend);
    let admin_email = email("admin");
    let server = server(&db, &admin_email, ServerOptions::default());
    let mut auth = server.auth().await;
    let address = email("many");
    let first = register_from(&mut auth, &address, "203.0.113.5", "one")
        .await
        .tokens
        .unwrap();
    let mut others = Vec::new();
    for _ in 0..3 {
        others.push(login_from(&mut auth, &address, "203.0.113.5", "two").await);
    }
    for t in std::iter::once(&first).chain(&others) {
        assert!(active(&mut auth, &t.access_token).await);
    }

    let count = revoke_all(
        &mut auth,
        &first.access_token,
        RevokeAllSessionsRequest {
            keep_current: true,
            ..Default::default()
        },
    )
    .await
    .expect("the owner ends all other sessions");
    assert_eq!(count, 3);
    for t in &others {
        assert!(!active(&mut auth, &t.access_token).await, "ended at once");
    }
    assert!(
        active(&mut auth, &first.access_token).await,
        "the caller's stays"
    );
    assert_eq!(
        ids(&list_own(&mut auth, &first.access_token).await),
        [&first.session_id]
    );

    // `me` and the own id name the same profile; without keep_current the
    // caller's own session goes too.
    let again = login_from(&mut auth, &address, "203.0.113.5", "three").await;
    let count = revoke_all(
        &mut auth,
        &first.access_token,
        RevokeAllSessionsRequest {
            profile_id: "me".into(),
            keep_current: false,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(count, 2);
    assert!(!active(&mut auth, &first.access_token).await);
    assert!(!active(&mut auth, &again.access_token).await);
    let status = auth
        .list_sessions(bearer(&first.access_token, ListSessionsRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::Unauthenticated,
        "signed out everywhere"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_revoked_through_the_api_is_refused_by_another_replica_within_the_bound() {
    let db = TestDb::new(Backend::Postgres);
    let admin_email = email("admin");
    let options = || {
        ServerOptions::default()
            .env("IDENTITY_REVOCATION_MAX_STALENESS", "1s")
            // Only the announcements may carry the revocations here.
            .env("IDENTITY_REVOCATION_RECONCILE_INTERVAL", "1h")
    };
    let a = server(&db, &admin_email, options());
    // Started once A has written the development key, so both share it.
    let b = server(&db, &admin_email, options());
    let (mut on_a, mut on_b) = (a.auth().await, b.auth().await);
    let address = email("replicas");
    let first = register_from(&mut on_a, &address, "203.0.113.5", "one")
        .await
        .tokens
        .unwrap();
    let mut others = Vec::new();
    for _ in 0..3 {
        others.push(login_from(&mut on_a, &address, "203.0.113.5", "two").await);
    }
    // B holds every session live in memory.
    for t in std::iter::once(&first).chain(&others) {
        assert!(active(&mut on_b, &t.access_token).await);
        assert!(active(&mut on_b, &t.access_token).await);
    }

    let mut took = Vec::new();
    revoke(&mut on_a, &first.access_token, &others[0].session_id)
        .await
        .unwrap();
    let since = Instant::now();
    assert!(
        !active(&mut on_a, &others[0].access_token).await,
        "at once on A"
    );
    took.push(
        refused_within(
            &mut on_b,
            &others[0].access_token,
            since,
            MAX_STALENESS + SLACK,
        )
        .await,
    );

    revoke_all(
        &mut on_a,
        &first.access_token,
        RevokeAllSessionsRequest {
            keep_current: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let since = Instant::now();
    for t in &others[1..] {
        took.push(refused_within(&mut on_b, &t.access_token, since, MAX_STALENESS + SLACK).await);
    }
    assert!(
        active(&mut on_b, &first.access_token).await,
        "the kept session lives on B"
    );
    println!("RevokeSession / RevokeAllSessions reached the other replica after {took:?}");
}
