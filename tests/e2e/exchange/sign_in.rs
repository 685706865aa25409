//! A Better-Auth user's provider token exchanges (once) into an ordinary
//! session here: one profile however many race, the provider's name and
//! email verification followed, the session bounded by the provider's TTL,
//! and the README's session works as written.

use super::*;
use crate::on_both_backends;
use crate::support::bearer;
use crate::support::better_auth::BetterAuthOptions;
use crate::support::{claims_of, register};

on_both_backends!(
    a_better_auth_user_exchanges_into_an_ordinary_session,
    concurrent_first_exchanges_create_exactly_one_profile,
    one_provider_token_exchanges_once,
);

async fn a_better_auth_user_exchanges_into_an_ordinary_session(backend: Backend) {
    let provider = BetterAuth::start();
    let db = TestDb::new(backend);
    let server = identity(&db, &provider, "1s");
    let mut auth = server.auth().await;

    let user = signed_up(&provider, "Ann Provider").await;
    let jwt = provider.token(&user).await;
    let first = exchange(&mut auth, &jwt)
        .await
        .expect("a fresh token exchanges");
    assert!(first.created, "the first exchange creates the profile");
    let profile = first.profile.clone().unwrap();
    assert_eq!(profile.auth_provider, "better-auth");
    assert_eq!(
        profile.auth_id, user.id,
        "auth_id is the Better-Auth user id"
    );
    assert_eq!(profile.email, user.email);
    assert_eq!(profile.display_name, "Ann Provider");
    assert!(profile.roles.is_empty(), "the provider grants no roles");
    let tokens = first.tokens.clone().unwrap();

    // The tokens are ordinary: GetProfile("me"), ValidateToken, Refresh.
    let me = profiles(&server)
        .await
        .get_profile(bearer(
            &tokens.access_token,
            GetProfileRequest { id: "me".into() },
        ))
        .await
        .expect("GetProfile(me) with the exchanged token")
        .into_inner();
    assert_eq!(
        (me.id.as_str(), me.auth_id.as_str()),
        (profile.id.as_str(), user.id.as_str())
    );
    let validated = auth
        .validate_token(ValidateTokenRequest {
            access_token: tokens.access_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(validated.active);
    assert_eq!(validated.auth_provider, "better-auth");
    assert_eq!(validated.auth_id, user.id);
    assert_eq!(validated.profile_id, profile.id);
    assert_eq!(validated.session_id, tokens.session_id);
    let refreshed = auth
        .refresh(RefreshRequest {
            refresh_token: tokens.refresh_token.clone(),
        })
        .await
        .expect("the exchanged session refreshes")
        .into_inner()
        .tokens
        .unwrap();

    // A second exchange (a new JWT from a new sign-in) finds the profile.
    let session = provider.sign_in(&user.email, PASSWORD).await;
    let again = User {
        session,
        ..user.clone()
    };
    let second = exchange(&mut auth, &provider.token(&again).await)
        .await
        .expect("the second exchange");
    assert!(!second.created);
    assert_eq!(second.profile.as_ref().unwrap().id, profile.id);
    assert_ne!(
        second.tokens.as_ref().unwrap().session_id,
        tokens.session_id,
        "a new session"
    );

    // Logout ends that session only; ValidateToken sees it at once.
    auth.logout(LogoutRequest {
        refresh_token: refreshed.refresh_token.clone(),
    })
    .await
    .unwrap();
    let inactive = auth
        .validate_token(ValidateTokenRequest {
            access_token: refreshed.access_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!inactive.active, "logged-out exchanged session is revoked");
    let still = auth
        .validate_token(ValidateTokenRequest {
            access_token: second.tokens.as_ref().unwrap().access_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(still.active, "the other session lives on");

    // The provider's name changes: an unedited profile follows it...
    provider.rename(&user, "Ann Renamed").await;
    let synced = exchange(&mut auth, &provider.token(&user).await)
        .await
        .unwrap();
    let synced = synced.profile.unwrap();
    assert_eq!(
        synced.display_name, "Ann Renamed",
        "unedited profiles follow the provider"
    );
    assert_ne!(synced.etag, profile.etag, "a synced change is a change");

    // ...until someone edits it here: then the profile's values win.
    let access = second.tokens.unwrap().access_token;
    profiles(&server)
        .await
        .update_profile(bearer(
            &access,
            UpdateProfileRequest {
                profile: Some(UserProfile {
                    id: "me".into(),
                    etag: synced.etag.clone(),
                    display_name: "Ann (edited here)".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["display_name".into()],
                }),
            },
        ))
        .await
        .expect("the owner edits the profile");
    provider.rename(&user, "Ann Renamed Again").await;
    let kept = exchange(&mut auth, &provider.token(&user).await)
        .await
        .unwrap();
    assert_eq!(kept.profile.unwrap().display_name, "Ann (edited here)");

    // Logs name profiles and reasons, never tokens or emails.
    let logs = server.logs();
    assert!(logs.contains("identity.exchange.succeeded"), "{logs}");
    assert!(!logs.contains(&jwt), "the provider token is never logged");
    assert!(!logs.contains(&user.email), "no email in the logs");
}

async fn concurrent_first_exchanges_create_exactly_one_profile(backend: Backend) {
    let provider = BetterAuth::start();
    let db = TestDb::new(backend);
    let server = identity(&db, &provider, "1s");
    let user = signed_up(&provider, "Racer").await;
    // Ten distinct tokens of one user (one token exchanges only once).
    let mut jwts = Vec::new();
    for nonce in 0..10 {
        jwts.push(
            provider
                .sign(json!({"sub": user.id, "email": user.email, "name": "Racer", "nonce": nonce}))
                .await,
        );
    }
    provider_serving(&server).await;
    let channel = server.channel().await;
    let attempts = jwts.into_iter().map(|jwt| {
        let mut auth = AuthServiceClient::new(channel.clone());
        async move { exchange(&mut auth, &jwt).await }
    });
    let results = futures::future::join_all(attempts).await;
    let ok: Vec<ExchangeTokenResponse> = results
        .into_iter()
        .map(|r| r.expect("every concurrent exchange succeeds"))
        .collect();
    let created = ok.iter().filter(|r| r.created).count();
    assert_eq!(created, 1, "exactly one exchange created the profile");
    let ids: std::collections::HashSet<_> = ok
        .iter()
        .map(|r| r.profile.as_ref().unwrap().id.clone())
        .collect();
    assert_eq!(ids.len(), 1, "all ten got the same profile: {ids:?}");
    let sessions: std::collections::HashSet<_> = ok
        .iter()
        .map(|r| r.tokens.as_ref().unwrap().session_id.clone())
        .collect();
    assert_eq!(sessions.len(), 10, "each exchange is a session of its own");
}

/// Asserts the refusal of a provider token exchanged before.
#[track_caller]
fn assert_already_exchanged(result: Result<ExchangeTokenResponse, Status>, case: &str) {
    use tonic_types::StatusExt as _;
    let status = result
        .err()
        .unwrap_or_else(|| panic!("{case}: accepted again"));
    assert_eq!(status.code(), Code::Unauthenticated, "{case}: {status:?}");
    let info = status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("{case}: no ErrorInfo in {status:?}"));
    assert_eq!(info.reason, "TOKEN_ALREADY_EXCHANGED", "{case}");
    assert_eq!(info.domain, "identity", "{case}");
}

/// A stolen provider JWT (a log line, a proxy, a browser extension) is worth
/// one session at most: replayed, sequentially or racing its owner, it is
/// refused, and a re-signed copy with the same `jti` is the same token.
async fn one_provider_token_exchanges_once(backend: Backend) {
    let provider = BetterAuth::start();
    let db = TestDb::new(backend);
    let server = identity(&db, &provider, "1s");
    let mut auth = server.auth().await;
    let user = signed_up(&provider, "Replayed").await;

    let jwt = provider.token(&user).await;
    let first = exchange(&mut auth, &jwt).await.expect("the first exchange");
    for attempt in 0..3 {
        assert_already_exchanged(
            exchange(&mut auth, &jwt).await,
            &format!("replay {attempt}"),
        );
    }
    // Nor does a replayed older token write its stale claims over newer ones.
    provider.rename(&user, "Renamed").await;
    let renamed = exchange(&mut auth, &provider.token(&user).await)
        .await
        .expect("a fresh token");
    assert_eq!(renamed.profile.unwrap().display_name, "Renamed");
    assert_already_exchanged(exchange(&mut auth, &jwt).await, "older token replayed");
    let me = profiles(&server)
        .await
        .get_profile(bearer(
            &renamed.tokens.unwrap().access_token,
            GetProfileRequest { id: "me".into() },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.display_name, "Renamed", "the replay changed nothing");

    // Racing: many exchanges of one fresh token at once, exactly one wins.
    let raced = provider.token(&user).await;
    let channel = server.channel().await;
    let results = futures::future::join_all((0..12).map(|_| {
        let mut auth = AuthServiceClient::new(channel.clone());
        let jwt = raced.clone();
        async move { exchange(&mut auth, &jwt).await }
    }))
    .await;
    let (won, lost): (Vec<_>, Vec<_>) = results.into_iter().partition(|r| r.is_ok());
    assert_eq!(
        won.len(),
        1,
        "exactly one concurrent exchange wins: {lost:?}"
    );
    for result in lost {
        assert_already_exchanged(result, "concurrent replay");
    }

    // With a jti, the jti is the token: a second signature does not help.
    let jti = format!("jti-{}", uuid::Uuid::new_v4());
    let once = provider
        .sign(json!({"sub": user.id, "jti": jti, "n": 1}))
        .await;
    let twice = provider
        .sign(json!({"sub": user.id, "jti": jti, "n": 2}))
        .await;
    assert_ne!(once, twice);
    exchange(&mut auth, &once)
        .await
        .expect("first token of a jti");
    assert_already_exchanged(exchange(&mut auth, &twice).await, "same jti, new signature");

    // The one session of the first token still works; the replays left
    // an audit trail, not sessions.
    auth.refresh(RefreshRequest {
        refresh_token: first.tokens.unwrap().refresh_token,
    })
    .await
    .expect("the first exchange's session refreshes");
    let logs = server.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("identity.exchange.refused") && l.contains("already_exchanged")),
        "{logs}"
    );
    assert!(!logs.contains(&jwt), "the provider token is never logged");
}

/// A session from a provider token ends after IDENTITY_PROVIDER_SESSION_TTL,
/// not after the local 30 days: a user banned or deleted at the provider
/// loses access when it ends, as the client must go back to the provider.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchanged_sessions_end_at_the_provider_session_ttl() {
    let provider = BetterAuth::start();
    let db = TestDb::new(Backend::Sqlite);
    let server = identity_with(
        &db,
        &provider,
        "1s",
        ServerOptions::default().env("IDENTITY_PROVIDER_SESSION_TTL", "4s"),
    );
    let mut auth = server.auth().await;
    let user = signed_up(&provider, "Short Lived").await;
    let before = now();
    let tokens = exchange(&mut auth, &provider.token(&user).await)
        .await
        .expect("exchange")
        .tokens
        .unwrap();
    let session_end = tokens.refresh_token_expire_time.unwrap().seconds;
    assert!(
        session_end <= now() + 4,
        "the session ends within the provider TTL, not {}s later",
        session_end - before
    );
    assert!(tokens.access_token_expire_time.unwrap().seconds <= session_end);
    let refreshed = auth
        .refresh(RefreshRequest {
            refresh_token: tokens.refresh_token,
        })
        .await
        .expect("refreshes within the TTL")
        .into_inner()
        .tokens
        .unwrap();
    assert_eq!(
        refreshed.refresh_token_expire_time.unwrap().seconds,
        session_end,
        "refreshing never extends it"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let status = auth
        .refresh(RefreshRequest {
            refresh_token: refreshed.refresh_token,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        !crate::support::active(&mut auth, &refreshed.access_token).await,
        "its access token is over too"
    );
    // A fresh provider token starts a new session.
    exchange(&mut auth, &provider.token(&user).await)
        .await
        .expect("a fresh provider token");
}

/// `emailVerified: false` is the provider's word and must reach the
/// services that read profiles: a consumer sending mail or linking accounts
/// by email must not take an unverified address for a verified one, and an
/// email changed here is nobody's verified address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_providers_email_verification_is_reported_never_invented() {
    let provider = BetterAuth::start();
    let db = TestDb::new(Backend::Postgres);
    let server = identity(&db, &provider, "1s");
    let mut auth = server.auth().await;
    let user = signed_up(&provider, "Unverified").await;
    let jwt = provider.token(&user).await;
    assert_eq!(
        claims_of(&jwt)["emailVerified"],
        false,
        "Better-Auth's claim"
    );

    let validated = |auth: &mut AuthServiceClient<Channel>, token: String| {
        let mut auth = auth.clone();
        async move {
            auth.validate_token(ValidateTokenRequest {
                access_token: token,
            })
            .await
            .unwrap()
            .into_inner()
        }
    };
    let done = exchange(&mut auth, &jwt).await.unwrap();
    assert!(
        !done.profile.unwrap().email_verified,
        "unverified at the provider"
    );
    let access = done.tokens.unwrap().access_token;
    let answer = validated(&mut auth, access.clone()).await;
    assert!(answer.active && !answer.email_verified);

    // The provider verifies the address: the next exchange says so.
    let verified = provider
        .sign(json!({"sub": user.id, "email": user.email, "name": "Unverified", "emailVerified": true}))
        .await;
    let done = exchange(&mut auth, &verified).await.unwrap();
    let profile = done.profile.unwrap();
    assert!(profile.email_verified);
    assert!(validated(&mut auth, access.clone()).await.email_verified);

    // The owner changes the email here: nobody verified the new one.
    let changed = profiles(&server)
        .await
        .update_profile(bearer(
            &access,
            UpdateProfileRequest {
                profile: Some(UserProfile {
                    id: "me".into(),
                    etag: profile.etag,
                    email: email("unverified-here"),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["email".into()],
                }),
            },
        ))
        .await
        .expect("the owner edits the email")
        .into_inner();
    assert!(
        !changed.email_verified,
        "an email changed here is unverified"
    );
    assert!(!validated(&mut auth, access).await.email_verified);

    // Local accounts: this service verifies no address.
    let local = register(&mut auth, &email("local")).await;
    let answer = validated(&mut auth, local.access_token).await;
    assert!(answer.active && !answer.email_verified);
}

/// The shell lines of the README block fenced as ```sh exchange-session.
fn documented_session() -> String {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let fence = "```sh exchange-session";
    let text = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(
        text.contains(fence),
        "the README documents the exchange session"
    );
    let body = &text[text.find(fence).unwrap()..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("```").unwrap()].to_owned()
}

fn grpcurl_dir() -> String {
    if let Ok(path) = std::env::var("GRPCURL") {
        let path = std::path::PathBuf::from(path);
        return path.parent().unwrap().display().to_string();
    }
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../.venv/bin")
        .display()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_exchange_session_works_as_written() {
    // Better-Auth's defaults: issuer and audience are its base URL.
    let provider = BetterAuth::start_with(BetterAuthOptions { env: Vec::new() });
    let db = TestDb::new(Backend::Sqlite);
    let server = Server::start_with_options(
        &db,
        ServerOptions::default()
            .env("IDENTITY_PROVIDER_JWKS_URL", provider.jwks_url())
            .env("IDENTITY_PROVIDER_ISSUER", provider.base_url.clone())
            .env("IDENTITY_PROVIDER_AUDIENCE", provider.base_url.clone()),
    );
    let script = documented_session()
        .replace("http://localhost:3000", &provider.base_url)
        .replace("127.0.0.1:50051", &server.addr.to_string());
    let work = crate::support::TempDir::new();
    let output = std::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(work.path())
        .env(
            "PATH",
            format!(
                "{}:{}",
                grpcurl_dir(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "session failed:\n{stdout}\n{stderr}"
    );
    let answer: Value = serde_json::from_str(&stdout).expect("grpcurl prints the answer as JSON");
    assert_eq!(answer["created"], true, "{stdout}");
    assert_eq!(answer["profile"]["authProvider"], "better-auth");
    assert_eq!(answer["profile"]["email"], "bea@example.com");
    assert!(
        answer["tokens"]["accessToken"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
}
