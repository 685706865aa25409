//! Every method (and reflection) under hostile wire input: never
//! INTERNAL or UNKNOWN, a bad field named, the server still SERVING.

use super::corpus::*;
use super::*;

crate::on_both_backends!(hostile_wire_input_never_answers_internal_or_unknown);

const MUTATIONS_PER_METHOD: usize = 20;

/// A channel to the health-only port (IDENTITY_HEALTH_LISTEN_ADDR).
async fn health_port_channel(server: &Server) -> Channel {
    let logs = server.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("serving grpc.health.v1 (plaintext)"))
        .expect("the health port is logged before the API port");
    let json: serde_json::Value = serde_json::from_str(line).unwrap();
    let addr = json["address"].as_str().unwrap();
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn hostile_wire_input_never_answers_internal_or_unknown(backend: Backend) {
    let seed = std::env::var("IDENTITY_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEED);
    println!("fuzz seed: {seed} (set IDENTITY_FUZZ_SEED to replay another)");
    let mut rng = Rng(seed);
    let db = TestDb::new(backend);
    let server = Server::start_with_options(
        &db,
        ServerOptions::default()
            .env("IDENTITY_GRPC_WEB_ORIGINS", "https://app.example.com")
            .env("IDENTITY_HEALTH_LISTEN_ADDR", "127.0.0.1:0"),
    );
    let mut auth = server.auth().await;
    let registered = auth
        .register(RegisterRequest {
            email: email("fuzzer"),
            password: PASSWORD.into(),
            display_name: "Fuzzer".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let access = registered.tokens.unwrap().access_token;
    let profile_id = registered.profile.unwrap().id;
    let bearer = HeaderValue::from_str(&format!("Bearer {access}")).unwrap();
    let channel = server.channel().await;

    let mut calls = 0;
    let mut codes = std::collections::BTreeMap::<i32, usize>::new();
    let mut failures = Vec::new();
    let mut check = |path: &str, case: &str, answer: Result<Answer, String>| {
        calls += 1;
        match answer {
            Ok(
                ref answer @ Answer {
                    http: http::StatusCode::OK,
                    grpc: Some(code),
                    ref message,
                    ..
                },
            ) => {
                *codes.entry(code).or_default() += 1;
                if code == Code::Internal as i32 || code == Code::Unknown as i32 {
                    failures.push(format!("{path} ({case}): {code} {message}"));
                }
                // Every refusal says why, in the domain callers branch on.
                // Server reflection (a debugging aid for grpcurl) answers
                // inside its stream, in trailers no layer of ours sees.
                use tonic_types::StatusExt as _;
                let domain = answer.status().get_details_error_info().map(|i| i.domain);
                let reflection = path.starts_with("/grpc.reflection.");
                if code != 0 && !reflection && domain.as_deref() != Some("identity") {
                    failures.push(format!(
                        "{path} ({case}): {code} {message} without ErrorInfo"
                    ));
                }
            }
            other => failures.push(format!("{path} ({case}): {other:?}")),
        }
    };
    let health_port = health_port_channel(&server).await;
    let mut targets: Vec<_> = templates(&access, &profile_id)
        .into_iter()
        .map(|(path, valid)| (&channel, path, valid))
        .collect();
    let check_template = targets
        .iter()
        .find(|(_, path, _)| path.starts_with("/grpc.health"))
        .map(|(_, path, valid)| (&health_port, *path, valid.clone()))
        .unwrap();
    targets.push(check_template);
    for (channel, path, valid) in targets {
        let authorized = [("authorization", bearer.clone())];
        for round in 0..MUTATIONS_PER_METHOD {
            let (case, payload) = mutate(&valid, &mut rng, round % 10);
            let answer = raw_call(channel, Method::POST, path, &authorized, frame(&payload)).await;
            check(path, &case, answer);
        }
        for (case, header, body) in framings(&valid) {
            let mut metadata = authorized.to_vec();
            if let Some((name, value)) = header {
                metadata.push((name, HeaderValue::from_static(value)));
            }
            let answer = raw_call(channel, Method::POST, path, &metadata, body).await;
            check(path, case, answer);
        }
        for (case, content_type, body) in grpc_web(&valid, &mut rng) {
            let metadata = [
                authorized[0].clone(),
                ("content-type", HeaderValue::from_static(content_type)),
                ("x-grpc-web", HeaderValue::from_static("1")),
            ];
            let answer = raw_call(channel, Method::POST, path, &metadata, body).await;
            check(path, &case, answer);
        }
        for (case, lines) in hostile_bearers(&access) {
            let metadata: Vec<_> = lines.into_iter().map(|v| ("authorization", v)).collect();
            let answer = raw_call(channel, Method::POST, path, &metadata, frame(&valid)).await;
            check(path, case, answer);
        }
    }
    println!("{calls} hostile calls, answered {codes:?}");
    assert!(
        failures.is_empty(),
        "{} of {calls} hostile calls answered INTERNAL, UNKNOWN or no gRPC status (seed {seed}):\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Like any other bad input, the answer names the field.
    let mut payload = Vec::new();
    delimited(1, b"\xff", &mut payload);
    let login = "/identity.v1.AuthService/Login";
    let answer = raw_call(&channel, Method::POST, login, &[], frame(&payload))
        .await
        .unwrap();
    assert_eq!(
        answer.grpc,
        Some(Code::InvalidArgument as i32),
        "{answer:?}"
    );
    assert!(answer.message.contains("LoginRequest.email"), "{answer:?}");

    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("the server still answers health checks")
        .into_inner()
        .status();
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    assert!(
        !server.logs().contains("panicked"),
        "no handler panicked:\n{}",
        server.logs()
    );
}
