//! ValidateToken at a fixed rate, quiet and under a flood of logins.

use crate::fixtures::{PASSWORD, SETUP_COST, connect, sessions, start_identity, with_rss};
use crate::load::{self, Failure, Plan, label};
use crate::options::{Env, Generator};
use crate::procs::{Database, TempDir};
use crate::report::{Row, row};
use crate::stats::{Recorder, Summary};
use futures_util::future::BoxFuture;
use identity::proto::v1::auth_service_client::AuthServiceClient;
use identity::proto::v1::{LoginRequest, ValidateTokenRequest};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Quiet and flooded windows of the flood comparison (each side reported by
/// its median window).
const FLOOD_ROUNDS: usize = 3;

fn higher(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// The window whose p99 is the median (the lower middle one of an even count).
fn median_window(mut windows: Vec<Summary>) -> Summary {
    windows.sort_by(|a, b| a.latency_ms.p99.total_cmp(&b.latency_ms.p99));
    windows.swap_remove((windows.len() - 1) / 2)
}

/// Quiet and flooded: ValidateToken at one fixed rate, alone and while
/// `flood_logins` logins run at the configured bcrypt cost.
pub(super) async fn flood(env: &Env, validate_rps: Option<f64>) -> anyhow::Result<Vec<Row>> {
    let cost = env.args.bcrypt_cost;
    let db = Database::create(&env.args.pg_url)?;
    let dir = TempDir::new()?;
    // Sessions to validate, made quickly by a low-cost server on the same
    // database and key; it is gone before the measured server starts.
    let pool = {
        let setup = start_identity(env, &db.url, dir.path(), SETUP_COST, &[])?;
        sessions(&setup.url(), env.sessions, env.sessions / 20).await?
    };
    let server = start_identity(env, &db.url, dir.path(), cost, &[])?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = server.rss_mb();
    let flood_users = if env.args.quick { 4 } else { 10 };
    let accounts = sessions(&server.url(), flood_users, flood_users).await?;
    let tokens: Arc<Vec<String>> = Arc::new(pool.iter().map(|s| s.access.clone()).collect());
    let clients: Vec<_> = connect(&server.url(), env.args.connections)
        .await?
        .into_iter()
        .map(AuthServiceClient::new)
        .collect();
    let rate = env
        .args
        .flood_rate
        .unwrap_or_else(|| validate_rps.map_or(2000.0, |r| (r / 4.0).clamp(100.0, 5000.0)));
    let plan = Plan {
        rate: Some(rate),
        ..env.plan(env.args.concurrency)
    };
    let validate_at_rate = |tokens: Arc<Vec<String>>| {
        load::drive(plan, &clients, move |mut c, n| {
            let token = tokens[n as usize % tokens.len()].clone();
            async move {
                let r = c
                    .validate_token(ValidateTokenRequest {
                        access_token: token,
                    })
                    .await
                    .map_err(|s| label(&s))?;
                if r.get_ref().active {
                    Ok(())
                } else {
                    Err(Failure::WrongAnswer)
                }
            }
        })
    };
    // The flood: its own connection, `flood_logins` logins in flight; shed
    // calls wait as long as the server's RetryInfo asks (capped at 1s).
    let (ok, shed, failed) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let flood_channel = connect(&server.url(), 1).await?.remove(0);
    let start_flood = || {
        (0..env.args.flood_logins)
            .map(|f| {
                let mut c = AuthServiceClient::new(flood_channel.clone());
                let email = accounts[f % accounts.len()].email.clone();
                let (ok, shed, failed) = (Arc::clone(&ok), Arc::clone(&shed), Arc::clone(&failed));
                tokio::spawn(async move {
                    loop {
                        match c
                            .login(LoginRequest {
                                email: email.clone(),
                                password: PASSWORD.into(),
                                ..Default::default()
                            })
                            .await
                        {
                            Ok(_) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                                shed.fetch_add(1, Ordering::Relaxed);
                                use tonic_types::StatusExt as _;
                                let wait = status
                                    .get_details_retry_info()
                                    .and_then(|r| r.retry_delay)
                                    .unwrap_or(Duration::from_secs(1))
                                    .min(Duration::from_secs(1));
                                tokio::time::sleep(wait).await;
                            }
                            Err(_) => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                        }
                    }
                })
            })
            .collect::<Vec<_>>()
    };

    // Quiet and flooded windows alternate, and each side is summarised by
    // its median window: one stall of a shared host (seen here: a quiet
    // window with a p99 of 79 ms next to flooded ones of 5 to 15 ms) must
    // not decide the ratio.
    let rounds = if env.args.quick { 1 } else { FLOOD_ROUNDS };
    let (mut quiet, mut flooded) = (Vec::new(), Vec::new());
    let (mut quiet_peak, mut flood_peak) = (None, None);
    let (mut logins_done, mut flood_secs) = (0u64, 0f64);
    let h2load = match env.args.flood_generator {
        Generator::Rust => false,
        Generator::H2load => true,
        Generator::Auto => crate::h2load::available(),
    };
    let frame = crate::h2load::frame(&ValidateTokenRequest {
        access_token: tokens[0].clone(),
    });
    let url = format!("{}/identity.v1.AuthService/ValidateToken", server.url());
    let window = || -> BoxFuture<'_, Summary> {
        if h2load {
            let (frame, url, dir) = (frame.clone(), url.clone(), dir.path().to_owned());
            let (warmup, duration) = (plan.warmup, plan.duration);
            let connections = env.args.connections;
            let streams = (env.args.concurrency / connections.max(1)).max(1);
            Box::pin(async move {
                tokio::task::spawn_blocking(move || {
                    crate::h2load::run(
                        &crate::h2load::Window {
                            url: &url,
                            frame: &frame,
                            http1: false,
                            headers: &[],
                            connections,
                            streams,
                            load: crate::h2load::Load::Rate {
                                rate,
                                warmup,
                                duration,
                            },
                            server_pid: None,
                        },
                        &dir,
                    )
                    .map(|run| run.recorder.summarize(duration))
                })
                .await
                .map_err(anyhow::Error::from)
                .and_then(|r| r)
                .unwrap_or_else(|e| {
                    eprintln!("bench: h2load window failed: {e:#}");
                    let mut failed = Recorder::default();
                    failed.error("h2load_failed");
                    failed.summarize(duration)
                })
            })
        } else {
            Box::pin(validate_at_rate(Arc::clone(&tokens)))
        }
    };
    for _ in 0..rounds {
        let (window_summary, peak) = with_rss(server.pid(), window()).await;
        quiet.push(window_summary);
        quiet_peak = higher(quiet_peak, peak);

        let flooders = start_flood();
        // Let the bcrypt pool and its queue fill before measuring.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let flood_started = Instant::now();
        let ok_before = ok.load(Ordering::Relaxed);
        let (window_summary, peak) = with_rss(server.pid(), window()).await;
        flood_secs += flood_started.elapsed().as_secs_f64();
        logins_done += ok.load(Ordering::Relaxed) - ok_before;
        flooded.push(window_summary);
        flood_peak = higher(flood_peak, peak);
        // Dropping the calls cancels them; the server skips their queued
        // hashes, and the ones running end within one hash time.
        for f in flooders {
            f.abort();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let p99s =
        |windows: &[Summary]| -> Vec<f64> { windows.iter().map(|w| w.latency_ms.p99).collect() };
    let (quiet_p99s, flood_p99s) = (p99s(&quiet), p99s(&flooded));
    let quiet = median_window(quiet);
    let flooded = median_window(flooded);

    let mut quiet_row = row(
        env,
        "validate_quiet_fixed_rate",
        env.args.concurrency,
        quiet,
    );
    quiet_row.rate = Some(rate);
    quiet_row
        .notes
        .insert("p99_ms_per_window".into(), quiet_p99s.into());
    quiet_row.rss_idle_mb = idle;
    quiet_row.rss_load_mb = quiet_peak;
    let mut flood_row = row(
        env,
        "validate_under_login_flood",
        env.args.concurrency,
        flooded,
    );
    flood_row.rate = Some(rate);
    flood_row
        .notes
        .insert("p99_ms_per_window".into(), flood_p99s.into());
    flood_row.rss_idle_mb = idle;
    flood_row.rss_load_mb = flood_peak;
    flood_row.notes.insert(
        "flood_logins_in_flight".into(),
        env.args.flood_logins.into(),
    );
    flood_row
        .notes
        .insert("flood_bcrypt_cost".into(), cost.into());
    for r in [&mut quiet_row, &mut flood_row] {
        r.generator = if h2load { "h2load" } else { "rust" };
        r.notes.insert(
            "generator".into(),
            if h2load { "h2load" } else { "rust" }.into(),
        );
    }
    flood_row.notes.insert(
        "flood_logins_per_s".into(),
        (logins_done as f64 / flood_secs).into(),
    );
    flood_row.notes.insert(
        "flood_shed_total".into(),
        shed.load(Ordering::Relaxed).into(),
    );
    flood_row.notes.insert(
        "flood_failed_total".into(),
        failed.load(Ordering::Relaxed).into(),
    );
    drop(server);
    drop(db);
    Ok(vec![quiet_row, flood_row])
}
