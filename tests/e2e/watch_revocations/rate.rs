//! Opening WatchRevocations is rate-limited per client address
//! (IDENTITY_RATE_LIMIT_WATCH, decision 0022). The watcher caps bound the
//! streams held at once, not how fast they are opened: the attacker session
//! opened and closed 179 streams a second from one address, each costing
//! about four database transactions, most of them the authorization's.
//! The quota answers before the authorization, so an open it refuses reads
//! nothing; another address keeps its own quota; and identity-client, once
//! refused, waits as long as RetryInfo says rather than on its own clock.

use super::*;
use crate::support::{email, register};
use identity_client::Verifier;
use tonic::Code;
use tonic_types::StatusExt as _;

const QUOTA: &str = "IDENTITY_RATE_LIMIT_WATCH";
const WITHIN: Duration = Duration::from_secs(5);

/// A server with rate limits on (the tests' servers run without them) and
/// `quota` on WatchRevocations opens, and a watcher's service token.
fn limited(quota: &str) -> (TestDb, Server, String) {
    watched(
        Backend::Sqlite,
        ServerOptions::default()
            .env("IDENTITY_RATE_LIMIT_ENABLED", "true")
            .env(QUOTA, quota),
    )
}

/// RESOURCE_EXHAUSTED, RATE_LIMITED in domain identity, and a RetryInfo
/// of at most `at_most`.
fn assert_rate_limited(status: &tonic::Status, at_most: Duration) {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let info = status.get_details_error_info().expect("an ErrorInfo");
    assert_eq!(info.reason, "RATE_LIMITED", "{status:?}");
    assert_eq!(info.domain, "identity");
    let delay = status
        .get_details_retry_info()
        .and_then(|r| r.retry_delay)
        .expect("RetryInfo with a delay");
    assert!(
        delay > Duration::ZERO && delay <= at_most,
        "{delay:?} {status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_over_an_address_quota_is_refused_before_authorization_and_another_address_opens() {
    const ALLOWED: usize = 5;
    const BURST: usize = 12;
    // 5 at once, then one every 12 minutes: none comes back during the test.
    let (_db, server, token) = limited(&format!("{ALLOWED}/1h"));
    let at_most = Duration::from_secs(12 * 60);

    // The attacker: one address, one watch credential, every stream opened
    // at once and closed as soon as it was answered. Fewer than the
    // per-address watcher cap (16): only the rate limit can refuse them.
    let attacker = channel_from(&server, "127.0.0.1").await;
    let opens = (0..BURST).map(|_| {
        let (channel, token) = (attacker.clone(), token.clone());
        async move {
            Watcher::try_start_on(channel, Some(&token), "")
                .await
                .map(drop)
        }
    });
    let answers = futures::future::join_all(opens).await;
    let opened = answers.iter().filter(|a| a.is_ok()).count();
    assert_eq!(opened, ALLOWED, "{answers:?}");
    for refused in answers.iter().filter_map(|a| a.as_ref().err()) {
        assert_rate_limited(refused, at_most);
    }

    // Answered before the authorization: a person's token (refused with
    // PERMISSION_DENIED once its profile is read) and no token at all
    // (UNAUTHENTICATED) get the rate limit's answer, so a refused open
    // reads nothing.
    let person = register(&mut server.auth().await, &email("watch-rate"))
        .await
        .access_token;
    for credential in [Some(person.as_str()), None] {
        let refused = Watcher::try_start_on(attacker.clone(), credential, "")
            .await
            .err()
            .expect("an open over the quota is refused");
        assert_rate_limited(&refused, at_most);
    }
    assert!(
        logged_refusal(&server, "watch", "address").await,
        "{}",
        server.logs()
    );

    // A verifier elsewhere, with the very same credential, still watches.
    let elsewhere = channel_from(&server, "127.0.0.2").await;
    let mut verifier = Watcher::try_start_on(elsewhere, Some(&token), "")
        .await
        .unwrap_or_else(|s| panic!("another address has a quota of its own: {s:?}"));
    assert!(matches!(
        verifier.expect_change(WITHIN).await,
        Event::Reset(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_client_refused_by_the_quota_waits_as_retry_info_says_then_watches() {
    // One open, then one every 3 s.
    let (_db, server, token) = limited("1/3s");
    // This address's open of the period, taken by another watcher: the
    // verifier's first open (from the same address) is refused with a
    // RetryInfo of about 3 s.
    let _first = Watcher::start(&server, &token, "").await;

    let started = Instant::now();
    let verifier =
        Verifier::builder(tonic::transport::Endpoint::from_shared(server.url()).unwrap())
            .service_token(token.clone())
            .build()
            .await
            .expect("the verifier starts");
    assert!(
        verifier.wait_current(Duration::from_secs(15)).await,
        "the verifier never opened its stream"
    );
    let took = started.elapsed();
    // Retrying on its own back-off (50 ms, doubling) would have been
    // refused some six times before the quota let it in.
    let refused = refusals_logged(&server, "watch", "address");
    assert!(
        (1..=2).contains(&refused),
        "{refused} refused opens before the verifier watched after {took:?}"
    );
    assert!(took >= Duration::from_secs(2), "{took:?}");
}
