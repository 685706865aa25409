//! `better_auth_get_session`: what a Better-Auth deployment answers
//! per second to its own session check, `GET /api/auth/get-session` with
//! the session cookie, next to ValidateToken of this service measured in
//! the same run, windows alternating. Both driven by h2load (get-session
//! over HTTP/1.1, the way browsers and Better-Auth's clients call it), the
//! same number of calls in flight.
//!
//! The server is the e2e tests' (tests/provider/server.mjs, an in-memory
//! SQLite). Without node or its node_modules the scenario is skipped with
//! the reason, not failed: the rest of the bench needs neither.

use super::prepared::{Variant, Window, prepare_validate};
use super::side_by_side::{median, median_of};
use crate::fixtures::{PASSWORD, with_rss};
use crate::h2load;
use crate::load::Plan;
use crate::options::Env;
use crate::procs::{Proc, TempDir};
use crate::report::{Row, row};
use crate::stats::Recorder;
use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// What the scenario gave: its two rows and the ratio, or why it was
/// skipped.
pub(super) enum Outcome {
    Measured { rows: Vec<Row>, ratio: f64 },
    Skipped(String),
}

/// Why the scenario cannot run here, if it cannot.
fn missing(env: &Env) -> Option<String> {
    let dir = &env.args.better_auth_dir;
    if !env.unary_h2load {
        return Some("needs h2load (on the PATH, and --unary-generator auto or h2load)".to_owned());
    }
    let node = Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .output();
    if !node.is_ok_and(|o| o.status.success()) {
        return Some("node is not on the PATH".to_owned());
    }
    for needed in ["server.mjs", "node_modules/better-auth/package.json"] {
        if !dir.join(needed).exists() {
            return Some(format!(
                "{} missing (`npm ci` in tests/provider installs it; --better-auth-dir to point elsewhere)",
                dir.join(needed).display()
            ));
        }
    }
    None
}

type Http = Client<HttpConnector, Full<Bytes>>;

/// One request to Better-Auth; the status, the `set-cookie` pairs and the
/// JSON body (`null` when it is not JSON).
async fn request(
    client: &Http,
    base: &str,
    method: http::Method,
    path: &str,
    cookie: Option<&str>,
    body: Option<Value>,
) -> anyhow::Result<(http::StatusCode, Vec<String>, Value)> {
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("{base}{path}"));
    if let Some(cookie) = cookie {
        request = request.header(http::header::COOKIE, cookie);
    }
    let body = match body {
        Some(json) => {
            request = request.header(http::header::CONTENT_TYPE, "application/json");
            Full::new(Bytes::from(json.to_string()))
        }
        None => Full::new(Bytes::new()),
    };
    let response =
        tokio::time::timeout(Duration::from_secs(30), client.request(request.body(body)?))
            .await
            .with_context(|| format!("{path}: no answer within 30 s"))??;
    let (parts, body) = response.into_parts();
    let cookies = parts
        .headers
        .get_all(http::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        // `name=value; Path=/; HttpOnly; …`: a browser sends back the pair.
        .filter_map(|v| v.split(';').next())
        .map(|pair| pair.trim().to_owned())
        .collect();
    let bytes = body.collect().await?.to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok((parts.status, cookies, json))
}

/// Signs a new user up and in; the `cookie` header value its browser would
/// send, checked once: get-session answers 200 with that user's session.
async fn signed_in(base: &str) -> anyhow::Result<String> {
    let client: Http = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let email = format!("bench-{}@example.com", uuid::Uuid::new_v4().simple());
    let (status, _, body) = request(
        &client,
        base,
        http::Method::POST,
        "/api/auth/sign-up/email",
        None,
        Some(json!({"email": email, "password": PASSWORD, "name": "Bench User"})),
    )
    .await?;
    if status != http::StatusCode::OK {
        bail!("Better-Auth sign-up: {status} {body}");
    }
    let (status, cookies, body) = request(
        &client,
        base,
        http::Method::POST,
        "/api/auth/sign-in/email",
        None,
        Some(json!({"email": email, "password": PASSWORD})),
    )
    .await?;
    if status != http::StatusCode::OK || cookies.is_empty() {
        bail!(
            "Better-Auth sign-in: {status}, {} cookies, {body}",
            cookies.len()
        );
    }
    let cookie = cookies.join("; ");
    let (status, _, body) = request(
        &client,
        base,
        http::Method::GET,
        "/api/auth/get-session",
        Some(&cookie),
        None,
    )
    .await?;
    // A missing or rejected cookie is a 200 with `null`: the body tells.
    if status != http::StatusCode::OK
        || body["session"]["id"].as_str().is_none()
        || body["user"]["email"].as_str() != Some(email.as_str())
    {
        bail!("Better-Auth get-session with the sign-in cookie: {status} {body}");
    }
    Ok(cookie)
}

/// h2load's HTTP/1.1 get-session windows: warm-up then one measured run,
/// each a fixed number of calls sized from the last rate seen.
struct GetSession {
    url: String,
    headers: Vec<String>,
    /// Connections, one request in flight on each (no pipelining: neither
    /// browsers nor fetch clients pipeline).
    connections: usize,
    pid: u32,
    dir: TempDir,
    rate: Option<f64>,
}

impl GetSession {
    async fn run(&self, requests: u64) -> anyhow::Result<h2load::Run> {
        let (url, headers, dir) = (
            self.url.clone(),
            self.headers.clone(),
            self.dir.path().to_owned(),
        );
        let (connections, pid) = (self.connections, self.pid);
        tokio::task::spawn_blocking(move || {
            h2load::run(
                &h2load::Window {
                    url: &url,
                    frame: &[],
                    http1: true,
                    headers: &headers,
                    connections,
                    streams: 1,
                    load: h2load::Load::Calls { requests },
                    server_pid: Some(pid),
                },
                &dir,
            )
        })
        .await?
    }

    fn calls_for(&self, span: Duration) -> u64 {
        let in_flight = self.connections.max(1) as f64;
        self.rate
            .map_or(in_flight * 4.0, |r| (r * span.as_secs_f64()).max(in_flight)) as u64
    }

    /// Every warm-up and measured call answered 200, or booked as an error
    /// of the window (h2load's log holds each answer's status).
    async fn window(&mut self, plan: Plan) -> anyhow::Result<Window> {
        let mut warm_errors = Recorder::default();
        let mut warmed = Duration::ZERO;
        for _ in 0..3 {
            if warmed >= plan.warmup {
                break;
            }
            let warm = self.run(self.calls_for(plan.warmup - warmed)).await?;
            warmed += warm.elapsed;
            self.rate = Some(warm.recorder.ok_count() as f64 / warm.elapsed.as_secs_f64());
            warm_errors.errors_n("warmup_failed", warm.recorder.error_count());
        }
        let (measured, peak_rss_mb) =
            with_rss(self.pid, self.run(self.calls_for(plan.duration))).await;
        let measured = measured?;
        self.rate = Some(measured.recorder.ok_count() as f64 / measured.elapsed.as_secs_f64());
        let mut rec = measured.recorder;
        rec.merge(warm_errors);
        Ok(Window {
            rec,
            elapsed: measured.elapsed,
            peak_rss_mb,
            generator_cpu_pct: measured.generator_cpu_pct,
            server_cpu_pct: measured.server_cpu_pct,
        })
    }
}

pub(super) async fn better_auth_get_session(env: &Env) -> anyhow::Result<Outcome> {
    if let Some(reason) = missing(env) {
        return Ok(Outcome::Skipped(reason));
    }
    let node = Proc::better_auth(&env.args.better_auth_dir)?;
    let cookie = signed_in(&node.url())
        .await
        .with_context(|| format!("Better-Auth's log:\n{}", node.tail()))?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let node_idle = node.rss_mb();
    let mut validate = prepare_validate(env, Variant::Valid).await?;
    validate.name = "validate_beside_get_session";
    let in_flight = env.args.h2load_connections * env.args.h2load_streams;
    let mut get_session = GetSession {
        url: format!("{}/api/auth/get-session", node.url()),
        headers: vec![format!("cookie: {cookie}")],
        connections: in_flight.max(1),
        pid: node.pid(),
        dir: TempDir::new()?,
        rate: None,
    };
    let rounds = if env.args.quick { 2 } else { 4 };
    let slice = env.duration.div_f64(rounds as f64);
    let (mut ba, mut va) = (Recorder::default(), Recorder::default());
    let (mut ba_elapsed, mut va_elapsed) = (Duration::ZERO, Duration::ZERO);
    let (mut ba_rps, mut va_rps) = (Vec::new(), Vec::new());
    let (mut ba_peak, mut va_peak) = (None::<f64>, None::<f64>);
    let (mut ba_cpu, mut va_cpu) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let plan = env.round_plan(round, slice);
        // Alternating which goes first, so that neither always follows
        // the other's after-effects.
        for first in [round % 2 == 0, round % 2 == 1] {
            if first {
                let w = get_session.window(plan).await?;
                ba_rps.push(w.rec.ok_count() as f64 / w.elapsed.as_secs_f64().max(1e-9));
                ba_elapsed += w.elapsed;
                ba_peak = max(ba_peak, w.peak_rss_mb);
                ba_cpu.push((w.generator_cpu_pct, w.server_cpu_pct));
                ba.merge(w.rec);
            } else {
                let w = validate.window(env, plan).await;
                va_rps.push(w.rec.ok_count() as f64 / w.elapsed.as_secs_f64().max(1e-9));
                va_elapsed += w.elapsed;
                va_peak = max(va_peak, w.peak_rss_mb);
                va_cpu.push((w.generator_cpu_pct, w.server_cpu_pct));
                va.merge(w.rec);
            }
        }
    }
    let ratio = median(
        ba_rps
            .iter()
            .zip(&va_rps)
            .map(|(b, v)| b / v.max(1e-9))
            .collect(),
    );
    let cpu = |c: &[(Option<f64>, Option<f64>)]| Window {
        rec: Recorder::default(),
        elapsed: Duration::ZERO,
        peak_rss_mb: None,
        generator_cpu_pct: median_of(c.iter().map(|c| c.0)),
        server_cpu_pct: median_of(c.iter().map(|c| c.1)),
    };
    let mut validate_row = validate.row(
        env,
        va.summarize(va_elapsed),
        &Window {
            peak_rss_mb: va_peak,
            ..cpu(&va_cpu)
        },
    );
    let mut ba_row = row(
        env,
        "better_auth_get_session",
        in_flight,
        ba.summarize(ba_elapsed),
    );
    ba_row.connections = in_flight;
    ba_row.generator = "h2load";
    ba_row.rss_idle_mb = node_idle;
    ba_row.rss_load_mb = ba_peak;
    let ba_cpu = cpu(&ba_cpu);
    ba_row.generator_cpu_pct = ba_cpu.generator_cpu_pct;
    ba_row.server_cpu_pct = ba_cpu.server_cpu_pct;
    ba_row.notes.insert(
        "success_checked_by".into(),
        "HTTP status of every answer in h2load's log (200 only; a call without an answer counted too); the session body checked once before the windows".into(),
    );
    ba_row.notes.insert(
        "server".into(),
        format!(
            "Better-Auth ({}), node, in-memory SQLite, HTTP/1.1, one request in flight per connection",
            better_auth_version(&env.args.better_auth_dir)
        )
        .into(),
    );
    for (row, rps) in [(&mut ba_row, &ba_rps), (&mut validate_row, &va_rps)] {
        row.notes.insert("rounds".into(), rounds.into());
        row.notes.insert(
            "req_per_s_by_round".into(),
            rps.iter().map(|r| (r * 10.0).round() / 10.0).collect(),
        );
    }
    drop(validate);
    drop(node);
    Ok(Outcome::Measured {
        rows: vec![ba_row, validate_row],
        ratio,
    })
}

fn max(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// The installed better-auth's version, from its package.json.
fn better_auth_version(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("node_modules/better-auth/package.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .and_then(|json| json["version"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "version unknown".to_owned())
}
