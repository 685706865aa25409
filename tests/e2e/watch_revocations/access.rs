//! Who may watch: a service principal holding `revocations:watch`, or an
//! mTLS peer; nobody else, and a watcher only while its credentials last.

use super::*;
use crate::support::pki::Ca;
use crate::support::{
    Profiles, admin_command, email, mtls_options, register, register_profile, set_roles,
    tls_channel,
};
use tonic::Code;

const WITHIN: Duration = Duration::from_secs(5);

/// How a WatchRevocations call with `token` (none: no metadata) is answered.
async fn refusal(server: &Server, token: Option<&str>) -> Code {
    match Watcher::try_start_on(server.channel().await, token, "").await {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_service_holding_the_watch_role_may_watch() {
    let (db, server, _watch) = watched(Backend::Sqlite, ServerOptions::default());
    let mut auth = client(&server).await;
    let user = register(&mut auth, &email("user")).await;
    let provisioner = issue_service_token(&db, "provisioner");

    assert_eq!(
        refusal(&server, None).await,
        Code::Unauthenticated,
        "no token"
    );
    assert_eq!(
        refusal(&server, Some("not.a.token")).await,
        Code::Unauthenticated,
        "a forged token"
    );
    assert_eq!(
        refusal(&server, Some(&user.access_token)).await,
        Code::PermissionDenied,
        "a user"
    );
    assert_eq!(
        refusal(&server, Some(&provisioner)).await,
        Code::PermissionDenied,
        "a service without the role"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_role_is_never_given_to_a_person() {
    let root_email = email("root");
    let (db, server, _watch) = watched(
        Backend::Sqlite,
        ServerOptions::default().env("IDENTITY_BOOTSTRAP_ADMINS", &root_email),
    );
    let mut auth = client(&server).await;
    let root = register(&mut auth, &root_email).await;
    let ann = register_profile(&mut auth, &email("ann"))
        .await
        .profile
        .unwrap();
    let mut profiles = Profiles::new(server.channel().await);
    let current = crate::support::get_profile(&mut profiles, &root.access_token, &ann.id)
        .await
        .unwrap();
    let refused = profiles
        .update_profile(bearer(
            &root.access_token,
            UpdateProfileRequest {
                profile: Some(UserProfile {
                    roles: vec!["revocations:watch".into()],
                    ..current
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["roles".into()],
                }),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    let (ok, _, stderr) = admin_command(&db, &["grant-role", &ann.email, "revocations:watch"]);
    assert!(!ok, "grant-role gave a person the watch role");
    assert!(
        stderr.contains("only service principals hold it"),
        "{stderr}"
    );
    // Other roles with a `:` stay refused for everyone.
    set_roles(&mut profiles, &root.access_token, &ann.id, &["editor"]).await;
    let (ok, _, _) = admin_command(&db, &["grant-role", &ann.email, "billing:read"]);
    assert!(!ok, "a role name with a colon that is no service role");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_ends_when_its_own_session_is_revoked() {
    let (_db, server, token) = watched(Backend::Sqlite, ServerOptions::default());
    let mut watcher = Watcher::start(&server, &token, "").await;
    assert!(matches!(
        watcher.expect_change(WITHIN).await,
        Event::Reset(_)
    ));
    let mut auth = client(&server).await;
    auth.logout(bearer(&token, LogoutRequest::default()))
        .await
        .unwrap();
    let ended = watcher.end_within(WITHIN).await.expect("the stream ended");
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_ends_when_the_role_is_taken_away() {
    let (db, server, token) = watched(Backend::Postgres, ServerOptions::default());
    let mut watcher = Watcher::start(&server, &token, "").await;
    assert!(matches!(
        watcher.expect_change(WITHIN).await,
        Event::Reset(_)
    ));
    let principal = crate::support::claims_of(&token)["sub"]
        .as_str()
        .unwrap()
        .to_owned();
    // By the CLI: another process, announced on PostgreSQL's channel.
    let (ok, _, stderr) = admin_command(&db, &["revoke-role", &principal, "revocations:watch"]);
    assert!(ok, "{stderr}");
    let ended = watcher.end_within(WITHIN).await.expect("the stream ended");
    assert_eq!(ended.code(), Code::PermissionDenied, "{ended:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mtls_peer_watches_without_a_token() {
    let db = TestDb::new(Backend::Sqlite);
    let (ca, clients_ca) = (Ca::new("server CA"), Ca::new("clients CA"));
    let server = Server::start_with_options(&db, mtls_options(&db, &ca, &clients_ca).await);
    let verifier = clients_ca.client("verifier");
    let channel = tls_channel(
        server.addr,
        &ca.pem,
        Some((&verifier.cert_pem, &verifier.key_pem)),
    )
    .await
    .unwrap();
    let mut watcher = Watcher::try_start_on(channel.clone(), None, "")
        .await
        .expect("an mTLS peer may watch");
    assert!(matches!(
        watcher.expect_change(WITHIN).await,
        Event::Reset(_)
    ));
    let mut auth = Auth::new(channel);
    let tokens = register(&mut auth, &email("ann")).await;
    auth.logout(LogoutRequest {
        refresh_token: tokens.refresh_token,
    })
    .await
    .unwrap();
    match watcher.expect_change(WITHIN).await {
        Event::SessionRevoked(e) => assert_eq!(e.session_id, tokens.session_id),
        other => panic!("{other:?}"),
    }
}
