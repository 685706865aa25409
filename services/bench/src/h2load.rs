//! Fixed-rate unary gRPC windows driven by h2load (Debian `nghttp2-client`).
//!
//! On two shared cores a tonic client costs more CPU than the server it
//! drives, and it measures its own scheduling delays along with the
//! server's. h2load is a single-threaded C generator at a fraction of that
//! cost, so its figures are the server's. It knows nothing of gRPC: the
//! body is the gRPC frame of one request, and an HTTP 200 is counted as an
//! answer whatever its `grpc-status` (callers check one call first).

use crate::stats::{Recorder, Summary};
use anyhow::{Context as _, bail};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Whether `h2load` is on the PATH.
pub fn available() -> bool {
    Command::new("h2load")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The gRPC frame of `message`: not compressed, big-endian length, bytes.
pub fn frame(message: &impl prost::Message) -> Vec<u8> {
    let body = message.encode_to_vec();
    let mut frame = Vec::with_capacity(body.len() + 5);
    frame.push(0);
    frame.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// One window: `rate` calls a second in total over `connections`, at most
/// `streams` in flight on each.
pub struct Window<'a> {
    /// `http://127.0.0.1:PORT/package.Service/Method`
    pub url: &'a str,
    pub frame: &'a [u8],
    pub connections: usize,
    pub streams: usize,
    pub rate: f64,
    pub warmup: Duration,
    pub duration: Duration,
}

/// Runs one window (blocking: call it from `spawn_blocking`); `dir` holds
/// the request body and h2load's per-request log.
pub fn run(window: &Window<'_>, dir: &Path) -> anyhow::Result<Summary> {
    let body = dir.join("h2load-frame.bin");
    let log = dir.join("h2load.log");
    std::fs::write(&body, window.frame)?;
    let _ = std::fs::remove_file(&log);
    let connections = window.connections.max(1);
    let per_client = (window.rate / connections as f64).round().max(1.0);
    let started = SystemTime::now();
    let output = Command::new("h2load")
        .args(["-c", &connections.to_string()])
        .args(["-m", &window.streams.max(1).to_string()])
        .arg(format!("--rps={per_client}"))
        .arg(format!("--warm-up-time={}ms", window.warmup.as_millis()))
        .arg(format!("--duration={}ms", window.duration.as_millis()))
        .arg("-d")
        .arg(&body)
        .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
        .arg("--log-file")
        .arg(&log)
        .arg(window.url)
        .output()
        .context("h2load runs")?;
    if !output.status.success() {
        bail!(
            "h2load failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    // Only calls started inside the window count, whatever h2load logs of
    // its warm-up.
    let from_us = (started + window.warmup)
        .duration_since(UNIX_EPOCH)?
        .as_micros();
    let mut rec = Recorder::default();
    for line in std::fs::read_to_string(&log)?.lines() {
        let mut columns = line.split('\t');
        let (Some(start), Some(status), Some(took)) =
            (columns.next(), columns.next(), columns.next())
        else {
            continue;
        };
        let (Ok(start), Ok(took)) = (start.parse::<u128>(), took.parse::<u64>()) else {
            continue;
        };
        if start < from_us {
            continue;
        }
        if status == "200" {
            rec.ok(Duration::from_micros(took));
        } else {
            rec.error(&format!("http_{status}"));
        }
    }
    Ok(rec.summarize(window.duration))
}
