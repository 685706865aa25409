//! Set-up shared by the scenarios: identity servers on fresh databases,
//! connections, pools of signed-in sessions, and the servers' memory
//! sampled while they are measured.

use crate::options::Env;
use crate::procs::{Database, Proc, TempDir};
use anyhow::Context as _;
use futures_util::StreamExt as _;
use identity::proto::v1::auth_service_client::AuthServiceClient;
use identity::proto::v1::{LoginRequest, RegisterRequest};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

pub(crate) const PASSWORD: &str = "correct horse battery staple";
/// The bcrypt cost of servers whose measurement runs no bcrypt (it only
/// makes their set-up logins quick).
pub(crate) const SETUP_COST: u32 = 4;

pub(crate) async fn connect(url: &str, n: usize) -> anyhow::Result<Vec<Channel>> {
    let mut channels = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        channels.push(
            Endpoint::from_shared(url.to_owned())?
                .tcp_nodelay(true)
                .connect()
                .await
                .with_context(|| format!("cannot connect to {url}"))?,
        );
    }
    Ok(channels)
}

/// Samples the server's RSS every 100 ms while `f` runs; the peak.
pub(crate) async fn with_rss<T>(
    pid: u32,
    f: impl std::future::Future<Output = T>,
) -> (T, Option<f64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let pid_peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, peak) = (Arc::clone(&stop), Arc::clone(&pid_peak));
        let path = format!("/proc/{pid}/status");
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Some(kb) = std::fs::read_to_string(&path).ok().and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                }) {
                    peak.fetch_max(kb, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let out = f.await;
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    let kb = pid_peak.load(Ordering::Relaxed);
    (out, (kb > 0).then(|| kb as f64 / 1024.0))
}

/// An identity server of its own on a fresh database.
pub(crate) struct Stack {
    pub(crate) server: Proc,
    // Dropped after the server (fields drop in order).
    _db: Database,
    _dir: TempDir,
    pub(crate) idle_rss_mb: Option<f64>,
}

impl Stack {
    pub(crate) async fn start(
        env: &Env,
        cost: u32,
        extra: &[(&str, String)],
    ) -> anyhow::Result<Stack> {
        let db = Database::create(&env.args.pg_url)?;
        let dir = TempDir::new()?;
        let server = start_identity(env, &db.url, dir.path(), cost, extra)?;
        // Idle: started, migrated, nothing asked yet.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let idle_rss_mb = server.rss_mb();
        Ok(Stack {
            server,
            _db: db,
            _dir: dir,
            idle_rss_mb,
        })
    }
}

pub(crate) fn start_identity(
    env: &Env,
    database_url: &str,
    data_dir: &Path,
    cost: u32,
    extra: &[(&str, String)],
) -> anyhow::Result<Proc> {
    // The admin port: its counters by gRPC code check what h2load counts
    // as successes (and the soak reads the pool from it). The counters are
    // kept whether or not the port is served.
    let mut vars = vec![
        ("IDENTITY_BCRYPT_COST", cost.to_string()),
        ("IDENTITY_METRICS_ADDR", "127.0.0.1:0".to_owned()),
    ];
    vars.extend(extra.iter().cloned());
    vars.extend(
        env.args
            .server_env
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone())),
    );
    Proc::identity(&env.identity, database_url, data_dir, &vars)
}

/// A signed-in account with its tokens.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) email: String,
    pub(crate) access: String,
    pub(crate) refresh: String,
    pub(crate) session_id: String,
}

/// Set-up calls as a well-behaved client makes them: a RESOURCE_EXHAUSTED
/// answer (throttle, shed bcrypt job) is retried after a pause, a few times.
async fn with_retry<T, F, Fut>(mut call: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let mut tries = 0;
    loop {
        match call().await {
            Err(status) if status.code() == tonic::Code::ResourceExhausted && tries < 10 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            other => return other,
        }
    }
}

/// `users` accounts and `total` sessions over them (register, then logins).
pub(crate) async fn sessions(
    url: &str,
    total: usize,
    users: usize,
) -> anyhow::Result<Vec<Session>> {
    let channel = connect(url, 1).await?.remove(0);
    let users = users.clamp(1, total.max(1));
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let registered: Vec<anyhow::Result<Session>> = futures_util::stream::iter(0..users)
        .map(|u| {
            let auth = AuthServiceClient::new(channel.clone());
            let email = format!("bench{u}.{}@example.com", &tag[..10]);
            async move {
                let r = with_retry(|| {
                    let mut auth = auth.clone();
                    let email = email.clone();
                    async move {
                        auth.register(RegisterRequest {
                            email,
                            password: PASSWORD.into(),
                            display_name: format!("Bench User {u}"),
                        })
                        .await
                    }
                })
                .await
                .context("Register")?
                .into_inner();
                let t = r.tokens.context("tokens")?;
                Ok(Session {
                    email,
                    access: t.access_token,
                    refresh: t.refresh_token,
                    session_id: t.session_id,
                })
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let registered: Vec<Session> = registered.into_iter().collect::<anyhow::Result<_>>()?;
    let emails: Vec<String> = registered.iter().map(|s| s.email.clone()).collect();
    let more: Vec<anyhow::Result<Session>> =
        futures_util::stream::iter(0..total.saturating_sub(users))
            .map(|n| {
                let auth = AuthServiceClient::new(channel.clone());
                let email = emails[n % emails.len()].clone();
                async move {
                    let t = with_retry(|| {
                        let mut auth = auth.clone();
                        let email = email.clone();
                        async move {
                            auth.login(LoginRequest {
                                email,
                                password: PASSWORD.into(),
                                ..Default::default()
                            })
                            .await
                        }
                    })
                    .await
                    .context("Login")?
                    .into_inner()
                    .tokens
                    .context("tokens")?;
                    Ok(Session {
                        email,
                        access: t.access_token,
                        refresh: t.refresh_token,
                        session_id: t.session_id,
                    })
                }
            })
            // The throttle counts a login from the time it starts: more
            // than its free attempts in flight on one account from one
            // address are held back, however right the password. Emails
            // go round-robin, so this keeps at most 4 per account.
            .buffer_unordered((4 * emails.len()).min(16))
            .collect()
            .await;
    let mut all = registered;
    for s in more {
        all.push(s?);
    }
    Ok(all)
}
