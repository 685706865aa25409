//! The Prometheus endpoint (IDENTITY_METRICS_ADDR), scraped over raw HTTP.

use super::Server;

/// Where the server serves /metrics, from its start-up log.
pub fn metrics_addr(server: &Server) -> std::net::SocketAddr {
    let logs = server.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("serving metrics on /metrics"))
        .expect("metrics listener logged");
    let json: serde_json::Value = serde_json::from_str(line).unwrap();
    json["address"].as_str().unwrap().parse().unwrap()
}

/// One GET /metrics: the whole HTTP answer.
pub async fn scrape(addr: std::net::SocketAddr) -> String {
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

/// The value of exactly `series` (name and labels) in `text`.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
