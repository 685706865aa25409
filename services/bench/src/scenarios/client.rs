//! The Rust client crate (`identity-client`) verifying offline in this
//! process: verifications per second on one thread, and how soon after a
//! Logout its `WatchRevocations` stream makes it refuse the session.

use crate::fixtures::{SETUP_COST, connect, sessions, start_identity};
use crate::load::label;
use crate::options::Env;
use crate::procs::{Database, Proc, TempDir};
use crate::report::{Row, row};
use crate::stats::Recorder;
use anyhow::{Context as _, bail};
use futures_util::StreamExt as _;
use identity::proto::v1::auth_service_client::AuthServiceClient;
use identity::proto::v1::{LogoutRequest, RefreshRequest};
use identity_client::{Verifier, VerifyError};
use std::process::Command;
use std::time::{Duration, Instant};
use tonic::transport::Endpoint;

/// Refreshes per session issued for the first-seen measurement: each gives
/// an access token the verifier has never seen.
const REFRESHES_PER_SESSION: usize = 10;

/// An identity server and a verifier following it, current.
struct Watched {
    verifier: Verifier,
    server: Proc,
    // Dropped after the server (fields drop in order).
    _db: Database,
    _dir: TempDir,
}

async fn watched(env: &Env) -> anyhow::Result<Watched> {
    let db = Database::create(&env.args.pg_url)?;
    let dir = TempDir::new()?;
    let server = start_identity(env, &db.url, dir.path(), SETUP_COST, &[])?;
    // What an operator gives the other service: a token holding
    // revocations:watch (tests/e2e/client_crate.rs does the same).
    let output = Command::new(&env.identity)
        .args([
            "admin",
            "issue-service-token",
            "--role",
            "revocations:watch",
            "--ttl",
            "1h",
            "--dev",
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("IDENTITY_DATABASE_URL", &db.url)
        .env("IDENTITY_DATA_DIR", dir.path())
        .output()
        .context("identity admin issue-service-token")?;
    if !output.status.success() {
        bail!(
            "issue-service-token failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let token = String::from_utf8(output.stdout)?.trim().to_owned();
    let verifier = Verifier::builder(Endpoint::from_shared(server.url())?.tcp_nodelay(true))
        .service_token(token)
        .build()
        .await?;
    if !verifier.wait_current(Duration::from_secs(10)).await {
        bail!("no heartbeat on the verifier's revocation stream within 10s");
    }
    Ok(Watched {
        verifier,
        server,
        _db: db,
        _dir: dir,
    })
}

fn refusal(e: &VerifyError) -> &'static str {
    match e {
        VerifyError::Refused(_) => "refused",
        VerifyError::Revoked => "revoked",
        VerifyError::Inactive => "inactive",
        VerifyError::Stale { .. } => "stale",
        VerifyError::Unavailable(_) => "unavailable",
        VerifyError::Timeout(_) => "timeout",
    }
}

/// Runs `f` on a thread of its own with a single-threaded runtime: the
/// figures are per core, not what the bench's runtime spreads over two.
async fn on_one_thread<F, Fut, T>(f: F) -> anyhow::Result<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(runtime.block_on(f()))
    })
    .await?
}

/// `client_verify`: (a) a set of tokens verified over and over, (b) tokens
/// this verifier has never seen, each verified once.
pub(super) async fn client_verify(env: &Env) -> anyhow::Result<Vec<Row>> {
    let w = watched(env).await?;
    let url = w.server.url();
    let n = env.sessions.clamp(1, 1000);
    let pool = sessions(&url, n, (n / 10).max(1)).await?;
    // The stream's first event is a reset: a token issued before it (plus
    // the leeway) is accepted offline only once ValidateToken has vouched
    // for its session. Done here, once per session, outside the windows.
    for s in &pool {
        w.verifier
            .verify(&s.access)
            .await
            .with_context(|| format!("a fresh session's token was refused ({})", s.session_id))?;
    }
    // Never verified: each Refresh answers a new access token (its own jti)
    // of a session vouched for above.
    let fresh: Vec<anyhow::Result<Vec<String>>> = futures_util::stream::iter(pool.clone())
        .map(|s| {
            let url = url.clone();
            async move {
                let mut auth = AuthServiceClient::new(connect(&url, 1).await?.remove(0));
                let mut refresh = s.refresh;
                let mut tokens = Vec::with_capacity(REFRESHES_PER_SESSION);
                for _ in 0..REFRESHES_PER_SESSION {
                    let pair = auth
                        .refresh(RefreshRequest {
                            refresh_token: refresh,
                        })
                        .await?
                        .into_inner()
                        .tokens
                        .context("Refresh answered no tokens")?;
                    refresh = pair.refresh_token;
                    tokens.push(pair.access_token);
                }
                Ok(tokens)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut first_seen = Vec::with_capacity(n * REFRESHES_PER_SESSION);
    for tokens in fresh {
        first_seen.extend(tokens?);
    }
    let cached: Vec<String> = pool.iter().map(|s| s.access.clone()).collect();

    let (warmup, window) = (env.warmup, env.duration);
    let verifier = w.verifier.clone();
    let cached_count = cached.len();
    let (cached_rec, cached_window) = on_one_thread(move || async move {
        let mut rec = Recorder::default();
        let started = Instant::now();
        let mut i = 0usize;
        while started.elapsed() < warmup {
            for _ in 0..64 {
                let _ = verifier.verify(&cached[i % cached.len()]).await;
                i += 1;
            }
        }
        let begun = Instant::now();
        let mut last = begun;
        'window: loop {
            for _ in 0..64 {
                let outcome = verifier.verify(&cached[i % cached.len()]).await;
                i += 1;
                // One clock read per verification: the end of one is the
                // start of the next.
                let now = Instant::now();
                match outcome {
                    Ok(_) => rec.ok(now - last),
                    Err(e) => rec.error(refusal(&e)),
                }
                last = now;
            }
            if last - begun >= window {
                break 'window;
            }
        }
        (rec, last - begun)
    })
    .await?;

    let verifier = w.verifier.clone();
    let first_seen_count = first_seen.len();
    let (fresh_rec, fresh_window) = on_one_thread(move || async move {
        let mut rec = Recorder::default();
        let begun = Instant::now();
        let mut last = begun;
        for token in &first_seen {
            let outcome = verifier.verify(token).await;
            let now = Instant::now();
            match outcome {
                Ok(_) => rec.ok(now - last),
                Err(e) => rec.error(refusal(&e)),
            }
            last = now;
        }
        (rec, last - begun)
    })
    .await?;
    let peak = w.server.peak_rss_mb();

    let mut rows = Vec::new();
    for (name, rec, window, tokens, what) in [
        (
            "client_verify_cached",
            cached_rec,
            cached_window,
            cached_count,
            "the same tokens verified over and over, cycled, on one thread",
        ),
        (
            "client_verify_first_seen",
            fresh_rec,
            fresh_window,
            first_seen_count,
            "distinct tokens (Refreshes of sessions already vouched for), each verified once, on one thread",
        ),
    ] {
        let mut r = row(env, name, 1, rec.summarize(window));
        r.connections = 1;
        r.rss_load_mb = peak;
        r.notes.insert("tokens".into(), tokens.into());
        r.notes.insert("what".into(), what.into());
        r.notes.insert(
            "unit".into(),
            "req/s = verifications/s in this process (identity-client, offline); latency per verification, µs resolution".into(),
        );
        rows.push(r);
    }
    drop(w);
    Ok(rows)
}

/// `revocation_to_client`: Logout answered → the verifier's first refusal
/// of that session's access token, verifying in a tight loop.
pub(super) async fn revocation_to_client(env: &Env) -> anyhow::Result<Row> {
    let w = watched(env).await?;
    let url = w.server.url();
    let pool = sessions(&url, env.samples, (env.samples / 10).max(1)).await?;
    let mut auth = AuthServiceClient::new(connect(&url, 1).await?.remove(0));
    let mut rec = Recorder::default();
    let mut verifications = 0u64;
    let mut first = Vec::with_capacity(pool.len());
    for s in &pool {
        // Accepted (vouched for, then offline) before the revocation.
        for _ in 0..2 {
            if let Err(e) = w.verifier.verify(&s.access).await {
                bail!("the verifier refused a live session {}: {e}", s.session_id);
            }
        }
        auth.logout(LogoutRequest {
            refresh_token: s.refresh.clone(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("Logout: {:?}", label(&s)))?;
        let acked = Instant::now();
        let revoked = loop {
            verifications += 1;
            match w.verifier.verify(&s.access).await {
                Ok(_) => {}
                Err(VerifyError::Revoked) => break true,
                // Refused, but not for the revocation: counted as an error.
                Err(e) => {
                    rec.error(refusal(&e));
                    break false;
                }
            }
            if acked.elapsed() > Duration::from_secs(30) {
                bail!("the verifier still accepts a session logged out 30s ago");
            }
            // Lets the stream's task run on this runtime; no sleep, whose
            // millisecond timer would be the figure.
            tokio::task::yield_now().await;
        };
        let took = acked.elapsed();
        if revoked {
            first.push(took);
            rec.ok(took);
        }
    }
    let total: Duration = first.iter().sum();
    let mut r = row(
        env,
        "revocation_to_client",
        1,
        rec.summarize(total.max(Duration::from_millis(1))),
    );
    r.connections = 1;
    r.rss_load_mb = w.server.peak_rss_mb();
    r.notes
        .insert("verifications_in_loops".into(), verifications.into());
    r.notes.insert(
        "what".into(),
        "latency = Logout answered → identity-client's Verifier refuses the session's token (VerifyError::Revoked), verifying in a tight loop".into(),
    );
    drop(w);
    Ok(r)
}
