//! The README's database roles: the server's user serves, but cannot
//! rewrite the audit trail or the schema.

use super::*;

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
    let client = credentials(&String::from_utf8_lossy(&created.stdout));
    auth.service_login(identity::proto::v1::ServiceLoginRequest {
        client_id: client.id,
        client_secret: client.secret,
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
