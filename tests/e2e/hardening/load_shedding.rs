//! Load shedding: a login flood is shed with RetryInfo and never fails
//! token validation.

use super::*;

fn p99(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[(samples.len() * 99 / 100).min(samples.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_is_shed_with_retry_info_and_never_fails_token_validation() {
    let db = TestDb::new(Backend::Postgres);
    let server = Server::start_with_options(
        &db,
        ServerOptions::default()
            .env("IDENTITY_BCRYPT_COST", "10")
            .env("IDENTITY_BCRYPT_QUEUE", "16"),
    );
    let mut auth = server.auth().await;
    let address = email("flood");
    let tokens = register(&mut auth, &address).await;

    let measure = |auth: AuthServiceClient<Channel>, token: String, window: Duration| async move {
        let mut auth = auth;
        let mut samples = Vec::new();
        let end = Instant::now() + window;
        while Instant::now() < end {
            let start = Instant::now();
            let answer = auth
                .validate_token(ValidateTokenRequest {
                    access_token: token.clone(),
                })
                .await;
            samples.push(start.elapsed());
            assert!(
                answer
                    .expect("ValidateToken never fails")
                    .into_inner()
                    .active
            );
        }
        samples
    };
    let mut quiet = measure(
        auth.clone(),
        tokens.access_token.clone(),
        Duration::from_secs(1),
    )
    .await;

    let validator = tokio::spawn(measure(
        auth.clone(),
        tokens.access_token.clone(),
        Duration::from_secs(3),
    ));
    let logins = (0..200).map(|i| {
        let mut auth = auth.clone();
        let password = if i % 4 == 0 {
            "wrong password here".to_owned()
        } else {
            PASSWORD.to_owned()
        };
        let address = address.clone();
        async move { auth.login(login_request(&address, &password)).await }
    });
    let results = futures::future::join_all(logins).await;
    let mut flood = validator.await.unwrap();
    let (mut ok, mut refused, mut shed) = (0, 0, 0);
    for result in results {
        match result {
            Ok(_) => ok += 1,
            Err(s) if s.code() == Code::Unauthenticated => refused += 1,
            Err(s) if s.code() == Code::ResourceExhausted => {
                assert!(
                    s.get_details_retry_info().is_some(),
                    "shed calls carry RetryInfo"
                );
                shed += 1;
            }
            Err(s) => panic!("login failed improperly: {s:?}"),
        }
    }
    assert_eq!(ok + refused + shed, 200);
    println!(
        "login flood: {ok} ok, {refused} wrong password, {shed} shed; ValidateToken p99 quiet {:?} ({} calls), during flood {:?} ({} calls)",
        p99(&mut quiet),
        quiet.len(),
        p99(&mut flood),
        flood.len()
    );
}
