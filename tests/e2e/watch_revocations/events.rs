//! What a watcher hears: one event per revocation, of the right kind, from
//! this replica and from the others; heartbeats at the configured period,
//! and none while the replica itself is not current.

use super::*;
use crate::on_both_backends;
use crate::revocation::replicas;
use crate::support::proxy::Proxy;
use crate::support::{
    MAX_STALENESS, PASSWORD, Profiles, SLACK, email, execute, login, pg_text, register,
    register_profile, set_roles,
};

const WITHIN: Duration = Duration::from_secs(5);

fn heartbeat_every(ms: u64) -> ServerOptions {
    ServerOptions::default().env("IDENTITY_REVOCATION_HEARTBEAT", format!("{ms}ms"))
}

on_both_backends!(heartbeats_arrive_at_the_configured_period_carrying_the_cursor);
async fn heartbeats_arrive_at_the_configured_period_carrying_the_cursor(backend: Backend) {
    let (_db, server, token) = watched(backend, heartbeat_every(100));
    let mut watcher = Watcher::start(&server, &token, "").await;
    let Some((_, Ok(first))) = watcher.next_within(WITHIN).await else {
        panic!("no first event");
    };
    assert!(matches!(first.event, Some(Event::Reset(_))), "{first:?}");
    assert!(!first.cursor.is_empty());
    let mut beats = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        match watcher.next_within(Duration::from_secs(1)).await {
            Some((at, Ok(event))) => {
                assert!(
                    matches!(event.event, Some(Event::Heartbeat(_))),
                    "{event:?}"
                );
                assert_eq!(event.cursor, first.cursor, "nothing happened since");
                beats.push(at);
            }
            other => panic!("heartbeats stopped: {other:?}"),
        }
    }
    let gaps: Vec<Duration> = beats.windows(2).map(|w| w[1] - w[0]).collect();
    let longest = gaps.iter().max().copied().unwrap_or_default();
    eprintln!(
        "{backend:?}: {} heartbeats in 2 s, longest gap {longest:?}",
        beats.len()
    );
    assert!(
        (14..=26).contains(&beats.len()),
        "{} heartbeats",
        beats.len()
    );
    assert!(longest < Duration::from_millis(400), "{longest:?}");
}

on_both_backends!(every_kind_of_revocation_reaches_the_watcher_as_its_event);
async fn every_kind_of_revocation_reaches_the_watcher_as_its_event(backend: Backend) {
    let root_email = email("root");
    let (_db, server, token) = watched(
        backend,
        ServerOptions::default().env("IDENTITY_BOOTSTRAP_ADMINS", &root_email),
    );
    let mut watcher = Watcher::start(&server, &token, "").await;
    assert!(matches!(
        watcher.expect_change(WITHIN).await,
        Event::Reset(_)
    ));
    let mut auth = client(&server).await;
    let mut profiles = Profiles::new(server.channel().await);
    let root = register(&mut auth, &root_email).await;
    let ann = register_profile(&mut auth, &email("ann")).await;
    let (ann_profile, ann_first) = (ann.profile.unwrap(), ann.tokens.unwrap());
    let ann_email = ann_profile.email.clone();

    // Logout (by bearer).
    auth.logout(bearer(&ann_first.access_token, LogoutRequest::default()))
        .await
        .unwrap();
    match watcher.expect_change(WITHIN).await {
        Event::SessionRevoked(e) => {
            assert_eq!(e.session_id, ann_first.session_id, "Logout");
            let expire = e.expire_time.expect("an expire_time").seconds;
            let now = chrono::Utc::now().timestamp();
            // 30 min access tokens, 30 s leeway.
            assert!(
                (now + 1800..=now + 1840).contains(&expire),
                "{expire} vs {now}"
            );
        }
        other => panic!("Logout: {other:?}"),
    }

    // RevokeSession of one's own other session.
    let second = login(&mut auth, &ann_email).await;
    let third = login(&mut auth, &ann_email).await;
    auth.revoke_session(bearer(
        &third.access_token,
        RevokeSessionRequest {
            session_id: second.session_id.clone(),
        },
    ))
    .await
    .unwrap();
    match watcher.expect_change(WITHIN).await {
        Event::SessionRevoked(e) => assert_eq!(e.session_id, second.session_id, "RevokeSession"),
        other => panic!("RevokeSession: {other:?}"),
    }

    // RevokeAllSessions keeping the caller's (with another one to end: a
    // revocation that ends nothing is announced by nobody).
    login(&mut auth, &ann_email).await;
    auth.revoke_all_sessions(bearer(
        &third.access_token,
        RevokeAllSessionsRequest {
            keep_current: true,
            ..Default::default()
        },
    ))
    .await
    .unwrap();
    match watcher.expect_change(WITHIN).await {
        Event::ProfileSessionsRevoked(e) => {
            assert_eq!(e.profile_id, ann_profile.id, "RevokeAllSessions");
            assert_eq!(e.except_session_id, third.session_id, "keep_current");
            assert!(e.revoke_time.is_some() && e.expire_time.is_some());
        }
        other => panic!("RevokeAllSessions: {other:?}"),
    }

    // ChangePassword keeps the caller's session.
    login(&mut auth, &ann_email).await;
    auth.change_password(bearer(
        &third.access_token,
        ChangePasswordRequest {
            current_password: PASSWORD.into(),
            new_password: "a whole new battery staple".into(),
        },
    ))
    .await
    .unwrap();
    let mut saw_revocation = false;
    // A password change may also say the profile changed; what matters is
    // the revocation of every other session, keeping the caller's.
    while !saw_revocation {
        match watcher.expect_change(WITHIN).await {
            Event::ProfileSessionsRevoked(e) => {
                assert_eq!(e.profile_id, ann_profile.id, "ChangePassword");
                assert_eq!(e.except_session_id, third.session_id, "ChangePassword");
                saw_revocation = true;
            }
            Event::ProfileChanged(e) => assert_eq!(e.profile_id, ann_profile.id),
            other => panic!("ChangePassword: {other:?}"),
        }
    }

    // A role taken away.
    set_roles(
        &mut profiles,
        &root.access_token,
        &ann_profile.id,
        &["editor"],
    )
    .await;
    match watcher.expect_change(WITHIN).await {
        Event::ProfileChanged(e) => assert_eq!(e.profile_id, ann_profile.id, "role given"),
        other => panic!("role given: {other:?}"),
    }
    set_roles(&mut profiles, &root.access_token, &ann_profile.id, &[]).await;
    match watcher.expect_change(WITHIN).await {
        Event::ProfileChanged(e) => assert_eq!(e.profile_id, ann_profile.id, "role removed"),
        other => panic!("role removed: {other:?}"),
    }

    // The profile deleted: every session revoked, none kept, and the
    // profile gone.
    profiles
        .delete_profile(bearer(
            &root.access_token,
            DeleteProfileRequest {
                id: ann_profile.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let (mut revoked, mut changed) = (false, false);
    while !(revoked && changed) {
        match watcher.expect_change(WITHIN).await {
            Event::ProfileSessionsRevoked(e) => {
                assert_eq!(e.profile_id, ann_profile.id, "DeleteProfile");
                assert_eq!(e.except_session_id, "", "DeleteProfile keeps none");
                revoked = true;
            }
            Event::ProfileChanged(e) => {
                assert_eq!(e.profile_id, ann_profile.id, "DeleteProfile");
                changed = true;
            }
            other => panic!("DeleteProfile: {other:?}"),
        }
    }
    // Nothing else, in particular no second copy of any of the above.
    if let Some((_, extra)) = watcher.next_change(Duration::from_millis(1500)).await {
        panic!("an event nobody caused: {extra:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_revoked_on_another_replica_reaches_the_watcher_within_the_bound() {
    let db = TestDb::new(Backend::Postgres);
    let (a, b) = replicas(&db, || {
        ServerOptions::default()
            .env("IDENTITY_REVOCATION_MAX_STALENESS", "1s")
            // Only the announcements may carry it.
            .env("IDENTITY_REVOCATION_RECONCILE_INTERVAL", "1h")
    });
    let token = issue_service_token(&db, "revocations:watch");
    let mut watcher = Watcher::start(&a, &token, "").await;
    assert!(matches!(
        watcher.expect_change(WITHIN).await,
        Event::Reset(_)
    ));
    let mut on_b = b.auth().await;
    let mut took = Vec::new();
    for round in 0..5 {
        let tokens = register(&mut on_b, &email(&format!("far{round}"))).await;
        let since = Instant::now();
        on_b.logout(LogoutRequest {
            refresh_token: tokens.refresh_token.clone(),
        })
        .await
        .unwrap();
        match watcher.next_change(MAX_STALENESS + SLACK).await {
            Some((at, Event::SessionRevoked(e))) => {
                assert_eq!(e.session_id, tokens.session_id);
                took.push(at - since);
            }
            other => panic!("round {round}: {other:?}"),
        }
    }
    eprintln!("replica B's revocations reached A's watcher after {took:?}");
}

/// The listening session of the test's database.
fn listening_backend(db: &TestDb) -> String {
    pg_text(
        db,
        "SELECT pid FROM pg_stat_activity \
         WHERE datname = current_database() AND query = 'LISTEN identity_revocations'",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_stop_while_the_listener_is_down_and_a_reset_precedes_their_return() {
    let db = TestDb::new(Backend::Postgres);
    // Only the listener goes through the proxy, so it alone can be kept
    // from reconnecting.
    let proxy = Proxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let server = Server::start_with_options(
        &db,
        heartbeat_every(100)
            .env("IDENTITY_REVOCATION_MAX_STALENESS", "1s")
            .env("IDENTITY_REVOCATION_LISTEN_URL", db.url_via(proxy.addr)),
    );
    let token = issue_service_token(&db, "revocations:watch");
    let mut watcher = Watcher::start(&server, &token, "").await;
    assert!(matches!(
        watcher.expect_change(WITHIN).await,
        Event::Reset(_)
    ));
    // Heartbeats, once the listener has heard itself (a listener that
    // comes up after the watcher subscribed says so with another reset).
    loop {
        match watcher.next_within(Duration::from_secs(10)).await {
            Some((
                _,
                Ok(RevocationEvent {
                    event: Some(Event::Heartbeat(_)),
                    ..
                }),
            )) => break,
            Some((
                _,
                Ok(RevocationEvent {
                    event: Some(Event::Reset(_)),
                    ..
                }),
            )) => {}
            other => panic!("no heartbeat while the listener hears: {other:?}"),
        }
    }

    let killed = listening_backend(&db);
    assert_eq!(killed.lines().count(), 1, "{killed:?}");
    proxy.refuse_new();
    execute(&db, &format!("SELECT pg_terminate_backend({killed})"));
    // Within the bound the heartbeats stop, and stay stopped.
    let cut = Instant::now();
    let mut last_beat = cut;
    loop {
        match watcher.next_within(Duration::from_secs(3)).await {
            Some((
                at,
                Ok(RevocationEvent {
                    event: Some(Event::Heartbeat(_)),
                    ..
                }),
            )) => {
                last_beat = at;
                assert!(
                    at - cut < MAX_STALENESS + SLACK,
                    "a heartbeat {:?} after the listener was killed",
                    at - cut
                );
            }
            Some(other) => panic!("while the listener is down: {other:?}"),
            None => break,
        }
    }
    eprintln!(
        "last heartbeat {:?} after the listener was killed",
        last_beat - cut
    );

    // Back: a reset (announcements were lost meanwhile), then heartbeats.
    proxy.restore();
    match watcher.next_within(Duration::from_secs(20)).await {
        Some((
            _,
            Ok(RevocationEvent {
                event: Some(Event::Reset(_)),
                ..
            }),
        )) => {}
        other => panic!("not a reset first after the outage: {other:?}"),
    }
    match watcher.next_within(Duration::from_secs(10)).await {
        Some((
            _,
            Ok(RevocationEvent {
                event: Some(Event::Heartbeat(_)),
                ..
            }),
        )) => {}
        other => panic!("heartbeats did not come back: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_outlives_the_request_timeout() {
    // IDENTITY_REQUEST_TIMEOUT bounds the answer of a call, not a stream
    // that already answered.
    let (_db, server, token) = watched(
        Backend::Sqlite,
        heartbeat_every(100).env("IDENTITY_REQUEST_TIMEOUT", "1s"),
    );
    let mut watcher = Watcher::start(&server, &token, "").await;
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(2500) {
        match watcher.next_within(Duration::from_secs(1)).await {
            Some((_, Ok(_))) => {}
            other => panic!("after {:?}: {other:?}", started.elapsed()),
        }
    }
}

on_both_backends!(an_announcement_the_replica_does_not_understand_resets_its_watchers);
/// A newer replica (or a newer `identity admin` on the SQLite file) may
/// announce a kind this one cannot read: it may have revoked anything, so
/// watchers must drop what they know, never hear heartbeats over the gap.
async fn an_announcement_the_replica_does_not_understand_resets_its_watchers(backend: Backend) {
    let db = TestDb::new(backend);
    let server = Server::start_with_options(&db, heartbeat_every(100));
    let token = issue_service_token(&db, "revocations:watch");
    let mut watcher = Watcher::start(&server, &token, "").await;
    assert!(matches!(
        watcher.expect_change(WITHIN).await,
        Event::Reset(_)
    ));
    let unknown = "session-v9:0190d5a8-0000-7000-8000-000000000000";
    match backend {
        Backend::Postgres => execute(
            &db,
            &format!("SELECT pg_notify('identity_revocations', '{unknown}')"),
        ),
        Backend::Sqlite => execute(
            &db,
            &format!(
                "INSERT INTO revocation_announcements (payload, announced_at) \
                 VALUES ('{unknown}', {})",
                chrono::Utc::now().timestamp_millis()
            ),
        ),
    };
    assert!(
        matches!(watcher.expect_change(WITHIN).await, Event::Reset(_)),
        "an announcement nobody understood passed without a reset"
    );
}

/// The watcher's own session revoked while the listener is down is never
/// announced to this replica; the reset after the outage must re-read it,
/// or the stream would run until the token expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_revoked_while_the_listener_was_down_is_ended_after_the_reset() {
    let db = TestDb::new(Backend::Postgres);
    let proxy = Proxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let server = Server::start_with_options(
        &db,
        heartbeat_every(100)
            .env("IDENTITY_REVOCATION_MAX_STALENESS", "1s")
            .env("IDENTITY_REVOCATION_LISTEN_URL", db.url_via(proxy.addr)),
    );
    let token = issue_service_token(&db, "revocations:watch");
    let mut watcher = Watcher::start(&server, &token, "").await;
    assert!(matches!(
        watcher.expect_change(WITHIN).await,
        Event::Reset(_)
    ));
    let killed = listening_backend(&db);
    proxy.refuse_new();
    execute(&db, &format!("SELECT pg_terminate_backend({killed})"));
    // Unannounced: nobody listens, and SQL announces nothing anyway.
    execute(
        &db,
        "UPDATE sessions SET revoked_at = now() WHERE revoked_at IS NULL",
    );
    proxy.restore();
    let ended = watcher
        .end_within(Duration::from_secs(20))
        .await
        .expect("the stream of a revoked session still runs after the reset");
    assert_eq!(ended.code(), tonic::Code::Unauthenticated, "{ended:?}");
}
