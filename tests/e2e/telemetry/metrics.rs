//! Made-up paths cannot grow the metrics or name spans: they are one
//! `unknown` method.

use super::*;
use crate::support::{metric, metrics_addr, scrape};

/// A caller can send any path; paths the server does not serve are counted
/// as one `unknown` method, so made-up paths cannot grow the metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_rpc_paths_are_counted_as_one_unknown_method() {
    let db = TestDb::new(Backend::Sqlite);
    let server = Server::start_with_options(
        &db,
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
    use crate::support::{frame, raw_call};
    use http::{HeaderValue, Method};
    let db = TestDb::new(Backend::Sqlite);
    let (collector, collector_addr) = Collector::start().await;
    let origin = "https://app.example.com";
    let server = Server::start_with_options(
        &db,
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
