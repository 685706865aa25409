//! What the service emits: OTLP spans of every RPC with the RPC semantic
//! conventions and security events, the caller's trace continued, metrics
//! with the right counts — and no secret anywhere in spans, logs or the
//! audit trail.

use crate::support::{Backend, PASSWORD, Server, ServerOptions, TestDb, email};
use identity::proto::v1::*;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::Code;

/// The security events of the full flow, in spans and in the audit trail.
const FLOW_EVENTS: [&str; 6] = [
    "identity.register.succeeded",
    "identity.login.failed",
    "identity.login.succeeded",
    "identity.refresh.reused",
    "identity.session.revoked",
    "identity.rate_limited",
];

/// A real OTLP/gRPC collector that keeps what it receives.
#[derive(Clone, Default)]
struct Collector {
    traces: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.traces.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[tonic::async_trait]
impl MetricsService for Collector {
    async fn export(
        &self,
        _request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        Ok(tonic::Response::new(ExportMetricsServiceResponse {
            partial_success: None,
        }))
    }
}

impl Collector {
    async fn start() -> (Collector, std::net::SocketAddr) {
        let collector = Collector::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = collector.clone();
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(service.clone()))
                .add_service(MetricsServiceServer::new(service))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
        });
        (collector, addr)
    }

    /// The same collector behind TLS, presenting `leaf` (issued for
    /// localhost); its port.
    async fn start_tls(leaf: &crate::support::pki::Leaf) -> (Collector, u16) {
        let collector = Collector::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let service = collector.clone();
        let identity = tonic::transport::Identity::from_pem(&leaf.cert_pem, &leaf.key_pem);
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
                .unwrap()
                .add_service(TraceServiceServer::new(service.clone()))
                .add_service(MetricsServiceServer::new(service))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
        });
        (collector, port)
    }

    fn spans(&self) -> Vec<Span> {
        self.traces
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| r.resource_spans.iter())
            .flat_map(|r| r.scope_spans.iter())
            .flat_map(|s| s.spans.iter().cloned())
            .collect()
    }
}

fn attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn string_attr(attributes: &[KeyValue], key: &str) -> Option<String> {
    match attr(attributes, key)? {
        Value::StringValue(s) => Some(s.clone()),
        Value::IntValue(i) => Some(i.to_string()),
        other => Some(format!("{other:?}")),
    }
}

fn with_traceparent<T>(message: T, traceparent: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    request
}

pub(crate) fn metrics_addr(server: &Server) -> std::net::SocketAddr {
    let logs = server.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("serving metrics on /metrics"))
        .expect("metrics listener logged");
    let json: serde_json::Value = serde_json::from_str(line).unwrap();
    json["address"].as_str().unwrap().parse().unwrap()
}

pub(crate) async fn scrape(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).await.unwrap();
    body
}

pub(crate) fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_flow_is_traced_counted_and_audited_without_leaking_a_secret() {
    let db = TestDb::new(Backend::Postgres);
    let (collector, collector_addr) = Collector::start().await;
    let server = Server::start_with(
        &db.url,
        db.dir.path(),
        ServerOptions::default()
            .env(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://{collector_addr}"),
            )
            .env("OTEL_SERVICE_NAME", "identity-under-test")
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .env("IDENTITY_METRICS_ADDR", "127.0.0.1:0")
            .env("IDENTITY_RATE_LIMIT_ENABLED", "true")
            .env("IDENTITY_RATE_LIMIT_LOGIN", "2/1m")
            // The test plays the caller's trusted proxy, whose trace continues.
            .env("IDENTITY_TRACE_TRUSTED_PROXIES", "127.0.0.1/32"),
    );
    let mut auth = server.auth().await;
    let address = email("traced");
    let wrong = "not my password at all";

    let registered = auth
        .register(RegisterRequest {
            email: address.clone(),
            password: PASSWORD.into(),
            display_name: "Tracy".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();
    let failed = auth
        .login(LoginRequest {
            email: address.clone(),
            password: wrong.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(failed.code(), Code::Unauthenticated);
    // The caller's trace continues here.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_span = "00f067aa0ba902b7";
    let traceparent = format!("00-{trace_id}-{parent_span}-01");
    let login = auth
        .login(with_traceparent(
            LoginRequest {
                email: address.clone(),
                password: PASSWORD.into(),
                ..Default::default()
            },
            &traceparent,
        ))
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();
    let refreshed = auth
        .refresh(RefreshRequest {
            refresh_token: login.refresh_token.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();
    let reused = auth
        .refresh(RefreshRequest {
            refresh_token: login.refresh_token.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(reused.code(), Code::Unauthenticated);
    auth.logout(LogoutRequest {
        refresh_token: registered.refresh_token.clone(),
    })
    .await
    .unwrap();
    let limited = auth
        .login(LoginRequest {
            email: address.clone(),
            password: PASSWORD.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        limited.code(),
        Code::ResourceExhausted,
        "the third login in a minute is rate limited"
    );

    // Metrics, scraped before shutdown.
    let text = scrape(metrics_addr(&server)).await;
    let login_series = |code: &str| {
        format!(
            "identity_rpc_requests_total{{method=\"identity.v1.AuthService/Login\",code=\"{code}\"}}"
        )
    };
    assert_eq!(metric(&text, &login_series("OK")), Some(1.0), "{text}");
    assert_eq!(metric(&text, &login_series("UNAUTHENTICATED")), Some(1.0));
    assert_eq!(
        metric(&text, &login_series("RESOURCE_EXHAUSTED")),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &text,
            "identity_rpc_requests_total{method=\"identity.v1.AuthService/Refresh\",code=\"UNAUTHENTICATED\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &text,
            "identity_login_failures_total{reason=\"bad_password\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, "identity_rate_limited_total{rpc=\"login\"}"),
        Some(1.0)
    );
    assert!(metric(&text, "identity_db_pool_connections{state=\"idle\"}").is_some());
    assert_eq!(metric(&text, "identity_bcrypt_queue_depth"), Some(0.0));
    assert!(text.contains("identity_rpc_duration_seconds_bucket{method=\"identity.v1.AuthService/Login\",code=\"OK\",le=\"+Inf\"} 1"));

    let signing_key = std::fs::read_to_string(server.data_dir.join("signing-key.pem")).unwrap();
    let logs = server.logs();
    assert!(server.terminate().success(), "clean exit flushes the spans");

    let spans = collector.spans();
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    for expected in [
        "identity.v1.AuthService/Register",
        "identity.v1.AuthService/Login",
        "identity.v1.AuthService/Refresh",
        "identity.v1.AuthService/Logout",
    ] {
        assert!(names.contains(&expected), "no {expected} span in {names:?}");
    }
    let rpc_spans: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name.starts_with("identity.v1."))
        .collect();
    for span in &rpc_spans {
        assert_eq!(span.kind, 2, "{}: SPAN_KIND_SERVER", span.name);
        assert_eq!(
            string_attr(&span.attributes, "rpc.system").as_deref(),
            Some("grpc")
        );
        assert_eq!(
            string_attr(&span.attributes, "rpc.service").as_deref(),
            Some("identity.v1.AuthService")
        );
        assert!(string_attr(&span.attributes, "rpc.method").is_some());
        assert!(
            string_attr(&span.attributes, "rpc.grpc.status_code").is_some(),
            "{}",
            span.name
        );
        assert!(string_attr(&span.attributes, "server.address").is_some());
        assert_eq!(
            string_attr(&span.attributes, "client.address").as_deref(),
            Some("127.0.0.1")
        );
    }
    let continued = rpc_spans
        .iter()
        .find(|s| hex(&s.trace_id) == trace_id)
        .expect("the caller's trace id is the span's trace id");
    assert_eq!(continued.name, "identity.v1.AuthService/Login");
    assert_eq!(hex(&continued.parent_span_id), parent_span);
    let children: Vec<&str> = spans
        .iter()
        .filter(|s| s.parent_span_id == continued.span_id)
        .map(|s| s.name.as_str())
        .collect();
    assert!(
        children.contains(&"bcrypt"),
        "bcrypt child span: {children:?}"
    );
    assert!(
        children.iter().any(|n| n.starts_with("db ")),
        "database child spans: {children:?}"
    );

    let events: Vec<String> = spans
        .iter()
        .flat_map(|s| s.events.iter())
        .filter_map(|e| string_attr(&e.attributes, "event.name"))
        .collect();
    for expected in FLOW_EVENTS {
        assert!(
            events.iter().any(|e| e == expected),
            "no {expected} event in {events:?}"
        );
    }
    let failure = spans
        .iter()
        .flat_map(|s| s.events.iter())
        .find(|e| {
            string_attr(&e.attributes, "event.name").as_deref() == Some("identity.login.failed")
        })
        .unwrap();
    assert_eq!(
        string_attr(&failure.attributes, "reason").as_deref(),
        Some("bad_password")
    );

    // JSON log lines carry the trace context inside RPCs.
    assert!(
        logs.lines()
            .any(|l| l.contains("identity.login.succeeded") && l.contains(trace_id)),
        "logs carry trace_id"
    );

    // The audit trail has the same events.
    let audit = std::process::Command::new("psql")
        .arg(&db.url)
        .args(["-tAc", "SELECT event_name || ' ' || coalesce(client_addr,'') || ' ' || detail FROM audit_events ORDER BY occurred_at"])
        .output()
        .unwrap();
    let audit = String::from_utf8_lossy(&audit.stdout).into_owned();
    // Rate-limited calls are a log event and a metric only: floods must not
    // fill the audit table (audit_flood.rs).
    for expected in FLOW_EVENTS
        .iter()
        .filter(|e| **e != "identity.rate_limited")
    {
        assert!(
            audit.contains(expected),
            "no {expected} audit row in:\n{audit}"
        );
    }
    assert!(
        !audit.contains("identity.rate_limited"),
        "no audit row for a rate-limited call:\n{audit}"
    );

    assert!(
        audit.contains("identity.config.insecure"),
        "dev mode is audited"
    );

    // `identity audit tail` reads the same trail.
    let tail = std::process::Command::new(crate::support::binary())
        .args(["audit", "tail", "--since", "1h"])
        .env("IDENTITY_DATABASE_URL", &db.url)
        .output()
        .unwrap();
    assert!(
        tail.status.success(),
        "{}",
        String::from_utf8_lossy(&tail.stderr)
    );
    let tail = String::from_utf8_lossy(&tail.stdout).into_owned();
    let rows: Vec<serde_json::Value> = tail
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        rows.iter()
            .any(|r| r["event.name"] == "identity.refresh.reused" && r["session.id"].is_string())
    );
    let profile = rows
        .iter()
        .find(|r| r["event.name"] == "identity.login.succeeded")
        .and_then(|r| r["profile.id"].as_str())
        .unwrap()
        .to_owned();
    let mine = std::process::Command::new(crate::support::binary())
        .args(["audit", "tail", "--profile", &profile])
        .env("IDENTITY_DATABASE_URL", &db.url)
        .output()
        .unwrap();
    let mine = String::from_utf8_lossy(&mine.stdout).into_owned();
    assert!(
        !mine.is_empty() && mine.lines().all(|l| l.contains(&profile)),
        "--profile filters:\n{mine}"
    );

    // Redaction proof: nothing secret in anything emitted.
    let audit = format!("{audit}\n{tail}");
    let emitted = format!("{:?}\n{logs}\n{audit}", collector.traces.lock().unwrap());
    let key_body: String = signing_key
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let secrets = [
        ("password", PASSWORD.to_owned()),
        ("wrong password", wrong.to_owned()),
        ("email", address.clone()),
        ("access token", registered.access_token.clone()),
        ("refresh token", registered.refresh_token.clone()),
        ("login access token", login.access_token.clone()),
        ("login refresh token", login.refresh_token.clone()),
        ("rotated access token", refreshed.access_token.clone()),
        ("rotated refresh token", refreshed.refresh_token.clone()),
        ("signing key", key_body),
    ];
    for (what, secret) in secrets {
        assert!(!secret.is_empty());
        assert!(
            !emitted.contains(&secret),
            "the {what} leaked into spans, logs or audit rows"
        );
    }
    // Token signatures alone are secrets too (a JWT minus its header).
    let signature = login.access_token.rsplit('.').next().unwrap();
    assert!(!emitted.contains(signature));
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_collector_never_fails_or_stalls_an_rpc() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let measure = |server: Server| async move {
        let mut auth = server.auth().await;
        let tokens = auth
            .register(RegisterRequest {
                email: email("dead"),
                password: PASSWORD.into(),
                display_name: String::new(),
            })
            .await
            .expect("register works")
            .into_inner()
            .tokens
            .unwrap();
        let mut samples = Vec::new();
        for _ in 0..200 {
            let start = Instant::now();
            let answer = auth
                .validate_token(ValidateTokenRequest {
                    access_token: tokens.access_token.clone(),
                })
                .await
                .expect("every RPC succeeds");
            samples.push(start.elapsed());
            assert!(answer.into_inner().active);
        }
        samples.sort();
        (
            samples[samples.len() / 2],
            samples[samples.len() * 99 / 100],
        )
    };
    let db = TestDb::new(Backend::Sqlite);
    let without = measure(Server::start(&db)).await;
    let db = TestDb::new(Backend::Sqlite);
    let dead = Server::start_with(
        &db.url,
        db.dir.path(),
        ServerOptions::default()
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{closed}"))
            .env("OTEL_BSP_SCHEDULE_DELAY", "50")
            .env("OTEL_BSP_MAX_QUEUE_SIZE", "64"),
    );
    let with_dead = measure(dead).await;
    println!(
        "ValidateToken latency p50/p99 without a collector {:?}/{:?}, with a dead collector {:?}/{:?}",
        without.0, without.1, with_dead.0, with_dead.1
    );
    assert!(
        with_dead.1 < Duration::from_secs(1),
        "no RPC waits on the collector"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_authorization_is_logged_and_audited_though_the_caller_sees_not_found() {
    use identity::proto::v1::profile_service_client::ProfileServiceClient;
    let db = TestDb::new(Backend::Postgres);
    let server = Server::start(&db);
    let mut auth = server.auth().await;
    let alice = crate::support::register(&mut auth, &email("alice")).await;
    let bob = crate::support::register(&mut auth, &email("bob")).await;
    let bob_id = auth
        .validate_token(ValidateTokenRequest {
            access_token: bob.access_token.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .profile_id;
    let mut profiles = ProfileServiceClient::new(server.channel().await);
    let status = profiles
        .get_profile(crate::support::bearer(
            &alice.access_token,
            GetProfileRequest { id: bob_id.clone() },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    // The log line is read from the server's stdout by another thread:
    // it may land a moment after the answer.
    assert!(
        crate::support::eventually(Duration::from_secs(5), || async {
            server
                .logs()
                .lines()
                .any(|l| l.contains("identity.access.denied") && l.contains(&bob_id))
        })
        .await,
        "the refusal is a security event"
    );
    let audited = crate::support::eventually(Duration::from_secs(5), || async {
        let out = std::process::Command::new("psql")
            .arg(&db.url)
            .args([
                "-tAc",
                "SELECT detail FROM audit_events WHERE event_name = 'identity.access.denied'",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains(&bob_id)
    })
    .await;
    assert!(audited, "and an audit row");
}

/// Traces go to an `https://` collector only when its certificate checks
/// out against OTEL_EXPORTER_OTLP_CERTIFICATE; otherwise nothing is sent
/// and every RPC still succeeds. An unreadable bundle stops the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_reach_a_tls_collector_only_when_its_certificate_checks_out() {
    use crate::support::TempDir;
    use crate::support::pki::Ca;
    let ca = Ca::new("collector CA");
    let files = TempDir::new();
    let trusted = files.path().join("collector-ca.pem");
    std::fs::write(&trusted, &ca.pem).unwrap();
    let untrusted = files.path().join("other-ca.pem");
    std::fs::write(&untrusted, Ca::new("someone else's CA").pem).unwrap();
    let traced = |port: u16, bundle: &std::path::Path| {
        let db = TestDb::new(Backend::Sqlite);
        let server = Server::start_with(
            &db.url,
            db.dir.path(),
            ServerOptions::default()
                .env(
                    "OTEL_EXPORTER_OTLP_ENDPOINT",
                    format!("https://localhost:{port}"),
                )
                .env(
                    "OTEL_EXPORTER_OTLP_CERTIFICATE",
                    bundle.display().to_string(),
                )
                .env("OTEL_BSP_SCHEDULE_DELAY", "100"),
        );
        (server, db)
    };
    async fn register(server: &Server) {
        identity::proto::v1::auth_service_client::AuthServiceClient::new(server.channel().await)
            .register(RegisterRequest {
                email: email("otlp-tls"),
                password: PASSWORD.into(),
                display_name: String::new(),
            })
            .await
            .expect("the RPC succeeds whatever the collector");
    }

    let (collector, port) = Collector::start_tls(&ca.server()).await;
    let (server, _db) = traced(port, &trusted);
    register(&server).await;
    assert!(
        crate::support::eventually(Duration::from_secs(10), || async {
            collector
                .spans()
                .iter()
                .any(|s| s.name == "identity.v1.AuthService/Register")
        })
        .await,
        "spans arrive over TLS:\n{}",
        server.logs()
    );
    drop(server);

    let (collector, port) = Collector::start_tls(&ca.server()).await;
    let (server, _db) = traced(port, &untrusted);
    register(&server).await;
    // Shutting down flushes what is queued: the export is attempted now.
    assert!(server.terminate().success());
    assert!(
        collector.spans().is_empty(),
        "a collector with an unchecked certificate received spans"
    );

    // An unreadable bundle, or credentials in the endpoint (start-up
    // errors print it), stop the start naming the variable.
    for (endpoint, certificate, named) in [
        (
            "https://localhost:4317",
            Some("/nonexistent/ca.pem"),
            "OTEL_EXPORTER_OTLP_CERTIFICATE",
        ),
        (
            "https://user:api-key@localhost:4317",
            None,
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ),
    ] {
        let mut env = vec![("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)];
        if let Some(certificate) = certificate {
            env.push(("OTEL_EXPORTER_OTLP_CERTIFICATE", certificate));
        }
        let (code, stderr) = crate::support::refused_start(&env);
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains(named), "{stderr}");
        assert!(!stderr.contains("api-key"), "{stderr}");
    }
}

/// A caller can send any path; paths the server does not serve are counted
/// as one `unknown` method, so made-up paths cannot grow the metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_rpc_paths_are_counted_as_one_unknown_method() {
    let db = TestDb::new(Backend::Sqlite);
    let server = Server::start_with(
        &db.url,
        db.dir.path(),
        ServerOptions::default().env("IDENTITY_METRICS_ADDR", "127.0.0.1:0"),
    );
    let mut grpc = tonic::client::Grpc::new(server.channel().await);
    for i in 0..3 {
        grpc.ready().await.unwrap();
        let path = http::uri::PathAndQuery::try_from(format!("/made.Up/Method{i}")).unwrap();
        let status = grpc
            .unary(
                tonic::Request::new(GetJwksRequest {}),
                path,
                tonic_prost::ProstCodec::<GetJwksRequest, GetJwksResponse>::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unimplemented);
    }
    let text = scrape(metrics_addr(&server)).await;
    assert_eq!(
        metric(
            &text,
            "identity_rpc_requests_total{method=\"unknown\",code=\"UNIMPLEMENTED\"}"
        ),
        Some(3.0),
        "{text}"
    );
    assert!(!text.contains("made.Up"), "{text}");
}

/// Every method the API port serves, as metric labels.
const SERVED_METHODS: [&str; 18] = [
    "identity.v1.AuthService/Register",
    "identity.v1.AuthService/Login",
    "identity.v1.AuthService/Refresh",
    "identity.v1.AuthService/Logout",
    "identity.v1.AuthService/ValidateToken",
    "identity.v1.AuthService/ChangePassword",
    "identity.v1.AuthService/GetJwks",
    "identity.v1.AuthService/ExchangeToken",
    "identity.v1.ProfileService/GetProfile",
    "identity.v1.ProfileService/LookupProfile",
    "identity.v1.ProfileService/CreateProfile",
    "identity.v1.ProfileService/UpdateProfile",
    "identity.v1.ProfileService/DeleteProfile",
    "identity.v1.ProfileService/ListProfiles",
    "grpc.health.v1.Health/Check",
    "grpc.health.v1.Health/Watch",
    "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_paths_of_authenticated_services_and_preflights_add_no_metric_series() {
    use crate::fuzz::{frame, raw_call};
    use http::{HeaderValue, Method};
    let db = TestDb::new(Backend::Sqlite);
    let (collector, collector_addr) = Collector::start().await;
    let origin = "https://app.example.com";
    let server = Server::start_with(
        &db.url,
        db.dir.path(),
        ServerOptions::default()
            .env(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://{collector_addr}"),
            )
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .env("IDENTITY_METRICS_ADDR", "127.0.0.1:0")
            .env("IDENTITY_GRPC_WEB_ORIGINS", origin),
    );
    let mut auth = server.auth().await;
    let access = crate::support::register(&mut auth, &email("paths"))
        .await
        .access_token;
    let bearer = HeaderValue::from_str(&format!("Bearer {access}")).unwrap();
    let channel = server.channel().await;
    let marker = format!("zq{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let mut answers = Vec::new();
    for i in 0..12 {
        for service in ["identity.v1.AuthService", "identity.v1.ProfileService"] {
            let path = format!("/{service}/{marker}{i}");
            let with_bearer = [("authorization", bearer.clone())];
            for metadata in [&with_bearer[..], &[]] {
                let answer = raw_call(&channel, Method::POST, &path, metadata, frame(&[]))
                    .await
                    .unwrap();
                answers.push(answer.grpc);
            }
            let preflight = [
                ("origin", HeaderValue::from_static(origin)),
                (
                    "access-control-request-method",
                    HeaderValue::from_static("POST"),
                ),
            ];
            for path in [path.clone(), format!("/{marker}/p{i}")] {
                raw_call(&channel, Method::OPTIONS, &path, &preflight, Vec::new())
                    .await
                    .unwrap();
            }
        }
    }
    // A preflight of a real method is no call of it either.
    raw_call(
        &channel,
        Method::OPTIONS,
        "/identity.v1.AuthService/GetJwks",
        &[("origin", HeaderValue::from_static(origin))],
        Vec::new(),
    )
    .await
    .unwrap();
    let refused = |code: Code| answers.contains(&Some(code as i32));
    assert!(
        refused(Code::Unauthenticated) && refused(Code::Unimplemented),
        "{answers:?}"
    );

    let text = scrape(metrics_addr(&server)).await;
    let mut methods: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("identity_rpc_requests_total{method=\""))
        .filter_map(|l| l.split_once('"').map(|(method, _)| method))
        .collect();
    methods.sort_unstable();
    methods.dedup();
    assert!(
        methods
            .iter()
            .all(|m| *m == "unknown" || SERVED_METHODS.contains(m)),
        "only served methods and `unknown` label the metrics: {methods:?}"
    );
    assert!(
        !methods.contains(&"identity.v1.AuthService/GetJwks"),
        "{methods:?}"
    );
    assert!(!text.contains(&marker), "{text}");

    // 48 made-up calls and 49 preflights, each one `unknown` span.
    let unknown_spans = || {
        collector
            .spans()
            .iter()
            .filter(|span| span.name == "unknown")
            .count()
    };
    let exported =
        crate::support::eventually(Duration::from_secs(15), || async { unknown_spans() >= 97 })
            .await;
    assert!(exported, "{} unknown spans", unknown_spans());
    for span in collector.spans() {
        let named = span.name.contains(&marker)
            || span.attributes.iter().any(|kv| {
                string_attr(std::slice::from_ref(kv), &kv.key)
                    .is_some_and(|value| value.contains(&marker))
            });
        assert!(!named, "a span named after a made-up path: {span:?}");
    }
    assert!(
        !server.logs().contains(&marker),
        "no log line is named after a made-up path"
    );
}

// ---------------------------------------------------------------------------
// Who may steer tracing: only a trusted proxy's (or an mTLS peer's)
// `traceparent` is a parent; anyone else's is a link at most.

/// A server exporting to `collector_addr` quickly, with `env` on top.
fn traced_server(
    db: &TestDb,
    collector_addr: std::net::SocketAddr,
    env: &[(&str, &str)],
) -> Server {
    let mut options = ServerOptions::default()
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{collector_addr}"),
        )
        .env("OTEL_BSP_SCHEDULE_DELAY", "100");
    for (key, value) in env {
        options = options.env(key, *value);
    }
    Server::start_with(&db.url, db.dir.path(), options)
}

/// A fresh W3C trace id (32 hex digits).
fn new_trace_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Sampling at ratio 0 for traces that start here.
const NEVER_SAMPLED: [(&str, &str); 2] = [
    ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
    ("OTEL_TRACES_SAMPLER_ARG", "0"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_caller_cannot_switch_sampling_on() {
    let db = TestDb::new(Backend::Sqlite);
    let (collector, collector_addr) = Collector::start().await;
    let server = traced_server(&db, collector_addr, &NEVER_SAMPLED);
    let mut auth = server.auth().await;
    for _ in 0..20 {
        let traceparent = format!("00-{}-00f067aa0ba902b7-01", new_trace_id());
        auth.get_jwks(with_traceparent(GetJwksRequest {}, &traceparent))
            .await
            .expect("GetJwks answers");
    }
    // Shutting down flushes whatever was queued.
    assert!(server.terminate().success());
    let spans = collector.spans();
    assert!(
        spans.is_empty(),
        "at ratio 0 a stranger's sampled flag exported {} spans: {:?}",
        spans.len(),
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_caller_can_neither_switch_the_rpc_span_off_nor_name_the_trace() {
    let db = TestDb::new(Backend::Sqlite);
    let (collector, collector_addr) = Collector::start().await;
    let server = traced_server(&db, collector_addr, &[]);
    let mut auth = server.auth().await;
    let parent_span = "00f067aa0ba902b7";
    let mut planted = Vec::new();
    for flags in ["00", "01"] {
        let trace_id = new_trace_id();
        let traceparent = format!("00-{trace_id}-{parent_span}-{flags}");
        // A failed login: a security event logged inside the RPC's span.
        let status = auth
            .login(with_traceparent(
                LoginRequest {
                    email: email("nobody"),
                    password: "not the password at all".into(),
                    ..Default::default()
                },
                &traceparent,
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
        planted.push(trace_id);
    }
    let logins = || {
        collector
            .spans()
            .into_iter()
            .filter(|s| s.name == "identity.v1.AuthService/Login")
            .collect::<Vec<_>>()
    };
    let exported =
        crate::support::eventually(Duration::from_secs(15), || async { logins().len() >= 2 }).await;
    assert!(
        exported,
        "a stranger's unsampled flag suppressed the RPC span: {} Login spans",
        logins().len()
    );
    for span in collector.spans() {
        assert!(
            !planted.contains(&hex(&span.trace_id)),
            "the caller chose the trace id of {}",
            span.name
        );
    }
    for span in logins() {
        assert!(
            span.parent_span_id.is_empty(),
            "a stranger's span is no parent"
        );
        let linked: Vec<(String, String)> = span
            .links
            .iter()
            .map(|l| (hex(&l.trace_id), hex(&l.span_id)))
            .collect();
        assert!(
            planted
                .iter()
                .any(|t| linked.contains(&(t.clone(), parent_span.to_owned()))),
            "the caller's context is kept as a link: {linked:?}"
        );
        assert!(
            span.links.iter().all(|l| l.trace_state.is_empty()),
            "a stranger's tracestate is not kept"
        );
    }
    // The log reader thread may lag the answers on a busy machine.
    assert!(
        crate::support::eventually(Duration::from_secs(10), || async {
            server
                .logs()
                .lines()
                .any(|l| l.contains("identity.login.failed") && l.contains("trace_id"))
        })
        .await,
        "security events carry the (new) trace id:\n{}",
        server.logs()
    );
    let logs = server.logs();
    for trace_id in &planted {
        assert!(
            !logs.contains(trace_id.as_str()),
            "the caller's trace id {trace_id} is in the logs"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxys_trace_context_is_honoured_with_a_bounded_tracestate() {
    let db = TestDb::new(Backend::Sqlite);
    let (collector, collector_addr) = Collector::start().await;
    let mut env = NEVER_SAMPLED.to_vec();
    env.push(("IDENTITY_TRACE_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1/32"));
    let server = traced_server(&db, collector_addr, &env);
    let mut auth = server.auth().await;
    let parent_span = "00f067aa0ba902b7";
    let huge_state: Vec<String> = (0..40)
        .map(|i| format!("k{i}={}", "v".repeat(20)))
        .collect();
    let cases = [
        (new_trace_id(), "vendor=abc".to_owned(), "vendor=abc"),
        (new_trace_id(), huge_state.join(","), ""),
        // Three members, each within the W3C limits, 760 bytes together.
        (
            new_trace_id(),
            (0..3)
                .map(|i| format!("m{i}={}", "v".repeat(250)))
                .collect::<Vec<_>>()
                .join(","),
            "",
        ),
    ];
    for (trace_id, state, _) in &cases {
        let mut request = with_traceparent(
            GetJwksRequest {},
            &format!("00-{trace_id}-{parent_span}-01"),
        );
        request
            .metadata_mut()
            .insert("tracestate", state.parse().unwrap());
        auth.get_jwks(request).await.expect("GetJwks answers");
    }
    assert!(server.terminate().success());
    let spans = collector.spans();
    for (trace_id, _, kept) in &cases {
        let span = spans
            .iter()
            .find(|s| s.name == "identity.v1.AuthService/GetJwks" && hex(&s.trace_id) == *trace_id)
            .unwrap_or_else(|| panic!("the trusted proxy's trace {trace_id} continues, sampled"));
        assert_eq!(hex(&span.parent_span_id), parent_span);
        assert_eq!(span.trace_state, *kept, "tracestate of {trace_id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_authority_never_reaches_logs_or_spans() {
    let db = TestDb::new(Backend::Sqlite);
    let (collector, collector_addr) = Collector::start().await;
    let server = traced_server(&db, collector_addr, &[]);
    let marker = format!("zq{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let host = format!("{marker}{}", "a".repeat(6 * 1024));
    // `:authority` is the endpoint's host; the connector ignores it and
    // dials the server.
    let addr = server.addr;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{host}:{}", addr.port()))
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: http::Uri| async move {
            tokio::net::TcpStream::connect(addr)
                .await
                .map(hyper_util::rt::TokioIo::new)
        }))
        .await
        .unwrap();
    let failed_login = || LoginRequest {
        email: email("nobody"),
        password: "not the password at all".into(),
        ..Default::default()
    };
    let status = identity::proto::v1::auth_service_client::AuthServiceClient::new(channel)
        .login(failed_login())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    // The same through a `host` header.
    let mut request = tonic::Request::new(failed_login());
    request.metadata_mut().insert("host", host.parse().unwrap());
    let status = server.auth().await.login(request).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    let logins = || {
        collector
            .spans()
            .into_iter()
            .filter(|s| s.name == "identity.v1.AuthService/Login")
            .collect::<Vec<_>>()
    };
    assert!(
        crate::support::eventually(Duration::from_secs(15), || async { logins().len() >= 2 }).await,
        "both logins are traced"
    );
    for span in logins() {
        assert_eq!(
            string_attr(&span.attributes, "server.address").as_deref(),
            Some("127.0.0.1"),
            "the listen address, not the caller's word"
        );
    }
    let spans = format!("{:?}", collector.traces.lock().unwrap());
    assert!(!spans.contains(&marker), "the authority is in a span");
    assert!(
        crate::support::eventually(Duration::from_secs(10), || async {
            server
                .logs()
                .lines()
                .any(|l| l.contains("identity.login.failed"))
        })
        .await,
        "the failed logins are logged:\n{}",
        server.logs()
    );
    let logs = server.logs();
    assert!(!logs.contains(&marker), "the authority is in the logs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mtls_clients_trace_context_is_honoured() {
    use crate::hardening::{tls_channel, write_tls_files};
    use crate::support::pki::Ca;
    let db = TestDb::new(Backend::Sqlite);
    let (collector, collector_addr) = Collector::start().await;
    let (ca, clients_ca) = (Ca::new("server CA"), Ca::new("clients CA"));
    let leaf = ca.server();
    let (cert, key) = write_tls_files(db.dir.path(), "server", &leaf.cert_pem, &leaf.key_pem).await;
    let client_ca = db.dir.path().join("clients-ca.pem");
    std::fs::write(&client_ca, &clients_ca.pem).unwrap();
    let client_ca = client_ca.display().to_string();
    let mut env = NEVER_SAMPLED.to_vec();
    env.extend([
        ("IDENTITY_TLS_CERT_FILE", cert.as_str()),
        ("IDENTITY_TLS_KEY_FILE", key.as_str()),
        ("IDENTITY_TLS_CLIENT_CA_FILE", client_ca.as_str()),
    ]);
    // No IDENTITY_TRACE_TRUSTED_PROXIES: the verified certificate suffices.
    let server = traced_server(&db, collector_addr, &env);
    let client = clients_ca.client("billing-service");
    let channel = tls_channel(
        server.addr,
        &ca.pem,
        Some((&client.cert_pem, &client.key_pem)),
    )
    .await
    .unwrap();
    let trace_id = new_trace_id();
    identity::proto::v1::auth_service_client::AuthServiceClient::new(channel)
        .get_jwks(with_traceparent(
            GetJwksRequest {},
            &format!("00-{trace_id}-00f067aa0ba902b7-01"),
        ))
        .await
        .expect("GetJwks answers");
    assert!(server.terminate().success());
    assert!(
        collector
            .spans()
            .iter()
            .any(|s| s.name == "identity.v1.AuthService/GetJwks" && hex(&s.trace_id) == trace_id),
        "the mTLS client's sampled trace continues here"
    );
}
