//! The revocation listener's gauges follow its connection — what the
//! dashboard shows and IdentityRevocationListenerDown alerts on: 0 and
//! growing stale while the listener is gone, 1 and fresh once it hears its
//! heartbeat again.

use super::*;
use crate::support::{eventually, metric, metrics_addr, pg_text, scrape};

/// `identity_revocation_listener_up` and
/// `identity_revocation_staleness_seconds`, as one scrape shows them.
async fn listener_gauges(server: &Server) -> (Option<f64>, Option<f64>) {
    let text = scrape(metrics_addr(server)).await;
    (
        metric(&text, "identity_revocation_listener_up"),
        metric(&text, "identity_revocation_staleness_seconds"),
    )
}

/// Up, and no staler than the bound (plus the heartbeat period and room).
async fn hears(server: &Server) -> bool {
    match listener_gauges(server).await {
        (Some(up), Some(staleness)) => up == 1.0 && staleness < (MAX_STALENESS * 2).as_secs_f64(),
        _ => false,
    }
}

/// The listening session of the test's database (`LISTEN` is the last, and
/// only, statement it runs).
fn listening_backend(db: &TestDb) -> String {
    let pids = pg_text(
        db,
        "SELECT pid FROM pg_stat_activity \
         WHERE datname = current_database() AND query = 'LISTEN identity_revocations'",
    );
    assert_eq!(pids.lines().count(), 1, "one listening session: {pids:?}");
    pids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_listener_shows_down_and_growing_stale_until_it_hears_again() {
    let db = TestDb::new(Backend::Postgres);
    // Only the listener goes through the proxy: it can be kept from
    // reconnecting while the pool, and the service, go on working.
    let proxy = Proxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let server = Server::start_with_options(
        &db,
        ServerOptions::default()
            .env("IDENTITY_METRICS_ADDR", "127.0.0.1:0")
            .env("IDENTITY_REVOCATION_MAX_STALENESS", "1s")
            .env("IDENTITY_REVOCATION_LISTEN_URL", db.url_via(proxy.addr)),
    );
    assert!(
        eventually(Duration::from_secs(10), || hears(&server)).await,
        "the listener never heard its heartbeat: {:?}\n{}",
        listener_gauges(&server).await,
        server.logs()
    );
    let mut auth = server.auth().await;
    let tokens = register(&mut auth, &email("listener-gauges")).await;

    // Its PostgreSQL session is killed, and it cannot come back.
    let killed = listening_backend(&db);
    proxy.refuse_new();
    execute(&db, &format!("SELECT pg_terminate_backend({killed})"));
    assert!(
        eventually(Duration::from_secs(5), || async {
            listener_gauges(&server).await.0 == Some(0.0)
        })
        .await,
        "the listener still counts as up: {:?}",
        listener_gauges(&server).await
    );
    let (_, Some(first)) = listener_gauges(&server).await else {
        panic!("no staleness while the listener is down");
    };
    let pause = Duration::from_millis(1500);
    tokio::time::sleep(pause).await;
    let (up, Some(later)) = listener_gauges(&server).await else {
        panic!("no staleness while the listener is down");
    };
    assert_eq!(up, Some(0.0), "back although it cannot connect");
    assert!(
        later - first >= pause.as_secs_f64() - 0.1,
        "staleness went from {first} to {later} s in {pause:?}"
    );
    assert!(later > MAX_STALENESS.as_secs_f64(), "{later}");
    // Meanwhile validation reads the database, and works.
    assert!(active(&mut auth, &tokens.access_token).await);

    // Reachable again: it reconnects on its own, hears, and is fresh.
    proxy.restore();
    assert!(
        eventually(Duration::from_secs(20), || hears(&server)).await,
        "the listener did not come back: {:?}\n{}",
        listener_gauges(&server).await,
        server.logs()
    );
    assert_ne!(listening_backend(&db), killed, "a new listening session");
    assert!(
        server.logs().contains("identity.revocation.listener_down"),
        "the kill was noticed as such"
    );
}
