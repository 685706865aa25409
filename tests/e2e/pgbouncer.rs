//! Replicas behind a real PgBouncer in transaction pooling mode: there a
//! LISTEN is registered on whichever server connection ran it, and what is
//! announced while that connection is back in the pool never reaches the
//! listener, while any query on it still answers. A replica must notice
//! (its heartbeat has to come back through the LISTEN connection) and
//! validate against the database instead of trusting its memory.

use crate::support::pgbouncer::{Alias, PgBouncer};
use crate::support::{
    Backend, MAX_STALENESS, SLACK, Server, ServerOptions, TestDb, active, email, eventually,
    execute, login, register,
};
use identity::proto::v1::LogoutRequest;
use std::time::{Duration, Instant};

/// Transaction pooling. One server connection per replica keeps the pool
/// working on PgBouncer 1.18 (Debian 12), which does not carry the named
/// prepared statements of tokio-postgres from one server connection to
/// another; 1.21+ does with `max_prepared_statements` (README).
fn transaction_pool(alias: &'static str) -> Alias {
    Alias {
        alias,
        pool_mode: "transaction",
        pool_size: 1,
    }
}

fn options() -> ServerOptions {
    ServerOptions::default()
        .env("IDENTITY_MIGRATE_ON_START", "false")
        .env("IDENTITY_REVOCATION_MAX_STALENESS", "1s")
        // Long enough that only the announcements (or a database read) can
        // carry a revocation within the test.
        .env("IDENTITY_REVOCATION_RECONCILE_INTERVAL", "10m")
}

/// Logout on `a`; `b` (which validated the session before) must refuse it
/// within the bound. The time it took.
async fn logout_is_refused_by_the_other_replica(a: &Server, b: &Server) -> Duration {
    let (mut on_a, mut on_b) = (a.auth().await, b.auth().await);
    let address = email("pooled");
    register(&mut on_a, &address).await;
    let tokens = login(&mut on_a, &address).await;
    for _ in 0..3 {
        assert!(active(&mut on_b, &tokens.access_token).await);
    }
    on_a.logout(LogoutRequest {
        refresh_token: tokens.refresh_token.clone(),
    })
    .await
    .unwrap();
    let since = Instant::now();
    assert!(!active(&mut on_a, &tokens.access_token).await);
    loop {
        if !active(&mut on_b, &tokens.access_token).await {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < MAX_STALENESS + SLACK,
            "the other replica still validates a logged-out session after {:?} \
             (its listener hears nothing behind transaction pooling)",
            since.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_transaction_pooling_a_logout_on_one_replica_is_refused_by_the_other_at_once() {
    let db = TestDb::new(Backend::Postgres);
    identity_store::Store::migrate(&db.url.parse().unwrap())
        .await
        .unwrap();
    let bouncer = PgBouncer::start(
        &db,
        &[transaction_pool("replica_a"), transaction_pool("replica_b")],
    );
    let a = Server::start_with(&bouncer.url(&db, "replica_a"), db.dir.path(), options());
    let b = Server::start_with(&bouncer.url(&db, "replica_b"), db.dir.path(), options());

    let took = logout_is_refused_by_the_other_replica(&a, &b).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            b.logs().contains("identity.revocation.listener_unheard")
        })
        .await,
        "the replica says its listener hears nothing; logs:\n{}",
        b.logs()
    );
    let logs = b.logs();
    assert!(
        logs.contains("session-mode connection") && logs.contains("IDENTITY_REVOCATION_LISTEN_URL"),
        "the error says what to do; logs:\n{logs}"
    );
    println!("behind transaction pooling the other replica refused after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_on_a_session_pool_keeps_replicas_in_step_behind_transaction_pooling() {
    let db = TestDb::new(Backend::Postgres);
    identity_store::Store::migrate(&db.url.parse().unwrap())
        .await
        .unwrap();
    let bouncer = PgBouncer::start(
        &db,
        &[
            transaction_pool("replica_a"),
            transaction_pool("replica_b"),
            Alias {
                alias: "listeners",
                pool_mode: "session",
                pool_size: 10,
            },
        ],
    );
    let listen_url = bouncer.url(&db, "listeners");
    let start = |alias| {
        Server::start_with(
            &bouncer.url(&db, alias),
            db.dir.path(),
            options().env("IDENTITY_REVOCATION_LISTEN_URL", listen_url.as_str()),
        )
    };
    let (a, b) = (start("replica_a"), start("replica_b"));
    for server in [&a, &b] {
        assert!(
            eventually(Duration::from_secs(10), || async {
                server
                    .logs()
                    .contains("identity.revocation.heartbeat_heard")
            })
            .await,
            "the listener hears its heartbeat through the session pool; logs:\n{}",
            server.logs()
        );
    }

    // Memory is trusted (the fast path is on): a revocation made by SQL,
    // which announces nothing, waits for the reconciliation.
    let (mut on_a, mut on_b) = (a.auth().await, b.auth().await);
    let address = email("memory");
    register(&mut on_a, &address).await;
    let tokens = login(&mut on_a, &address).await;
    for _ in 0..3 {
        assert!(active(&mut on_b, &tokens.access_token).await);
    }
    let session = uuid::Uuid::parse_str(&tokens.session_id).unwrap();
    execute(
        &db,
        &format!(
            "UPDATE sessions SET revoked_at = now(), revoke_reason = 'test' WHERE id = '{session}'"
        ),
    );
    assert!(
        active(&mut on_b, &tokens.access_token).await,
        "validation is answered from memory"
    );

    let took = logout_is_refused_by_the_other_replica(&a, &b).await;
    let also = logout_is_refused_by_the_other_replica(&b, &a).await;
    for server in [&a, &b] {
        assert!(
            !server
                .logs()
                .contains("identity.revocation.listener_unheard"),
            "{}",
            server.logs()
        );
    }
    println!(
        "with the listener on a session pool the other replica refused after {took:?} and {also:?}"
    );
}
