//! Password guessing as an attacker would do it: in parallel, from many
//! addresses (a whole IPv6 /64), through ChangePassword as well as Login,
//! and racing the owner — who must still get in from his own device.

use crate::on_both_backends;
use crate::support::{
    Backend, PASSWORD, Server, ServerOptions, TestDb, bearer, email, forwarded_for, register,
};
use identity::proto::v1::auth_service_client::AuthServiceClient;
use identity::proto::v1::*;
use tokio::task::JoinSet;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

const NEW_PASSWORD: &str = "a different long passphrase";

fn behind_proxy(db: &TestDb, options: ServerOptions) -> Server {
    Server::start_with_options(db, options.env("IDENTITY_TRUSTED_PROXIES", "127.0.0.1/32"))
}

fn login(address: &str, password: &str, device_token: &str) -> LoginRequest {
    LoginRequest {
        email: address.into(),
        password: password.into(),
        device_token: device_token.into(),
    }
}

/// Wrong answers are UNAUTHENTICATED or throttled (RESOURCE_EXHAUSTED with
/// RetryInfo); true when throttled.
fn throttled(status: &tonic::Status) -> bool {
    match status.code() {
        Code::Unauthenticated => false,
        Code::ResourceExhausted => {
            assert!(
                status.get_details_retry_info().is_some(),
                "a throttled answer says when to retry"
            );
            true
        }
        other => panic!("unexpected {other:?}: {}", status.message()),
    }
}

async fn logged_in_with_device(
    auth: &mut AuthServiceClient<Channel>,
    from: &str,
    address: &str,
) -> LoginResponse {
    auth.login(forwarded_for(from, login(address, PASSWORD, "")))
        .await
        .expect("the owner logs in")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_wrong_guesses_from_one_address_reach_bcrypt_at_most_five_times() {
    let db = TestDb::new(Backend::Sqlite);
    // A real cost, so that every guess is still in bcrypt when the others
    // arrive: the race the throttle must win.
    let server = Server::start_with_options(
        &db,
        ServerOptions::default().env("IDENTITY_BCRYPT_COST", "10"),
    );
    let mut auth = server.auth().await;
    let victim = email("race");
    register(&mut auth, &victim).await;
    let mut guesses = JoinSet::new();
    for n in 0..20 {
        let (mut auth, victim) = (auth.clone(), victim.clone());
        guesses.spawn(async move {
            auth.login(login(&victim, &format!("guess number {n}"), ""))
                .await
                .unwrap_err()
        });
    }
    let mut evaluated = 0;
    while let Some(answer) = guesses.join_next().await {
        if !throttled(&answer.unwrap()) {
            evaluated += 1;
        }
    }
    assert!(
        evaluated <= 5,
        "{evaluated} of 20 parallel guesses reached bcrypt; 5 are free"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_of_one_ipv6_slash_64_are_throttled_as_one_client() {
    let db = TestDb::new(Backend::Sqlite);
    let server = behind_proxy(&db, ServerOptions::default());
    let mut auth = server.auth().await;
    let victim = email("ipv6");
    register(&mut auth, &victim).await;
    let mut refused = 0;
    for n in 1..=20 {
        let attacker = format!("2001:db8:7:9::{n:x}");
        let answer = auth
            .login(forwarded_for(
                &attacker,
                login(&victim, &format!("guess number {n}"), ""),
            ))
            .await
            .unwrap_err();
        if throttled(&answer) {
            refused += 1;
        }
    }
    assert!(
        refused >= 10,
        "only {refused} of 20 guesses from one /64 were throttled"
    );
    auth.login(forwarded_for(
        "2001:db8:7:a::1",
        login(&victim, PASSWORD, ""),
    ))
    .await
    .expect("the owner, in another /64, is not slowed down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_current_passwords_in_change_password_are_throttled_with_retry_info() {
    let db = TestDb::new(Backend::Postgres);
    let server = Server::start(&db);
    let mut auth = server.auth().await;
    let victim = email("oracle");
    // The attacker holds a stolen access token, not the password.
    let stolen = register(&mut auth, &victim).await;
    let mut refused = 0;
    for n in 0..12 {
        let answer = auth
            .change_password(bearer(
                &stolen.access_token,
                ChangePasswordRequest {
                    current_password: format!("guess number {n}"),
                    new_password: NEW_PASSWORD.into(),
                },
            ))
            .await
            .unwrap_err();
        if throttled(&answer) {
            refused += 1;
        }
    }
    assert!(
        refused >= 4,
        "only {refused} of 12 wrong current passwords were throttled; 5 are free"
    );
}

/// Both account-wide limits a stranger can trip, one at a time: the
/// per-account quota (100 calls, refilled too slowly to matter here, so the
/// outcome does not depend on timing), and the pause after 100 failures
/// (rate limits off).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_240_wrong_attempts_from_60_addresses_the_owner_logs_in_from_his_device() {
    let quota = ServerOptions::default()
        .env("IDENTITY_RATE_LIMIT_ENABLED", "true")
        .env("IDENTITY_RATE_LIMIT_LOGIN_ACCOUNT", "100/1h");
    owner_outlasts_240_guesses(quota).await;
    owner_outlasts_240_guesses(ServerOptions::default()).await;
}

async fn owner_outlasts_240_guesses(options: ServerOptions) {
    let db = TestDb::new(Backend::Postgres);
    let server = behind_proxy(&db, options);
    let mut auth = server.auth().await;
    let owner = email("owner");
    register(&mut auth, &owner).await;
    let home = "198.51.100.7";
    let device = logged_in_with_device(&mut auth, home, &owner)
        .await
        .device_token;
    assert!(!device.is_empty(), "a successful login names the device");

    let mut strangers = JoinSet::new();
    for a in 0..60 {
        let (mut auth, owner) = (auth.clone(), owner.clone());
        strangers.spawn(async move {
            let from = format!("203.0.113.{}", a + 1);
            let mut refused = 0;
            for n in 0..4 {
                let guess = login(&owner, &format!("guess {a} {n}"), "");
                let answer = auth.login(forwarded_for(&from, guess)).await.unwrap_err();
                refused += usize::from(throttled(&answer));
            }
            refused
        });
    }
    let mut refused = 0;
    while let Some(count) = strangers.join_next().await {
        refused += count.unwrap();
    }
    assert!(refused > 0, "240 guesses on one account trip its limits");

    let tokens = auth
        .login(forwarded_for(home, login(&owner, PASSWORD, &device)))
        .await
        .expect("the owner logs in from his device")
        .into_inner();
    assert!(tokens.tokens.is_some());
    assert_eq!(tokens.device_token, device, "the device keeps its token");

    let unknown_device = auth
        .login(forwarded_for(home, login(&owner, PASSWORD, "")))
        .await
        .expect_err("without the device token the account's limits apply");
    assert!(throttled(&unknown_device), "{:?}", unknown_device.message());
}

/// With a tiny per-account quota, only a valid device token of this account
/// gets past it: not another account's, not an unknown one, not one the
/// password change revoked.
async fn only_a_live_device_token_of_the_account_is_exempt(backend: Backend) {
    let db = TestDb::new(backend);
    let server = behind_proxy(
        &db,
        ServerOptions::default()
            .env("IDENTITY_RATE_LIMIT_ENABLED", "true")
            .env("IDENTITY_RATE_LIMIT_LOGIN_ACCOUNT", "3/1h"),
    );
    let mut auth = server.auth().await;
    let (alice, bob) = (email("alice"), email("bob"));
    register(&mut auth, &alice).await;
    register(&mut auth, &bob).await;
    let home = "198.51.100.8";
    let alice_login = logged_in_with_device(&mut auth, home, &alice).await;
    let alices = alice_login.device_token;
    let bobs = logged_in_with_device(&mut auth, home, &bob)
        .await
        .device_token;
    assert!(!alices.is_empty() && alices != bobs);

    for n in 0..3 {
        let from = format!("203.0.113.{}", n + 100);
        let answer = auth
            .login(forwarded_for(&from, login(&alice, "a wrong guess", "")))
            .await
            .unwrap_err();
        throttled(&answer);
    }
    for (what, token) in [
        ("bob's", bobs.as_str()),
        ("an unknown", "not-a-device-token"),
    ] {
        let answer = auth
            .login(forwarded_for(home, login(&alice, PASSWORD, token)))
            .await
            .expect_err(what);
        assert!(throttled(&answer), "{what} device token is no exemption");
    }
    let oversized = auth
        .login(forwarded_for(
            home,
            login(&alice, PASSWORD, &"d".repeat(257)),
        ))
        .await
        .unwrap_err();
    assert_eq!(oversized.code(), Code::InvalidArgument);
    assert_eq!(
        oversized
            .get_details_bad_request()
            .unwrap()
            .field_violations[0]
            .field,
        "device_token"
    );
    auth.login(forwarded_for(home, login(&alice, PASSWORD, &alices)))
        .await
        .expect("alice's own device is exempt");

    let access = alice_login.tokens.unwrap().access_token;
    auth.change_password(bearer(
        &access,
        ChangePasswordRequest {
            current_password: PASSWORD.into(),
            new_password: NEW_PASSWORD.into(),
        },
    ))
    .await
    .expect("alice changes her password");
    let answer = auth
        .login(forwarded_for(home, login(&alice, NEW_PASSWORD, &alices)))
        .await
        .expect_err("the password change revoked the device token");
    assert!(throttled(&answer));
}

on_both_backends!(only_a_live_device_token_of_the_account_is_exempt);

/// Logging in again and again without the token must not grow the stored
/// devices without bound: the least recently used are forgotten (a known
/// device gets its own token back; a forgotten one is handed a new one).
async fn a_profile_keeps_only_its_20_most_recent_device_tokens(backend: Backend) {
    let db = TestDb::new(backend);
    let server = Server::start(&db);
    let mut auth = server.auth().await;
    let owner = email("devices");
    register(&mut auth, &owner).await;
    let mut tokens = Vec::new();
    for _ in 0..21 {
        let done = auth.login(login(&owner, PASSWORD, "")).await.unwrap();
        tokens.push(done.into_inner().device_token);
    }
    let again = |token: String| {
        let mut auth = auth.clone();
        let owner = owner.clone();
        async move {
            auth.login(login(&owner, PASSWORD, &token))
                .await
                .unwrap()
                .into_inner()
                .device_token
        }
    };
    let newest = tokens[20].clone();
    assert_eq!(
        again(newest.clone()).await,
        newest,
        "a kept device is known"
    );
    let oldest = tokens[0].clone();
    assert_ne!(
        again(oldest.clone()).await,
        oldest,
        "the oldest was forgotten"
    );
}

on_both_backends!(a_profile_keeps_only_its_20_most_recent_device_tokens);

/// A dual-stack listener (`[::]`) sees IPv4 clients as `::ffff:a.b.c.d`:
/// the proxy list and every key are plain IPv4, so both must match, or one
/// attacker behind the proxy throttles everybody behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_dual_stack_listener_the_proxy_is_still_recognised() {
    let db = TestDb::new(Backend::Sqlite);
    let server = behind_proxy(
        &db,
        ServerOptions::default().env("IDENTITY_LISTEN_ADDR", "[::]:0"),
    );
    let channel = Channel::from_shared(format!("http://127.0.0.1:{}", server.addr.port()))
        .unwrap()
        .connect()
        .await
        .expect("an IPv4 client reaches the dual-stack listener");
    let mut auth = AuthServiceClient::new(channel);
    let owner = email("dualstack");
    register(&mut auth, &owner).await;
    for n in 0..8 {
        let _ = auth
            .login(forwarded_for(
                "203.0.113.66",
                login(&owner, &format!("guess {n}"), ""),
            ))
            .await;
    }
    auth.login(forwarded_for("198.51.100.7", login(&owner, PASSWORD, "")))
        .await
        .expect("the owner behind the same proxy is not the attacker");
}
