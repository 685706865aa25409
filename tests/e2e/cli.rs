//! The binary's command line: production refusals, keygen, healthcheck,
//! graceful shutdown, help, migrations.

use crate::on_both_backends;
use crate::support::{Backend, Server, ServerOptions, TempDir, TestDb, binary};
use std::process::Command;
use std::time::{Duration, Instant};

fn serve_production(env: &[(&str, &str)]) -> (bool, String) {
    let dir = TempDir::new();
    let mut command = Command::new(binary());
    command
        .arg("serve")
        .env_clear()
        .env("IDENTITY_LISTEN_ADDR", "127.0.0.1:0")
        .env("IDENTITY_DATA_DIR", dir.path());
    for (k, v) in env {
        command.env(k, v);
    }
    let output = command.output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

const PG: &str = "postgres://identity@127.0.0.1:1/identity";
const STRONG: &str = "kJ7vQ2mX9pL4tR8wZ1nB6yC3fH5dG0sA";

#[test]
fn production_refuses_each_insecure_setting_naming_it() {
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            "no database",
            &[
                ("IDENTITY_SECRET_KEY", STRONG),
                ("IDENTITY_ALLOW_PLAINTEXT", "true"),
            ],
            "IDENTITY_DATABASE_URL",
        ),
        (
            "no signing key",
            &[
                ("IDENTITY_DATABASE_URL", PG),
                ("IDENTITY_ALLOW_PLAINTEXT", "true"),
            ],
            "IDENTITY_SIGNING_KEY_FILE",
        ),
        (
            "short secret",
            &[
                ("IDENTITY_DATABASE_URL", PG),
                ("IDENTITY_ALLOW_PLAINTEXT", "true"),
                ("IDENTITY_SECRET_KEY", "tooshort"),
            ],
            "IDENTITY_SECRET_KEY",
        ),
        (
            "placeholder secret",
            &[
                ("IDENTITY_DATABASE_URL", PG),
                ("IDENTITY_ALLOW_PLAINTEXT", "true"),
                ("IDENTITY_SECRET_KEY", "changeme"),
            ],
            "IDENTITY_SECRET_KEY",
        ),
        (
            "README placeholder secret",
            &[
                ("IDENTITY_DATABASE_URL", PG),
                ("IDENTITY_ALLOW_PLAINTEXT", "true"),
                (
                    "IDENTITY_SECRET_KEY",
                    "replace-me-with-at-least-32-random-bytes",
                ),
            ],
            "IDENTITY_SECRET_KEY",
        ),
        (
            "sqlite",
            &[
                ("IDENTITY_DATABASE_URL", "sqlite://x.db"),
                ("IDENTITY_ALLOW_PLAINTEXT", "true"),
                ("IDENTITY_SECRET_KEY", STRONG),
            ],
            "IDENTITY_DATABASE_URL",
        ),
        (
            "plaintext",
            &[
                ("IDENTITY_DATABASE_URL", PG),
                ("IDENTITY_SECRET_KEY", STRONG),
            ],
            "IDENTITY_TLS_CERT_FILE",
        ),
        (
            "low bcrypt cost",
            &[
                ("IDENTITY_DATABASE_URL", PG),
                ("IDENTITY_ALLOW_PLAINTEXT", "true"),
                ("IDENTITY_SECRET_KEY", STRONG),
                ("IDENTITY_BCRYPT_COST", "10"),
            ],
            "IDENTITY_BCRYPT_COST",
        ),
    ];
    for (name, env, setting) in cases {
        let (ok, stderr) = serve_production(env);
        assert!(!ok, "{name}: started");
        assert!(stderr.contains("refusing to start"), "{name}: {stderr}");
        assert!(
            stderr.contains(setting),
            "{name}: message must name {setting}: {stderr}"
        );
        assert!(!stderr.contains(STRONG), "{name}: the secret was echoed");
    }
}

#[test]
fn help_documents_every_setting_with_its_variable_and_hides_secret_values() {
    let output = Command::new(binary())
        .args(["serve", "--help"])
        .env("IDENTITY_SECRET_KEY", STRONG)
        .env("IDENTITY_DATABASE_URL", "postgres://u:hunter2secret@h/d")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for variable in [
        "IDENTITY_LISTEN_ADDR",
        "IDENTITY_DATABASE_URL",
        "IDENTITY_SIGNING_KEY_FILE",
        "IDENTITY_SECRET_KEY",
        "IDENTITY_ISSUER",
        "IDENTITY_AUDIENCE",
        "IDENTITY_ACCESS_TOKEN_TTL",
        "IDENTITY_REFRESH_TOKEN_TTL",
        "IDENTITY_BCRYPT_COST",
        "IDENTITY_ALLOW_SQLITE",
        "IDENTITY_ALLOW_PLAINTEXT",
        "IDENTITY_TLS_CERT_FILE",
    ] {
        assert!(help.contains(variable), "--help lacks {variable}");
    }
    assert!(
        !help.contains(STRONG) && !help.contains("hunter2secret"),
        "--help printed a secret"
    );
}

#[test]
fn keygen_writes_an_owner_only_key_that_production_accepts() {
    let dir = TempDir::new();
    let key = dir.path().join("key.pem");
    let status = Command::new(binary())
        .args(["keygen", "--out"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(status.success());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    assert!(
        std::fs::read_to_string(&key)
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );
    // Refuses to overwrite an existing key.
    let again = Command::new(binary())
        .args(["keygen", "--out"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(!again.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_mode_serves_with_a_key_file_on_postgres_and_drains_on_sigterm() {
    let db = TestDb::new(Backend::Postgres);
    let key = db.dir.path().join("key.pem");
    assert!(
        Command::new(binary())
            .args(["keygen", "--out"])
            .arg(&key)
            .status()
            .unwrap()
            .success()
    );
    let migrate = Command::new(binary())
        .arg("migrate")
        .env("IDENTITY_DATABASE_URL", &db.url)
        .output()
        .unwrap();
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    let server = Server::start_with(
        &db.url,
        db.dir.path(),
        ServerOptions {
            dev: false,
            env: Vec::new(),
        }
        .env("IDENTITY_SIGNING_KEY_FILE", key.display().to_string())
        .env("IDENTITY_ALLOW_PLAINTEXT", "true")
        .env("IDENTITY_BCRYPT_COST", "12")
        .env("IDENTITY_RATE_LIMIT_ENABLED", "true"),
    );
    let probe = || {
        Command::new(binary())
            .args(["healthcheck", "--addr", &server.url()])
            .output()
            .unwrap()
    };
    let mut probe_output = probe();
    for _ in 0..50 {
        if probe_output.status.success() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        probe_output = probe();
    }
    let probe = probe_output;
    assert!(
        probe.status.success(),
        "{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&probe.stdout).trim(), "SERVING");
    let logs = server.logs();
    assert!(
        !logs.contains("DEVELOPMENT MODE"),
        "production must not say dev mode"
    );
    let status = server.terminate();
    assert!(status.success(), "SIGTERM must exit 0, got {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_warns_loudly_and_keeps_its_generated_key_across_restarts() {
    let db = TestDb::new(Backend::Sqlite);
    let first = Server::start(&db);
    assert!(first.logs().contains("NEVER USE IN PRODUCTION"));
    let kid = |server: &Server| {
        let logs = server.logs();
        let line = logs
            .lines()
            .find(|l| l.contains("\"serving gRPC\""))
            .unwrap()
            .to_owned();
        serde_json::from_str::<serde_json::Value>(&line).unwrap()["kid"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let before = kid(&first);
    assert!(first.terminate().success());
    let second = Server::start(&db);
    assert_eq!(
        kid(&second),
        before,
        "the dev signing key survives a restart"
    );
}

#[test]
fn healthcheck_fails_when_nothing_listens() {
    let output = Command::new(binary())
        .args([
            "healthcheck",
            "--addr",
            "http://127.0.0.1:1",
            "--timeout",
            "1s",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_grant_role_makes_an_admin_without_default_credentials() {
    use identity::proto::v1::profile_service_client::ProfileServiceClient;
    use identity::proto::v1::*;
    let db = TestDb::new(Backend::Postgres);
    let server = Server::start(&db);
    let mut auth = server.auth().await;
    let address = crate::support::email("ops");
    auth.register(RegisterRequest {
        email: address.clone(),
        password: crate::support::PASSWORD.into(),
        display_name: String::new(),
    })
    .await
    .unwrap();
    let list = |token: String| {
        let channel = server.channel();
        async move {
            let mut client = ProfileServiceClient::new(channel.await);
            let mut request = tonic::Request::new(ListProfilesRequest::default());
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
            client.list_profiles(request).await
        }
    };
    let login = |auth: &mut identity::proto::v1::auth_service_client::AuthServiceClient<
        tonic::transport::Channel,
    >| {
        let mut auth = auth.clone();
        let address = address.clone();
        async move {
            auth.login(LoginRequest {
                email: address,
                password: crate::support::PASSWORD.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .tokens
            .unwrap()
            .access_token
        }
    };
    let before = list(login(&mut auth).await).await.unwrap_err();
    assert_eq!(before.code(), tonic::Code::PermissionDenied);

    let grant = Command::new(binary())
        .args(["admin", "grant-role", &address, "admin"])
        .env("IDENTITY_DATABASE_URL", &db.url)
        .output()
        .unwrap();
    assert!(
        grant.status.success(),
        "{}",
        String::from_utf8_lossy(&grant.stderr)
    );
    list(login(&mut auth).await)
        .await
        .expect("an admin lists profiles");
    let audit = Command::new("psql")
        .arg(&db.url)
        .args([
            "-tAc",
            "SELECT count(*) FROM audit_events WHERE event_name = 'identity.role.changed'",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&audit.stdout).trim(),
        "1",
        "the role change is audited"
    );
}

on_both_backends!(
    admin_role_changes_bump_the_revision_never_move_updated_at_back_and_never_make_a_service_admin
);

/// A time another replica's clock (running ahead) could have written.
const AHEAD: &str = "2100-01-01 00:00:00+00:00";
const AHEAD_SECS: i64 = 4_102_444_800;

/// `identity admin grant-role|revoke-role` is one more way to change a
/// profile, so it follows the rules of UpdateProfile: a new revision (every
/// etag read before it is stale), an `updated_at` that never goes back, and
/// never `admin` for a service principal, however its provider is spelled.
async fn admin_role_changes_bump_the_revision_never_move_updated_at_back_and_never_make_a_service_admin(
    backend: Backend,
) {
    use crate::support::{admin, bearer, execute, register, violated_fields};
    use identity::proto::v1::profile_service_client::ProfileServiceClient;
    use identity::proto::v1::*;
    let db = TestDb::new(backend);
    let ops = crate::support::email("ops");
    let server = Server::start_with(
        &db.url,
        db.dir.path(),
        ServerOptions::default().env("IDENTITY_BOOTSTRAP_ADMINS", ops.clone()),
    );
    let mut auth = server.auth().await;
    let admin_token = register(&mut auth, &ops).await.access_token;
    let ann = crate::support::email("ann");
    let token = register(&mut auth, &ann).await.access_token;
    let mut profiles = ProfileServiceClient::new(server.channel().await);
    let me = || {
        let mut profiles = profiles.clone();
        let token = token.clone();
        async move {
            profiles
                .get_profile(bearer(&token, GetProfileRequest { id: "me".into() }))
                .await
                .expect("the owner reads the profile")
                .into_inner()
        }
    };
    let read = me().await;
    execute(
        &db,
        &format!(
            "UPDATE profiles SET updated_at = '{AHEAD}' WHERE id = '{}'",
            read.id
        ),
    );

    let mut etags = vec![read.etag.clone()];
    for (command, has_role) in [("grant-role", true), ("revoke-role", false)] {
        let (ok, _, stderr) = admin(&db, &[command, &ann, "editor"]);
        assert!(ok, "{command}: {stderr}");
        // The server learns of a change made by another process through
        // the announcement (PostgreSQL) or when its copy expires (SQLite).
        let deadline = Instant::now() + Duration::from_secs(10);
        let changed = loop {
            let now = me().await;
            if !etags.contains(&now.etag) {
                break now;
            }
            assert!(
                Instant::now() < deadline,
                "{command} must change the etag: {now:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(
            changed.roles.iter().any(|r| r == "editor"),
            has_role,
            "{command}"
        );
        let updated = changed.update_time.unwrap().seconds;
        assert!(
            updated >= AHEAD_SECS,
            "{command} moved updated_at back to {updated} (stored: {AHEAD})"
        );
        etags.push(changed.etag);
    }
    let stale = profiles
        .update_profile(bearer(
            &token,
            UpdateProfileRequest {
                profile: Some(UserProfile {
                    display_name: "Ann".into(),
                    ..read.clone()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["display_name".into()],
                }),
            },
        ))
        .await
        .expect_err("an etag read before the role changes is stale");
    assert_eq!(stale.code(), tonic::Code::Aborted, "{stale:?}");
    assert_eq!(
        crate::support::scalar(
            &db,
            &format!(
                "SELECT count(*) FROM audit_events WHERE event_name = 'identity.role.changed' \
                 AND profile_id = '{}' AND detail LIKE '%identity admin%'",
                read.id
            ),
        ),
        2,
        "each change is audited with its actor"
    );

    // Service principals: the one created for a client, and one whose
    // provider is another spelling of `service` (written behind the API).
    let (ok, _, stderr) = admin(
        &db,
        &[
            "create-service-client",
            "--role",
            "provisioner",
            "--name",
            "hook",
        ],
    );
    assert!(ok, "{stderr}");
    let hook = profiles
        .lookup_profile(bearer(
            &admin_token,
            LookupProfileRequest {
                auth_provider: "service".into(),
                auth_id: "hook".into(),
            },
        ))
        .await
        .expect("the admin finds the principal")
        .into_inner();
    let spelled = uuid::Uuid::new_v4().to_string();
    execute(
        &db,
        &format!(
            "INSERT INTO profiles (id, auth_provider, auth_id, roles, revision, created_at, updated_at) \
             VALUES ('{spelled}', 'Service', 'sneaky', '', 1, '{AHEAD}', '{AHEAD}')"
        ),
    );
    for principal in [hook.id.as_str(), spelled.as_str()] {
        let (ok, _, stderr) = admin(&db, &["grant-role", principal, "admin"]);
        assert!(!ok, "grant-role {principal} admin succeeded");
        assert!(stderr.contains("admin is for people"), "{stderr}");
        assert_eq!(
            crate::support::scalar(
                &db,
                &format!(
                    "SELECT count(*) FROM profiles WHERE id = '{principal}' AND roles LIKE '%admin%'"
                ),
            ),
            0,
            "{principal} holds no admin"
        );
    }
    let (ok, _, stderr) = admin(
        &db,
        &[
            "issue-service-token",
            "--name",
            "hook",
            "--role",
            "admin",
            "--dev",
        ],
    );
    assert!(!ok, "a service token with admin was issued");
    assert!(stderr.contains("admin is for people"), "{stderr}");
    let refused = profiles
        .update_profile(bearer(
            &admin_token,
            UpdateProfileRequest {
                profile: Some(UserProfile {
                    roles: vec!["admin".into(), "provisioner".into()],
                    ..hook.clone()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["roles".into()],
                }),
            },
        ))
        .await
        .expect_err("UpdateProfile never makes a service admin");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert_eq!(violated_fields(&refused), ["profile.roles"]);
}

/// A secret in an environment variable is readable by anyone who can list the
/// pod spec or /proc/<pid>/environ; a mounted file is not. Its trailing
/// newline (what `kubectl create secret --from-file` and editors leave) must
/// not end up in the URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_read_from_files_reach_the_server_without_their_trailing_newline() {
    let db = TestDb::new(Backend::Postgres);
    let url_file = db.dir.path().join("database-url");
    std::fs::write(&url_file, format!("{}\n", db.url)).unwrap();
    let key_file = db.dir.path().join("secret-key");
    std::fs::write(&key_file, "kJ7vQ2mX9pL4tR8wZ1nB6yC3fH5dG0sA-hs256\n").unwrap();
    let server = Server::start_with(
        // Empty: the URL comes only from the file.
        "",
        db.dir.path(),
        ServerOptions::default()
            .env("IDENTITY_DATABASE_URL_FILE", url_file.display().to_string())
            .env("IDENTITY_SECRET_KEY_FILE", key_file.display().to_string()),
    );
    // --dev migrates on start: the PostgreSQL database named in the file got
    // the schema (not the SQLite file --dev falls back to without a URL).
    assert!(
        crate::support::scalar(&db, "SELECT count(*) FROM __diesel_schema_migrations") > 0,
        "{}",
        server.logs()
    );
    // The HS256 secret was taken: --dev generates no Ed25519 key.
    assert!(
        !db.dir.path().join("signing-key.pem").exists(),
        "{}",
        server.logs()
    );
}

#[test]
fn a_secret_set_twice_or_from_an_unreadable_file_is_refused_naming_the_setting() {
    let dir = TempDir::new();
    let missing = dir.path().join("no-such-file").display().to_string();
    let cases: [(&str, &str); 3] = [
        (
            "IDENTITY_DATABASE_URL",
            "postgres://u:hunter2-db@127.0.0.1:1/x",
        ),
        (
            "IDENTITY_SECRET_KEY",
            "hunter2-hs-kJ7vQ2mX9pL4tR8wZ1nB6yC3fH5d",
        ),
        (
            "IDENTITY_RATE_LIMIT_REDIS_URL",
            "redis://:hunter2-redis@127.0.0.1:1/0",
        ),
    ];
    let present = dir.path().join("present");
    std::fs::write(&present, "hunter2-file\n").unwrap();
    let present = present.display().to_string();
    // Each case in its own thread: on a server that ignores the variable,
    // each would wait out refused_start's 60 s.
    let runs: Vec<_> = cases
        .iter()
        .flat_map(|&(name, value)| {
            let file_name = format!("{name}_FILE");
            let twice = {
                let file_name = file_name.clone();
                let present = present.clone();
                std::thread::spawn(move || {
                    let env = [(name, value), (file_name.as_str(), present.as_str())];
                    (name, "both", crate::support::refused_start(&env))
                })
            };
            let unreadable = {
                let missing = missing.clone();
                std::thread::spawn(move || {
                    let env = [(file_name.as_str(), missing.as_str())];
                    (name, "unreadable", crate::support::refused_start(&env))
                })
            };
            [twice, unreadable]
        })
        .collect();
    for run in runs {
        let (name, case, (code, text)) = run.join().unwrap();
        assert_ne!(code, Some(0), "{name} {case}: {text}");
        assert!(code.is_some(), "{name} {case}: the server started: {text}");
        assert!(
            text.contains(&format!("{name}_FILE")),
            "{name} {case}: {text}"
        );
        if case == "both" {
            assert!(
                text.contains(&format!("{name} and {name}_FILE")),
                "{name} {case}: {text}"
            );
        }
        assert!(
            !text.contains("hunter2"),
            "{name} {case}: a secret echoed: {text}"
        );
    }
}

/// The README's two GRANTs, with the server's role renamed to `runtime`.
fn readme_role_grants(runtime: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../README.md"),
    )
    .unwrap();
    let block = readme
        .split("```sql database-roles\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("README has the database-roles block");
    let grants: Vec<String> = block
        .lines()
        .filter(|line| line.starts_with("GRANT "))
        .map(|line| line.replace(" TO identity;", &format!(" TO {runtime};")))
        .collect();
    assert_eq!(grants.len(), 2, "{block}");
    grants
}

/// `psql` as `user` on `db`: whether the statement succeeded, and stderr.
fn psql_as(db: &TestDb, user: &str, sql: &str) -> (bool, String) {
    let url = db.url.replacen("://postgres@", &format!("://{user}@"), 1);
    assert!(
        db.url.contains("://postgres@"),
        "the test database URL names the postgres user: {}",
        db.url
    );
    let output = Command::new("psql")
        .arg(&url)
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .expect("psql runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A server that is taken over gets the database user's rights: with the
/// README's roles it can serve (register, login, refresh, logout,
/// housekeeping, audit retention) but not rewrite the audit trail, change
/// the schema, or touch the migrations' bookkeeping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_user_serves_but_cannot_rewrite_the_audit_trail_or_the_schema() {
    use identity::proto::v1::{LogoutRequest, RefreshRequest};
    /// Roles outlive a database: dropped after it (declared before it), even
    /// when the test fails.
    struct DropRoles([String; 2]);
    impl Drop for DropRoles {
        fn drop(&mut self) {
            let _ = Command::new("psql")
                .arg(crate::support::pg_admin_url())
                .args([
                    "-q",
                    "-c",
                    &format!("DROP ROLE IF EXISTS {}", self.0.join(", ")),
                ])
                .status();
        }
    }
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let (owner, runtime) = (format!("idown_{tag}"), format!("idrt_{tag}"));
    let _roles = DropRoles([owner.clone(), runtime.clone()]);
    let db = TestDb::new(Backend::Postgres);
    let name = db.url.rsplit('/').next().unwrap().to_owned();
    let admin = |sql: &str| {
        let (ok, err) = psql_as(&db, "postgres", sql);
        assert!(ok, "{sql}: {err}");
    };
    admin(&format!("CREATE ROLE {owner} LOGIN"));
    admin(&format!("CREATE ROLE {runtime} LOGIN"));
    admin(&format!("ALTER DATABASE {name} OWNER TO {owner}"));
    admin(&format!("ALTER SCHEMA public OWNER TO {owner}"));
    admin("REVOKE CREATE ON SCHEMA public FROM PUBLIC");

    let owner_url = db.url.replacen("://postgres@", &format!("://{owner}@"), 1);
    let migrate = Command::new(binary())
        .arg("migrate")
        .env("IDENTITY_DATABASE_URL", &owner_url)
        .output()
        .unwrap();
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    for grant in readme_role_grants(&runtime) {
        let (ok, err) = psql_as(&db, &owner, &grant);
        assert!(ok, "{grant}: {err}");
    }
    // An event past the default retention (90 days): the server must be able
    // to delete it.
    admin(
        "INSERT INTO audit_events (id, occurred_at, event_name, detail) \
         VALUES ('00000000-0000-4000-8000-000000000001', now() - interval '100 days', 'old', '{}')",
    );

    let runtime_url = db
        .url
        .replacen("://postgres@", &format!("://{runtime}@"), 1);
    let server = Server::start_with(
        &runtime_url,
        db.dir.path(),
        ServerOptions::default()
            .env("IDENTITY_MIGRATE_ON_START", "false")
            .env("IDENTITY_HOUSEKEEPING_INTERVAL", "200ms"),
    );
    let mut auth = server.auth().await;
    let address = crate::support::email("roles");
    crate::support::register(&mut auth, &address).await;
    let pair = crate::support::login(&mut auth, &address).await;
    let pair = auth
        .refresh(RefreshRequest {
            refresh_token: pair.refresh_token,
        })
        .await
        .expect("refresh works as the server's user")
        .into_inner()
        .tokens
        .expect("a token pair");
    auth.logout(LogoutRequest {
        refresh_token: pair.refresh_token,
    })
    .await
    .expect("logout works as the server's user");
    // The admin commands run in the server's container, as its user.
    let created = Command::new(binary())
        .args(["admin", "create-service-client", "--role", "provisioner"])
        .env_clear()
        .env("IDENTITY_DATABASE_URL", &runtime_url)
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let printed = String::from_utf8_lossy(&created.stdout).into_owned();
    let value = |key: &str| {
        printed
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} in {printed}"))
            .to_owned()
    };
    auth.service_login(identity::proto::v1::ServiceLoginRequest {
        client_id: value("IDENTITY_CLIENT_ID"),
        client_secret: value("IDENTITY_CLIENT_SECRET"),
    })
    .await
    .expect("ServiceLogin works as the server's user");
    assert!(
        crate::support::eventually(std::time::Duration::from_secs(30), || async {
            crate::support::scalar(
                &db,
                "SELECT count(*) FROM audit_events WHERE event_name = 'old'",
            ) == 0
        })
        .await,
        "audit retention could not delete: {}",
        server.logs()
    );
    assert!(crate::support::scalar(&db, "SELECT count(*) FROM audit_events") > 0);
    assert!(
        !server.logs().contains("permission denied"),
        "{}",
        server.logs()
    );

    for attack in [
        "UPDATE audit_events SET detail = '{}'",
        "TRUNCATE audit_events",
        "ALTER TABLE audit_events DISABLE TRIGGER ALL",
        "DROP TABLE audit_events",
        "ALTER TABLE profiles ADD COLUMN backdoor text",
        "CREATE TABLE stash (a text)",
        "DELETE FROM __diesel_schema_migrations",
    ] {
        let (ok, err) = psql_as(&db, &runtime, attack);
        assert!(!ok, "the server's user could: {attack}");
        assert!(
            err.contains("permission denied") || err.contains("must be owner"),
            "{attack}: {err}"
        );
    }
}
