//! Exporting spans never costs an RPC: a dead collector stalls nothing, and
//! a TLS collector receives spans only when its certificate checks out.

use super::*;
use std::time::Instant;

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
    let dead = Server::start_with_options(
        &db,
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
        let server = Server::start_with_options(
            &db,
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
