//! Scenarios prepared once and measured window by window: echo (the
//! baseline), ValidateToken in its three variants, GetProfile and the
//! Envoy ext_authz Check.

use crate::echo::EchoRequest;
use crate::echo::echo_service_client::EchoServiceClient;
use crate::fixtures::{SETUP_COST, Stack, connect, sessions, with_rss};
use crate::load::{self, Failure, Plan, label};
use crate::options::Env;
use crate::procs::Proc;
use crate::report::{Row, row};
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
use std::sync::Arc;
use std::time::Duration;

/// One window's samples and the server's peak RSS during it.
type Measured = (Recorder, Option<f64>);
pub(super) type Measure = Box<dyn Fn(Plan) -> BoxFuture<'static, Measured> + Send + Sync>;

/// A scenario ready to measure: its server up, its pool made, its clients
/// connected. Each call of `measure` is one window.
pub(super) struct Prepared {
    pub(super) name: &'static str,
    idle_rss_mb: Option<f64>,
    notes: BTreeMap<String, serde_json::Value>,
    pub(super) measure: Measure,
    /// The server and its database, alive as long as this.
    _hold: Box<dyn std::any::Any + Send>,
}

impl Prepared {
    pub(super) fn row(&self, env: &Env, summary: Summary, peak: Option<f64>) -> Row {
        let mut r = row(env, self.name, env.args.concurrency, summary);
        r.rss_idle_mb = self.idle_rss_mb;
        r.rss_load_mb = peak;
        r.notes = self.notes.clone();
        r
    }

    /// One window after the full warm-up.
    pub(super) async fn alone(&self, env: &Env) -> Row {
        let plan = env.plan(env.args.concurrency);
        let (rec, peak) = (self.measure)(plan).await;
        self.row(env, rec.summarize(plan.duration), peak)
    }
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
        _hold: Box::new(stack),
    })
}
