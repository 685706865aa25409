//! Hostile clients of the listener: oversized heads, too many headers,
//! too many connections, and a client that never finishes its headers.

use crate::support::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_heads_and_too_many_headers_are_refused_with_431() {
    let db = TestDb::new(Backend::Sqlite);
    let server = Server::start_with_options(&db, ServerOptions::default().well_known());
    let addr = server.well_known_addr();

    let long = format!("X-Filler: {}", "a".repeat(16 * 1024));
    let answer = request(addr, "GET", JWKS_PATH, &[&long]).await;
    assert_eq!(answer.status, 431, "a 16 KiB header: {:?}", answer.headers);
    let answer = request(
        addr,
        "GET",
        &format!("{JWKS_PATH}?{}", "a".repeat(16 * 1024)),
        &[],
    )
    .await;
    assert_eq!(answer.status, 431, "a 16 KiB request line");

    let many: Vec<String> = (0..40).map(|i| format!("X-Filler-{i}: a")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let answer = request(addr, "GET", JWKS_PATH, &many).await;
    assert_eq!(answer.status, 431, "40 headers");

    let few: Vec<String> = (0..20).map(|i| format!("X-Filler-{i}: a")).collect();
    let few: Vec<&str> = few.iter().map(String::as_str).collect();
    assert_eq!(
        request(addr, "GET", JWKS_PATH, &few).await.status,
        200,
        "a head within the bounds is served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_answered_503_and_the_listener_recovers() {
    let db = TestDb::new(Backend::Sqlite);
    let server = Server::start_with_options(
        &db,
        ServerOptions::default()
            .well_known()
            .env("IDENTITY_HTTP_MAX_CONNECTIONS", "4"),
    );
    let addr = server.well_known_addr();

    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    // The listener accepts in order: the held ones hold every permit.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..3 {
        let mut extra = TcpStream::connect(addr).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(3), extra.read_to_end(&mut answer))
            .await
            .expect("refused at once, not queued")
            .unwrap();
        let answer = HttpAnswer::parse(&String::from_utf8_lossy(&answer));
        assert_eq!(answer.status, 503, "{answer:?}");
        assert_eq!(answer.header("retry-after"), Some("1"));
    }
    // A held connection still gets its answer, and freeing them frees
    // their permits.
    held[0]
        .write_all(format!("GET {JWKS_PATH} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    held[0].read_to_end(&mut answer).await.unwrap();
    assert_eq!(
        HttpAnswer::parse(&String::from_utf8_lossy(&answer)).status,
        200
    );
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        get(addr, JWKS_PATH).await.status,
        200,
        "the cap is released"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_that_never_finishes_its_headers_is_disconnected() {
    let db = TestDb::new(Backend::Sqlite);
    let server = Server::start_with_options(
        &db,
        ServerOptions::default()
            .well_known()
            .env("IDENTITY_HTTP_MAX_CONNECTIONS", "2"),
    );
    let addr = server.well_known_addr();

    // Slowloris: a header byte every 200 ms, forever. And a client that
    // connects and says nothing.
    let started = Instant::now();
    let mut slow = TcpStream::connect(addr).await.unwrap();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    slow.write_all(format!("GET {JWKS_PATH} HTTP/1.1\r\nHost: x\r\nX-Slow: ").as_bytes())
        .await
        .unwrap();
    let cut = loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if slow.write_all(b"a").await.is_err() {
            break started.elapsed();
        }
        let mut probe = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(1), slow.read(&mut probe)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break started.elapsed(),
            _ => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "a client dribbling its headers is still connected after 15 s"
        );
    };
    assert!(
        cut >= Duration::from_secs(4),
        "cut off after the header timeout (5 s), not before: {cut:?}"
    );
    let mut rest = Vec::new();
    let silent_end =
        tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut rest)).await;
    assert!(silent_end.is_ok(), "the silent client is disconnected too");
    // Both permits are free again.
    assert_eq!(get(addr, JWKS_PATH).await.status, 200);
    assert_eq!(get(addr, DISCOVERY_PATH).await.status, 200);
}

/// A GET of `path` from a socket bound to `from` (any 127.0.0.0/8 address
/// works on Linux loopback).
async fn get_from(from: std::net::Ipv4Addr, addr: std::net::SocketAddr, path: &str) -> HttpAnswer {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((from, 0).into()).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("answered within 5 s")
        .unwrap();
    HttpAnswer::parse(&String::from_utf8_lossy(&answer))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_holding_idle_sockets_cannot_take_every_slot() {
    // The default caps: the attack needs nothing but one address and
    // more idle sockets than the listener serves at once.
    let db = TestDb::new(Backend::Sqlite);
    let server = Server::start_with_options(&db, ServerOptions::default().well_known());
    let addr = server.well_known_addr();

    let mut held = Vec::new();
    for _ in 0..300 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Everyone else is still served, well within the 5 s the idle
    // sockets may live.
    let started = Instant::now();
    let other = get_from(std::net::Ipv4Addr::new(127, 0, 0, 2), addr, JWKS_PATH).await;
    assert_eq!(other.status, 200, "another address starved: {other:?}");
    assert!(other.json()["keys"].is_array());
    assert!(started.elapsed() < Duration::from_secs(2));
    // The flooding address itself is turned away at once.
    let mut extra = TcpStream::connect(addr).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), extra.read_to_end(&mut answer))
        .await
        .expect("refused at once, not queued")
        .unwrap();
    assert_eq!(
        HttpAnswer::parse(&String::from_utf8_lossy(&answer)).status,
        503
    );
    drop(held);
}
