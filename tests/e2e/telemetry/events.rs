//! Security events: a full flow is traced, counted and audited without a
//! secret in anything emitted; a refused authorization is logged and
//! audited though the caller sees NOT_FOUND.

use super::*;
use crate::support::{metric, metrics_addr, pg_text, scrape};

/// The security events of the full flow, in spans and in the audit trail.
const FLOW_EVENTS: [&str; 6] = [
    "identity.register.succeeded",
    "identity.login.failed",
    "identity.login.succeeded",
    "identity.refresh.reused",
    "identity.session.revoked",
    "identity.rate_limited",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_flow_is_traced_counted_and_audited_without_leaking_a_secret() {
    let db = TestDb::new(Backend::Postgres);
    let (collector, collector_addr) = Collector::start().await;
    let server = Server::start_with_options(
        &db,
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
            // The flow's re-use right after the refresh is theft, not a retry.
            .env("IDENTITY_REFRESH_REUSE_GRACE", "0s")
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
    let audit = pg_text(
        &db,
        "SELECT event_name || ' ' || coalesce(client_addr,'') || ' ' || detail \
         FROM audit_events ORDER BY occurred_at",
    );
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
        pg_text(
            &db,
            "SELECT detail FROM audit_events WHERE event_name = 'identity.access.denied'",
        )
        .contains(&bob_id)
    })
    .await;
    assert!(audited, "and an audit row");
}
