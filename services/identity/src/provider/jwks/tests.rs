use super::*;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A loopback HTTP server answering request n with `responses[n]` (the
/// last one from then on), after `delay`; it counts requests.
async fn serve(responses: Vec<String>, delay: Duration) -> (http::Uri, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api/auth/jwks", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&hits);
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let (responses, counter) = (responses.clone(), Arc::clone(&counter));
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut read = Vec::new();
                while !read.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read.extend_from_slice(&buf[..n]),
                    }
                }
                let n = counter.fetch_add(1, Ordering::SeqCst) as usize;
                let response = &responses[n.min(responses.len() - 1)];
                tokio::time::sleep(delay).await;
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (url.parse().unwrap(), hits)
}

fn ok(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn cache(url: http::Uri, interval: Duration) -> Arc<JwksCache> {
    JwksCache::new(JwksSettings {
        url,
        algorithms: vec![Algorithm::EdDSA],
        min_refresh_interval: interval,
        timeout: Duration::from_millis(500),
        max_bytes: 2048,
        max_stale: Duration::from_secs(3600),
    })
    .unwrap()
}

const ONE_KEY: &str = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","alg":"EdDSA","kid":"k1","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kids_refetch_once_per_interval_even_when_callers_give_up() {
    let (url, hits) = serve(vec![ok(ONE_KEY)], Duration::from_millis(200)).await;
    let jwks = cache(url, Duration::from_secs(60));
    let mut lookups = Vec::new();
    for i in 0..50 {
        let jwks = Arc::clone(&jwks);
        lookups.push(tokio::spawn(async move {
            jwks.key(&format!("random-{i}")).await
        }));
    }
    // Half the callers go away while the fetch is in flight.
    tokio::time::sleep(Duration::from_millis(50)).await;
    for lookup in lookups.iter().step_by(2) {
        lookup.abort();
    }
    for lookup in lookups {
        if let Ok(result) = lookup.await {
            assert!(matches!(result, Lookup::Unknown), "{result:?}");
        }
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "one fetch for fifty unknown kids"
    );
    assert!(matches!(jwks.key("k1").await, Lookup::Found(_)));
    assert!(matches!(jwks.key("random-again").await, Lookup::Unknown));
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert_eq!(*jwks.reachable().borrow(), Some(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_slow_and_failing_answers_are_unavailable_and_keep_the_cache() {
    let big = format!(r#"{{"keys":[],"pad":"{}"}}"#, "x".repeat(4096));
    let chunked = format!(
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
        big.len()
    );
    let cases = [
        ("declared too large", ok(&big), Duration::ZERO),
        ("streamed too large", chunked, Duration::ZERO),
        ("too slow", ok(ONE_KEY), Duration::from_secs(3)),
        (
            "server error",
            "HTTP/1.1 500 Oops\r\ncontent-length: 0\r\n\r\n".into(),
            Duration::ZERO,
        ),
        (
            "redirect",
            "HTTP/1.1 302 Found\r\nlocation: http://169.254.169.254/\r\ncontent-length: 0\r\n\r\n"
                .into(),
            Duration::ZERO,
        ),
        ("not a key set", ok("<html></html>"), Duration::ZERO),
    ];
    for (case, response, delay) in cases {
        let (url, _) = serve(vec![response], delay).await;
        let jwks = cache(url, Duration::from_millis(100));
        let started = std::time::Instant::now();
        assert!(
            matches!(jwks.key("k1").await, Lookup::Unavailable),
            "{case}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{case}: bounded by the timeout"
        );
        assert_eq!(*jwks.reachable().borrow(), Some(false), "{case}");
    }
    // Cached keys survive a failed refresh.
    let failing = "HTTP/1.1 503 Down\r\ncontent-length: 0\r\n\r\n".to_owned();
    let (url, hits) = serve(vec![ok(ONE_KEY), failing], Duration::ZERO).await;
    let jwks = cache(url, Duration::from_millis(100));
    assert!(matches!(jwks.key("k1").await, Lookup::Found(_)));
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(matches!(jwks.key("k2").await, Lookup::Unavailable));
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    assert!(
        matches!(jwks.key("k1").await, Lookup::Found(_)),
        "cached key still works"
    );
}

const TWO_KEYS: &str = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","alg":"EdDSA","kid":"k1","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},{"kty":"OKP","crv":"Ed25519","alg":"EdDSA","kid":"k2","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;

/// One forged token spends the unknown-kid slot just before the
/// provider rotates: the new kid must not wait out the interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_random_kid_does_not_hold_back_a_genuine_rotation() {
    let (url, hits) = serve(vec![ok(ONE_KEY), ok(TWO_KEYS)], Duration::ZERO).await;
    let jwks = cache(url, Duration::from_secs(60));
    assert!(matches!(jwks.key("forged-1").await, Lookup::Unknown));
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    // The provider rotates to k2; its first token meets the spent slot.
    assert!(matches!(jwks.key("k2").await, Lookup::Unknown));
    assert!(
        matches!(jwks.key("k2").await, Lookup::Found(_)),
        "the new kid, seen again, is fetched at once"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    // A flood of fresh random kids, and repeated ones, costs nothing more
    // within the interval.
    for i in 0..20 {
        let kid = format!("forged-{}", i % 5);
        assert!(matches!(jwks.key(&kid).await, Lookup::Unknown), "{kid}");
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        2,
        "two fetches per interval at most"
    );
}

/// While the provider stays down, cached keys are trusted only up to
/// max_stale after the last good fetch: a retired key does not live on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_keys_expire_when_the_provider_stays_unreachable() {
    let failing = "HTTP/1.1 503 Down\r\ncontent-length: 0\r\n\r\n".to_owned();
    let (url, _) = serve(vec![ok(ONE_KEY), failing], Duration::ZERO).await;
    let jwks = JwksCache::new(JwksSettings {
        max_stale: Duration::from_millis(400),
        ..cache(url, Duration::from_millis(100)).settings.clone()
    })
    .unwrap();
    assert!(matches!(jwks.key("k1").await, Lookup::Found(_)));
    assert!(matches!(jwks.key("k1").await, Lookup::Found(_)), "fresh");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        matches!(jwks.key("k1").await, Lookup::Unavailable),
        "too long since the provider last confirmed its keys"
    );
}

fn headers(value: &str) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert(http::header::CACHE_CONTROL, value.parse().unwrap());
    h
}

#[test]
fn cache_control_sets_the_ttl_within_bounds() {
    assert_eq!(ttl_of(&http::HeaderMap::new()), DEFAULT_TTL);
    assert_eq!(
        ttl_of(&headers("public, max-age=600")),
        Duration::from_secs(600)
    );
    assert_eq!(ttl_of(&headers("max-age=5")), MIN_TTL);
    assert_eq!(ttl_of(&headers("max-age=99999999")), MAX_TTL);
    assert_eq!(ttl_of(&headers("no-store")), MIN_TTL);
    assert_eq!(ttl_of(&headers("max-age=oops")), DEFAULT_TTL);
}
