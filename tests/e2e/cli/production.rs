//! Production mode: each insecure setting refused by name, a key file from
//! keygen accepted, serving on PostgreSQL and draining on SIGTERM; dev
//! mode warns and keeps its key.

use super::*;

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
        (
            "a jwks_uri from nothing (the Host header would be all that is left)",
            &[
                ("IDENTITY_DATABASE_URL", PG),
                ("IDENTITY_ALLOW_PLAINTEXT", "true"),
                ("IDENTITY_SECRET_KEY", STRONG),
                ("IDENTITY_HTTP_LISTEN_ADDR", "127.0.0.1:0"),
            ],
            "IDENTITY_HTTP_PUBLIC_URL",
        ),
        (
            "a plain-http jwks_uri without a mesh",
            &[
                ("IDENTITY_DATABASE_URL", PG),
                ("IDENTITY_SECRET_KEY", STRONG),
                ("IDENTITY_TLS_CERT_FILE", "/dev/null"),
                ("IDENTITY_TLS_KEY_FILE", "/dev/null"),
                ("IDENTITY_HTTP_LISTEN_ADDR", "127.0.0.1:0"),
                ("IDENTITY_HTTP_PUBLIC_URL", "http://identity.example.com"),
            ],
            "IDENTITY_HTTP_PUBLIC_URL",
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
    let server = Server::start_with_options(
        &db,
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
