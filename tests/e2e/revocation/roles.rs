//! Profiles held in memory (roles decide authorization): a role taken away
//! stops working at once on the replica that took it, within the bound on
//! the others and when `identity admin` took it from another process, and
//! within the reconciliation interval when SQL took it.

use super::*;
use crate::on_both_backends;
use crate::support::admin_command;

on_both_backends!(a_role_taken_away_by_sql_is_withdrawn_within_the_reconciliation_interval);

use crate::support::{Profiles, get_profile, set_roles};

/// Polls until `token`'s holder can no longer read `other` (NOT_FOUND, as
/// for any non-admin); the time it took from `since`.
async fn admin_withdrawn_within(
    profiles: &mut Profiles,
    token: &str,
    other: &str,
    since: Instant,
    limit: Duration,
) -> Duration {
    loop {
        match get_profile(profiles, token, other).await {
            Err(Code::NotFound) => return since.elapsed(),
            Ok(_) => assert!(
                since.elapsed() < limit,
                "a withdrawn admin role still works after {:?}",
                since.elapsed()
            ),
            Err(code) => panic!("GetProfile answered {code:?}"),
        }
        tokio::task::yield_now().await;
    }
}

fn with_root_admin(options: ServerOptions, root: &str) -> ServerOptions {
    options.env("IDENTITY_BOOTSTRAP_ADMINS", root)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_taken_away_on_one_replica_is_withdrawn_on_the_other_within_the_bound() {
    let db = TestDb::new(Backend::Postgres);
    let root_email = email("root");
    let (a, b) = replicas(&db, || {
        with_root_admin(ServerOptions::default(), &root_email)
            .env("IDENTITY_REVOCATION_MAX_STALENESS", "1s")
            // Only the announcements may carry the change here.
            .env("IDENTITY_REVOCATION_RECONCILE_INTERVAL", "1h")
    });
    let mut on_a_auth = a.auth().await;
    let (mut on_a, mut on_b) = (
        ProfileServiceClient::new(a.channel().await),
        ProfileServiceClient::new(b.channel().await),
    );
    let root = register(&mut on_a_auth, &root_email).await;
    let deputy = register_profile(&mut on_a_auth, &email("deputy")).await;
    let (deputy, deputy_tokens) = (deputy.profile.unwrap(), deputy.tokens.unwrap());
    let carol = register_profile(&mut on_a_auth, &email("carol"))
        .await
        .profile
        .unwrap();
    let deputy_token = deputy_tokens.access_token.as_str();

    set_roles(&mut on_a, &root.access_token, &deputy.id, &["admin"]).await;
    // Read twice on each replica: the deputy's profile is now in memory.
    for _ in 0..2 {
        get_profile(&mut on_a, deputy_token, &carol.id)
            .await
            .unwrap();
        get_profile(&mut on_b, deputy_token, &carol.id)
            .await
            .unwrap();
    }

    set_roles(&mut on_a, &root.access_token, &deputy.id, &[]).await;
    let since = Instant::now();
    assert_eq!(
        get_profile(&mut on_a, deputy_token, &carol.id)
            .await
            .unwrap_err(),
        Code::NotFound,
        "the replica that took the role away refuses at once"
    );
    let took = admin_withdrawn_within(
        &mut on_b,
        deputy_token,
        &carol.id,
        since,
        MAX_STALENESS + SLACK,
    )
    .await;

    // A change of one's own profile on B is read back on A within the bound.
    let renamed = UserProfile {
        display_name: "Deputy, retired".into(),
        ..get_profile(&mut on_b, deputy_token, "me").await.unwrap()
    };
    on_b.update_profile(bearer(
        deputy_token,
        UpdateProfileRequest {
            profile: Some(renamed),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["display_name".into()],
            }),
        },
    ))
    .await
    .unwrap();
    assert_eq!(
        get_profile(&mut on_b, deputy_token, "me")
            .await
            .unwrap()
            .display_name,
        "Deputy, retired",
        "read your own write on the same replica"
    );
    let since = Instant::now();
    while get_profile(&mut on_a, deputy_token, "me")
        .await
        .unwrap()
        .display_name
        != "Deputy, retired"
    {
        assert!(
            since.elapsed() < MAX_STALENESS + SLACK,
            "A still shows the old name"
        );
        tokio::task::yield_now().await;
    }
    println!(
        "replica B withdrew the admin role after {took:?}; A saw the rename after {:?}",
        since.elapsed()
    );
}

/// Also the proof that profiles are cached on both backends: an edit that
/// announces nothing is not seen while the entry is young.
async fn a_role_taken_away_by_sql_is_withdrawn_within_the_reconciliation_interval(
    backend: Backend,
) {
    let db = TestDb::new(backend);
    let root_email = email("root");
    let start = async |interval: &str| {
        let server = Server::start_with_options(
            &db,
            with_root_admin(ServerOptions::default(), &root_email)
                .env("IDENTITY_REVOCATION_RECONCILE_INTERVAL", interval),
        );
        // Memory answers only once the listener (or SQLite's poller) is up
        // (and trusted).
        assert!(
            crate::support::eventually(Duration::from_secs(10), || async {
                server.logs().contains("identity.revocation.listener_up")
            })
            .await
        );
        server
    };
    let set_roles_by_sql = |id: &str, roles: &str| {
        // Behind the service's back: no announcement.
        let id = uuid::Uuid::parse_str(id).unwrap();
        execute(
            &db,
            &format!("UPDATE profiles SET roles = '{roles}' WHERE id = '{id}'"),
        );
    };

    // Entries live an hour: what the server answers shows the cache serves.
    let server = start("1h").await;
    let mut auth = server.auth().await;
    let mut profiles = ProfileServiceClient::new(server.channel().await);
    let root = register_profile(&mut auth, &root_email).await;
    let (root_profile, root) = (root.profile.unwrap(), root.tokens.unwrap());
    let carol = register_profile(&mut auth, &email("carol"))
        .await
        .profile
        .unwrap();
    get_profile(&mut profiles, &root.access_token, &carol.id)
        .await
        .unwrap();
    set_roles_by_sql(&root_profile.id, "");
    assert!(
        get_profile(&mut profiles, &root.access_token, &carol.id)
            .await
            .is_ok(),
        "authorization is answered from memory (the SQL edit waits for the entry to age)"
    );
    drop(server);

    // Entries live 300 ms: the edit is seen within that, plus the poll.
    set_roles_by_sql(&root_profile.id, "admin");
    let server = start("300ms").await;
    let mut profiles = ProfileServiceClient::new(server.channel().await);
    get_profile(&mut profiles, &root.access_token, &carol.id)
        .await
        .unwrap();
    set_roles_by_sql(&root_profile.id, "");
    let took = admin_withdrawn_within(
        &mut profiles,
        &root.access_token,
        &carol.id,
        Instant::now(),
        Duration::from_millis(300) + SLACK,
    )
    .await;
    println!("{backend:?}: a role taken away by SQL was withdrawn after {took:?}");
}

/// The roles ValidateToken reports for `token` (none when inactive).
async fn validated_roles(auth: &mut Auth, token: &str) -> Vec<String> {
    auth.validate_token(ValidateTokenRequest {
        access_token: token.to_owned(),
    })
    .await
    .unwrap()
    .into_inner()
    .roles
}

/// On SQLite `identity admin` is another process writing the server's file:
/// a role it takes away reaches the server's memory through the
/// announcements table within the staleness bound (no reconciliation
/// here), and one taken away through the API at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_a_role_taken_away_by_the_admin_command_is_withdrawn_within_the_bound() {
    let db = TestDb::new(Backend::Sqlite);
    let root_email = email("root");
    let server = Server::start_with_options(
        &db,
        with_root_admin(ServerOptions::default(), &root_email)
            .env("IDENTITY_REVOCATION_MAX_STALENESS", "1s")
            .env("IDENTITY_REVOCATION_RECONCILE_INTERVAL", "1h"),
    );
    let mut auth = server.auth().await;
    let mut profiles = ProfileServiceClient::new(server.channel().await);
    let root = register(&mut auth, &root_email).await;
    let deputy_email = email("deputy");
    let deputy = register_profile(&mut auth, &deputy_email).await;
    let (deputy, deputy_tokens) = (deputy.profile.unwrap(), deputy.tokens.unwrap());
    let deputy_token = deputy_tokens.access_token.as_str();
    let carol = register_profile(&mut auth, &email("carol"))
        .await
        .profile
        .unwrap();

    let admin = |args: &[&str]| {
        let (ok, _, stderr) = admin_command(&db, args);
        assert!(ok, "{args:?}: {stderr}");
        Instant::now()
    };
    // Granted by the command: in memory within the bound too.
    let granted = admin(&["grant-role", &deputy_email, "admin"]);
    while get_profile(&mut profiles, deputy_token, &carol.id)
        .await
        .is_err()
    {
        assert!(
            granted.elapsed() < MAX_STALENESS + SLACK,
            "the grant is not seen"
        );
        tokio::task::yield_now().await;
    }
    // Read again: the deputy's profile and session are answered from memory.
    for _ in 0..2 {
        get_profile(&mut profiles, deputy_token, &carol.id)
            .await
            .unwrap();
        assert_eq!(validated_roles(&mut auth, deputy_token).await, ["admin"]);
    }

    let since = admin(&["revoke-role", &deputy_email, "admin"]);
    let took = admin_withdrawn_within(
        &mut profiles,
        deputy_token,
        &carol.id,
        since,
        MAX_STALENESS + SLACK,
    )
    .await;
    assert!(
        validated_roles(&mut auth, deputy_token).await.is_empty(),
        "ValidateToken no longer reports the role"
    );
    assert!(
        get_profile(&mut profiles, deputy_token, "me")
            .await
            .unwrap()
            .roles
            .is_empty(),
        "GetProfile shows it gone"
    );
    println!("the role taken away by identity admin was withdrawn after {took:?}");

    // Through the API: at once.
    let granted = admin(&["grant-role", &deputy_email, "admin"]);
    while validated_roles(&mut auth, deputy_token).await.is_empty() {
        assert!(
            granted.elapsed() < MAX_STALENESS + SLACK,
            "the grant is not seen"
        );
        tokio::task::yield_now().await;
    }
    get_profile(&mut profiles, deputy_token, &carol.id)
        .await
        .unwrap();
    set_roles(&mut profiles, &root.access_token, &deputy.id, &[]).await;
    assert_eq!(
        get_profile(&mut profiles, deputy_token, &carol.id)
            .await
            .unwrap_err(),
        Code::NotFound,
        "the server that took the role away refuses at once"
    );
    assert!(validated_roles(&mut auth, deputy_token).await.is_empty());
}
