//! What a service principal may do: never admin, never for longer than a
//! day or than any access token, a provisioner creates external profiles
//! but lists nothing, and the Better-Auth hook signs in with ServiceLogin.

use super::*;
use crate::on_both_backends;

on_both_backends!(a_service_login_token_expires_no_later_than_the_access_token_ttl);

/// An operator (or a script someone copied) asks for `admin`: a service's
/// credentials sit in configuration files, so they must never carry it, and
/// no bearer token may outlive the access-token cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_credentials_never_carry_admin_nor_outlive_a_day() {
    let db = TestDb::new(Backend::Sqlite);
    // Migrates the database and writes the development key --dev signs with.
    let _server = Server::start_with_options(&db, ServerOptions::default());
    let (ok, _, stderr) = admin_command(&db, &["create-service-client", "--role", "admin"]);
    assert!(!ok, "create-service-client --role admin succeeded");
    assert!(stderr.contains("--role"), "{stderr}");
    for args in [
        ["--role", "provisioner", "--ttl", "25h"],
        ["--role", "provisioner", "--ttl", "90days"],
        ["--role", "admin", "--ttl", "10m"],
    ] {
        let mut command = vec!["issue-service-token", "--dev"];
        command.extend(args);
        let (ok, stdout, stderr) = admin_command(&db, &command);
        assert!(!ok, "{command:?} succeeded: {stdout}");
        assert!(
            stderr.contains(if args[1] == "admin" {
                "--role"
            } else {
                "--ttl"
            }),
            "{command:?}: {stderr}"
        );
    }
    let (ok, stdout, stderr) = admin_command(
        &db,
        &[
            "issue-service-token",
            "--dev",
            "--role",
            "provisioner",
            "--ttl",
            "24h",
        ],
    );
    assert!(ok, "24h is the cap, allowed: {stderr}");
    assert_eq!(stdout.trim().split('.').count(), 3, "a JWT");
    assert_eq!(
        scalar(
            &db,
            "SELECT count(*) FROM profiles WHERE roles LIKE '%admin%'"
        ),
        0
    );
}

/// A token an offline verifier accepts must not live longer than any other
/// access token, whatever the client asks.
async fn a_service_login_token_expires_no_later_than_the_access_token_ttl(backend: Backend) {
    let db = TestDb::new(backend);
    let server = Server::start_with_options(
        &db,
        ServerOptions::default().env("IDENTITY_ACCESS_TOKEN_TTL", "2m"),
    );
    let mut auth = server.auth().await;
    let client = create_client(&db, "provisioner");
    let before = chrono::Utc::now().timestamp();
    let done = service_login(&mut auth, &client.id, &client.secret)
        .await
        .unwrap();
    let expires = done.access_token_expire_time.unwrap().seconds;
    assert!(
        expires <= before + 120 + 1,
        "expires {}s after the login",
        expires - before
    );
    let claims = claims_of(&done.access_token);
    assert_eq!(claims["exp"].as_i64().unwrap(), expires);
    assert!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap() <= 120);
    assert_eq!(claims["roles"], serde_json::json!(["provisioner"]));
    assert_eq!(claims["auth_provider"], "service");
    assert_eq!(done.token_type, "Bearer");
    let session_end = scalar(
        &db,
        &format!(
            "SELECT count(*) FROM sessions WHERE id = '{}'",
            done.session_id
        ),
    );
    assert_eq!(session_end, 1, "the login started a session of its own");
}

/// A server on `db`, a ProfileService client and the access token a
/// provisioner's ServiceLogin returns.
async fn as_provisioner(
    db: &TestDb,
) -> (
    Server,
    ProfileServiceClient<tonic::transport::Channel>,
    String,
) {
    let server = Server::start_with_options(db, ServerOptions::default());
    let mut auth = server.auth().await;
    let client = create_client(db, "provisioner");
    let token = service_login(&mut auth, &client.id, &client.secret)
        .await
        .unwrap()
        .access_token;
    let profiles = ProfileServiceClient::new(server.channel().await);
    (server, profiles, token)
}

/// CreateProfile for `provider`'s user `user-1`.
fn external_profile(provider: &str) -> CreateProfileRequest {
    CreateProfileRequest {
        profile: Some(UserProfile {
            auth_provider: provider.into(),
            auth_id: "user-1".into(),
            ..Default::default()
        }),
    }
}

/// The sign-up hook's powers through ServiceLogin, and not one more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provisioner_via_service_login_creates_external_profiles_but_cannot_list_them() {
    let db = TestDb::new(Backend::Postgres);
    let (_server, mut profiles, token) = as_provisioner(&db).await;
    profiles
        .create_profile(bearer(&token, external_profile("better-auth")))
        .await
        .expect("a provisioner creates an external provider's profile");
    for reserved in ["local", "service"] {
        let status = profiles
            .create_profile(bearer(&token, external_profile(reserved)))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::PermissionDenied,
            "{reserved}: {status:?}"
        );
    }
    let status = profiles
        .list_profiles(bearer(&token, ListProfilesRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
}

/// A provisioner hides a reserved name behind characters a reader never
/// sees (zero-width space, byte-order mark, soft hyphen, word joiner) or
/// behind a letter whose upper case is an ASCII one (long s): the profile
/// would read as one of the service's own accounts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provisioner_cannot_create_a_reserved_provider_spelt_with_invisible_characters() {
    let db = TestDb::new(Backend::Sqlite);
    let (_server, mut profiles, token) = as_provisioner(&db).await;
    for disguised in [
        "local\u{200b}",
        "\u{feff}service",
        "loc\u{ad}al",
        "serv\u{2060}ice",
        "\u{17f}ervice",
    ] {
        let status = profiles
            .create_profile(bearer(&token, external_profile(disguised)))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::PermissionDenied,
            "{disguised:?}: {status:?}"
        );
    }
}

/// An admin token (stolen, or a careless operator) tries to make a service
/// principal an admin through the API: its live ServiceLogin token would
/// then act as admin on every replica. Refused on write, and a row changed
/// behind the API's back still does not make a service act as admin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_call_makes_a_service_principal_act_as_admin() {
    let db = TestDb::new(Backend::Postgres);
    let server = Server::start_with_options(
        &db,
        ServerOptions::default().env("IDENTITY_BOOTSTRAP_ADMINS", "ops@example.com"),
    );
    let mut auth = server.auth().await;
    let admin_token = crate::support::register(&mut auth, "ops@example.com")
        .await
        .access_token;
    let client = create_client(&db, "provisioner");
    let token = service_login(&mut auth, &client.id, &client.secret)
        .await
        .unwrap()
        .access_token;
    let principal = auth
        .validate_token(ValidateTokenRequest {
            access_token: token.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .profile_id;
    let mut profiles = ProfileServiceClient::new(server.channel().await);
    let current = profiles
        .get_profile(bearer(
            &admin_token,
            GetProfileRequest {
                id: principal.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let status = profiles
        .update_profile(bearer(
            &admin_token,
            UpdateProfileRequest {
                profile: Some(UserProfile {
                    roles: vec!["admin".into(), "provisioner".into()],
                    ..current
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["roles".into()],
                }),
            },
        ))
        .await
        .expect_err("a service principal never becomes admin");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(violated_fields(&status), ["profile.roles"]);
    for provider in ["service", "Service"] {
        let status = profiles
            .create_profile(bearer(
                &admin_token,
                CreateProfileRequest {
                    profile: Some(UserProfile {
                        auth_provider: provider.into(),
                        auth_id: "evil".into(),
                        roles: vec!["admin".into()],
                        ..Default::default()
                    }),
                },
            ))
            .await
            .expect_err("no service profile is created holding admin");
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{provider}: {status:?}"
        );
        assert!(
            violated_fields(&status).contains(&"profile.roles".to_owned()),
            "{provider}: {status:?}"
        );
    }

    // Behind the API's back (SQL, an older version): still not an admin.
    crate::support::execute(
        &db,
        &format!("UPDATE profiles SET roles = 'admin provisioner' WHERE id = '{principal}'"),
    );
    // Past the profile cache's bound (the revocation bound, 1 s here).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let reported = auth
        .validate_token(ValidateTokenRequest {
            access_token: token.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .roles;
    assert_eq!(
        reported,
        ["provisioner"],
        "resource servers are never told a service is an admin"
    );
    let status = profiles
        .list_profiles(bearer(&token, ListProfilesRequest::default()))
        .await
        .expect_err("a service principal never acts as admin");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let status = auth
        .list_sessions(bearer(
            &token,
            ListSessionsRequest {
                profile_id: principal.clone(),
                ..Default::default()
            },
        ))
        .await;
    assert!(status.is_ok(), "its own sessions it may list: {status:?}");
    let admin_profile = auth
        .validate_token(ValidateTokenRequest {
            access_token: admin_token.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .profile_id;
    let status = auth
        .list_sessions(bearer(
            &token,
            ListSessionsRequest {
                profile_id: admin_profile,
                ..Default::default()
            },
        ))
        .await
        .expect_err("nobody else's");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
}

/// Bad input is the caller's mistake, named, before any lookup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_login_names_the_bad_field() {
    let db = TestDb::new(Backend::Sqlite);
    let server = Server::start_with_options(&db, ServerOptions::default());
    let mut auth = server.auth().await;
    for (id, secret, field) in [
        ("", "idsec_x", "client_id"),
        (&*"x".repeat(65), "idsec_x", "client_id"),
        ("svc_1", "", "client_secret"),
        ("svc_1", &*"s".repeat(257), "client_secret"),
    ] {
        let status = service_login(&mut auth, id, secret).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        let fields: Vec<_> = status
            .get_details_bad_request()
            .expect("BadRequest details")
            .field_violations
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert_eq!(fields, [field]);
    }
}

/// The README's sign-up hook, run by a real Better-Auth: it signs in with
/// ServiceLogin once and keeps using the token for later sign-ups.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_better_auth_sign_up_hook_signs_in_with_service_login() {
    let db = TestDb::new(Backend::Postgres);
    let admin_email = crate::support::email("admin");
    let server = Server::start_with_options(
        &db,
        ServerOptions::default().env("IDENTITY_BOOTSTRAP_ADMINS", admin_email.clone()),
    );
    let mut auth = server.auth().await;
    let admin = crate::support::register(&mut auth, &admin_email)
        .await
        .access_token;
    let client = create_client(&db, "provisioner");
    let provider = BetterAuth::start_with(
        BetterAuthOptions::default()
            .env("BA_IDENTITY_URL", server.url())
            .env("BA_IDENTITY_CLIENT_ID", client.id.clone())
            .env("BA_IDENTITY_CLIENT_SECRET", client.secret.clone()),
    );
    let profiles = ProfileServiceClient::new(server.channel().await);
    for name in ["First Hooked", "Second Hooked"] {
        let user = provider
            .sign_up(
                &crate::support::email("hooked"),
                crate::support::PASSWORD,
                name,
            )
            .await;
        let found = crate::support::eventually(Duration::from_secs(10), || {
            let (mut profiles, admin, id) = (profiles.clone(), admin.clone(), user.id.clone());
            async move {
                profiles
                    .lookup_profile(bearer(
                        &admin,
                        LookupProfileRequest {
                            auth_provider: "better-auth".into(),
                            auth_id: id,
                        },
                    ))
                    .await
                    .is_ok()
            }
        })
        .await;
        assert!(
            found,
            "the hook created no profile; provider logs:\n{}",
            provider.logs()
        );
    }
    assert_eq!(
        scalar(
            &db,
            "SELECT count(*) FROM audit_events WHERE event_name = 'identity.service_login.succeeded'"
        ),
        1,
        "the hook signs in once and reuses its token"
    );
}
