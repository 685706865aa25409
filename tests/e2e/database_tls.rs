//! PostgreSQL over TLS: with `sslmode=verify-full` every connection the
//! service opens (migrations, the pool, the revocation listener) is
//! encrypted and checked against the named CA; a server whose certificate
//! chains elsewhere, or plaintext to a TLS-only server, stops the start
//! naming IDENTITY_DATABASE_URL.

use crate::support::pki::Ca;
use crate::support::tls_postgres::TlsPostgres;
use crate::support::{Server, ServerOptions, TempDir, active, email, login, register};
use identity::proto::v1::*;

/// `identity serve --dev` against `url`, expected to stop: its output.
fn refused_start(url: &str) -> String {
    let (code, text) = crate::support::refused_start(&[
        ("IDENTITY_DATABASE_URL", url),
        ("IDENTITY_DATABASE_TIMEOUT", "2s"),
    ]);
    assert!(
        code.is_some_and(|c| c != 0),
        "started against {url}:\n{text}"
    );
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_is_reached_over_verified_tls_only() {
    let ca = Ca::new("database CA");
    let postgres = TlsPostgres::start(&ca.server());
    let files = TempDir::new();
    let bundle = files.path().join("db-ca.pem");
    std::fs::write(&bundle, &ca.pem).unwrap();

    // Verified TLS: migrations, the pool and the revocation listener.
    let url = postgres.url(&format!(
        "?sslmode=verify-full&sslrootcert={}",
        bundle.display()
    ));
    let data = TempDir::new();
    let server = Server::start_with(&url, data.path(), ServerOptions::default());
    let mut auth = server.auth().await;
    let address = email("tls-db");
    let first = register(&mut auth, &address).await;
    let second = login(&mut auth, &address).await;
    auth.logout(LogoutRequest {
        refresh_token: first.refresh_token.clone(),
    })
    .await
    .unwrap();
    assert!(!active(&mut auth, &first.access_token).await);
    assert!(active(&mut auth, &second.access_token).await);
    assert!(
        crate::support::eventually(std::time::Duration::from_secs(10), || async {
            server.logs().contains("identity.revocation.listener_up")
        })
        .await,
        "the revocation listener connects over TLS too:\n{}",
        server.logs()
    );
    drop(server);

    // Plaintext to a TLS-only server.
    let text = refused_start(&postgres.url(""));
    assert!(text.contains("IDENTITY_DATABASE_URL"), "{text}");

    // A certificate that does not chain to the named CA.
    let other = Ca::new("someone else's CA");
    let wrong = files.path().join("other-ca.pem");
    std::fs::write(&wrong, &other.pem).unwrap();
    let text = refused_start(&postgres.url(&format!(
        "?sslmode=verify-full&sslrootcert={}",
        wrong.display()
    )));
    assert!(text.contains("IDENTITY_DATABASE_URL"), "{text}");
    assert!(
        text.contains("certificate") || text.contains("UnknownIssuer"),
        "says why: {text}"
    );

    // The right CA but another name than the certificate's (it names
    // localhost only): the host name is checked, not just the chain.
    let text = refused_start(&format!(
        "postgres://postgres@127.0.0.1:{}/postgres?sslmode=verify-full&sslrootcert={}",
        postgres.port,
        bundle.display()
    ));
    assert!(text.contains("IDENTITY_DATABASE_URL"), "{text}");
    assert!(text.contains("certificate"), "says why: {text}");

    // `require` verifies as well (unlike libpq's).
    let text =
        refused_start(&postgres.url(&format!("?sslmode=require&sslrootcert={}", wrong.display())));
    assert!(text.contains("certificate"), "says why: {text}");

    // Settings that would weaken the check are refused before connecting.
    for params in [
        "?sslmode=verify-ca",
        "?sslmode=verify-full&sslrootcert=/nonexistent.pem",
    ] {
        let text = refused_start(&postgres.url(params));
        assert!(text.contains("IDENTITY_DATABASE_URL"), "{params}: {text}");
    }
}
