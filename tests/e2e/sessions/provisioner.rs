//! The provisioner (the provider's user-delete and ban hooks) ends an
//! external user's sessions, never a password account's.

use super::*;
use crate::support::better_auth::{BetterAuth, BetterAuthOptions, exchange, trusting};
use crate::support::{Backend, active, email, eventually, issue_service_token, random_id, scalar};
use std::time::Duration;
use tonic::Code;

fn with_provider(db: &TestDb, provider: &BetterAuth, admin: &str) -> Server {
    server(db, admin, trusting(provider, ServerOptions::default()))
}

async fn exchanged(
    auth: &mut Auth,
    provider: &BetterAuth,
    user: &crate::support::better_auth::User,
) -> ExchangeTokenResponse {
    exchange(auth, &provider.token(user).await)
        .await
        .expect("the provider token exchanges")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provisioner_revokes_an_external_users_sessions_but_never_a_password_accounts() {
    let provider = BetterAuth::start();
    let db = TestDb::new(Backend::Postgres);
    let admin_email = email("admin");
    let server = with_provider(&db, &provider, &admin_email);
    let mut auth = server.auth().await;
    let provisioner = issue_service_token(&db, "provisioner");

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
    let provisioner = issue_service_token(&db, "provisioner");
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
        trusting(&provider, ServerOptions::default())
            .env("IDENTITY_PROVIDER_JWKS_MIN_REFRESH_INTERVAL", "1s"),
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
