//! The `/.well-known/` listener (IDENTITY_HTTP_LISTEN_ADDR): where it is,
//! and raw HTTP/1.1 exchanges with it, byte for byte as a client (or an
//! attacker) sends them.

use super::{Server, ServerOptions};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

pub const JWKS_PATH: &str = "/.well-known/jwks.json";
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

impl ServerOptions {
    /// The `/.well-known/` listener on an ephemeral 127.0.0.1 port.
    pub fn well_known(self) -> Self {
        self.env("IDENTITY_HTTP_LISTEN_ADDR", "127.0.0.1:0")
    }
}

impl Server {
    /// Where the `/.well-known/` listener listens, from its start-up log.
    pub fn well_known_addr(&self) -> SocketAddr {
        let logs = self.logs();
        let line = logs
            .lines()
            .find(|l| l.contains("serving /.well-known/ (HTTP)"))
            .expect("the /.well-known/ listener logged its address");
        let json: serde_json::Value = serde_json::from_str(line).unwrap();
        json["address"].as_str().unwrap().parse().unwrap()
    }
}

/// An HTTP answer as read off the socket.
#[derive(Debug)]
pub struct HttpAnswer {
    pub status: u16,
    /// Names in lower case, in the order sent.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpAnswer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("JSON body ({e}): {}", self.body))
    }

    /// Parses a whole answer (the server closes after one).
    pub fn parse(raw: &str) -> HttpAnswer {
        let (head, body) = raw
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("an HTTP answer: {raw:?}"));
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("a status line: {raw:?}"));
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        HttpAnswer {
            status,
            headers,
            body: body.to_owned(),
        }
    }
}

/// Sends `raw` as is and reads until the server closes (at most 10 s).
pub async fn exchange(addr: SocketAddr, raw: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(raw).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the server answers and closes within 10 s")
        .expect("reads the answer");
    String::from_utf8_lossy(&answer).into_owned()
}

/// `METHOD path` with `headers` (each `Name: value`) and a Host header.
pub async fn request(addr: SocketAddr, method: &str, path: &str, headers: &[&str]) -> HttpAnswer {
    let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for header in headers {
        raw.push_str(header);
        raw.push_str("\r\n");
    }
    raw.push_str("\r\n");
    HttpAnswer::parse(&exchange(addr, raw.as_bytes()).await)
}

pub async fn get(addr: SocketAddr, path: &str) -> HttpAnswer {
    request(addr, "GET", path, &[]).await
}
