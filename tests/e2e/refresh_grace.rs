//! The refresh retry grace (issue 17, item 2; docs/decisions/0011): a
//! Refresh retried with the token it already spent, within
//! IDENTITY_REFRESH_REUSE_GRACE and before its successor was used, gets the
//! same successor again and keeps the session; any other re-use still
//! revokes the whole session.

use crate::on_both_backends;
use crate::support::{
    Auth, Backend, Server, ServerOptions, TestDb, active, email, eventually, login, refused_start,
    scalar,
};
use identity::proto::v1::{RefreshRequest, TokenPair};
use std::time::Duration;
use tonic::{Code, Status};

on_both_backends!(
    a_retry_within_the_grace_gets_the_same_successor_and_keeps_the_session,
    a_replay_after_the_grace_revokes_the_session,
    a_replay_after_the_successor_was_used_revokes_the_session,
    with_no_grace_a_retry_revokes_the_session_at_once,
    concurrent_refreshes_of_one_token_all_get_the_same_successor,
    a_thief_within_the_grace_gets_the_successor_too_until_the_grace_runs_out,
);

async fn refresh(auth: &mut Auth, token: &str) -> Result<TokenPair, Status> {
    let answer = auth
        .refresh(RefreshRequest {
            refresh_token: token.to_owned(),
        })
        .await?;
    Ok(answer.into_inner().tokens.expect("a token pair"))
}

/// A server whose grace is `grace` (`None`: the default, 10 s).
fn server(db: &TestDb, grace: Option<&str>) -> Server {
    let mut options = ServerOptions::default();
    if let Some(grace) = grace {
        options = options.env("IDENTITY_REFRESH_REUSE_GRACE", grace);
    }
    Server::start_with_options(db, options)
}

/// How often the server logged `event` (its JSON log line names it).
fn logged(server: &Server, event: &str) -> usize {
    server
        .logs()
        .matches(&format!("\"event.name\":\"{event}\""))
        .count()
}

#[track_caller]
fn assert_refused(result: Result<TokenPair, Status>, case: &str) {
    let status = result.map(|_| ()).expect_err(case);
    assert_eq!(status.code(), Code::Unauthenticated, "{case}: {status:?}");
}

async fn a_retry_within_the_grace_gets_the_same_successor_and_keeps_the_session(backend: Backend) {
    let db = TestDb::new(backend);
    let server = server(&db, None);
    let mut auth = server.auth().await;
    let address = email("retry");
    crate::support::register(&mut auth, &address).await;
    let signed_in = login(&mut auth, &address).await;

    let first = refresh(&mut auth, &signed_in.refresh_token).await.unwrap();
    // The answer was lost on the way back; the client tries again.
    let retried = refresh(&mut auth, &signed_in.refresh_token)
        .await
        .expect("a retry within the grace is answered");
    assert_eq!(
        retried.refresh_token, first.refresh_token,
        "the same successor"
    );
    assert_ne!(retried.refresh_token, signed_in.refresh_token);
    assert_eq!(retried.session_id, signed_in.session_id);
    assert_ne!(
        retried.access_token, first.access_token,
        "a fresh access token"
    );
    assert!(active(&mut auth, &retried.access_token).await);
    assert!(
        active(&mut auth, &first.access_token).await,
        "the session stays"
    );
    assert!(active(&mut auth, &signed_in.access_token).await);

    // The successor works, once, like any refresh token.
    let next = refresh(&mut auth, &retried.refresh_token).await.unwrap();
    assert_ne!(next.refresh_token, retried.refresh_token);
    assert_eq!(next.session_id, signed_in.session_id);
    assert!(active(&mut auth, &next.access_token).await);

    assert_eq!(logged(&server, "identity.refresh.retried"), 1);
    assert_eq!(logged(&server, "identity.refresh.reused"), 0);
    let audited = eventually(Duration::from_secs(5), || async {
        scalar(
            &db,
            &format!(
                "SELECT count(*) FROM audit_events WHERE event_name = 'identity.refresh.retried' \
                 AND session_id = '{}'",
                signed_in.session_id
            ),
        ) == 1
    })
    .await;
    assert!(audited, "the retry is in the audit trail");
}

async fn a_replay_after_the_grace_revokes_the_session(backend: Backend) {
    let db = TestDb::new(backend);
    let server = server(&db, Some("1s"));
    let mut auth = server.auth().await;
    let signed_in = crate::support::register(&mut auth, &email("late")).await;

    let rotated = refresh(&mut auth, &signed_in.refresh_token).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_refused(
        refresh(&mut auth, &signed_in.refresh_token).await,
        "replayed after the grace",
    );
    assert!(!active(&mut auth, &rotated.access_token).await);
    assert!(!active(&mut auth, &signed_in.access_token).await);
    assert_refused(
        refresh(&mut auth, &rotated.refresh_token).await,
        "the successor of a revoked session",
    );
    assert_eq!(logged(&server, "identity.refresh.reused"), 1);
    assert_eq!(logged(&server, "identity.refresh.retried"), 0);
}

async fn a_replay_after_the_successor_was_used_revokes_the_session(backend: Backend) {
    let db = TestDb::new(backend);
    let server = server(&db, None);
    let mut auth = server.auth().await;
    let signed_in = crate::support::register(&mut auth, &email("moved-on")).await;

    let rotated = refresh(&mut auth, &signed_in.refresh_token).await.unwrap();
    let next = refresh(&mut auth, &rotated.refresh_token).await.unwrap();
    // Well within the grace, but the client already moved on: whoever sends
    // the first token now is not the client retrying.
    assert_refused(
        refresh(&mut auth, &signed_in.refresh_token).await,
        "replayed after the successor was used",
    );
    assert!(!active(&mut auth, &next.access_token).await);
    assert_refused(
        refresh(&mut auth, &next.refresh_token).await,
        "the live token of a revoked session",
    );
    assert_eq!(logged(&server, "identity.refresh.reused"), 1);
    assert_eq!(logged(&server, "identity.refresh.retried"), 0);
}

async fn with_no_grace_a_retry_revokes_the_session_at_once(backend: Backend) {
    let db = TestDb::new(backend);
    let server = server(&db, Some("0s"));
    let mut auth = server.auth().await;
    let signed_in = crate::support::register(&mut auth, &email("no-grace")).await;

    let rotated = refresh(&mut auth, &signed_in.refresh_token).await.unwrap();
    assert_refused(
        refresh(&mut auth, &signed_in.refresh_token).await,
        "an immediate retry without a grace",
    );
    assert!(!active(&mut auth, &rotated.access_token).await);
    assert_refused(
        refresh(&mut auth, &rotated.refresh_token).await,
        "the successor of a revoked session",
    );
    assert_eq!(logged(&server, "identity.refresh.retried"), 0);
}

async fn concurrent_refreshes_of_one_token_all_get_the_same_successor(backend: Backend) {
    let db = TestDb::new(backend);
    let server = server(&db, None);
    let mut auth = server.auth().await;
    let signed_in = crate::support::register(&mut auth, &email("racing")).await;

    // A client that fires its Refresh again before the first answer came
    // back, from several connections at once.
    let mut racers = Vec::new();
    for _ in 0..6 {
        let mut client = server.auth().await;
        let token = signed_in.refresh_token.clone();
        racers.push(tokio::spawn(
            async move { refresh(&mut client, &token).await },
        ));
    }
    let mut successors = Vec::new();
    for racer in racers {
        let answer = racer.await.unwrap().expect("every racer is answered");
        assert_eq!(answer.session_id, signed_in.session_id);
        assert!(active(&mut auth, &answer.access_token).await);
        successors.push(answer.refresh_token);
    }
    successors.sort();
    successors.dedup();
    assert_eq!(successors.len(), 1, "one successor: {successors:?}");
    assert_ne!(successors[0], signed_in.refresh_token);

    let next = refresh(&mut auth, &successors[0]).await.unwrap();
    assert!(active(&mut auth, &next.access_token).await);
    assert_eq!(logged(&server, "identity.refresh.retried"), 5);
    assert_eq!(logged(&server, "identity.refresh.reused"), 0);
}

/// The price of the grace (docs/decisions/0011): within it, a thief
/// replaying the spent token is indistinguishable from the client retrying
/// and gets the same successor. Theft shows once the grace has passed.
async fn a_thief_within_the_grace_gets_the_successor_too_until_the_grace_runs_out(
    backend: Backend,
) {
    let db = TestDb::new(backend);
    let server = server(&db, Some("1s"));
    let mut client = server.auth().await;
    let mut thief = server.auth().await;
    let signed_in = crate::support::register(&mut client, &email("robbed")).await;

    let rotated = refresh(&mut client, &signed_in.refresh_token)
        .await
        .unwrap();
    let stolen = refresh(&mut thief, &signed_in.refresh_token)
        .await
        .expect("within the grace the replay is taken for a retry");
    assert_eq!(stolen.refresh_token, rotated.refresh_token);
    assert!(active(&mut thief, &stolen.access_token).await);

    // The client refreshes on; the thief, later than the grace, tries the
    // successor it got: that is re-use, and the session goes for both.
    let next = refresh(&mut client, &rotated.refresh_token).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_refused(
        refresh(&mut thief, &stolen.refresh_token).await,
        "the thief's successor after the grace",
    );
    assert!(!active(&mut client, &next.access_token).await);
    assert!(!active(&mut thief, &stolen.access_token).await);
    assert_refused(
        refresh(&mut client, &next.refresh_token).await,
        "the client's token of the revoked session",
    );
    assert_eq!(logged(&server, "identity.refresh.retried"), 1);
    assert_eq!(logged(&server, "identity.refresh.reused"), 1);
}

/// Replicas share the signing key, so each derives the same successor: a
/// retry that a load balancer sends elsewhere is answered alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_that_reaches_another_replica_gets_the_same_successor() {
    let db = TestDb::new(Backend::Postgres);
    let (a, b) = crate::revocation::replicas(&db, ServerOptions::default);
    let (mut on_a, mut on_b) = (a.auth().await, b.auth().await);
    let signed_in = crate::support::register(&mut on_a, &email("elsewhere")).await;

    let first = refresh(&mut on_a, &signed_in.refresh_token).await.unwrap();
    let retried = refresh(&mut on_b, &signed_in.refresh_token)
        .await
        .expect("the other replica takes it for a retry");
    assert_eq!(retried.refresh_token, first.refresh_token);
    assert!(active(&mut on_b, &retried.access_token).await);
    assert!(active(&mut on_a, &first.access_token).await);
    assert_eq!(logged(&b, "identity.refresh.retried"), 1);
    assert_eq!(
        logged(&a, "identity.refresh.reused") + logged(&b, "identity.refresh.reused"),
        0
    );
}

#[test]
fn a_grace_beyond_a_minute_is_refused_at_start() {
    for grace in ["61s", "2m", "1h"] {
        let (code, output) = refused_start(&[("IDENTITY_REFRESH_REUSE_GRACE", grace)]);
        assert_ne!(code, Some(0), "{grace}: {output}");
        assert!(code.is_some(), "{grace}: the server started: {output}");
        assert!(
            output.contains("IDENTITY_REFRESH_REUSE_GRACE") && output.contains("at most 1m"),
            "{grace}: {output}"
        );
    }
}

/// libfaketime, which `scripts/ensure-tools.sh` installs: a replica run
/// under it reads a wall clock two minutes behind the others.
fn clock_behind(options: ServerOptions) -> ServerOptions {
    let library = std::fs::read_dir("/usr/lib")
        .expect("/usr/lib")
        .filter_map(Result::ok)
        .map(|dir| dir.path().join("faketime/libfaketime.so.1"))
        .find(|path| path.exists())
        .expect("libfaketime (Debian package faketime; make test installs it)");
    options
        .env("LD_PRELOAD", library.display().to_string())
        .env("FAKETIME", "-120s")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
}

/// Replicas' clocks drift; the grace must not drift with them. A replica
/// whose clock runs behind must not take a replay long after the grace for
/// a retry, and one whose clock runs ahead must not take a client's prompt
/// retry for theft: the time a token was spent and the time it comes back
/// are both read from the one database clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_with_skewed_clocks_keep_the_grace_to_its_length() {
    let db = TestDb::new(Backend::Postgres);
    let grace = || ServerOptions::default().env("IDENTITY_REFRESH_REUSE_GRACE", "2s");
    let a = Server::start_with_options(&db, grace());
    // Started once A has written the development key, so both share it.
    let behind = Server::start_with_options(&db, clock_behind(grace()));
    let (mut on_a, mut on_behind) = (a.auth().await, behind.auth().await);

    // Spent on A; replayed on the slow replica well after the grace.
    let stolen = crate::support::register(&mut on_a, &email("skew-replay")).await;
    let rotated = refresh(&mut on_a, &stolen.refresh_token).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_refused(
        refresh(&mut on_behind, &stolen.refresh_token).await,
        "a replay after the grace, on a replica whose clock is behind",
    );
    assert_refused(
        refresh(&mut on_a, &rotated.refresh_token).await,
        "the re-use ended the whole session",
    );

    // Spent on the slow replica; the client's prompt retry reaches A.
    let honest = crate::support::register(&mut on_a, &email("skew-retry")).await;
    let first = refresh(&mut on_behind, &honest.refresh_token)
        .await
        .unwrap();
    let retried = refresh(&mut on_a, &honest.refresh_token)
        .await
        .expect("a prompt retry on a replica whose clock is ahead");
    assert_eq!(retried.refresh_token, first.refresh_token);
    assert!(active(&mut on_a, &retried.access_token).await);
}

/// A Logout (here: its UPDATE, held open in another connection) takes the
/// session row while a Refresh of the same session is under way; the
/// Refresh reads the session before the revocation commits. Answered with
/// fresh tokens, the caller would see its session live on after it was
/// ended; the Refresh must end as the session did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_racing_a_revocation_that_commits_first_gets_no_tokens() {
    let db = TestDb::new(Backend::Postgres);
    let server = server(&db, None);
    let mut auth = server.auth().await;
    let signed_in = crate::support::register(&mut auth, &email("racing")).await;
    let revoker = std::process::Command::new("psql")
        .args([db.url.as_str(), "-v", "ON_ERROR_STOP=1", "-qc"])
        .arg(format!(
            "BEGIN; UPDATE sessions SET revoked_at = now(), revoke_reason = 'logout' \
             WHERE id = '{}'; SELECT pg_sleep(2); COMMIT;",
            signed_in.session_id
        ))
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("psql");
    // The revoker holds the row lock by now; the Refresh reads the session
    // as live, spends its token, then waits for the lock.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let answer = refresh(&mut auth, &signed_in.refresh_token).await;
    let revoked = tokio::task::spawn_blocking(move || revoker.wait_with_output())
        .await
        .unwrap()
        .expect("psql ran");
    assert!(revoked.status.success(), "{revoked:?}");
    assert_refused(answer, "a Refresh that finished after the revocation");
}
