//! Login at the configured bcrypt cost, and the ceiling bcrypt alone sets.

use crate::fixtures::{PASSWORD, Stack, connect, sessions, with_rss};
use crate::load::{self, label};
use crate::options::Env;
use crate::report::{Bcrypt, Row, row};
use identity::proto::v1::LoginRequest;
use identity::proto::v1::auth_service_client::AuthServiceClient;
use std::sync::Arc;
use std::time::Instant;

pub(super) fn measure_bcrypt(cost: u32, cores: usize) -> anyhow::Result<Bcrypt> {
    let hash = bcrypt::hash(PASSWORD, cost)?;
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        // What Login runs: one verification at the configured cost.
        let ok = bcrypt::verify(PASSWORD, &hash)?;
        times.push(t.elapsed());
        assert!(ok);
    }
    times.sort();
    let median = times[times.len() / 2].as_secs_f64();
    Ok(Bcrypt {
        cost,
        single_thread_ms: median * 1000.0,
        ceiling_per_s: cores as f64 / median,
    })
}

pub(super) async fn login(env: &Env) -> anyhow::Result<Row> {
    let cost = env.args.bcrypt_cost;
    let stack = Stack::start(env, cost, &[]).await?;
    let users = env.args.login_concurrency.max(1);
    let accounts = sessions(&stack.server.url(), users, users).await?;
    let emails: Arc<Vec<String>> = Arc::new(accounts.iter().map(|s| s.email.clone()).collect());
    let clients: Vec<_> = connect(&stack.server.url(), env.args.connections)
        .await?
        .into_iter()
        .map(AuthServiceClient::new)
        .collect();
    let mut plan = env.plan(env.args.login_concurrency);
    // At a few logins per second, a longer window gives the percentiles
    // something to stand on.
    plan.duration = env.duration.mul_f64(1.5);
    let (summary, peak) = with_rss(
        stack.server.pid(),
        load::drive(plan, &clients, move |mut c, n| {
            let email = emails[n as usize % emails.len()].clone();
            async move {
                c.login(LoginRequest {
                    email,
                    password: PASSWORD.into(),
                    ..Default::default()
                })
                .await
                .map(drop)
                .map_err(|s| label(&s))
            }
        }),
    )
    .await;
    let mut r = row(env, "login", env.args.login_concurrency, summary);
    r.rss_idle_mb = stack.idle_rss_mb;
    r.rss_load_mb = peak;
    r.notes.insert("bcrypt_cost".into(), cost.into());
    Ok(r)
}
