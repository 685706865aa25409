//! What the service keeps grows only so far: rate-limit counters of a
//! flood of addresses, and ended sessions with their refresh tokens
//! (security review, issue 13, item 9).

use crate::support::{
    Backend, Server, ServerOptions, TestDb, bearer, email, eventually, execute, login, register,
    scalar,
};
use crate::support::{metric, metrics_addr, scrape};
use futures_util::StreamExt as _;
use identity::proto::v1::auth_service_client::AuthServiceClient;
use identity::proto::v1::{LogoutRequest, RefreshRequest, TokenPair, ValidateTokenRequest};
use std::time::Duration;
use tonic::Code;

/// A ValidateToken call as relayed by the trusted proxy for `client`.
fn validate_from(client: &str, token: &str) -> tonic::Request<ValidateTokenRequest> {
    let mut request = tonic::Request::new(ValidateTokenRequest {
        access_token: token.to_owned(),
    });
    request
        .metadata_mut()
        .insert("x-forwarded-for", client.parse().expect("an address"));
    request
}

/// `count` ValidateToken calls, each from the address `address(n)`, many
/// at once over a few connections.
async fn flood(
    clients: &[AuthServiceClient<tonic::transport::Channel>],
    token: &str,
    count: u32,
    address: impl Fn(u32) -> String,
) {
    let calls = futures_util::stream::iter(0..count).map(|n| {
        let mut client = clients[n as usize % clients.len()].clone();
        let request = validate_from(&address(n), token);
        async move { client.validate_token(request).await }
    });
    let mut answers = calls.buffer_unordered(128);
    while let Some(answer) = answers.next().await {
        if let Err(status) = answer {
            // Refused by a limit is fine; anything else is a defect.
            assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        }
    }
}

/// The `n`th IPv6 client address of `range` (documentation prefix), long
/// so that each rate-limit key is too.
fn client_address(range: u16, n: u32) -> String {
    format!(
        "2001:db8:{range:x}:1111:2222:3333:{:x}:{:x}",
        n >> 16,
        n & 0xffff
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_100000_addresses_leaves_the_rate_limiters_memory_bounded() {
    let _turn = crate::support::machine_to_myself().await;
    let db = TestDb::new(Backend::Sqlite);
    let server = Server::start_with_options(
        &db,
        ServerOptions::default()
            .env("IDENTITY_RATE_LIMIT_ENABLED", "true")
            .env("IDENTITY_TRUSTED_PROXIES", "127.0.0.1/32")
            .env("IDENTITY_RATE_LIMIT_MAX_KEYS", "10000")
            .env("IDENTITY_METRICS_ADDR", "127.0.0.1:0")
            // This test measures memory, not latency: on a loaded CI machine
            // 128 concurrent profile reads from SQLite may wait longer than
            // the default 3 s for a connection, and that UNAVAILABLE is the
            // pool working as documented, not the defect looked for here.
            .env("IDENTITY_DATABASE_TIMEOUT", "60s"),
    );
    let mut auth = server.auth().await;
    let token = register(&mut auth, &email("flood")).await.access_token;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(server.auth().await);
    }
    // Connections, buffers, caches and the allocator settle first, and the
    // limiter fills up to its cap, from addresses of another range.
    flood(&clients, &token, 20_000, |n| client_address(0xffff, n)).await;
    let before = server.rss_kib();

    flood(&clients, &token, 100_000, |n| client_address(0xaaaa, n)).await;
    let grown = server.rss_kib().saturating_sub(before);
    eprintln!("resident memory: {before} KiB before, +{grown} KiB after the flood");
    // One counter per address would be 100,000 more entries (about
    // 15 MiB with these long keys); capped, there are none.
    assert!(
        grown < 8 * 1024,
        "resident memory grew by {grown} KiB for 100,000 addresses"
    );

    // Counters of addresses that went quiet are pruned.
    let metrics = metrics_addr(&server);
    let pruned = eventually(Duration::from_secs(30), || async {
        let text = scrape(metrics).await;
        metric(&text, "identity_rate_limit_keys").is_some_and(|keys| keys < 100.0)
    })
    .await;
    assert!(pruned, "{}", scrape(metrics).await);
    let grown = server.rss_kib().saturating_sub(before);
    assert!(grown < 8 * 1024, "{grown} KiB after pruning");
}

async fn refresh(
    auth: &mut AuthServiceClient<tonic::transport::Channel>,
    refresh_token: &str,
) -> Result<TokenPair, tonic::Status> {
    auth.refresh(RefreshRequest {
        refresh_token: refresh_token.to_owned(),
    })
    .await
    .map(|r| r.into_inner().tokens.expect("a token pair"))
}

fn sessions_of(db: &TestDb, address: &str) -> i64 {
    scalar(
        db,
        &format!(
            "SELECT count(*) FROM sessions WHERE profile_id IN \
             (SELECT profile_id FROM credentials WHERE email = '{address}')"
        ),
    )
}

fn tokens_of(db: &TestDb, address: &str) -> i64 {
    scalar(
        db,
        &format!(
            "SELECT count(*) FROM refresh_tokens WHERE session_id IN (SELECT id FROM sessions \
             WHERE profile_id IN (SELECT profile_id FROM credentials WHERE email = '{address}'))"
        ),
    )
}

/// The "ended sessions past retention deleted" lines: (sessions, batches).
fn purge_runs(server: &Server) -> Vec<(u64, u64)> {
    server
        .logs()
        .lines()
        .filter(|l| l.contains("ended sessions past retention deleted"))
        .map(|l| {
            let json: serde_json::Value = serde_json::from_str(l).unwrap();
            let field = |name: &str| {
                json["fields"][name]
                    .as_u64()
                    .or_else(|| json[name].as_u64())
                    .unwrap_or_else(|| panic!("{name} in {l}"))
            };
            (field("sessions"), field("batches"))
        })
        .collect()
}

async fn ended_sessions_and_their_tokens_are_purged_in_batches_while_live_ones_stay(
    backend: Backend,
) {
    let db = TestDb::new(backend);
    let server = Server::start_with_options(
        &db,
        ServerOptions::default()
            .env("IDENTITY_SESSION_RETENTION", "1s")
            .env("IDENTITY_HOUSEKEEPING_INTERVAL", "300ms")
            .env("IDENTITY_HOUSEKEEPING_BATCH_SIZE", "2")
            .env("IDENTITY_METRICS_ADDR", "127.0.0.1:0"),
    );
    let mut auth = server.auth().await;

    // A live session that was refreshed twice: two spent tokens, one live.
    let keeper = email("keeper");
    let first = register(&mut auth, &keeper).await;
    let second = refresh(&mut auth, &first.refresh_token).await.unwrap();
    let live = refresh(&mut auth, &second.refresh_token).await.unwrap();

    // Five sessions logged out (one of them refreshed first).
    let leaver = email("leaver");
    let mut pairs = vec![register(&mut auth, &leaver).await];
    for _ in 0..4 {
        pairs.push(login(&mut auth, &leaver).await);
    }
    pairs[0] = refresh(&mut auth, &pairs[0].refresh_token).await.unwrap();
    for pair in &pairs {
        auth.logout(bearer(
            &pair.access_token,
            LogoutRequest {
                refresh_token: pair.refresh_token.clone(),
            },
        ))
        .await
        .expect("logout");
    }

    // Two sessions that expired (their end moved to their start by SQL).
    let expired = email("expired");
    register(&mut auth, &expired).await;
    login(&mut auth, &expired).await;
    execute(
        &db,
        &format!(
            "UPDATE sessions SET expires_at = created_at WHERE profile_id IN \
             (SELECT profile_id FROM credentials WHERE email = '{expired}')"
        ),
    );

    let purged = eventually(Duration::from_secs(30), || async {
        sessions_of(&db, &leaver) == 0 && sessions_of(&db, &expired) == 0
    })
    .await;
    assert!(
        purged,
        "ended sessions still there; logs:\n{}",
        server.logs()
    );
    assert_eq!(tokens_of(&db, &leaver) + tokens_of(&db, &expired), 0);
    assert_eq!(scalar(&db, "SELECT count(*) FROM sessions"), 1);
    assert_eq!(scalar(&db, "SELECT count(*) FROM refresh_tokens"), 3);
    assert_eq!(sessions_of(&db, &keeper), 1);
    assert_eq!(tokens_of(&db, &keeper), 3);

    // Seven sessions, six + two refresh tokens, at most two per batch.
    let text = scrape(metrics_addr(&server)).await;
    let counted = |table: &str| {
        metric(
            &text,
            &format!("identity_housekeeping_purged_total{{table=\"{table}\"}}"),
        )
    };
    assert_eq!(counted("sessions"), Some(7.0), "{text}");
    assert_eq!(counted("refresh_tokens"), Some(8.0), "{text}");
    let runs = purge_runs(&server);
    assert_eq!(runs.iter().map(|r| r.0).sum::<u64>(), 7, "{runs:?}");
    assert!(
        runs.iter()
            .all(|(sessions, batches)| *sessions <= 2 * batches)
    );
    assert!(runs.iter().map(|r| r.1).sum::<u64>() >= 4, "{runs:?}");

    // The live session still knows its spent tokens: one replayed revokes
    // it, as before.
    let replay = refresh(&mut auth, &first.refresh_token).await.unwrap_err();
    assert_eq!(replay.code(), Code::Unauthenticated, "{replay:?}");
    let after = refresh(&mut auth, &live.refresh_token).await.unwrap_err();
    assert_eq!(after.code(), Code::Unauthenticated, "{after:?}");
}

crate::on_both_backends!(
    ended_sessions_and_their_tokens_are_purged_in_batches_while_live_ones_stay
);
