//! Scenarios prepared once and measured window by window: echo (the
//! baseline), ValidateToken in its three variants, GetProfile and the
//! Envoy ext_authz Check. Each window is driven by h2load when the
//! scenario's calls are all the same request and `--unary-generator` picks
//! it, else by this process.

use crate::echo::echo_service_client::EchoServiceClient;
use crate::echo::{EchoRequest, StatsRequest, StatsResponse};
use crate::fixtures::{SETUP_COST, Stack, connect, sessions, with_rss};
use crate::h2load::{self, CpuMeter, cpu_ticks};
use crate::load::{self, Failure, Plan, label};
use crate::options::Env;
use crate::procs::{Proc, TempDir};
use crate::report::{Row, row};
use crate::scrape::{Answers, Scrape, scrape};
use crate::stats::{Recorder, Summary};
use envoy_types::pb::envoy::service::auth::v3::{
    AttributeContext, CheckRequest, attribute_context, check_response,
};
use futures_util::future::BoxFuture;
use identity::proto::ext_authz::authorization_client::AuthorizationClient;
use identity::proto::v1::auth_service_client::AuthServiceClient;
use identity::proto::v1::profile_service_client::ProfileServiceClient;
use identity::proto::v1::{GetProfileRequest, LogoutRequest, ValidateTokenRequest};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tonic::transport::Channel;

/// One window's samples and the server's peak RSS during it.
type Measured = (Recorder, Option<f64>);
pub(super) type Measure = Box<dyn Fn(Plan) -> BoxFuture<'static, Measured> + Send + Sync>;

/// What one window measured, whichever generator drove it.
pub(super) struct Window {
    pub(super) rec: Recorder,
    /// How long the window lasted: the plan's duration, or under h2load
    /// from the first call sent to the last answer.
    pub(super) elapsed: Duration,
    pub(super) peak_rss_mb: Option<f64>,
    pub(super) generator_cpu_pct: Option<f64>,
    pub(super) server_cpu_pct: Option<f64>,
}

/// How the success of an h2load window is checked: the server's own count
/// of its answers, before and after.
enum Check {
    /// identity's `/metrics`: answers to `method` by gRPC code, and the
    /// security events (a refused token is an OK answer that counts one).
    Identity {
        metrics: SocketAddr,
        method: &'static str,
    },
    /// The echo server's `Stats`.
    Echo(EchoServiceClient<Channel>),
}

enum Count {
    Identity(Scrape),
    Echo(StatsResponse),
}

impl Check {
    async fn count(&self) -> anyhow::Result<Count> {
        Ok(match self {
            Check::Identity { metrics, .. } => Count::Identity(scrape(*metrics).await?),
            Check::Echo(client) => {
                Count::Echo(client.clone().stats(StatsRequest {}).await?.into_inner())
            }
        })
    }

    /// Books what the server counted against the window: every non-OK
    /// answer (of the whole h2load run, warm-up included) as an error, and
    /// any HTTP 200 that h2load counted beyond the server's OK answers.
    fn verify(&self, before: &Count, after: &Count, succeeded: u64, rec: &mut Recorder) {
        let ok = match (self, before, after) {
            (Check::Identity { method, .. }, Count::Identity(b), Count::Identity(a)) => {
                let answers = Answers::between(b, a, method);
                for (code, n) in &answers.refused {
                    rec.errors_n(&format!("grpc_{code}"), *n);
                }
                rec.errors_n("security_events", answers.security_events);
                answers.ok
            }
            (Check::Echo(_), Count::Echo(b), Count::Echo(a)) => {
                rec.errors_n("grpc_not_ok", a.not_ok.saturating_sub(b.not_ok));
                a.echo_ok.saturating_sub(b.echo_ok)
            }
            _ => 0,
        };
        // Calls still in flight when h2load stops may be answered OK after
        // it stopped counting: the server may count more, never fewer.
        rec.errors_n("http_200_not_ok", succeeded.saturating_sub(ok));
    }
}

/// One request h2load repeats, and how its answers are checked.
pub(super) struct H2Target {
    url: String,
    frame: Vec<u8>,
    headers: Vec<String>,
    check: Check,
    dir: TempDir,
    /// The last rate h2load reached (calls per second): sizes the next
    /// window's number of calls.
    rate: Mutex<Option<f64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A scenario ready to measure: its server up, its pool made, its clients
/// connected. Each call of `window` is one window.
pub(super) struct Prepared {
    pub(super) name: &'static str,
    idle_rss_mb: Option<f64>,
    notes: BTreeMap<String, serde_json::Value>,
    measure: Measure,
    h2load: Option<H2Target>,
    server_pid: u32,
    /// The server and its database, alive as long as this.
    _hold: Box<dyn std::any::Any + Send>,
}

impl Prepared {
    /// Whether h2load drives this scenario's windows in this run.
    pub(super) fn by_h2load(&self, env: &Env) -> bool {
        env.unary_h2load && self.h2load.is_some()
    }

    pub(super) fn row(&self, env: &Env, summary: Summary, w: &Window) -> Row {
        let mut r = if self.by_h2load(env) {
            let mut r = row(
                env,
                self.name,
                env.args.h2load_connections * env.args.h2load_streams,
                summary,
            );
            r.connections = env.args.h2load_connections;
            r.generator = "h2load";
            r
        } else {
            row(env, self.name, env.args.concurrency, summary)
        };
        r.rss_idle_mb = self.idle_rss_mb;
        r.rss_load_mb = w.peak_rss_mb;
        r.generator_cpu_pct = w.generator_cpu_pct;
        r.server_cpu_pct = w.server_cpu_pct;
        r.notes = self.notes.clone();
        if let Some(t) = self.h2load.as_ref().filter(|_| self.by_h2load(env)) {
            r.notes.insert(
                "success_checked_by".into(),
                match t.check {
                    Check::Identity { .. } => {
                        "identity /metrics: identity_rpc_requests_total by code and identity_security_events_total, before and after each window"
                    }
                    Check::Echo(_) => "echo-server Stats: OK echo answers and non-OK answers, before and after each window",
                }
                .into(),
            );
        }
        r
    }

    /// One window of `plan` (its concurrency ignored under h2load, which
    /// runs `--h2load-connections` × `--h2load-streams`).
    pub(super) async fn window(&self, env: &Env, plan: Plan) -> Window {
        match self.h2load.as_ref().filter(|_| self.by_h2load(env)) {
            Some(target) => match self.h2load_window(env, target, plan).await {
                Ok(w) => w,
                Err(e) => {
                    eprintln!("bench: h2load window of {} failed: {e:#}", self.name);
                    let mut rec = Recorder::default();
                    rec.error("h2load_failed");
                    Window {
                        rec,
                        elapsed: plan.duration,
                        peak_rss_mb: None,
                        generator_cpu_pct: None,
                        server_cpu_pct: None,
                    }
                }
            },
            None => {
                // This process's CPU and the server's over the window.
                let pids = [std::process::id(), self.server_pid];
                let cpu = tokio::spawn(cpu_over(pids, plan.warmup, plan.duration));
                let (rec, peak_rss_mb) = (self.measure)(plan).await;
                let [generator_cpu_pct, server_cpu_pct] = cpu.await.unwrap_or([None, None]);
                Window {
                    rec,
                    elapsed: plan.duration,
                    peak_rss_mb,
                    generator_cpu_pct,
                    server_cpu_pct,
                }
            }
        }
    }

    async fn h2load_window(
        &self,
        env: &Env,
        target: &H2Target,
        plan: Plan,
    ) -> anyhow::Result<Window> {
        let (connections, streams, pid) = (
            env.args.h2load_connections,
            env.args.h2load_streams,
            self.server_pid,
        );
        let in_flight = (connections * streams).max(1) as f64;
        let run = |requests: u64| {
            let (url, frame, headers, dir) = (
                target.url.clone(),
                target.frame.clone(),
                target.headers.clone(),
                target.dir.path().to_owned(),
            );
            async move {
                tokio::task::spawn_blocking(move || {
                    h2load::run(
                        &h2load::Window {
                            url: &url,
                            frame: &frame,
                            http1: false,
                            headers: &headers,
                            connections,
                            streams,
                            load: h2load::Load::Calls { requests },
                            server_pid: Some(pid),
                        },
                        &dir,
                    )
                })
                .await?
            }
        };
        // A number of calls, not a time: h2load then waits for every answer,
        // and the server's count must match its own exactly. The count is
        // sized from the last rate seen (the first time, 4 calls per stream).
        let calls_for = |rate: Option<f64>, span: Duration| -> u64 {
            rate.map_or(in_flight * 4.0, |r| (r * span.as_secs_f64()).max(in_flight)) as u64
        };
        let before = target.check.count().await?;
        let mut succeeded = 0;
        let mut warmed = Duration::ZERO;
        for _ in 0..3 {
            if warmed >= plan.warmup {
                break;
            }
            let last = *lock(&target.rate);
            let warm = run(calls_for(last, plan.warmup - warmed)).await?;
            succeeded += warm.succeeded;
            warmed += warm.elapsed;
            *lock(&target.rate) =
                Some(warm.recorder.ok_count() as f64 / warm.elapsed.as_secs_f64());
        }
        let last = *lock(&target.rate);
        let (measured, peak_rss_mb) = with_rss(pid, run(calls_for(last, plan.duration))).await;
        let mut measured = measured?;
        succeeded += measured.succeeded;
        *lock(&target.rate) =
            Some(measured.recorder.ok_count() as f64 / measured.elapsed.as_secs_f64());
        let after = target.check.count().await?;
        target
            .check
            .verify(&before, &after, succeeded, &mut measured.recorder);
        Ok(Window {
            rec: measured.recorder,
            elapsed: measured.elapsed,
            peak_rss_mb,
            generator_cpu_pct: measured.generator_cpu_pct,
            server_cpu_pct: measured.server_cpu_pct,
        })
    }

    /// One window after the full warm-up.
    pub(super) async fn alone(&self, env: &Env) -> Row {
        let plan = env.plan(env.args.concurrency);
        let mut w = self.window(env, plan).await;
        let summary = std::mem::take(&mut w.rec).summarize(w.elapsed);
        self.row(env, summary, &w)
    }
}

/// CPU shares (% of all cores) of `pids` from `after` on for `window`.
pub(super) async fn cpu_over(
    pids: [u32; 2],
    after: Duration,
    window: Duration,
) -> [Option<f64>; 2] {
    let meter = CpuMeter::new();
    // As `load::record`: the window opens 20 ms after the call, plus warm-up.
    tokio::time::sleep(after + Duration::from_millis(20)).await;
    let t0 = tokio::time::Instant::now();
    let first = pids.map(cpu_ticks);
    tokio::time::sleep(window.saturating_sub(Duration::from_millis(20))).await;
    let wall = t0.elapsed();
    let last = pids.map(cpu_ticks);
    [0, 1].map(|i| match (first[i], last[i]) {
        (Some(a), Some(b)) if b >= a => Some(meter.share(b - a, wall)),
        _ => None,
    })
}

/// `call` under each plan it is given, over `clients`, sampling `pid`'s RSS.
fn measure_with<C, F, Fut>(pid: u32, clients: Vec<C>, call: F) -> Measure
where
    C: Clone + Send + Sync + 'static,
    F: Fn(C, u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = load::Outcome> + Send + 'static,
{
    let clients = Arc::new(clients);
    Box::new(move |plan| {
        let (clients, call) = (Arc::clone(&clients), call.clone());
        Box::pin(async move { with_rss(pid, load::record(plan, &clients, call)).await })
    })
}

pub(super) async fn prepare_echo(env: &Env) -> anyhow::Result<Prepared> {
    let server = Proc::echo(&env.echo)?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = server.rss_mb();
    let clients: Vec<_> = connect(&server.url(), env.args.connections)
        .await?
        .into_iter()
        .map(EchoServiceClient::new)
        .collect();
    // About the size of an access token.
    let payload: Arc<str> = Arc::from("x".repeat(600));
    let h2load = H2Target {
        url: format!("{}/bench.echo.v1.EchoService/Echo", server.url()),
        frame: h2load::frame(&EchoRequest {
            payload: payload.to_string(),
        }),
        headers: Vec::new(),
        check: Check::Echo(clients[0].clone()),
        dir: TempDir::new()?,
        rate: Mutex::new(None),
    };
    let measure = measure_with(server.pid(), clients, move |mut c, _| {
        let payload = payload.to_string();
        async move {
            c.echo(EchoRequest { payload })
                .await
                .map(drop)
                .map_err(|s| label(&s))
        }
    });
    Ok(Prepared {
        name: "echo",
        idle_rss_mb: idle,
        notes: BTreeMap::new(),
        measure,
        h2load: Some(h2load),
        server_pid: server.pid(),
        _hold: Box::new(server),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Variant {
    /// Every token valid.
    Valid,
    /// One in ten revoked (5 %) or with a broken signature (5 %).
    Mixed,
    /// Every token valid, with the caches off (a database read per call).
    NoCache,
}

/// A token with its signature's last character changed.
fn tamper(token: &str) -> String {
    let mut t = token.to_owned();
    let last = t.pop().unwrap_or('A');
    t.push(if last == 'A' { 'B' } else { 'A' });
    t
}

pub(super) async fn prepare_validate(env: &Env, variant: Variant) -> anyhow::Result<Prepared> {
    let extra = match variant {
        Variant::NoCache => vec![
            ("IDENTITY_TOKEN_CACHE_SIZE", "0".to_owned()),
            ("IDENTITY_SESSION_CACHE_SIZE", "0".to_owned()),
        ],
        _ => vec![],
    };
    let stack = Stack::start(env, SETUP_COST, &extra).await?;
    let pool = sessions(&stack.server.url(), env.sessions, env.sessions / 20).await?;
    // (token, expected `active`)
    let mut tokens: Vec<(String, bool)> = Vec::with_capacity(pool.len());
    let channel = connect(&stack.server.url(), 1).await?.remove(0);
    for (i, s) in pool.iter().enumerate() {
        match (variant, i % 20) {
            (Variant::Mixed, 0) => {
                AuthServiceClient::new(channel.clone())
                    .logout(LogoutRequest {
                        refresh_token: s.refresh.clone(),
                    })
                    .await?;
                tokens.push((s.access.clone(), false));
            }
            (Variant::Mixed, 1) => tokens.push((tamper(&s.access), false)),
            _ => tokens.push((s.access.clone(), true)),
        }
    }
    // h2load sends one body: the first token of the pool, for every call.
    // The mixed variant's point is its varied tokens, so it stays with the
    // Rust generator.
    let h2load = match (variant, stack.server.metrics_addr()) {
        (Variant::Mixed, _) | (_, None) => None,
        (_, Some(metrics)) => Some(H2Target {
            url: format!(
                "{}/identity.v1.AuthService/ValidateToken",
                stack.server.url()
            ),
            frame: h2load::frame(&ValidateTokenRequest {
                access_token: tokens[0].0.clone(),
            }),
            headers: Vec::new(),
            check: Check::Identity {
                metrics,
                method: "identity.v1.AuthService/ValidateToken",
            },
            dir: TempDir::new()?,
            rate: Mutex::new(None),
        }),
    };
    let tokens = Arc::new(tokens);
    let clients: Vec<_> = connect(&stack.server.url(), env.args.connections)
        .await?
        .into_iter()
        .map(AuthServiceClient::new)
        .collect();
    let measure = measure_with(stack.server.pid(), clients, move |mut c, n| {
        let tokens = Arc::clone(&tokens);
        async move {
            let (token, expected) = &tokens[n as usize % tokens.len()];
            let r = c
                .validate_token(ValidateTokenRequest {
                    access_token: token.clone(),
                })
                .await
                .map_err(|s| label(&s))?;
            if r.get_ref().active == *expected {
                Ok(())
            } else {
                Err(Failure::WrongAnswer)
            }
        }
    });
    Ok(Prepared {
        name: match variant {
            Variant::Valid => "validate",
            Variant::Mixed => "validate_mixed",
            Variant::NoCache => "validate_nocache",
        },
        idle_rss_mb: stack.idle_rss_mb,
        notes: BTreeMap::from([("tokens".into(), pool.len().into())]),
        measure,
        server_pid: stack.server.pid(),
        h2load,
        _hold: Box::new(stack),
    })
}

fn bearer<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

pub(super) async fn prepare_get_profile(env: &Env) -> anyhow::Result<Prepared> {
    let stack = Stack::start(env, SETUP_COST, &[]).await?;
    let pool = sessions(&stack.server.url(), env.sessions, env.sessions / 20).await?;
    let tokens: Arc<Vec<String>> = Arc::new(pool.iter().map(|s| s.access.clone()).collect());
    let h2load = match stack.server.metrics_addr() {
        None => None,
        Some(metrics) => Some(H2Target {
            url: format!(
                "{}/identity.v1.ProfileService/GetProfile",
                stack.server.url()
            ),
            frame: h2load::frame(&GetProfileRequest { id: "me".into() }),
            headers: vec![format!("authorization: Bearer {}", tokens[0])],
            check: Check::Identity {
                metrics,
                method: "identity.v1.ProfileService/GetProfile",
            },
            dir: TempDir::new()?,
            rate: Mutex::new(None),
        }),
    };
    let clients: Vec<_> = connect(&stack.server.url(), env.args.connections)
        .await?
        .into_iter()
        .map(ProfileServiceClient::new)
        .collect();
    let measure = measure_with(stack.server.pid(), clients, move |mut c, n| {
        let token = tokens[n as usize % tokens.len()].clone();
        async move {
            let p = c
                .get_profile(bearer(&token, GetProfileRequest { id: "me".into() }))
                .await
                .map_err(|s| label(&s))?;
            if p.get_ref().id.is_empty() {
                Err(Failure::WrongAnswer)
            } else {
                Ok(())
            }
        }
    });
    Ok(Prepared {
        name: "get_profile",
        idle_rss_mb: stack.idle_rss_mb,
        notes: BTreeMap::from([("tokens".into(), pool.len().into())]),
        measure,
        server_pid: stack.server.pid(),
        h2load,
        _hold: Box::new(stack),
    })
}

/// What an Envoy sidecar sends for `GET /` with `token`.
fn ext_authz_check(token: &str) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(attribute_context::Request {
                http: Some(attribute_context::HttpRequest {
                    method: "GET".into(),
                    path: "/".into(),
                    headers: [("authorization".to_owned(), format!("Bearer {token}"))].into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// Check with valid tokens, as a mesh proxy calls it (listed in
/// IDENTITY_TRUSTED_PROXIES, so no per-address limit, as in production).
pub(super) async fn prepare_ext_authz_check(env: &Env) -> anyhow::Result<Prepared> {
    let extra = [("IDENTITY_TRUSTED_PROXIES", "127.0.0.1/32".to_owned())];
    let stack = Stack::start(env, SETUP_COST, &extra).await?;
    let pool = sessions(&stack.server.url(), env.sessions, env.sessions / 20).await?;
    let requests: Arc<Vec<CheckRequest>> =
        Arc::new(pool.iter().map(|s| ext_authz_check(&s.access)).collect());
    // A denied Check is an OK answer too, but it counts a security event,
    // which the check books as an error.
    let h2load = match stack.server.metrics_addr() {
        None => None,
        Some(metrics) => Some(H2Target {
            url: format!(
                "{}/envoy.service.auth.v3.Authorization/Check",
                stack.server.url()
            ),
            frame: h2load::frame(&requests[0]),
            headers: Vec::new(),
            check: Check::Identity {
                metrics,
                method: "envoy.service.auth.v3.Authorization/Check",
            },
            dir: TempDir::new()?,
            rate: Mutex::new(None),
        }),
    };
    let clients: Vec<_> = connect(&stack.server.url(), env.args.connections)
        .await?
        .into_iter()
        .map(AuthorizationClient::new)
        .collect();
    let measure = measure_with(stack.server.pid(), clients, move |mut c, n| {
        let request = requests[n as usize % requests.len()].clone();
        async move {
            let r = c.check(request).await.map_err(|s| label(&s))?;
            match r.get_ref().http_response {
                Some(check_response::HttpResponse::OkResponse(_)) => Ok(()),
                _ => Err(Failure::WrongAnswer),
            }
        }
    });
    Ok(Prepared {
        name: "ext_authz_check",
        idle_rss_mb: stack.idle_rss_mb,
        notes: BTreeMap::from([("tokens".into(), pool.len().into())]),
        measure,
        server_pid: stack.server.pid(),
        h2load,
        _hold: Box::new(stack),
    })
}
