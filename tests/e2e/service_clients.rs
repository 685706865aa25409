//! Service clients (client credentials) as an attacker would try them: a
//! leaked secret after rotation, a disabled client's token on another
//! replica, guessing secrets, asking for `admin`, long-lived tokens. The
//! admin commands run as the real binary, against the test's database.

use crate::on_both_backends;
use crate::support::better_auth::{BetterAuth, BetterAuthOptions};
use crate::support::{
    Backend, Server, ServerOptions, TestDb, active, admin, bearer, forwarded_for, scalar,
};
use crate::support::{refused_within, violated_fields};
use identity::proto::v1::auth_service_client::AuthServiceClient;
use identity::proto::v1::profile_service_client::ProfileServiceClient;
use identity::proto::v1::*;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

on_both_backends!(
    a_rotated_secret_no_longer_logs_in_and_its_sessions_end,
    a_service_login_token_expires_no_later_than_the_access_token_ttl,
);

type Auth = AuthServiceClient<Channel>;

/// The bound the replica test configures (the default).
const MAX_STALENESS: Duration = Duration::from_secs(1);
/// Room for the polling call itself on a busy machine.
const SLACK: Duration = Duration::from_millis(500);

/// Client id and secret, as `create-service-client` or
/// `rotate-service-client` print them.
struct Credentials {
    id: String,
    secret: String,
}

fn credentials(stdout: &str) -> Credentials {
    let value = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} in {stdout}"))
            .to_owned()
    };
    Credentials {
        id: value("IDENTITY_CLIENT_ID"),
        secret: value("IDENTITY_CLIENT_SECRET"),
    }
}

fn create_client(db: &TestDb, role: &str) -> Credentials {
    let (ok, stdout, stderr) = admin(db, &["create-service-client", "--role", role]);
    assert!(ok, "{stderr}");
    credentials(&stdout)
}

async fn service_login(
    auth: &mut Auth,
    id: &str,
    secret: &str,
) -> Result<ServiceLoginResponse, tonic::Status> {
    auth.service_login(ServiceLoginRequest {
        client_id: id.into(),
        client_secret: secret.into(),
    })
    .await
    .map(tonic::Response::into_inner)
}

/// The server migrates the database at its start: the admin commands run
/// after it.
fn server(db: &TestDb, options: ServerOptions) -> Server {
    Server::start_with(&db.url, db.dir.path(), options)
}

/// A secret that leaked is rotated: the leaked one must stop working, and
/// whatever it already obtained must end too.
async fn a_rotated_secret_no_longer_logs_in_and_its_sessions_end(backend: Backend) {
    let db = TestDb::new(backend);
    // On SQLite the command is another process than the server: the
    // reconciliation is what tells the server (PostgreSQL announces it).
    let server = server(
        &db,
        ServerOptions::default().env("IDENTITY_REVOCATION_RECONCILE_INTERVAL", "200ms"),
    );
    let mut auth = server.auth().await;
    let leaked = create_client(&db, "provisioner");
    assert_eq!(
        scalar(
            &db,
            &format!(
                "SELECT count(*) FROM service_clients WHERE secret_hash = '{}'",
                leaked.secret
            )
        ),
        0,
        "the secret is stored only hashed"
    );
    let stolen = service_login(&mut auth, &leaked.id, &leaked.secret)
        .await
        .expect("the client logs in");
    assert!(active(&mut auth, &stolen.access_token).await);

    let (ok, stdout, stderr) = admin(&db, &["rotate-service-client", &leaked.id]);
    assert!(ok, "{stderr}");
    let rotated = credentials(&stdout);
    assert_eq!(rotated.id, leaked.id);
    assert_ne!(rotated.secret, leaked.secret);
    let since = Instant::now();

    let status = service_login(&mut auth, &leaked.id, &leaked.secret)
        .await
        .expect_err("the old secret no longer logs in");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    refused_within(
        &mut auth,
        &stolen.access_token,
        since,
        Duration::from_secs(5),
    )
    .await;
    let fresh = service_login(&mut auth, &rotated.id, &rotated.secret)
        .await
        .expect("the new secret logs in");
    assert!(active(&mut auth, &fresh.access_token).await);
    assert_eq!(
        scalar(
            &db,
            "SELECT count(*) FROM audit_events WHERE event_name IN \
             ('identity.service_client.created', 'identity.service_client.rotated')"
        ),
        2
    );
}

/// Disabling a client must end its access everywhere at once, not when its
/// tokens happen to expire; and a disabled client must look like any
/// unknown client to whoever still holds its secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_service_client_loses_its_sessions_on_every_replica() {
    let db = TestDb::new(Backend::Postgres);
    let options = || {
        ServerOptions::default()
            .env("IDENTITY_REVOCATION_MAX_STALENESS", "1s")
            // Only the announcement may carry the revocation here.
            .env("IDENTITY_REVOCATION_RECONCILE_INTERVAL", "1h")
    };
    let a = server(&db, options());
    // Started once A has written the development key, so both share it.
    let b = server(&db, options());
    let (mut on_a, mut on_b) = (a.auth().await, b.auth().await);
    let client = create_client(&db, "provisioner");
    let tokens = [
        service_login(&mut on_a, &client.id, &client.secret)
            .await
            .unwrap(),
        service_login(&mut on_b, &client.id, &client.secret)
            .await
            .unwrap(),
    ];
    for t in &tokens {
        // Twice: the token and its session are in each replica's memory.
        for auth in [&mut on_a, &mut on_b] {
            assert!(active(auth, &t.access_token).await);
            assert!(active(auth, &t.access_token).await);
        }
    }

    let (ok, stdout, stderr) = admin(&db, &["disable-service-client", &client.id]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("2 live session(s) revoked"), "{stdout}");
    let since = Instant::now();
    let mut took = Vec::new();
    for t in &tokens {
        for auth in [&mut on_a, &mut on_b] {
            took.push(refused_within(auth, &t.access_token, since, MAX_STALENESS + SLACK).await);
        }
    }
    println!("refused after {took:?}");

    let disabled = service_login(&mut on_b, &client.id, &client.secret)
        .await
        .unwrap_err();
    let unknown = service_login(
        &mut on_b,
        "svc_0123456789abcdef0123456789abcdef",
        &client.secret,
    )
    .await
    .unwrap_err();
    let wrong = create_client(&db, "provisioner");
    let wrong = service_login(&mut on_b, &wrong.id, &client.secret)
        .await
        .unwrap_err();
    for status in [&disabled, &unknown, &wrong] {
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        assert_eq!(status.message(), disabled.message(), "no enumeration");
    }
    let (ok, _, stderr) = admin(&db, &["rotate-service-client", &client.id]);
    assert!(!ok && stderr.contains("disabled"), "{stderr}");
}

/// Secrets are hopeless to guess, but the endpoint must not become a free
/// oracle either: guesses are throttled per client id like Login's per
/// account, with RetryInfo, and the real service from its own address still
/// gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_a_service_secret_is_throttled_with_retry_info() {
    let db = TestDb::new(Backend::Sqlite);
    let server = server(
        &db,
        ServerOptions::default().env("IDENTITY_TRUSTED_PROXIES", "127.0.0.1/32"),
    );
    let auth = server.auth().await;
    let client = create_client(&db, "provisioner");
    let mut guesses = JoinSet::new();
    for n in 0..20 {
        let (mut auth, id) = (auth.clone(), client.id.clone());
        guesses.spawn(async move {
            auth.service_login(forwarded_for(
                "203.0.113.9",
                ServiceLoginRequest {
                    client_id: id,
                    client_secret: format!("idsec_guess{n}"),
                },
            ))
            .await
            .unwrap_err()
        });
    }
    let (mut evaluated, mut throttled) = (0, 0);
    while let Some(answer) = guesses.join_next().await {
        let status = answer.unwrap();
        match status.code() {
            Code::Unauthenticated => evaluated += 1,
            Code::ResourceExhausted => {
                assert!(
                    status.get_details_retry_info().is_some(),
                    "a throttled answer says when to retry"
                );
                throttled += 1;
            }
            other => panic!("unexpected {other:?}: {}", status.message()),
        }
    }
    assert!(
        evaluated <= 5 && throttled >= 15,
        "{evaluated} of 20 guesses were evaluated; 5 are free"
    );
    let mut auth = auth.clone();
    auth.service_login(forwarded_for(
        "198.51.100.7",
        ServiceLoginRequest {
            client_id: client.id.clone(),
            client_secret: client.secret.clone(),
        },
    ))
    .await
    .expect("the real service, from its own address, is not slowed down");
    assert!(
        scalar(
            &db,
            "SELECT count(*) FROM audit_events WHERE event_name = 'identity.service_login.failed'"
        ) >= evaluated
    );
}

/// Client ids are not secret. Strangers spreading wrong secrets over many
/// addresses (with the rate limits on) must not lock the real service out,
/// as the account-wide pause of Login would: a 256-bit secret needs no
/// account-wide limit, and the sign-up and ban hooks depend on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_guessing_from_many_addresses_cannot_lock_a_service_client_out() {
    let db = TestDb::new(Backend::Sqlite);
    let server = server(
        &db,
        ServerOptions::default()
            .env("IDENTITY_TRUSTED_PROXIES", "127.0.0.1/32")
            .env("IDENTITY_RATE_LIMIT_ENABLED", "true"),
    );
    let auth = server.auth().await;
    let client = create_client(&db, "provisioner");
    let mut guesses = JoinSet::new();
    for n in 0..120u32 {
        let (mut auth, id) = (auth.clone(), client.id.clone());
        guesses.spawn(async move {
            auth.service_login(forwarded_for(
                &format!("198.51.{}.{}", n / 200, n % 200 + 1),
                ServiceLoginRequest {
                    client_id: id,
                    client_secret: format!("idsec_guess{n}"),
                },
            ))
            .await
            .unwrap_err()
            .code()
        });
        if n % 10 == 9 {
            while guesses.try_join_next().is_some() {}
        }
    }
    while let Some(code) = guesses.join_next().await {
        let code = code.unwrap();
        assert!(
            matches!(code, Code::Unauthenticated | Code::ResourceExhausted),
            "{code:?}"
        );
    }
    let mut auth = auth.clone();
    auth.service_login(forwarded_for(
        "203.0.113.5",
        ServiceLoginRequest {
            client_id: client.id.clone(),
            client_secret: client.secret.clone(),
        },
    ))
    .await
    .expect("the real service, from its own address, still signs in");
}

/// An operator (or a script someone copied) asks for `admin`: a service's
/// credentials sit in configuration files, so they must never carry it, and
/// no bearer token may outlive the access-token cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_credentials_never_carry_admin_nor_outlive_a_day() {
    let db = TestDb::new(Backend::Sqlite);
    // Migrates the database and writes the development key --dev signs with.
    let _server = server(&db, ServerOptions::default());
    let (ok, _, stderr) = admin(&db, &["create-service-client", "--role", "admin"]);
    assert!(!ok, "create-service-client --role admin succeeded");
    assert!(stderr.contains("--role"), "{stderr}");
    for args in [
        ["--role", "provisioner", "--ttl", "25h"],
        ["--role", "provisioner", "--ttl", "90days"],
        ["--role", "admin", "--ttl", "10m"],
    ] {
        let mut command = vec!["issue-service-token", "--dev"];
        command.extend(args);
        let (ok, stdout, stderr) = admin(&db, &command);
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
    let (ok, stdout, stderr) = admin(
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

fn claims_of(jwt: &str) -> serde_json::Value {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

/// A token an offline verifier accepts must not live longer than any other
/// access token, whatever the client asks.
async fn a_service_login_token_expires_no_later_than_the_access_token_ttl(backend: Backend) {
    let db = TestDb::new(backend);
    let server = server(
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

/// The sign-up hook's powers through ServiceLogin, and not one more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provisioner_via_service_login_creates_external_profiles_but_cannot_list_them() {
    let db = TestDb::new(Backend::Postgres);
    let server = server(&db, ServerOptions::default());
    let mut auth = server.auth().await;
    let client = create_client(&db, "provisioner");
    let token = service_login(&mut auth, &client.id, &client.secret)
        .await
        .unwrap()
        .access_token;
    let mut profiles = ProfileServiceClient::new(server.channel().await);
    let profile = |provider: &str| CreateProfileRequest {
        profile: Some(UserProfile {
            auth_provider: provider.into(),
            auth_id: "user-1".into(),
            ..Default::default()
        }),
    };
    profiles
        .create_profile(bearer(&token, profile("better-auth")))
        .await
        .expect("a provisioner creates an external provider's profile");
    for reserved in ["local", "service"] {
        let status = profiles
            .create_profile(bearer(&token, profile(reserved)))
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

/// An admin token (stolen, or a careless operator) tries to make a service
/// principal an admin through the API: its live ServiceLogin token would
/// then act as admin on every replica. Refused on write, and a row changed
/// behind the API's back still does not make a service act as admin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_call_makes_a_service_principal_act_as_admin() {
    let db = TestDb::new(Backend::Postgres);
    let server = server(
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
    let server = server(&db, ServerOptions::default());
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
    let server = server(
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
