//! ExchangeToken against a real Better-Auth (tests/provider/server.mjs):
//! sign-in there, exchange here; provisioning by (provider, auth_id) and its
//! races; forged, foreign and stale tokens; key rotation and kid floods
//! measured at the provider; the provider going down; the sign-up hook with
//! a provisioner service token.

use crate::on_both_backends;
use crate::support::better_auth::{AUDIENCE, BetterAuth, BetterAuthOptions, ISSUER, User};
use crate::support::{Backend, PASSWORD, Server, ServerOptions, TestDb, bearer, email, eventually};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use identity::proto::v1::auth_service_client::AuthServiceClient;
use identity::proto::v1::profile_service_client::ProfileServiceClient;
use identity::proto::v1::*;
use identity_core::tokens::generate_ed25519_pem;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use std::time::Duration;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

on_both_backends!(
    a_better_auth_user_exchanges_into_an_ordinary_session,
    concurrent_first_exchanges_create_exactly_one_profile,
    one_provider_token_exchanges_once,
);

const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
const GENERIC: &str = "missing, invalid or expired credentials";

// ---------------------------------------------------------------------------
// Helpers

/// An identity server that trusts `provider`.
fn identity(db: &TestDb, provider: &BetterAuth, min_refresh: &str) -> Server {
    identity_with(db, provider, min_refresh, ServerOptions::default())
}

fn identity_with(
    db: &TestDb,
    provider: &BetterAuth,
    min_refresh: &str,
    options: ServerOptions,
) -> Server {
    let options = options
        .env("IDENTITY_PROVIDER_JWKS_URL", provider.jwks_url())
        .env("IDENTITY_PROVIDER_ISSUER", ISSUER)
        .env("IDENTITY_PROVIDER_AUDIENCE", AUDIENCE)
        .env("IDENTITY_PROVIDER_JWKS_MIN_REFRESH_INTERVAL", min_refresh)
        .env("IDENTITY_PROVIDER_JWKS_TIMEOUT", "2s");
    Server::start_with(&db.url, db.dir.path(), options)
}

async fn exchange(
    auth: &mut AuthServiceClient<Channel>,
    token: &str,
) -> Result<ExchangeTokenResponse, Status> {
    auth.exchange_token(ExchangeTokenRequest {
        subject_token: token.to_owned(),
        subject_token_type: JWT_TYPE.into(),
    })
    .await
    .map(|r| r.into_inner())
}

#[track_caller]
fn assert_refused(result: Result<ExchangeTokenResponse, Status>, case: &str) {
    let status = result.err().unwrap_or_else(|| panic!("{case}: accepted"));
    assert_eq!(status.code(), Code::Unauthenticated, "{case}: {status:?}");
    assert_eq!(
        status.message(),
        GENERIC,
        "{case}: the message says nothing"
    );
}

async fn profiles(server: &Server) -> ProfileServiceClient<Channel> {
    ProfileServiceClient::new(server.channel().await)
}

async fn health(server: &Server, service: &str) -> ServingStatus {
    HealthClient::new(server.channel().await)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .map(|r| r.into_inner().status())
        .unwrap_or(ServingStatus::Unknown)
}

/// Waits until the start-up JWKS fetch succeeded.
async fn provider_serving(server: &Server) {
    assert!(
        eventually(Duration::from_secs(15), || async {
            health(server, "identity.provider").await == ServingStatus::Serving
        })
        .await,
        "identity.provider never became SERVING; logs:\n{}",
        server.logs()
    );
}

fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

/// A token signed by a key the provider never published, under `kid`.
fn stranger_token(kid: &str, sub: &str) -> String {
    let pem = generate_ed25519_pem().unwrap();
    let key = EncodingKey::from_ed_pem(pem.expose_secret().as_bytes()).unwrap();
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.to_owned());
    header.typ = None;
    let n = now();
    let claims = json!({"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "iat": n, "exp": n + 600});
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

fn decode_part(part: &str) -> Value {
    serde_json::from_slice(&B64.decode(part).unwrap()).unwrap()
}

fn encode_part(value: &Value) -> String {
    B64.encode(value.to_string())
}

async fn signed_up(provider: &BetterAuth, name: &str) -> User {
    provider.sign_up(&email("ba"), PASSWORD, name).await
}

// ---------------------------------------------------------------------------
// Tests

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_forged_and_stale_provider_tokens_are_refused_alike() {
    let provider = BetterAuth::start();
    // Same issuer and audience strings, its own keys.
    let impostor = BetterAuth::start();
    let db = TestDb::new(Backend::Sqlite);
    let server = identity(&db, &provider, "200ms");
    let mut auth = server.auth().await;
    provider_serving(&server).await;

    let user = signed_up(&provider, "Target").await;
    let genuine = provider.token(&user).await;
    let kid = decode_part(genuine.split('.').next().unwrap())["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    let n = now();

    // A user of the other instance whose id is the target's: its signature
    // cannot verify here.
    let other = signed_up(&impostor, "Impostor").await;
    assert_refused(
        exchange(&mut auth, &impostor.token(&other).await).await,
        "other instance",
    );
    assert_refused(
        exchange(
            &mut auth,
            &impostor
                .sign(json!({"sub": user.id, "email": user.email}))
                .await,
        )
        .await,
        "other instance, target's sub",
    );

    // Signed by the real provider key, wrong in one claim each.
    let stale = [
        (
            "expired",
            json!({"sub": user.id, "iat": n - 7200, "exp": n - 3600}),
        ),
        (
            "wrong audience",
            json!({"sub": user.id, "aud": "someone-else"}),
        ),
        (
            "wrong issuer",
            json!({"sub": user.id, "iss": "https://evil.example"}),
        ),
        ("not yet valid", json!({"sub": user.id, "nbf": n + 3600})),
        (
            "issued in the future",
            json!({"sub": user.id, "iat": n + 3600}),
        ),
        ("no subject", json!({"email": user.email})),
    ];
    for (case, payload) in stale {
        assert_refused(
            exchange(&mut auth, &provider.sign(payload).await).await,
            case,
        );
    }

    // Tampered payload: the target's token claiming someone else.
    let parts: Vec<&str> = genuine.split('.').collect();
    let mut claims = decode_part(parts[1]);
    claims["sub"] = json!("someone-else");
    let tampered = format!("{}.{}.{}", parts[0], encode_part(&claims), parts[2]);
    assert_refused(exchange(&mut auth, &tampered).await, "tampered payload");

    // alg none, with and without a signature.
    let none = encode_part(&json!({"alg": "none", "kid": kid}));
    assert_refused(
        exchange(&mut auth, &format!("{none}.{}.", parts[1])).await,
        "alg none",
    );
    assert_refused(
        exchange(&mut auth, &format!("{none}.{}.{}", parts[1], parts[2])).await,
        "alg none with a signature",
    );

    // HS256 "signed" with the provider's public key (algorithm confusion),
    // as raw bytes and as the published JWK text.
    let jwks = provider.jwks().await;
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .unwrap()
        .clone();
    let x = B64.decode(jwk["x"].as_str().unwrap()).unwrap();
    for secret in [
        x.clone(),
        jwk.to_string().into_bytes(),
        jwk["x"].as_str().unwrap().as_bytes().to_vec(),
    ] {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.clone());
        let forged = jsonwebtoken::encode(
            &header,
            &claims_of(&genuine),
            &EncodingKey::from_secret(&secret),
        )
        .unwrap();
        assert_refused(
            exchange(&mut auth, &forged).await,
            "HS256 with the public key",
        );
    }

    // A key header pointing elsewhere changes nothing: only kid is looked up.
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("not-published".into());
    header.jku = Some(impostor.jwks_url());
    let pem = generate_ed25519_pem().unwrap();
    let jku = jsonwebtoken::encode(
        &header,
        &claims_of(&genuine),
        &EncodingKey::from_ed_pem(pem.expose_secret().as_bytes()).unwrap(),
    )
    .unwrap();
    assert_refused(exchange(&mut auth, &jku).await, "jku to the impostor");

    // Malformed input: INVALID_ARGUMENT naming the field.
    for (token, token_type, field) in [
        ("", JWT_TYPE, "subject_token"),
        (
            genuine.as_str(),
            "urn:ietf:params:oauth:token-type:saml2",
            "subject_token_type",
        ),
    ] {
        let status = auth
            .exchange_token(ExchangeTokenRequest {
                subject_token: token.into(),
                subject_token_type: token_type.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert!(status.message().contains(field), "{status:?}");
    }
    assert_refused(exchange(&mut auth, "not.a.jwt").await, "garbage");

    // Nothing above created the target's profile; the genuine token does.
    let created = exchange(&mut auth, &genuine)
        .await
        .expect("the genuine token");
    assert!(created.created, "no refused token created a profile");
    assert_eq!(created.profile.unwrap().auth_id, user.id);

    // The reasons are in the security log, the tokens are not.
    let logs = server.logs();
    for reason in [
        "bad_signature",
        "expired",
        "wrong_audience",
        "wrong_issuer",
        "not_yet_valid",
        "wrong_algorithm",
        "unknown_key",
    ] {
        assert!(
            logs.lines()
                .any(|l| l.contains("identity.exchange.refused") && l.contains(reason)),
            "no refusal logged for {reason}:\n{logs}"
        );
    }
    assert!(!logs.contains(&genuine) && !logs.contains(&tampered));
}

fn claims_of(token: &str) -> Value {
    decode_part(token.split('.').nth(1).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_provider_key_is_fetched_once_without_a_restart() {
    let provider = BetterAuth::start();
    let db = TestDb::new(Backend::Sqlite);
    let server = identity(&db, &provider, "500ms");
    let mut auth = server.auth().await;
    provider_serving(&server).await;
    let user = signed_up(&provider, "Rotating").await;

    let old = provider.token(&user).await;
    let old_again = provider.sign(json!({"sub": user.id, "nonce": "old"})).await;
    exchange(&mut auth, &old)
        .await
        .expect("token of the first key");
    let before = provider.jwks_hits().await;
    assert_eq!(before, 1, "only the start-up fetch so far");

    let new_kid = provider.rotate().await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let new = provider.token(&user).await;
    assert_eq!(
        decode_part(new.split('.').next().unwrap())["kid"],
        new_kid.as_str(),
        "the provider signs with the new key"
    );
    // Sequential and concurrent exchanges of new-key tokens.
    exchange(&mut auth, &new)
        .await
        .expect("the new key is fetched on demand");
    let channel = server.channel().await;
    let mut tokens = Vec::new();
    for nonce in 0..5 {
        tokens.push(provider.sign(json!({"sub": user.id, "nonce": nonce})).await);
    }
    let results = futures::future::join_all(tokens.into_iter().map(|jwt| {
        let mut auth = AuthServiceClient::new(channel.clone());
        async move { exchange(&mut auth, &jwt).await }
    }))
    .await;
    for result in results {
        result.expect("new-key tokens keep exchanging");
    }
    exchange(&mut auth, &old_again)
        .await
        .expect("the old key is still published");
    assert_eq!(
        provider.jwks_hits().await,
        before + 1,
        "one refetch for the new kid, not one per request"
    );
    assert!(
        server.logs().contains("unknown_kid"),
        "the refetch is logged with its reason"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unknown_kids_costs_the_provider_at_most_one_request() {
    let provider = BetterAuth::start();
    let db = TestDb::new(Backend::Sqlite);
    let server = identity(&db, &provider, "3s");
    provider_serving(&server).await;
    let user = signed_up(&provider, "Flooded").await;
    // Past the interval since the start-up fetch: one refetch is due.
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let before = provider.jwks_hits().await;

    let channel = server.channel().await;
    let forged: Vec<String> = (0..100)
        .map(|i| stranger_token(&format!("random-{i}-{}", uuid::Uuid::new_v4()), &user.id))
        .collect();
    let started = std::time::Instant::now();
    let results = futures::future::join_all(forged.into_iter().map(|jwt| {
        let mut auth = AuthServiceClient::new(channel.clone());
        async move { exchange(&mut auth, &jwt).await }
    }))
    .await;
    let elapsed = started.elapsed();
    for result in results {
        assert_refused(result, "random kid");
    }
    let hits = provider.jwks_hits().await - before;
    assert!(
        elapsed < Duration::from_secs(3) || hits <= 2,
        "the burst took {elapsed:?}"
    );
    assert_eq!(
        hits, 1,
        "100 unknown kids, one JWKS request (burst took {elapsed:?})"
    );

    // The genuine user is not locked out by the flood.
    let mut auth = server.auth().await;
    exchange(&mut auth, &provider.token(&user).await)
        .await
        .expect("cached keys still verify");
    assert_eq!(provider.jwks_hits().await - before, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_provider_down_cached_keys_work_and_the_rest_stays_serving() {
    let mut provider = BetterAuth::start();
    let db = TestDb::new(Backend::Sqlite);
    let server = identity(&db, &provider, "300ms");
    let mut auth = server.auth().await;
    provider_serving(&server).await;
    let user = signed_up(&provider, "Resilient").await;
    exchange(&mut auth, &provider.token(&user).await)
        .await
        .unwrap();
    let cached = provider.token(&user).await;

    provider.stop();
    tokio::time::sleep(Duration::from_millis(400)).await;

    let done = exchange(&mut auth, &cached)
        .await
        .expect("a token of a cached key exchanges while the provider is down");
    assert!(!done.created);
    let status = exchange(&mut auth, &stranger_token("rotated-meanwhile", &user.id))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let status = exchange(&mut auth, &stranger_token("another-new-kid", &user.id))
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::Unavailable,
        "within the interval too: {status:?}"
    );

    assert!(
        eventually(Duration::from_secs(10), || async {
            health(&server, "identity.provider").await == ServingStatus::NotServing
        })
        .await,
        "the provider dependency reports NOT_SERVING"
    );
    assert_eq!(health(&server, "").await, ServingStatus::Serving);
    assert_eq!(
        health(&server, "identity.v1.AuthService").await,
        ServingStatus::Serving
    );
    // The rest of the API works: local accounts, validation.
    let local = auth
        .register(RegisterRequest {
            email: email("local"),
            password: PASSWORD.into(),
            display_name: String::new(),
        })
        .await
        .expect("Register works without the provider")
        .into_inner();
    let validated = auth
        .validate_token(ValidateTokenRequest {
            access_token: done.tokens.unwrap().access_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(validated.active);
    assert!(local.tokens.is_some());
    assert!(server.logs().contains("identity.provider.jwks_unavailable"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sign_up_hook_provisions_profiles_with_a_provisioner_token() {
    let db = TestDb::new(Backend::Postgres);
    let admin_email = email("admin");
    let plain = Server::start_with(
        &db.url,
        db.dir.path(),
        ServerOptions::default().env("IDENTITY_BOOTSTRAP_ADMINS", admin_email.clone()),
    );
    let mut auth = plain.auth().await;
    // Without a provider, ExchangeToken is off.
    let status = exchange(&mut auth, "a.b.c").await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("IDENTITY_PROVIDER_JWKS_URL"),
        "{status:?}"
    );

    let service_token = crate::support::issue_service_token(&db, "provisioner");
    assert_eq!(service_token.split('.').count(), 3, "a JWT on stdout alone");

    // The service token is an ordinary, valid access token of role provisioner.
    let validated = auth
        .validate_token(ValidateTokenRequest {
            access_token: service_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(validated.active);
    assert_eq!(validated.auth_provider, "service");
    assert_eq!(validated.roles, ["provisioner"]);

    // It may create role-less external profiles, nothing more.
    let mut client = profiles(&plain).await;
    let create = |profile: UserProfile| {
        bearer(
            &service_token,
            CreateProfileRequest {
                profile: Some(profile),
            },
        )
    };
    for (case, profile) in [
        (
            "roles",
            UserProfile {
                auth_provider: "better-auth".into(),
                auth_id: "sneaky".into(),
                roles: vec!["admin".into()],
                ..Default::default()
            },
        ),
        (
            "local provider",
            UserProfile {
                auth_provider: "local".into(),
                auth_id: "x".into(),
                ..Default::default()
            },
        ),
        (
            "service provider",
            UserProfile {
                auth_provider: "service".into(),
                auth_id: "x".into(),
                ..Default::default()
            },
        ),
    ] {
        let status = client.create_profile(create(profile)).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{case}: {status:?}");
    }
    let status = client
        .list_profiles(bearer(&service_token, ListProfilesRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    // Better-Auth's databaseHooks.user.create.after calls CreateProfile.
    let provider = BetterAuth::start_with(
        BetterAuthOptions::default()
            .env("BA_IDENTITY_URL", plain.url())
            .env("BA_IDENTITY_TOKEN", service_token.clone()),
    );
    let user = signed_up(&provider, "Hooked User").await;
    let admin = auth
        .register(RegisterRequest {
            email: admin_email,
            password: PASSWORD.into(),
            display_name: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap()
        .access_token;
    let mut hooked = None;
    for _ in 0..50 {
        match client
            .lookup_profile(bearer(
                &admin,
                LookupProfileRequest {
                    auth_provider: "better-auth".into(),
                    auth_id: user.id.clone(),
                },
            ))
            .await
        {
            Ok(found) => {
                hooked = Some(found.into_inner());
                break;
            }
            Err(s) if s.code() == Code::NotFound => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(s) => panic!("{s:?}"),
        }
    }
    let hooked = hooked.unwrap_or_else(|| {
        panic!(
            "the hook created no profile; provider logs:\n{}",
            provider.logs()
        )
    });
    assert_eq!(hooked.email, user.email);
    assert_eq!(hooked.display_name, "Hooked User");
    drop(plain);

    // Restarted with the provider configured, the user's exchange finds the
    // hook's profile. The token is minted first: Better-Auth makes its
    // signing key on first use, and the server's start-up JWKS fetch should
    // see it rather than wait out the refetch interval.
    let token = provider.token(&user).await;
    let server = identity(&db, &provider, "1s");
    let mut auth = server.auth().await;
    let done = exchange(&mut auth, &token)
        .await
        .unwrap_or_else(|e| panic!("exchange after the hook: {e:?}\n{}", server.logs()));
    assert!(!done.created, "the hook created it already");
    assert_eq!(done.profile.unwrap().id, hooked.id);

    // Logout with the service token as bearer revokes it.
    let mut request = tonic::Request::new(LogoutRequest::default());
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {service_token}").parse().unwrap(),
    );
    auth.logout(request).await.unwrap();
    let status = profiles(&server)
        .await
        .create_profile(bearer(
            &service_token,
            CreateProfileRequest {
                profile: Some(UserProfile {
                    auth_provider: "better-auth".into(),
                    auth_id: "after-revocation".into(),
                    ..Default::default()
                }),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

#[test]
fn a_misconfigured_provider_stops_start_up_naming_the_setting() {
    for (key, value, setting) in [
        (
            "IDENTITY_PROVIDER_ALGORITHMS",
            "EdDSA,HS256",
            "IDENTITY_PROVIDER_ALGORITHMS",
        ),
        (
            "IDENTITY_PROVIDER_ALGORITHMS",
            "none",
            "IDENTITY_PROVIDER_ALGORITHMS",
        ),
        (
            "IDENTITY_PROVIDER_AUDIENCE",
            "",
            "IDENTITY_PROVIDER_AUDIENCE",
        ),
        ("IDENTITY_PROVIDER_NAME", "Local", "IDENTITY_PROVIDER_NAME"),
        (
            "IDENTITY_PROVIDER_NAME",
            "SERVICE",
            "IDENTITY_PROVIDER_NAME",
        ),
        (
            "IDENTITY_PROVIDER_JWKS_URL",
            "file:///etc/passwd",
            "IDENTITY_PROVIDER_JWKS_URL",
        ),
    ] {
        let (code, stderr) = crate::support::refused_start(&[
            (
                "IDENTITY_PROVIDER_JWKS_URL",
                "http://127.0.0.1:9/api/auth/jwks",
            ),
            ("IDENTITY_PROVIDER_ISSUER", ISSUER),
            ("IDENTITY_PROVIDER_AUDIENCE", AUDIENCE),
            (key, value),
        ]);
        assert_eq!(code, Some(2), "{key}={value}");
        assert!(stderr.contains(setting), "{key}={value}: {stderr}");
    }
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
    let server = Server::start_with(
        &db.url,
        db.dir.path(),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es256_rs256_and_ps256_providers_work_only_when_allowed() {
    for alg in ["ES256", "RS256", "PS256"] {
        let provider = BetterAuth::start_with(BetterAuthOptions::default().env("BA_ALG", alg));
        let user = signed_up(&provider, alg).await;
        let jwt = provider.token(&user).await;
        assert_eq!(decode_part(jwt.split('.').next().unwrap())["alg"], alg);

        let db = TestDb::new(Backend::Sqlite);
        let allowed = identity_with(
            &db,
            &provider,
            "1s",
            ServerOptions::default().env("IDENTITY_PROVIDER_ALGORITHMS", format!("EdDSA,{alg}")),
        );
        let done = exchange(&mut allowed.auth().await, &jwt)
            .await
            .unwrap_or_else(|s| panic!("{alg} allowed: {s:?}\n{}", allowed.logs()));
        assert_eq!(done.profile.unwrap().auth_id, user.id);
        drop(allowed);

        // The default allow-list is EdDSA alone.
        let db = TestDb::new(Backend::Sqlite);
        let default = identity(&db, &provider, "1s");
        assert_refused(exchange(&mut default.auth().await, &jwt).await, alg);
    }
}

/// Serves `upstream` (plain HTTP) over TLS with `leaf`, on loopback.
async fn tls_front(upstream: std::net::SocketAddr, leaf: &crate::support::pki::Leaf) -> u16 {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                }
            });
        }
    });
    port
}

/// The JWKS decides which tokens are believed, so it is fetched only from a
/// server whose certificate chains to a trusted root: the system's, or the
/// bundle an operator names with SSL_CERT_FILE (e.g. a private CA).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_server_with_an_untrusted_certificate_is_never_believed() {
    let provider = BetterAuth::start();
    let user = signed_up(&provider, "Behind TLS").await;
    let jwt = provider.token(&user).await;
    let upstream: std::net::SocketAddr = provider
        .jwks_url()
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let ca = crate::support::pki::Ca::new("private provider CA");
    let port = tls_front(upstream, &ca.server()).await;
    let options = || {
        ServerOptions::default()
            .env(
                "IDENTITY_PROVIDER_JWKS_URL",
                format!("https://localhost:{port}/api/auth/jwks"),
            )
            .env("IDENTITY_PROVIDER_ISSUER", ISSUER)
            .env("IDENTITY_PROVIDER_AUDIENCE", AUDIENCE)
            .env("IDENTITY_PROVIDER_JWKS_MIN_REFRESH_INTERVAL", "1s")
            .env("IDENTITY_PROVIDER_JWKS_TIMEOUT", "2s")
    };

    // The private CA is not among the system's roots.
    let db = TestDb::new(Backend::Sqlite);
    let untrusting = Server::start_with(&db.url, db.dir.path(), options());
    let status = exchange(&mut untrusting.auth().await, &jwt)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let logs = untrusting.logs();
    assert!(
        logs.contains("certificate") || logs.contains("UnknownIssuer"),
        "the log says why the keys could not be fetched:\n{logs}"
    );
    drop(untrusting);

    // Trusted once the operator names the CA bundle.
    let db = TestDb::new(Backend::Sqlite);
    let bundle = db.dir.path().join("provider-ca.pem");
    std::fs::write(&bundle, &ca.pem).unwrap();
    let trusting = Server::start_with(
        &db.url,
        db.dir.path(),
        options().env("SSL_CERT_FILE", bundle.display().to_string()),
    );
    let done = exchange(&mut trusting.auth().await, &jwt)
        .await
        .unwrap_or_else(|s| panic!("{s:?}\n{}", trusting.logs()));
    assert_eq!(done.profile.unwrap().auth_id, user.id);
}

/// Serves `body` as JSON to every HTTP/1.1 request; its port.
async fn static_json_server(body: String) -> u16 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tcp.write_all(answer.as_bytes()).await;
            });
        }
    });
    port
}

/// A provider that signs with the key this service signs its own access
/// tokens with (a shared key, or a provider issuing RFC 9068 access tokens
/// beside its sign-in JWTs): an `at+jwt` is no sign-in, whatever it says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_access_token_signed_by_the_providers_key_is_no_sign_in() {
    use ed25519_dalek::pkcs8::DecodePrivateKey as _;
    let db = TestDb::new(Backend::Sqlite);
    let pem = generate_ed25519_pem().unwrap();
    let key_file = db.dir.path().join("shared-key.pem");
    std::fs::write(&key_file, pem.expose_secret()).unwrap();
    let kid = identity_core::tokens::Ed25519Key::from_pem(pem.expose_secret(), "shared")
        .unwrap()
        .kid()
        .to_owned();
    let public = ed25519_dalek::SigningKey::from_pkcs8_pem(pem.expose_secret())
        .unwrap()
        .verifying_key();
    let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
                                "kid": kid, "x": B64.encode(public.as_bytes())}]});
    let port = static_json_server(jwks.to_string()).await;
    let server = Server::start_with(
        &db.url,
        db.dir.path(),
        ServerOptions::default()
            .env("IDENTITY_SIGNING_KEY_FILE", key_file.display().to_string())
            .env("IDENTITY_ISSUER", ISSUER)
            .env("IDENTITY_AUDIENCE", AUDIENCE)
            .env(
                "IDENTITY_PROVIDER_JWKS_URL",
                format!("http://127.0.0.1:{port}/jwks"),
            )
            .env("IDENTITY_PROVIDER_ISSUER", ISSUER)
            .env("IDENTITY_PROVIDER_AUDIENCE", AUDIENCE)
            .env("IDENTITY_PROVIDER_JWKS_TIMEOUT", "2s"),
    );
    provider_serving(&server).await;
    let mut auth = server.auth().await;
    let access = crate::support::register(&mut auth, &email("shared"))
        .await
        .access_token;
    assert_eq!(
        decode_part(access.split('.').next().unwrap())["typ"],
        "at+jwt"
    );
    assert_refused(exchange(&mut auth, &access).await, "an at+jwt access token");

    // The same key and claims as a plain JWT is a sign-in: the refusal above
    // is the `typ`, nothing else.
    let n = now();
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid);
    let claims = json!({"sub": claims_of(&access)["sub"], "iss": ISSUER, "aud": AUDIENCE,
                        "iat": n, "exp": n + 600});
    let plain = jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_ed_pem(pem.expose_secret().as_bytes()).unwrap(),
    )
    .unwrap();
    exchange(&mut auth, &plain)
        .await
        .expect("a plain JWT of the provider's key");
    assert!(
        eventually(Duration::from_secs(5), || async {
            server
                .logs()
                .lines()
                .any(|l| l.contains("identity.exchange.refused") && l.contains("wrong_type"))
        })
        .await,
        "the refusal's reason is logged"
    );
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

/// Better-Auth's default audience is its base URL, i.e. every client's:
/// in production a token it issued for any other app would be accepted.
#[test]
fn production_refuses_a_provider_audience_that_is_not_its_own() {
    let base = [
        (
            "IDENTITY_PROVIDER_JWKS_URL",
            "https://auth.example.com/api/auth/jwks",
        ),
        ("IDENTITY_PROVIDER_ISSUER", "https://auth.example.com"),
    ];
    for audience in [None, Some("https://auth.example.com")] {
        let mut env = base.to_vec();
        if let Some(audience) = audience {
            env.push(("IDENTITY_PROVIDER_AUDIENCE", audience));
        }
        let (code, stderr) = crate::support::refused_production_start(&env);
        assert_eq!(code, Some(2), "audience {audience:?}: {stderr}");
        assert!(
            stderr.contains("IDENTITY_PROVIDER_AUDIENCE"),
            "audience {audience:?}: {stderr}"
        );
    }
}

/// `Local` or `SERVICE` is not `local` to this service, but it is to a
/// reader, a dashboard or a consumer that compares without case: a
/// provisioner (or a provider configuration) must not mint such profiles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_provider_names_are_reserved_in_any_case() {
    let db = TestDb::new(Backend::Sqlite);
    let admin_email = email("admin");
    let server = Server::start_with(
        &db.url,
        db.dir.path(),
        ServerOptions::default().env("IDENTITY_BOOTSTRAP_ADMINS", admin_email.clone()),
    );
    let provisioner = crate::support::issue_service_token(&db, "provisioner");
    let admin = crate::support::register(&mut server.auth().await, &admin_email)
        .await
        .access_token;
    let mut client = profiles(&server).await;
    for name in ["Local", "SERVICE", " local", "lOcAl"] {
        let profile = || UserProfile {
            auth_provider: name.into(),
            auth_id: "x".into(),
            ..Default::default()
        };
        let status = client
            .create_profile(bearer(
                &provisioner,
                CreateProfileRequest {
                    profile: Some(profile()),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::PermissionDenied,
            "provisioner {name:?}: {status:?}"
        );
        let status = client
            .create_profile(bearer(
                &admin,
                CreateProfileRequest {
                    profile: Some(profile()),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "admin {name:?}: {status:?}"
        );
        assert!(
            status.message().contains("profile.auth_provider"),
            "{status:?}"
        );
    }
    client
        .create_profile(bearer(
            &provisioner,
            CreateProfileRequest {
                profile: Some(UserProfile {
                    auth_provider: "better-auth".into(),
                    auth_id: "fine".into(),
                    ..Default::default()
                }),
            },
        ))
        .await
        .expect("an external provider's profile");
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
    let local = crate::support::register(&mut auth, &email("local")).await;
    let answer = validated(&mut auth, local.access_token).await;
    assert!(answer.active && !answer.email_verified);
}
