//! Cursors: a watcher that reconnects with the cursor of the last event it
//! received gets what it missed, replayed in order; a cursor this process
//! cannot replay from answers a reset first; anything else is
//! INVALID_ARGUMENT naming resume_after. Never a silent gap.

use super::*;
use crate::on_both_backends;
use crate::support::{assert_invalid, email, register};

const WITHIN: Duration = Duration::from_secs(5);

/// Registers and logs out `n` accounts; their session ids, in order.
async fn revoke_sessions(server: &Server, n: usize) -> Vec<String> {
    let mut auth = client(server).await;
    let mut ids = Vec::new();
    for i in 0..n {
        let tokens = register(&mut auth, &email(&format!("gone{i}"))).await;
        auth.logout(LogoutRequest {
            refresh_token: tokens.refresh_token,
        })
        .await
        .unwrap();
        ids.push(tokens.session_id);
    }
    ids
}

/// The cursor after every event so far, as a watcher that saw them has it.
async fn cursor_now(server: &Server, token: &str) -> String {
    let mut watcher = Watcher::start(server, token, "").await;
    assert!(matches!(
        watcher.expect_change(WITHIN).await,
        Event::Reset(_)
    ));
    watcher.cursor.clone()
}

on_both_backends!(a_watcher_resuming_from_its_last_cursor_gets_what_it_missed_in_order);
async fn a_watcher_resuming_from_its_last_cursor_gets_what_it_missed_in_order(backend: Backend) {
    let (_db, server, token) = watched(backend, ServerOptions::default());
    let mut first = Watcher::start(&server, &token, "").await;
    assert!(matches!(first.expect_change(WITHIN).await, Event::Reset(_)));
    let seen = revoke_sessions(&server, 1).await;
    assert!(
        matches!(first.expect_change(WITHIN).await, Event::SessionRevoked(e) if e.session_id == seen[0])
    );
    let cursor = first.cursor.clone();
    drop(first);

    let missed = revoke_sessions(&server, 3).await;
    let mut again = Watcher::start(&server, &token, &cursor).await;
    for id in &missed {
        match again.expect_change(WITHIN).await {
            Event::SessionRevoked(e) => assert_eq!(&e.session_id, id),
            other => panic!("not the missed revocation {id}: {other:?}"),
        }
    }
    // Then live, carrying on from there.
    let later = revoke_sessions(&server, 1).await;
    match again.expect_change(WITHIN).await {
        Event::SessionRevoked(e) => assert_eq!(e.session_id, later[0]),
        other => panic!("{other:?}"),
    }
    // Resuming from the newest cursor replays nothing.
    let newest = again.cursor.clone();
    let mut caught_up = Watcher::start(&server, &token, &newest).await;
    if let Some((_, extra)) = caught_up.next_change(Duration::from_millis(800)).await {
        panic!("replayed although nothing was missed: {extra:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_older_than_the_backlog_answers_reset() {
    let (_db, server, token) = watched(
        Backend::Sqlite,
        ServerOptions::default().env("IDENTITY_REVOCATION_WATCH_BACKLOG", "16"),
    );
    let old = cursor_now(&server, &token).await;
    revoke_sessions(&server, 20).await;
    // Watchers hear a commit when the poller reads it back, within the
    // staleness bound (1 s): let all 20 reach the ring first.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut watcher = Watcher::start(&server, &token, &old).await;
    assert!(
        matches!(watcher.expect_change(WITHIN).await, Event::Reset(_)),
        "20 revocations cannot be replayed from a backlog of 16"
    );
    // The reset carries the cursor to resume from next time.
    let resumed_from = watcher.cursor.clone();
    let mut next = Watcher::start(&server, &token, &resumed_from).await;
    if let Some((_, extra)) = next.next_change(Duration::from_millis(800)).await {
        panic!("{extra:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_of_an_earlier_run_answers_reset() {
    let db = TestDb::new(Backend::Postgres);
    let server = Server::start_with_options(&db, ServerOptions::default());
    let token = issue_service_token(&db, "revocations:watch");
    revoke_sessions(&server, 1).await;
    let old = cursor_now(&server, &token).await;
    server.terminate();

    let restarted = Server::start_with_options(&db, ServerOptions::default());
    let mut watcher = Watcher::start(&restarted, &token, &old).await;
    assert!(matches!(
        watcher.expect_change(WITHIN).await,
        Event::Reset(_)
    ));
    assert_ne!(watcher.cursor, old);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_this_service_did_not_write_is_invalid_argument_naming_resume_after() {
    let (_db, server, token) = watched(Backend::Sqlite, ServerOptions::default());
    let good = cursor_now(&server, &token).await;
    // The same cursor with one character of its MAC changed, and with its
    // sequence pushed ahead.
    let mut tampered = good.clone().into_bytes();
    // Inside the MAC (the last 16 bytes are its last 22 characters).
    let at = tampered.len() - 10;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for (case, cursor) in [
        ("tampered", tampered.as_str()),
        ("truncated", &good[..good.len() - 4]),
        ("junk", "hello"),
        ("another version", &good.replacen("c1.", "c9.", 1)),
        ("not base64", "c1.!!!!"),
        ("too long", &"c1.".repeat(100)),
        ("a page token", "eyJ2IjoxfQ.AAAA"),
    ] {
        let refused = Watcher::try_start(&server, &token, cursor)
            .await
            .err()
            .unwrap_or_else(|| panic!("{case}: accepted"));
        assert_invalid(&refused, "resume_after", case);
        assert!(
            !refused.message().contains(cursor),
            "{case}: echoes the value"
        );
    }
}
