//! The admin HTTP port: `GET /metrics` (Prometheus text). Separate from the
//! gRPC port so that network policy can keep it inside the cluster.

use super::metrics::{CONTENT_TYPE, metrics};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// Serves until the task is aborted; one short request per connection.
pub async fn serve(listener: TcpListener) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        tokio::spawn(async move {
            let mut buffer = [0u8; 2048];
            let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await;
            let Ok(Ok(n)) = read else { return };
            let request = String::from_utf8_lossy(&buffer[..n]);
            let line = request.lines().next().unwrap_or_default();
            let (status, content_type, body) =
                if line.starts_with("GET /metrics ") || line == "GET /metrics" {
                    ("200 OK", CONTENT_TYPE, metrics().render())
                } else {
                    (
                        "404 Not Found",
                        "text/plain; charset=utf-8",
                        "not found\n".to_owned(),
                    )
                };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n\
                 X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tokio::time::timeout(
                Duration::from_secs(5),
                stream.write_all(response.as_bytes()),
            )
            .await;
        });
    }
}

pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
