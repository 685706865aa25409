//! Refresh: every stream spends its own session's latest refresh token.

use crate::fixtures::{SETUP_COST, Stack, connect, sessions, with_rss};
use crate::load::{self, Failure, label};
use crate::options::Env;
use crate::report::{Row, row};
use identity::proto::v1::RefreshRequest;
use identity::proto::v1::auth_service_client::AuthServiceClient;
use std::sync::Arc;

pub(super) async fn refresh(env: &Env) -> anyhow::Result<Row> {
    let stack = Stack::start(env, SETUP_COST, &[]).await?;
    let concurrency = env.args.concurrency;
    // One session per stream: each stream spends its own latest token.
    let pool = sessions(&stack.server.url(), concurrency, concurrency / 8).await?;
    let current: Arc<Vec<tokio::sync::Mutex<String>>> = Arc::new(
        pool.iter()
            .map(|s| tokio::sync::Mutex::new(s.refresh.clone()))
            .collect(),
    );
    let clients: Vec<_> = connect(&stack.server.url(), env.args.connections)
        .await?
        .into_iter()
        .map(AuthServiceClient::new)
        .collect();
    let (summary, peak) = with_rss(
        stack.server.pid(),
        load::drive(env.plan(concurrency), &clients, move |mut c, n| {
            let current = Arc::clone(&current);
            async move {
                // Call n belongs to stream n % concurrency.
                let mut token = current[n as usize % current.len()].lock().await;
                let pair = c
                    .refresh(RefreshRequest {
                        refresh_token: token.clone(),
                    })
                    .await
                    .map_err(|s| label(&s))?
                    .into_inner()
                    .tokens
                    .ok_or(Failure::WrongAnswer)?;
                *token = pair.refresh_token;
                Ok(())
            }
        }),
    )
    .await;
    let mut r = row(env, "refresh", concurrency, summary);
    r.rss_idle_mb = stack.idle_rss_mb;
    r.rss_load_mb = peak;
    Ok(r)
}
