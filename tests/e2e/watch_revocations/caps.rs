//! Per-client caps under the server's (decision 0019): one holder of a
//! watch credential, reading every stream it opens, cannot take every
//! place. One client address and one principal each hold at most their
//! cap; others still get in; a closed stream gives its place back.

use super::*;
use crate::support::pki::Ca;
use crate::support::{mtls_options, tls_channel};
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt as _;

const PER_ADDRESS: &str = "IDENTITY_REVOCATION_MAX_WATCHERS_PER_ADDRESS";
const PER_PRINCIPAL: &str = "IDENTITY_REVOCATION_MAX_WATCHERS_PER_PRINCIPAL";
const WITHIN: Duration = Duration::from_secs(5);

/// A watcher over `channel` that has received its first event (so its
/// place is surely held, not on its way).
async fn watching(channel: &Channel, token: Option<&str>) -> Watcher {
    let mut watcher = Watcher::try_start_on(channel.clone(), token, "")
        .await
        .unwrap_or_else(|s| panic!("WatchRevocations refused: {s:?}"));
    assert!(matches!(
        watcher.expect_change(WITHIN).await,
        Event::Reset(_)
    ));
    watcher
}

/// RESOURCE_EXHAUSTED, OVERLOADED in domain identity, with RetryInfo and
/// a message naming `setting`.
fn assert_turned_away_by(status: &tonic::Status, setting: &str) {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let info = status.get_details_error_info().expect("an ErrorInfo");
    assert_eq!(info.reason, "OVERLOADED", "{status:?}");
    assert_eq!(info.domain, "identity");
    assert!(status.get_details_retry_info().is_some(), "{status:?}");
    // The message names this cap, and not another whose name it starts.
    let named = status
        .message()
        .split(|c: char| !(c.is_ascii_uppercase() || c == '_'))
        .any(|word| word == setting);
    assert!(named, "{setting} not named in {:?}", status.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_hold_more_watchers_than_its_cap_and_another_address_still_can() {
    const CAP: usize = 3;
    let (_db, server, token) = watched(
        Backend::Sqlite,
        ServerOptions::default().env(PER_ADDRESS, CAP.to_string()),
    );
    // The attacker: one address, one credential, reading every stream.
    let attacker = channel_from(&server, "127.0.0.1").await;
    let mut held = Vec::new();
    for _ in 0..CAP {
        held.push(watching(&attacker, Some(&token)).await);
    }
    let refused = Watcher::try_start_on(attacker.clone(), Some(&token), "")
        .await
        .err()
        .expect("a watcher beyond the address's cap is refused");
    assert_turned_away_by(&refused, PER_ADDRESS);
    // Nor does a new connection from the same address help.
    let refused = Watcher::try_start_on(channel_from(&server, "127.0.0.1").await, Some(&token), "")
        .await
        .err()
        .expect("a new connection counts under the same address");
    assert_turned_away_by(&refused, PER_ADDRESS);
    assert!(
        logged_refusal(&server, "watch_revocations", "address").await,
        "{}",
        server.logs()
    );

    // A verifier elsewhere, even with the same credential, still watches.
    let elsewhere = channel_from(&server, "127.0.0.2").await;
    let mut verifier = watching(&elsewhere, Some(&token)).await;
    let mut auth = client(&server).await;
    let tokens = crate::support::register(&mut auth, &crate::support::email("capped")).await;
    auth.logout(LogoutRequest {
        refresh_token: tokens.refresh_token,
    })
    .await
    .unwrap();
    match verifier.expect_change(WITHIN).await {
        Event::SessionRevoked(e) => assert_eq!(e.session_id, tokens.session_id),
        other => panic!("{other:?}"),
    }
    // The attacker's streams were never ended by this: they were held,
    // only more were refused.
    for watcher in &mut held {
        assert!(matches!(
            watcher.expect_change(WITHIN).await,
            Event::SessionRevoked(_)
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_principal_cannot_hold_more_watchers_than_its_cap_from_many_addresses() {
    let (db, server, token) = watched(
        Backend::Sqlite,
        ServerOptions::default()
            .env(PER_ADDRESS, "2")
            .env(PER_PRINCIPAL, "3"),
    );
    // One credential spread over addresses, each under its own cap.
    let mut held = Vec::new();
    for local in ["127.0.0.1", "127.0.0.1", "127.0.0.2"] {
        held.push(watching(&channel_from(&server, local).await, Some(&token)).await);
    }
    let fresh_address = channel_from(&server, "127.0.0.3").await;
    let refused = Watcher::try_start_on(fresh_address.clone(), Some(&token), "")
        .await
        .err()
        .expect("a watcher beyond the principal's cap is refused");
    assert_turned_away_by(&refused, PER_PRINCIPAL);
    // Another token of the same principal is the same principal.
    let same = issue_service_token(&db, "revocations:watch");
    assert_ne!(same, token);
    let refused = Watcher::try_start_on(fresh_address.clone(), Some(&same), "")
        .await
        .err()
        .expect("every token of the principal shares its cap");
    assert_turned_away_by(&refused, PER_PRINCIPAL);
    assert!(
        logged_refusal(&server, "watch_revocations", "principal").await,
        "{}",
        server.logs()
    );

    // Another service principal, from that address, still watches.
    let other = watch_token_named(&db, "another-verifier");
    let _other = watching(&fresh_address, Some(&other)).await;
    assert_eq!(held.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_watcher_frees_its_slot_for_the_same_client() {
    let (_db, server, token) = watched(
        Backend::Sqlite,
        ServerOptions::default()
            .env(PER_ADDRESS, "2")
            .env(PER_PRINCIPAL, "2")
            .env("IDENTITY_REVOCATION_HEARTBEAT", "20ms"),
    );
    let channel = channel_from(&server, "127.0.0.1").await;
    let mut held = vec![
        watching(&channel, Some(&token)).await,
        watching(&channel, Some(&token)).await,
    ];
    let refused = Watcher::try_start_on(channel.clone(), Some(&token), "")
        .await
        .err()
        .expect("both places are held");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");

    // The client closes one stream (its connection stays open): the
    // address's and the principal's places are both given back.
    drop(held.pop());
    let started = Instant::now();
    let mut again = None;
    while started.elapsed() < WITHIN {
        match Watcher::try_start_on(channel.clone(), Some(&token), "").await {
            Ok(watcher) => {
                again = Some(watcher);
                break;
            }
            Err(status) if status.code() == Code::ResourceExhausted => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("{status:?}"),
        }
    }
    let mut again = again.expect("a closed watcher's place was not freed");
    eprintln!("the place was free again after {:?}", started.elapsed());
    assert!(matches!(again.expect_change(WITHIN).await, Event::Reset(_)));
    // Given back once, not twice: the cap holds again.
    let refused = Watcher::try_start_on(channel.clone(), Some(&token), "")
        .await
        .err()
        .expect("the cap is full again");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_certificate_cannot_hold_more_watchers_than_its_cap_and_another_still_can() {
    let db = TestDb::new(Backend::Sqlite);
    let (ca, clients_ca) = (Ca::new("server CA"), Ca::new("clients CA"));
    let server = Server::start_with_options(
        &db,
        mtls_options(&db, &ca, &clients_ca)
            .await
            .env(PER_PRINCIPAL, "2"),
    );
    let connect = |leaf: &crate::support::pki::Leaf| {
        let (cert, key) = (leaf.cert_pem.clone(), leaf.key_pem.clone());
        let (addr, ca) = (server.addr, ca.pem.clone());
        async move { tls_channel(addr, &ca, Some((&cert, &key))).await.unwrap() }
    };
    let verifier = clients_ca.client("verifier.example");
    let channel = connect(&verifier).await;
    let _held = [
        watching(&channel, None).await,
        watching(&channel, None).await,
    ];
    let refused = Watcher::try_start_on(channel, None, "")
        .await
        .err()
        .expect("a watcher beyond the certificate's cap is refused");
    assert_turned_away_by(&refused, PER_PRINCIPAL);
    // A certificate issued again for the same name (another key, another
    // serial) is the same principal.
    let reissued = connect(&clients_ca.client("verifier.example")).await;
    let refused = Watcher::try_start_on(reissued, None, "")
        .await
        .err()
        .expect("a reissued certificate shares the cap");
    assert_turned_away_by(&refused, PER_PRINCIPAL);

    // Another service's certificate, from the same address, still watches.
    let other = connect(&clients_ca.client("other.example")).await;
    let _other = watching(&other, None).await;
}
