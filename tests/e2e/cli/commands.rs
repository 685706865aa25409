//! The other commands and settings: help, healthcheck, `admin grant-role`,
//! and secrets read from files.

use super::*;

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
    register(&mut auth, &address).await;
    let list = |token: String| {
        let channel = server.channel();
        async move {
            let mut client = ProfileServiceClient::new(channel.await);
            client
                .list_profiles(bearer(&token, ListProfilesRequest::default()))
                .await
        }
    };
    let before = list(login(&mut auth, &address).await.access_token)
        .await
        .unwrap_err();
    assert_eq!(before.code(), tonic::Code::PermissionDenied);

    let (granted, _, stderr) = admin_command(&db, &["grant-role", &address, "admin"]);
    assert!(granted, "{stderr}");
    list(login(&mut auth, &address).await.access_token)
        .await
        .expect("an admin lists profiles");
    assert_eq!(
        pg_text(
            &db,
            "SELECT count(*) FROM audit_events WHERE event_name = 'identity.role.changed'"
        ),
        "1",
        "the role change is audited"
    );
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
