//! The Sessions API (AuthService.ListSessions, RevokeSession,
//! RevokeAllSessions), driven the way an attacker would: another user's
//! session ids and profiles, tampered and moved page tokens, a provisioner
//! reaching for password accounts, and revocations that must reach the
//! other replica within the bound.

use crate::on_both_backends;
use crate::support::better_auth::{AUDIENCE, BetterAuth, BetterAuthOptions, ISSUER};
use crate::support::{
    Backend, PASSWORD, Server, ServerOptions, TestDb, active, bearer, email, eventually, scalar,
};
use crate::support::{assert_invalid, refused_within};
use identity::proto::v1::auth_service_client::AuthServiceClient;
use identity::proto::v1::*;
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic::{Code, Status};

on_both_backends!(
    owners_list_their_sessions_with_coarse_addresses_and_admins_see_full_ones,
    another_users_session_is_not_found_and_stays_active,
    revoke_all_sessions_keeps_the_callers_own_only_when_asked,
);

type Auth = AuthServiceClient<Channel>;

/// The bound the replica test configures (the default), and room for the
/// polling call on a busy machine.
const MAX_STALENESS: Duration = Duration::from_secs(1);
const SLACK: Duration = Duration::from_millis(500);

/// A server that trusts 127.0.0.1 as a proxy (so tests choose the client
/// address with `x-forwarded-for`) and has one bootstrap admin.
fn server(db: &TestDb, admin: &str, options: ServerOptions) -> Server {
    Server::start_with(
        &db.url,
        db.dir.path(),
        options
            .env("IDENTITY_TRUSTED_PROXIES", "127.0.0.1/32")
            .env("IDENTITY_BOOTSTRAP_ADMINS", admin),
    )
}

/// A request from `addr` (through the trusted proxy) with `user-agent`.
fn from<T>(addr: &str, user_agent: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let metadata = request.metadata_mut();
    metadata.insert("x-forwarded-for", addr.parse().unwrap());
    metadata.insert("user-agent", user_agent.parse().unwrap());
    request
}

async fn register_from(auth: &mut Auth, address: &str, addr: &str, ua: &str) -> RegisterResponse {
    auth.register(from(
        addr,
        ua,
        RegisterRequest {
            email: address.into(),
            password: PASSWORD.into(),
            display_name: String::new(),
        },
    ))
    .await
    .expect("registers")
    .into_inner()
}

async fn login_from(auth: &mut Auth, address: &str, addr: &str, ua: &str) -> TokenPair {
    auth.login(from(
        addr,
        ua,
        LoginRequest {
            email: address.into(),
            password: PASSWORD.into(),
            ..Default::default()
        },
    ))
    .await
    .expect("logs in")
    .into_inner()
    .tokens
    .unwrap()
}

async fn list(
    auth: &mut Auth,
    token: &str,
    request: ListSessionsRequest,
) -> Result<ListSessionsResponse, Status> {
    auth.list_sessions(bearer(token, request))
        .await
        .map(|r| r.into_inner())
}

async fn list_own(auth: &mut Auth, token: &str) -> Vec<Session> {
    list(auth, token, ListSessionsRequest::default())
        .await
        .expect("ListSessions of one's own")
        .sessions
}

async fn revoke(auth: &mut Auth, token: &str, session_id: &str) -> Result<(), Status> {
    auth.revoke_session(bearer(
        token,
        RevokeSessionRequest {
            session_id: session_id.into(),
        },
    ))
    .await
    .map(drop)
}

async fn revoke_all(
    auth: &mut Auth,
    token: &str,
    request: RevokeAllSessionsRequest,
) -> Result<i32, Status> {
    auth.revoke_all_sessions(bearer(token, request))
        .await
        .map(|r| r.into_inner().revoked_count)
}

/// `hidden` (someone else's) must be indistinguishable from `missing`.
#[track_caller]
fn assert_same_as_missing(hidden: Status, missing: Status, case: &str) {
    assert_eq!(hidden.code(), Code::NotFound, "{case}: {hidden:?}");
    assert_eq!(missing.code(), Code::NotFound, "{case}: {missing:?}");
    assert_eq!(hidden.message(), missing.message(), "{case}");
    assert_eq!(hidden.details(), missing.details(), "{case}");
}

fn random_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn time(t: &Option<prost_types::Timestamp>) -> (i64, i32) {
    let t = t.as_ref().expect("a timestamp");
    (t.seconds, t.nanos)
}

fn ids(sessions: &[Session]) -> Vec<&str> {
    sessions.iter().map(|s| s.session_id.as_str()).collect()
}

// ---------------------------------------------------------------------------

async fn owners_list_their_sessions_with_coarse_addresses_and_admins_see_full_ones(
    backend: Backend,
) {
    let db = TestDb::new(backend);
    let admin_email = email("admin");
    let server = server(&db, &admin_email, ServerOptions::default());
    let mut auth = server.auth().await;
    let admin = register_from(&mut auth, &admin_email, "198.51.100.1", "admin-console/1")
        .await
        .tokens
        .unwrap();

    let address = email("owner");
    let registered = register_from(&mut auth, &address, "203.0.113.77", "Pixel-Phone/1.0").await;
    let profile = registered.profile.unwrap();
    let phone = registered.tokens.unwrap();
    let laptop = login_from(
        &mut auth,
        &address,
        "2001:db8:7:9::42",
        "Laptop-Browser/2.0",
    )
    .await;
    let long_agent = format!("Flooder/{}", "x".repeat(4000));
    let flooder = login_from(&mut auth, &address, "192.0.2.200", &long_agent).await;

    // The owner sees three sessions, newest first, the current one marked,
    // addresses coarse, and no secret anywhere in the answer.
    let seen = list(
        &mut auth,
        &laptop.access_token,
        ListSessionsRequest::default(),
    )
    .await
    .unwrap();
    let sessions = &seen.sessions;
    assert_eq!(
        ids(sessions),
        [&flooder.session_id, &laptop.session_id, &phone.session_id],
        "newest first"
    );
    assert!(seen.next_page_token.is_empty());
    let current: Vec<_> = sessions.iter().filter(|s| s.current).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0].session_id, laptop.session_id);
    assert_eq!(sessions[2].client_address, "203.0.113.0/24");
    assert_eq!(sessions[1].client_address, "2001:db8:7::/48");
    assert_eq!(sessions[0].client_address, "192.0.2.0/24");
    assert!(
        sessions[2].user_agent.starts_with("Pixel-Phone/1.0"),
        "{:?}",
        sessions[2]
    );
    assert!(sessions[1].user_agent.starts_with("Laptop-Browser/2.0"));
    assert!(
        sessions[0].user_agent.len() <= 256 && sessions[0].user_agent.starts_with("Flooder/xxx"),
        "a user agent is stored cut to 256 bytes: {} bytes",
        sessions[0].user_agent.len()
    );
    for s in sessions {
        assert_eq!(
            time(&s.last_use_time),
            time(&s.create_time),
            "never refreshed yet"
        );
        assert!(time(&s.expire_time) > time(&s.create_time));
    }
    let text = format!("{seen:?}");
    for secret in [
        &phone.refresh_token,
        &laptop.refresh_token,
        &flooder.refresh_token,
        &phone.access_token,
    ] {
        assert!(!text.contains(secret.as_str()), "a token in the answer");
    }
    for full in ["203.0.113.77", "2001:db8:7:9::42", "192.0.2.200"] {
        assert!(!text.contains(full), "the owner sees {full} in full");
    }
    let hashes = scalar(
        &db,
        &format!(
            "SELECT count(*) FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id \
             WHERE s.profile_id = '{}'",
            profile.id
        ),
    );
    assert_eq!(
        hashes, 3,
        "the refresh tokens exist, and are not what was shown"
    );

    // Refresh moves last use; the session keeps its id and place.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let rotated = auth
        .refresh(RefreshRequest {
            refresh_token: phone.refresh_token.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();
    assert_eq!(rotated.session_id, phone.session_id);
    let after = list_own(&mut auth, &laptop.access_token).await;
    let refreshed = after
        .iter()
        .find(|s| s.session_id == phone.session_id)
        .unwrap();
    assert!(
        time(&refreshed.last_use_time) > time(&refreshed.create_time),
        "Refresh is a use: {refreshed:?}"
    );
    // Validation is not (the hot path does not write).
    assert!(active(&mut auth, &laptop.access_token).await);
    let laptop_row = after
        .iter()
        .find(|s| s.session_id == laptop.session_id)
        .unwrap();
    assert_eq!(
        time(&laptop_row.last_use_time),
        time(&laptop_row.create_time)
    );

    // The admin names the profile and sees the addresses in full.
    let by_admin = list(
        &mut auth,
        &admin.access_token,
        ListSessionsRequest {
            profile_id: profile.id.clone(),
            ..Default::default()
        },
    )
    .await
    .expect("an admin lists anyone's sessions");
    let addresses: Vec<_> = by_admin
        .sessions
        .iter()
        .map(|s| s.client_address.as_str())
        .collect();
    assert_eq!(
        addresses,
        ["192.0.2.200", "2001:db8:7:9::42", "203.0.113.77"]
    );
    assert!(
        by_admin.sessions.iter().all(|s| !s.current),
        "none is the admin's"
    );

    // Paged walk, one per page; every page token is bound to its profile.
    let mut walked = Vec::new();
    let mut token = String::new();
    let mut tokens = Vec::new();
    loop {
        let page = list(
            &mut auth,
            &laptop.access_token,
            ListSessionsRequest {
                page_size: 1,
                page_token: token.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert!(page.sessions.len() <= 1);
        walked.extend(page.sessions.into_iter().map(|s| s.session_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
        tokens.push(token.clone());
    }
    assert_eq!(walked, ids(sessions), "the walk sees each session once");
    let owners_token = tokens[0].clone();

    // Tampered: one character changed, the MAC fails.
    let mut tampered = owners_token.clone().into_bytes();
    tampered[4] = if tampered[4] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    // Moved: the owner's token used for another profile's listing (the
    // admin's own), by the admin naming the owner's profile differently,
    // and by another user for their own listing.
    let other = email("other");
    let other_tokens = register_from(&mut auth, &other, "198.51.100.9", "x")
        .await
        .tokens
        .unwrap();
    let attempts = [
        (
            "tampered",
            &laptop.access_token,
            String::new(),
            tampered.clone(),
        ),
        (
            "junk",
            &laptop.access_token,
            String::new(),
            "not-a-token".to_owned(),
        ),
        (
            "admin, own listing",
            &admin.access_token,
            String::new(),
            owners_token.clone(),
        ),
        (
            "admin, as `me`",
            &admin.access_token,
            "me".to_owned(),
            owners_token.clone(),
        ),
        (
            "another user",
            &other_tokens.access_token,
            String::new(),
            owners_token.clone(),
        ),
    ];
    for (case, who, profile_id, page_token) in attempts {
        let status = list(
            &mut auth,
            who,
            ListSessionsRequest {
                profile_id,
                page_size: 1,
                page_token,
            },
        )
        .await
        .unwrap_err();
        assert_invalid(&status, "page_token", case);
    }
    // The owner's token does serve the admin naming the owner's profile:
    // it is bound to the listing, not to who asks.
    let next = list(
        &mut auth,
        &admin.access_token,
        ListSessionsRequest {
            profile_id: profile.id.clone(),
            page_size: 1,
            page_token: owners_token,
        },
    )
    .await
    .expect("same profile, same query");
    assert_eq!(ids(&next.sessions), [laptop.session_id.as_str()]);

    // Page sizes: negative is invalid, huge is clamped.
    let status = list(
        &mut auth,
        &laptop.access_token,
        ListSessionsRequest {
            page_size: -1,
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_invalid(&status, "page_size", "negative page size");
    let huge = list(
        &mut auth,
        &laptop.access_token,
        ListSessionsRequest {
            page_size: i32::MAX,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(huge.sessions.len(), 3);

    // Ended sessions are not listed.
    auth.logout(LogoutRequest {
        refresh_token: flooder.refresh_token.clone(),
    })
    .await
    .unwrap();
    let left = list_own(&mut auth, &laptop.access_token).await;
    assert_eq!(ids(&left), [&laptop.session_id, &phone.session_id]);

    // Without a token, nothing.
    let status = auth
        .list_sessions(ListSessionsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

async fn another_users_session_is_not_found_and_stays_active(backend: Backend) {
    let db = TestDb::new(backend);
    let admin_email = email("admin");
    let server = server(&db, &admin_email, ServerOptions::default());
    let mut auth = server.auth().await;
    let admin = register_from(&mut auth, &admin_email, "198.51.100.1", "console")
        .await
        .tokens
        .unwrap();
    let alice_email = email("alice");
    let alice = register_from(&mut auth, &alice_email, "203.0.113.1", "a").await;
    let alice_profile = alice.profile.unwrap();
    let alice_first = alice.tokens.unwrap();
    let alice_second = login_from(&mut auth, &alice_email, "203.0.113.1", "a").await;
    let bob = register_from(&mut auth, &email("bob"), "203.0.113.2", "b")
        .await
        .tokens
        .unwrap();

    // Bob tries Alice's session id: the answer is that of an unknown id.
    let hidden = revoke(&mut auth, &bob.access_token, &alice_first.session_id)
        .await
        .unwrap_err();
    let missing = revoke(&mut auth, &bob.access_token, &random_id())
        .await
        .unwrap_err();
    assert_same_as_missing(hidden, missing, "RevokeSession");
    // Her profile, listed or revoked by id: unknown as well.
    let hidden = list(
        &mut auth,
        &bob.access_token,
        ListSessionsRequest {
            profile_id: alice_profile.id.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    let missing = list(
        &mut auth,
        &bob.access_token,
        ListSessionsRequest {
            profile_id: random_id(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_same_as_missing(hidden, missing, "ListSessions");
    let hidden = revoke_all(
        &mut auth,
        &bob.access_token,
        RevokeAllSessionsRequest {
            profile_id: alice_profile.id.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    let missing = revoke_all(
        &mut auth,
        &bob.access_token,
        RevokeAllSessionsRequest {
            profile_id: random_id(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_same_as_missing(hidden, missing, "RevokeAllSessions");
    // By her (local, auth_id): a form plain users may not use at all.
    let status = revoke_all(
        &mut auth,
        &bob.access_token,
        RevokeAllSessionsRequest {
            auth_provider: "local".into(),
            auth_id: alice_profile.auth_id.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        active(&mut auth, &alice_first.access_token).await,
        "Alice's session stays"
    );
    assert!(active(&mut auth, &alice_second.access_token).await);
    assert_eq!(
        list_own(&mut auth, &alice_first.access_token).await.len(),
        2
    );
    let denied = scalar(
        &db,
        "SELECT count(*) FROM audit_events WHERE event_name = 'identity.access.denied'",
    );
    assert!(denied >= 4, "each refusal is a security event: {denied}");

    // Bad input names the field; never INTERNAL.
    for (case, id) in [
        ("empty", ""),
        ("not a uuid", "x"),
        ("braced", "{0190a4b0-0000-7000-8000-000000000000}"),
    ] {
        let status = revoke(&mut auth, &bob.access_token, id).await.unwrap_err();
        assert_invalid(&status, "session_id", case);
    }
    let status = revoke_all(
        &mut auth,
        &bob.access_token,
        RevokeAllSessionsRequest {
            profile_id: "not-an-id".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_invalid(&status, "profile_id", "RevokeAllSessions profile_id");
    let status = revoke_all(
        &mut auth,
        &admin.access_token,
        RevokeAllSessionsRequest {
            profile_id: alice_profile.id.clone(),
            auth_provider: "local".into(),
            auth_id: alice_profile.auth_id.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_invalid(&status, "profile_id", "both forms at once");
    let status = revoke_all(
        &mut auth,
        &admin.access_token,
        RevokeAllSessionsRequest {
            auth_provider: "better-auth".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_invalid(&status, "auth_id", "provider without auth_id");

    // The owner ends one of her own sessions: refused at once, the other lives.
    revoke(
        &mut auth,
        &alice_second.access_token,
        &alice_first.session_id,
    )
    .await
    .expect("an owner revokes her own session");
    assert!(!active(&mut auth, &alice_first.access_token).await);
    assert!(active(&mut auth, &alice_second.access_token).await);
    // Again: quietly fine (already ended).
    revoke(
        &mut auth,
        &alice_second.access_token,
        &alice_first.session_id,
    )
    .await
    .expect("revoking an ended session of one's own is no error");
    let refreshed = auth
        .refresh(RefreshRequest {
            refresh_token: alice_first.refresh_token.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        refreshed.code(),
        Code::Unauthenticated,
        "its refresh token is dead too"
    );

    // The admin ends any session, and all of a profile's.
    let alice_third = login_from(&mut auth, &alice_email, "203.0.113.1", "a").await;
    revoke(&mut auth, &admin.access_token, &alice_second.session_id)
        .await
        .expect("an admin revokes anyone's session");
    assert!(!active(&mut auth, &alice_second.access_token).await);
    assert!(active(&mut auth, &alice_third.access_token).await);
    let missing = revoke(&mut auth, &admin.access_token, &random_id())
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let count = revoke_all(
        &mut auth,
        &admin.access_token,
        RevokeAllSessionsRequest {
            profile_id: alice_profile.id.clone(),
            keep_current: true,
            ..Default::default()
        },
    )
    .await
    .expect("an admin revokes all of a profile's sessions");
    assert_eq!(count, 1, "keep_current keeps the admin's own, not Alice's");
    assert!(!active(&mut auth, &alice_third.access_token).await);
    assert!(active(&mut auth, &admin.access_token).await);
    assert!(
        active(&mut auth, &bob.access_token).await,
        "Bob is untouched"
    );

    // Each revocation is an audit row, written with it.
    let rows = |sql: &str| scalar(&db, sql);
    assert_eq!(
        rows(
            "SELECT count(*) FROM audit_events WHERE event_name = 'identity.session.revoked' \
             AND detail LIKE '%revoked_by_owner%'"
        ),
        1
    );
    assert_eq!(
        rows(
            "SELECT count(*) FROM audit_events WHERE event_name = 'identity.session.revoked' \
             AND detail LIKE '%revoked_by_admin%'"
        ),
        1
    );
    assert_eq!(
        rows(
            "SELECT count(*) FROM audit_events WHERE event_name = 'identity.session.revoked_all' \
             AND detail LIKE '%revoked_by_admin%'"
        ),
        1
    );
}

async fn revoke_all_sessions_keeps_the_callers_own_only_when_asked(backend: Backend) {
    let db = TestDb::new(backend);
    let admin_email = email("admin");
    let server = server(&db, &admin_email, ServerOptions::default());
    let mut auth = server.auth().await;
    let address = email("many");
    let first = register_from(&mut auth, &address, "203.0.113.5", "one")
        .await
        .tokens
        .unwrap();
    let mut others = Vec::new();
    for _ in 0..3 {
        others.push(login_from(&mut auth, &address, "203.0.113.5", "two").await);
    }
    for t in std::iter::once(&first).chain(&others) {
        assert!(active(&mut auth, &t.access_token).await);
    }

    let count = revoke_all(
        &mut auth,
        &first.access_token,
        RevokeAllSessionsRequest {
            keep_current: true,
            ..Default::default()
        },
    )
    .await
    .expect("the owner ends all other sessions");
    assert_eq!(count, 3);
    for t in &others {
        assert!(!active(&mut auth, &t.access_token).await, "ended at once");
    }
    assert!(
        active(&mut auth, &first.access_token).await,
        "the caller's stays"
    );
    assert_eq!(
        ids(&list_own(&mut auth, &first.access_token).await),
        [&first.session_id]
    );

    // `me` and the own id name the same profile; without keep_current the
    // caller's own session goes too.
    let again = login_from(&mut auth, &address, "203.0.113.5", "three").await;
    let count = revoke_all(
        &mut auth,
        &first.access_token,
        RevokeAllSessionsRequest {
            profile_id: "me".into(),
            keep_current: false,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(count, 2);
    assert!(!active(&mut auth, &first.access_token).await);
    assert!(!active(&mut auth, &again.access_token).await);
    let status = auth
        .list_sessions(bearer(&first.access_token, ListSessionsRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::Unauthenticated,
        "signed out everywhere"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_revoked_through_the_api_is_refused_by_another_replica_within_the_bound() {
    let db = TestDb::new(Backend::Postgres);
    let admin_email = email("admin");
    let options = || {
        ServerOptions::default()
            .env("IDENTITY_REVOCATION_MAX_STALENESS", "1s")
            // Only the announcements may carry the revocations here.
            .env("IDENTITY_REVOCATION_RECONCILE_INTERVAL", "1h")
    };
    let a = server(&db, &admin_email, options());
    // Started once A has written the development key, so both share it.
    let b = server(&db, &admin_email, options());
    let (mut on_a, mut on_b) = (a.auth().await, b.auth().await);
    let address = email("replicas");
    let first = register_from(&mut on_a, &address, "203.0.113.5", "one")
        .await
        .tokens
        .unwrap();
    let mut others = Vec::new();
    for _ in 0..3 {
        others.push(login_from(&mut on_a, &address, "203.0.113.5", "two").await);
    }
    // B holds every session live in memory.
    for t in std::iter::once(&first).chain(&others) {
        assert!(active(&mut on_b, &t.access_token).await);
        assert!(active(&mut on_b, &t.access_token).await);
    }

    let mut took = Vec::new();
    revoke(&mut on_a, &first.access_token, &others[0].session_id)
        .await
        .unwrap();
    let since = Instant::now();
    assert!(
        !active(&mut on_a, &others[0].access_token).await,
        "at once on A"
    );
    took.push(
        refused_within(
            &mut on_b,
            &others[0].access_token,
            since,
            MAX_STALENESS + SLACK,
        )
        .await,
    );

    revoke_all(
        &mut on_a,
        &first.access_token,
        RevokeAllSessionsRequest {
            keep_current: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let since = Instant::now();
    for t in &others[1..] {
        took.push(refused_within(&mut on_b, &t.access_token, since, MAX_STALENESS + SLACK).await);
    }
    assert!(
        active(&mut on_b, &first.access_token).await,
        "the kept session lives on B"
    );
    println!("RevokeSession / RevokeAllSessions reached the other replica after {took:?}");
}

// ---------------------------------------------------------------------------
// The provisioner: the provider's user-delete and ban hooks.

fn with_provider(db: &TestDb, provider: &BetterAuth, admin: &str) -> Server {
    server(
        db,
        admin,
        ServerOptions::default()
            .env("IDENTITY_PROVIDER_JWKS_URL", provider.jwks_url())
            .env("IDENTITY_PROVIDER_ISSUER", ISSUER)
            .env("IDENTITY_PROVIDER_AUDIENCE", AUDIENCE)
            .env("IDENTITY_PROVIDER_JWKS_TIMEOUT", "2s"),
    )
}

async fn exchanged(
    auth: &mut Auth,
    provider: &BetterAuth,
    user: &crate::support::better_auth::User,
) -> ExchangeTokenResponse {
    let jwt = provider.token(user).await;
    auth.exchange_token(ExchangeTokenRequest {
        subject_token: jwt,
        subject_token_type: "urn:ietf:params:oauth:token-type:jwt".into(),
    })
    .await
    .expect("the provider token exchanges")
    .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provisioner_revokes_an_external_users_sessions_but_never_a_password_accounts() {
    let provider = BetterAuth::start();
    let db = TestDb::new(Backend::Postgres);
    let admin_email = email("admin");
    let server = with_provider(&db, &provider, &admin_email);
    let mut auth = server.auth().await;
    let provisioner = crate::support::issue_service_token(&db, "provisioner");

    let user = provider.sign_up(&email("ba"), PASSWORD, "Ext User").await;
    let first = exchanged(&mut auth, &provider, &user).await;
    let second = exchanged(&mut auth, &provider, &user).await;
    let (a, b) = (first.tokens.unwrap(), second.tokens.unwrap());
    assert!(active(&mut auth, &a.access_token).await && active(&mut auth, &b.access_token).await);

    // A password account and the provisioner's own kind are out of reach,
    // in any spelling, whether or not the account exists.
    let local = register_from(&mut auth, &email("local"), "203.0.113.9", "l").await;
    let local_profile = local.profile.unwrap();
    let local_tokens = local.tokens.unwrap();
    for (case, provider_name, auth_id) in [
        ("existing local", "local", local_profile.auth_id.clone()),
        ("unknown local", "local", random_id()),
        ("Local", "Local", local_profile.auth_id.clone()),
        ("service", "service", "hook".to_owned()),
        ("SERVICE", "SERVICE", "hook".to_owned()),
    ] {
        let status = revoke_all(
            &mut auth,
            &provisioner,
            RevokeAllSessionsRequest {
                auth_provider: provider_name.into(),
                auth_id,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{case}: {status:?}");
    }
    // By profile id, another profile is NOT_FOUND like for any non-admin.
    let status = revoke_all(
        &mut auth,
        &provisioner,
        RevokeAllSessionsRequest {
            profile_id: local_profile.id.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(
        active(&mut auth, &local_tokens.access_token).await,
        "the local account is untouched"
    );

    // An unknown external account is NOT_FOUND.
    let status = revoke_all(
        &mut auth,
        &provisioner,
        RevokeAllSessionsRequest {
            auth_provider: "better-auth".into(),
            auth_id: "no-such-user".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");

    // The external user's sessions all end.
    let count = revoke_all(
        &mut auth,
        &provisioner,
        RevokeAllSessionsRequest {
            auth_provider: "better-auth".into(),
            auth_id: user.id.clone(),
            ..Default::default()
        },
    )
    .await
    .expect("a provisioner revokes an external profile's sessions");
    assert_eq!(count, 2);
    assert!(!active(&mut auth, &a.access_token).await);
    assert!(!active(&mut auth, &b.access_token).await);
    assert!(
        active(&mut auth, &provisioner).await,
        "its own token lives on"
    );
    let status = auth
        .refresh(RefreshRequest {
            refresh_token: b.refresh_token.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(
        scalar(
            &db,
            "SELECT count(*) FROM audit_events WHERE event_name = 'identity.session.revoked_all' \
             AND detail LIKE '%revoked_by_provisioner%'"
        ),
        1
    );
    // A plain user holding no role may not use this form even for itself.
    let status = revoke_all(
        &mut auth,
        &local_tokens.access_token,
        RevokeAllSessionsRequest {
            auth_provider: "better-auth".into(),
            auth_id: user.id.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

/// A TCP relay on a port known before its upstream is: the provider must
/// be told identity's address before identity (which needs the provider's
/// JWKS URL) starts.
async fn relay() -> (
    std::net::SocketAddr,
    tokio::sync::watch::Sender<Option<std::net::SocketAddr>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::watch::channel(None::<std::net::SocketAddr>);
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let mut rx = rx.clone();
            tokio::spawn(async move {
                let Ok(upstream) = rx.wait_for(Option::is_some).await.map(|a| a.unwrap()) else {
                    return;
                };
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (addr, tx)
}

/// README's Better-Auth hooks, run by the real Better-Auth: deleting or
/// banning the user there ends every session here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn better_auths_delete_and_ban_hooks_end_the_users_sessions_here() {
    let db = TestDb::new(Backend::Postgres);
    let admin_email = email("admin");
    // Migrates the database and writes the development key.
    drop(server(&db, &admin_email, ServerOptions::default()));
    let provisioner = crate::support::issue_service_token(&db, "provisioner");
    let (relay_addr, upstream) = relay().await;
    let provider = BetterAuth::start_with(
        BetterAuthOptions::default()
            .env("BA_IDENTITY_URL", format!("http://{relay_addr}"))
            .env("BA_IDENTITY_TOKEN", provisioner.clone()),
    );
    // Better-Auth makes its signing key on first use: a token first, so
    // that identity's start-up JWKS fetch sees it.
    let warm = provider.sign_up(&email("warm"), PASSWORD, "Warm").await;
    provider.token(&warm).await;
    let identity = server(
        &db,
        &admin_email,
        ServerOptions::default()
            .env("IDENTITY_PROVIDER_JWKS_URL", provider.jwks_url())
            .env("IDENTITY_PROVIDER_ISSUER", ISSUER)
            .env("IDENTITY_PROVIDER_AUDIENCE", AUDIENCE)
            .env("IDENTITY_PROVIDER_JWKS_MIN_REFRESH_INTERVAL", "1s")
            .env("IDENTITY_PROVIDER_JWKS_TIMEOUT", "2s"),
    );
    upstream.send(Some(identity.addr)).unwrap();
    let mut auth = identity.auth().await;

    let gone = provider.sign_up(&email("gone"), PASSWORD, "Gone").await;
    let banned = provider.sign_up(&email("banned"), PASSWORD, "Banned").await;
    let kept = provider.sign_up(&email("kept"), PASSWORD, "Kept").await;
    let mut sessions = Vec::new();
    for user in [&gone, &banned, &kept] {
        let done = exchanged(&mut auth, &provider, user).await;
        let tokens = done.tokens.unwrap();
        assert!(active(&mut auth, &tokens.access_token).await);
        sessions.push(tokens);
    }

    // The user deletes their account at Better-Auth.
    let (status, _, body) = provider
        .request(
            "POST",
            "/api/auth/delete-user",
            Some(&gone.session),
            Some(serde_json::json!({"password": PASSWORD})),
        )
        .await;
    assert_eq!(status, http::StatusCode::OK, "{body}\n{}", provider.logs());
    let ended = eventually(Duration::from_secs(10), || {
        let (mut auth, token) = (auth.clone(), sessions[0].access_token.clone());
        async move { !active(&mut auth, &token).await }
    })
    .await;
    assert!(
        ended,
        "the delete hook ended the session; provider logs:\n{}",
        provider.logs()
    );

    // An administrator bans a user there.
    let (status, _, body) = provider
        .request(
            "POST",
            "/test/ban",
            None,
            Some(serde_json::json!({"userId": banned.id})),
        )
        .await;
    assert_eq!(status, http::StatusCode::OK, "{body}");
    let ended = eventually(Duration::from_secs(10), || {
        let (mut auth, token) = (auth.clone(), sessions[1].access_token.clone());
        async move { !active(&mut auth, &token).await }
    })
    .await;
    assert!(
        ended,
        "the ban hook ended the session; provider logs:\n{}",
        provider.logs()
    );

    assert!(
        active(&mut auth, &sessions[2].access_token).await,
        "other users keep theirs"
    );
    let revoked_by_hooks = scalar(
        &db,
        "SELECT count(*) FROM audit_events WHERE event_name = 'identity.session.revoked_all' \
         AND detail LIKE '%revoked_by_provisioner%'",
    );
    assert_eq!(revoked_by_hooks, 2);
    assert!(
        !provider.logs().contains("RevokeAllSessions"),
        "no hook call failed: {}",
        provider.logs()
    );
}
