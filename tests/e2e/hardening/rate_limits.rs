//! Rate limits per address, local and shared through Redis, and
//! brute-force throttling that never locks the owner out.

use super::*;

/// A documentation address (RFC 5737) unique to this call, for the
/// x-forwarded-for of a trusted proxy. No traffic ever goes to it.
fn unique_client() -> String {
    let n = uuid::Uuid::new_v4().as_u128();
    format!("203.0.{}.{}", (n % 250) as u8, ((n >> 8) % 250) as u8 + 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_beyond_the_address_quota_is_refused_with_retry_info_then_accepted_again() {
    let db = TestDb::new(Backend::Sqlite);
    let server = Server::start_with_options(
        &db,
        ServerOptions::default()
            .env("IDENTITY_RATE_LIMIT_ENABLED", "true")
            .env("IDENTITY_RATE_LIMIT_LOGIN", "3/3s"),
    );
    let mut auth = server.auth().await;
    let address = email("quota");
    register(&mut auth, &address).await;
    for _ in 0..3 {
        auth.login(login_request(&address, PASSWORD))
            .await
            .expect("within the quota");
    }
    let status = auth
        .login(login_request(&address, PASSWORD))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(
        status.message(),
        "too many requests; retry later",
        "generic message"
    );
    let delay = status
        .get_details_retry_info()
        .and_then(|r| r.retry_delay)
        .expect("RetryInfo");
    assert!(
        delay > Duration::ZERO && delay <= Duration::from_secs(3),
        "{delay:?}"
    );
    tokio::time::sleep(delay + Duration::from_millis(50)).await;
    auth.login(login_request(&address, PASSWORD))
        .await
        .expect("accepted again after the delay");
    assert!(server.logs().contains("identity.rate_limited"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attacker_failing_50_times_does_not_lock_the_owner_out() {
    let db = TestDb::new(Backend::Postgres);
    let server = Server::start_with_options(
        &db,
        ServerOptions::default()
            .env("IDENTITY_RATE_LIMIT_ENABLED", "true")
            .env("IDENTITY_TRUSTED_PROXIES", "127.0.0.1/32"),
    );
    let mut auth = server.auth().await;
    let victim = email("victim");
    register(&mut auth, &victim).await;
    let (attacker, owner) = (unique_client(), unique_client());
    let mut throttled = 0;
    for attempt in 0..50 {
        let status = auth
            .login(forwarded_for(
                &attacker,
                login_request(&victim, &format!("guess number {attempt}")),
            ))
            .await
            .unwrap_err();
        match status.code() {
            Code::Unauthenticated => {}
            Code::ResourceExhausted => {
                assert!(status.get_details_retry_info().is_some());
                throttled += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        throttled >= 40,
        "the attacker's address is slowed down ({throttled} of 50 throttled)"
    );
    auth.login(forwarded_for(&owner, login_request(&victim, PASSWORD)))
        .await
        .expect("the owner logs in from elsewhere");
    assert!(server.logs().contains("\"reason\":\"throttled\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sharing_redis_enforce_one_limit_and_fall_back_to_local_limits_without_it() {
    let _turn = crate::support::machine_to_myself().await;
    let db = TestDb::new(Backend::Postgres);
    let redis = Proxy::start("127.0.0.1:6379".parse().unwrap()).await;
    let options = || {
        ServerOptions::default()
            .env("IDENTITY_RATE_LIMIT_ENABLED", "true")
            .env("IDENTITY_TRUSTED_PROXIES", "127.0.0.1/32")
            .env("IDENTITY_RATE_LIMIT_LOGIN", "4/1m")
            .env(
                "IDENTITY_RATE_LIMIT_REDIS_URL",
                format!("redis://{}/0", redis.addr),
            )
    };
    let a = Server::start_with_options(&db, options());
    let b = Server::start_with_options(&db, options());
    let (mut on_a, mut on_b) = (a.auth().await, b.auth().await);
    let address = email("global");
    register(&mut on_a, &address).await;

    let client = unique_client();
    for round in 0..4 {
        let auth = if round % 2 == 0 { &mut on_a } else { &mut on_b };
        auth.login(forwarded_for(&client, login_request(&address, PASSWORD)))
            .await
            .expect("4 calls fit the quota");
    }
    for auth in [&mut on_a, &mut on_b] {
        let status = auth
            .login(forwarded_for(&client, login_request(&address, PASSWORD)))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::ResourceExhausted,
            "the fifth call on either replica is over one global limit"
        );
    }

    // Redis goes away: both replicas keep limiting, each with its own counters.
    redis.cut();
    let client = unique_client();
    let mut outcomes = Vec::new();
    for _ in 0..6 {
        outcomes.push(
            on_a.login(forwarded_for(&client, login_request(&address, PASSWORD)))
                .await
                .map(drop)
                .map_err(|s| s.code()),
        );
    }
    assert!(outcomes[..4].iter().all(Result::is_ok), "{outcomes:?}");
    assert!(
        outcomes[4..]
            .iter()
            .all(|o| *o == Err(Code::ResourceExhausted)),
        "{outcomes:?}"
    );
    assert!(
        a.logs().contains("identity.rate_limit.degraded"),
        "the fallback is logged"
    );
    let mut health = tonic_health::pb::health_client::HealthClient::new(a.channel().await);
    let status = |name: &str| tonic_health::pb::HealthCheckRequest {
        service: name.into(),
    };
    let limiter = health
        .check(status("identity.rate_limit"))
        .await
        .unwrap()
        .into_inner()
        .status();
    assert_eq!(
        limiter,
        tonic_health::pb::health_check_response::ServingStatus::NotServing
    );
    let overall = health
        .check(status(""))
        .await
        .unwrap()
        .into_inner()
        .status();
    assert_eq!(
        overall,
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );

    redis.restore();
    assert!(
        eventually(Duration::from_secs(10), || {
            let mut health = health.clone();
            async move {
                health
                    .check(status("identity.rate_limit"))
                    .await
                    .map(|r| r.into_inner().status())
                    .ok()
                    == Some(tonic_health::pb::health_check_response::ServingStatus::Serving)
            }
        })
        .await,
        "the shared limiter comes back"
    );
}
