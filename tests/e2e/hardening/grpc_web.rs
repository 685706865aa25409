//! gRPC-Web: allowed origins get CORS and the security headers, others
//! nothing.

use super::*;

/// One raw HTTP/1.1 exchange; returns the status line and lower-cased headers.
async fn http1(
    addr: std::net::SocketAddr,
    request: String,
    body: &[u8],
) -> (String, Vec<(String, String)>) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw)).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let mut lines = head.lines();
    let status = lines.next().unwrap_or_default().to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_web_answers_allowed_origins_with_cors_and_security_headers_only() {
    let db = TestDb::new(Backend::Sqlite);
    let server = Server::start_with_options(
        &db,
        ServerOptions::default().env("IDENTITY_GRPC_WEB_ORIGINS", "https://app.example.com"),
    );
    let preflight = |origin: &str| {
        format!(
            "OPTIONS /identity.v1.AuthService/GetJwks HTTP/1.1\r\nHost: localhost\r\nOrigin: {origin}\r\n\
             Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type,x-grpc-web\r\nConnection: close\r\n\r\n"
        )
    };
    let (_, headers) = http1(server.addr, preflight("https://app.example.com"), b"").await;
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some("https://app.example.com"),
        "{headers:?}"
    );
    let (_, headers) = http1(server.addr, preflight("https://evil.example.net"), b"").await;
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        None,
        "no grant for another origin: {headers:?}"
    );

    // An actual gRPC-Web call: an empty GetJwksRequest in one frame.
    let frame = [0u8, 0, 0, 0, 0];
    let call = format!(
        "POST /identity.v1.AuthService/GetJwks HTTP/1.1\r\nHost: localhost\r\nOrigin: https://app.example.com\r\n\
         Content-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        frame.len()
    );
    let (status, headers) = http1(server.addr, call, &frame).await;
    assert!(status.contains("200"), "{status} {headers:?}");
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/grpc-web+proto")
    );
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert!(
        header(&headers, "access-control-expose-headers")
            .is_some_and(|h| h.contains("grpc-status"))
    );
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
    ] {
        assert_eq!(header(&headers, name), Some(value), "{name}: {headers:?}");
    }
    assert_eq!(
        header(&headers, "strict-transport-security"),
        None,
        "no HSTS over plaintext"
    );
}
