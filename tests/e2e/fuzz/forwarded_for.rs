//! A proxy that adds its own x-forwarded-for line leaves the client's
//! forgery first: the per-address limit still counts the real client.

use super::*;

/// A proxy that adds its own `x-forwarded-for` line (rather than appending
/// to the client's) leaves the client's forgery in the first line.
fn through_adding_proxy(forged: &str, real: &str) -> tonic::Request<ValidateTokenRequest> {
    let mut request = tonic::Request::new(ValidateTokenRequest {
        access_token: "not.a.token".into(),
    });
    let metadata = request.metadata_mut();
    metadata.append("x-forwarded-for", forged.parse().unwrap());
    metadata.append("x-forwarded-for", real.parse().unwrap());
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_first_x_forwarded_for_line_does_not_escape_the_per_address_limit() {
    let db = TestDb::new(Backend::Sqlite);
    let server = Server::start_with_options(
        &db,
        ServerOptions::default()
            .env("IDENTITY_RATE_LIMIT_ENABLED", "true")
            .env("IDENTITY_TRUSTED_PROXIES", "127.0.0.1/32")
            .env("IDENTITY_RATE_LIMIT_VALIDATE", "5/1h"),
    );
    let mut auth = server.auth().await;
    let real = "198.51.100.23";
    let mut limited = 0;
    for i in 0..12 {
        // A fresh forged address each time, as a limit-evading attacker would.
        let forged = format!("203.0.113.{}", i + 1);
        match auth
            .validate_token(through_adding_proxy(&forged, real))
            .await
        {
            Ok(answer) => assert!(!answer.into_inner().active),
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                limited += 1;
            }
        }
    }
    assert_eq!(
        limited, 7,
        "the proxy's line names the client: 5 calls fit its quota, 7 do not"
    );
}
