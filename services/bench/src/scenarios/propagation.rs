//! Revocation propagation between two replicas on one database.

use crate::fixtures::{SETUP_COST, connect, sessions, start_identity};
use crate::load::label;
use crate::options::Env;
use crate::procs::{Database, TempDir};
use crate::report::{Propagation, Row, row};
use crate::stats::percentile_ms;
use anyhow::bail;
use identity::proto::v1::auth_service_client::AuthServiceClient;
use identity::proto::v1::{LogoutRequest, ValidateTokenRequest};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// Two replicas on one database: revoke on A (Logout), poll B until it
/// refuses the token.
pub(super) async fn revocation_propagation(env: &Env) -> anyhow::Result<(Row, Propagation)> {
    let db = Database::create(&env.args.pg_url)?;
    let dir = TempDir::new()?;
    let a = start_identity(env, &db.url, dir.path(), SETUP_COST, &[])?;
    // B starts once A has written the development signing key they share.
    let b = start_identity(env, &db.url, dir.path(), SETUP_COST, &[])?;
    let idle = b.rss_mb();
    let pool = sessions(&a.url(), env.samples, (env.samples / 10).max(1)).await?;
    let mut on_a = AuthServiceClient::new(connect(&a.url(), 1).await?.remove(0));
    let mut on_b = AuthServiceClient::new(connect(&b.url(), 1).await?.remove(0));
    let validate = |c: &mut AuthServiceClient<Channel>, token: &str| {
        let mut c = c.clone();
        let token = token.to_owned();
        async move {
            c.validate_token(ValidateTokenRequest {
                access_token: token,
            })
            .await
            .map(|r| r.into_inner().active)
        }
    };
    let mut from_ack = Vec::with_capacity(pool.len());
    let mut from_request = Vec::with_capacity(pool.len());
    let mut polls = 0u64;
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut rec = crate::stats::Recorder::default();
    for s in &pool {
        // B holds the session as live (from memory) before the revocation.
        for _ in 0..2 {
            if !validate(&mut on_b, &s.access).await? {
                bail!("B refused a live session {}", s.session_id);
            }
        }
        let sent = Instant::now();
        on_a.logout(LogoutRequest {
            refresh_token: s.refresh.clone(),
        })
        .await?;
        let acked = Instant::now();
        loop {
            polls += 1;
            match validate(&mut on_b, &s.access).await {
                Ok(false) => break,
                Ok(true) => {}
                Err(status) => *errors.entry(label(&status).to_string()).or_default() += 1,
            }
            if acked.elapsed() > Duration::from_secs(30) {
                bail!("B still validates a session revoked 30s ago");
            }
        }
        let done = Instant::now();
        from_ack.push(done - acked);
        from_request.push(done - sent);
        rec.ok(done - acked);
    }
    for (label, n) in &errors {
        for _ in 0..*n {
            rec.error(label);
        }
    }
    from_ack.sort();
    from_request.sort();
    let p = Propagation {
        samples: from_ack.len(),
        p50_ms: percentile_ms(&from_ack, 50.0),
        p99_ms: percentile_ms(&from_ack, 99.0),
        max_ms: percentile_ms(&from_ack, 100.0),
        p50_from_request_ms: percentile_ms(&from_request, 50.0),
        p99_from_request_ms: percentile_ms(&from_request, 99.0),
    };
    let total: Duration = from_ack.iter().sum();
    let mut r = row(
        env,
        "revocation_propagation",
        1,
        rec.summarize(total.max(Duration::from_millis(1))),
    );
    r.rss_idle_mb = idle;
    r.rss_load_mb = b.peak_rss_mb();
    r.notes.insert("polls_of_b".into(), polls.into());
    r.notes.insert(
        "what".into(),
        "latency = Logout answered on A → B refuses".into(),
    );
    drop((a, b));
    drop(db);
    Ok((r, p))
}
