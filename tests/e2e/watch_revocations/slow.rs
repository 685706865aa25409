//! Bounded memory: a watcher that does not read is ended once it falls a
//! backlog behind, while the others go on; a thousand watchers cost a
//! bounded amount of memory; and there is a cap on watchers.

use super::*;
use crate::support::{email, register};
use tonic::Code;
use tonic::transport::{Channel, Endpoint};
use tonic_types::StatusExt as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_does_not_read_is_ended_while_another_keeps_receiving() {
    let (_db, server, token) = watched(
        Backend::Sqlite,
        ServerOptions::default()
            .env("IDENTITY_REVOCATION_HEARTBEAT", "10ms")
            .env("IDENTITY_REVOCATION_WATCH_BACKLOG", "16"),
    );
    // A tiny HTTP/2 window, and nobody reading: the server can send it
    // almost nothing.
    let stalled_channel = Endpoint::from_shared(server.url())
        .unwrap()
        .initial_stream_window_size(Some(64))
        .initial_connection_window_size(Some(64))
        .connect()
        .await
        .unwrap();
    let mut stalled = Auth::new(stalled_channel)
        .watch_revocations(bearer(&token, WatchRevocationsRequest::default()))
        .await
        .expect("the stream opens")
        .into_inner();
    let mut reading = Watcher::start(&server, &token, "").await;

    // Two seconds: some 200 heartbeats, far beyond the backlog of 16.
    let started = Instant::now();
    let mut received = 0;
    while started.elapsed() < Duration::from_secs(2) {
        match reading.next_within(Duration::from_secs(1)).await {
            Some((_, Ok(_))) => received += 1,
            other => panic!("the reading watcher stopped receiving: {other:?}"),
        }
    }
    assert!(received > 100, "the reading watcher got {received} in 2 s");

    // Reading at last: a few events that were on their way, then the end.
    let mut delivered = 0;
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(5), stalled.message()).await {
            Ok(Ok(Some(_))) => delivered += 1,
            Ok(Ok(None)) => panic!("ended without a status after {delivered}"),
            Ok(Err(status)) => break status,
            Err(_) => panic!("still streaming after {delivered} events"),
        }
    };
    eprintln!("the stalled watcher got {delivered} events, then {ended:?}");
    assert_eq!(ended.code(), Code::Aborted, "{ended:?}");
    let info = ended.get_details_error_info().expect("an ErrorInfo");
    assert_eq!(info.reason, "WATCHER_TOO_SLOW");
    assert_eq!(info.domain, "identity");
    assert!(
        delivered < 100,
        "{delivered} events buffered for a watcher that did not read"
    );
    // The other one never noticed.
    assert!(matches!(
        reading.next_within(Duration::from_secs(1)).await,
        Some((_, Ok(_)))
    ));
}

/// Opens `n` watches spread over connections of at most 200 streams.
async fn watchers(server: &Server, token: &str, n: usize) -> Vec<Watcher> {
    let mut channels: Vec<Channel> = Vec::new();
    let mut all = Vec::with_capacity(n);
    for i in 0..n {
        if i % 200 == 0 {
            channels.push(server.channel().await);
        }
        let channel = channels.last().unwrap().clone();
        all.push(
            Watcher::try_start_on(channel, Some(token), "")
                .await
                .unwrap_or_else(|s| panic!("watcher {i}: {s:?}")),
        );
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_watchers_cost_bounded_memory_and_the_cap_turns_more_away() {
    const N: usize = 1000;
    // One address and one principal open them all: their own caps are
    // raised to the server's, so that it is the server's cap that is met.
    let (db, server, token) = watched(
        Backend::Sqlite,
        ServerOptions::default()
            .env("IDENTITY_REVOCATION_MAX_WATCHERS", N.to_string())
            .env(
                "IDENTITY_REVOCATION_MAX_WATCHERS_PER_ADDRESS",
                N.to_string(),
            )
            .env(
                "IDENTITY_REVOCATION_MAX_WATCHERS_PER_PRINCIPAL",
                N.to_string(),
            ),
    );
    // Warm: one watcher and one revocation, so that what every process
    // allocates once is in the baseline.
    let mut auth = client(&server).await;
    {
        let mut one = watchers(&server, &token, 1).await;
        one[0].expect_change(Duration::from_secs(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.rss_kib();

    let mut all = watchers(&server, &token, N).await;
    let tokens = register(&mut auth, &email("many")).await;
    auth.logout(LogoutRequest {
        refresh_token: tokens.refresh_token,
    })
    .await
    .unwrap();
    for (i, watcher) in all.iter_mut().enumerate() {
        assert!(matches!(
            watcher.expect_change(Duration::from_secs(10)).await,
            Event::Reset(_)
        ));
        match watcher.expect_change(Duration::from_secs(10)).await {
            Event::SessionRevoked(e) => assert_eq!(e.session_id, tokens.session_id, "{i}"),
            other => panic!("watcher {i}: {other:?}"),
        }
    }
    let after = server.rss_kib();
    let per_watcher = after.saturating_sub(before) as f64 / N as f64;
    eprintln!(
        "RSS with {N} watchers: {before} KiB before, {after} KiB after, {per_watcher:.1} KiB each"
    );
    assert!(per_watcher < 64.0, "{per_watcher:.1} KiB per watcher");

    // Over the server's cap even a client under both of its own caps
    // (another address, another principal) is turned away.
    let refused = Watcher::try_start_on(
        channel_from(&server, "127.0.0.2").await,
        Some(&watch_token_named(&db, "another-verifier")),
        "",
    )
    .await
    .err()
    .expect("over the cap");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.get_details_retry_info().is_some());
    assert!(
        refused
            .message()
            .contains("IDENTITY_REVOCATION_MAX_WATCHERS reached"),
        "{refused:?}"
    );
    // A watcher gone frees its place.
    drop(all.pop());
    let mut freed = false;
    for _ in 0..50 {
        if Watcher::try_start(&server, &token, "").await.is_ok() {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(freed, "a closed watcher's place was not freed");
}

/// A stream whose client sets a tiny HTTP/2 window and never reads:
/// the server can send it almost nothing.
async fn stalled_watch(server: &Server, token: &str) -> tonic::Streaming<RevocationEvent> {
    let channel = Endpoint::from_shared(server.url())
        .unwrap()
        .initial_stream_window_size(Some(64))
        .initial_connection_window_size(Some(64))
        .connect()
        .await
        .unwrap();
    Auth::new(channel)
        .watch_revocations(bearer(token, WatchRevocationsRequest::default()))
        .await
        .expect("the stream opens")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_stops_reading_loses_its_slot() {
    let (_db, server, token) = watched(
        Backend::Sqlite,
        ServerOptions::default()
            .env("IDENTITY_REVOCATION_MAX_WATCHERS", "2")
            .env("IDENTITY_REVOCATION_HEARTBEAT", "10ms")
            .env("IDENTITY_REVOCATION_WATCH_SEND_TIMEOUT", "500ms"),
    );
    // The attacker holds every slot with streams it never reads, on
    // connections it keeps open.
    let mut stalled = vec![
        stalled_watch(&server, &token).await,
        stalled_watch(&server, &token).await,
    ];
    let refused = Watcher::try_start(&server, &token, "")
        .await
        .err()
        .expect("both slots are taken");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");

    // Events pile up for the stalled streams; a verifier asking again
    // must get a slot within a bounded time all the same.
    let started = Instant::now();
    let mut legitimate = loop {
        match Watcher::try_start(&server, &token, "").await {
            Ok(watcher) => break watcher,
            Err(status) if status.code() == Code::ResourceExhausted => {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "no slot after {:?}: stalled watchers keep theirs",
                    started.elapsed()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("{status:?}"),
        }
    };
    eprintln!("a slot was free after {:?}", started.elapsed());
    assert!(matches!(
        legitimate.next_within(Duration::from_secs(2)).await,
        Some((_, Ok(_)))
    ));

    // The stalled streams were ended as too slow: what they finally read
    // is a few events and then that status.
    for stream in &mut stalled {
        let ended = loop {
            match tokio::time::timeout(Duration::from_secs(5), stream.message()).await {
                Ok(Ok(Some(_))) => continue,
                Ok(Ok(None)) => panic!("ended without a status"),
                Ok(Err(status)) => break status,
                Err(_) => panic!("still streaming"),
            }
        };
        assert_eq!(ended.code(), Code::Aborted, "{ended:?}");
        let info = ended.get_details_error_info().expect("an ErrorInfo");
        assert_eq!(info.reason, "WATCHER_TOO_SLOW");
    }
}
