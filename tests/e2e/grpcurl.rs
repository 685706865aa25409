//! The README's grpcurl session, run as written against a dev server, and
//! reflection v1 next to v1alpha.

use crate::support::{Backend, Server, TestDb, grpcurl};
use std::path::PathBuf;
use std::process::Command;

/// The shell lines of the README block fenced as ```sh grpcurl-session.
fn readme_session() -> String {
    let readme =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let start = readme
        .find("```sh grpcurl-session")
        .expect("README has the grpcurl session");
    let body = &readme[start..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("```").unwrap()].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_grpcurl_session_works_as_written() {
    let db = TestDb::new(Backend::Sqlite);
    let server = Server::start(&db);
    let script = readme_session().replace("127.0.0.1:50051", &server.addr.to_string());
    let bin_dir = grpcurl()
        .parent()
        .map(|p| p.to_path_buf())
        .unwrap_or_default();
    let output = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin_dir.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "README session failed:\n{stdout}\n{stderr}"
    );
    for expected in [
        "identity.v1.AuthService",
        "grpc.health.v1.Health",
        "\"status\": \"SERVING\"",
        "\"accessToken\"",
        "\"active\": true",
        "\"displayName\": \"Ann Lee\"",
        "\"locale\": \"en-GB\"",
        "\"etag\": \"v2\"",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected} in:\n{stdout}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_v1_lists_the_services_too() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let db = TestDb::new(Backend::Sqlite);
    let server = Server::start(&db);
    let mut client = ServerReflectionClient::new(server.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"identity.v1.AuthService".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_owned()),
        "{names:?}"
    );
}
