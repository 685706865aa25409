//! Who may steer tracing: only a trusted proxy's (or an mTLS peer's)
//! `traceparent` is a parent; anyone else's is a link at most, and what a
//! caller sends (its trace id, a huge authority) never names spans or logs.

use super::*;

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
    Server::start_with_options(db, options)
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
    use crate::support::pki::Ca;
    use crate::support::{tls_channel, write_tls_files};
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
