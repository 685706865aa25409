//! Unary gRPC windows driven by h2load (Debian `nghttp2-client`): closed
//! loop (N connections × M streams, a fixed number of calls) for the
//! throughput figures of record, or a fixed rate over a fixed time for the
//! flood comparison.
//!
//! On two shared cores a tonic client costs more CPU than the server it
//! drives, and it measures its own scheduling delays along with the
//! server's. h2load is a single-threaded C generator at a fraction of that
//! cost, so its figures are the server's. It knows nothing of gRPC: the
//! body is the gRPC frame of one request (the same for every call), and an
//! HTTP 200 is counted as an answer whatever its `grpc-status`: callers
//! check the server's own count of non-OK answers around the window
//! (`scrape::Answers`, or the echo server's `Stats`).

use crate::stats::Recorder;
use anyhow::{Context as _, bail};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

/// One window over `connections`, at most `streams` in flight on each.
pub struct Window<'a> {
    /// `http://127.0.0.1:PORT/package.Service/Method`
    pub url: &'a str,
    /// The gRPC request sent with every call (ignored under `http1`).
    pub frame: &'a [u8],
    /// A plain HTTP/1.1 GET of `url` (`h2load --h1`, no body, no gRPC
    /// headers) instead of a gRPC call over HTTP/2; `streams` is then the
    /// number of requests pipelined on each connection.
    pub http1: bool,
    /// Extra request headers (`name: value`), e.g. `authorization: Bearer …`.
    pub headers: &'a [String],
    pub connections: usize,
    pub streams: usize,
    pub load: Load,
    /// The server's pid, to report its CPU share over the window as well.
    pub server_pid: Option<u32>,
}

/// How h2load paces its calls.
#[derive(Debug, Clone, Copy)]
pub enum Load {
    /// `rate` calls a second in total, for `duration` after `warmup`. The
    /// calls in flight when it stops are abandoned (the server answers them
    /// to a closed stream, and counts those answers as failures).
    Rate {
        rate: f64,
        warmup: Duration,
        duration: Duration,
    },
    /// Closed loop: each stream sends its next call when the last one
    /// answers, until `requests` calls have been answered. h2load waits for
    /// every call, so the server's count of its answers matches h2load's
    /// exactly; the window is from the first call sent to the last answer.
    Calls { requests: u64 },
}

/// What one h2load window measured.
#[derive(Debug)]
pub struct Run {
    /// The calls counted in the window (`summarize` with `elapsed`).
    pub recorder: Recorder,
    /// The window: the fixed duration, or from the first call sent to the
    /// last answer.
    pub elapsed: Duration,
    /// HTTP 2xx answers h2load counted over its whole run (warm-up
    /// included): every one of them must be an OK answer of the server.
    pub succeeded: u64,
    /// h2load's own CPU (user + system) over the window, as % of all the
    /// machine's cores.
    pub generator_cpu_pct: Option<f64>,
    /// The server's, the same way.
    pub server_cpu_pct: Option<f64>,
}

/// Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK`; 100 on
/// every Linux this runs on, the fallback).
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of `pid` so far, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count from after it.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of proc(5); `rest` starts at field 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU use of processes between two instants, as % of the machine.
pub struct CpuMeter {
    ticks_per_s: f64,
    cores: f64,
}

impl CpuMeter {
    pub fn new() -> CpuMeter {
        CpuMeter {
            ticks_per_s: clock_ticks(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()) as f64,
        }
    }

    pub fn share(&self, ticks: u64, wall: Duration) -> f64 {
        ticks as f64 / self.ticks_per_s / wall.as_secs_f64().max(1e-9) / self.cores * 100.0
    }
}

impl Default for CpuMeter {
    fn default() -> Self {
        CpuMeter::new()
    }
}

/// `N succeeded` from h2load's `requests:` line.
fn succeeded(stdout: &str) -> Option<u64> {
    let line = stdout.lines().find(|l| l.starts_with("requests:"))?;
    line.split(',')
        .find_map(|part| part.trim().strip_suffix(" succeeded")?.trim().parse().ok())
}

/// Runs one window (blocking: call it from `spawn_blocking`); `dir` holds
/// the request body and h2load's per-request log.
pub fn run(window: &Window<'_>, dir: &Path) -> anyhow::Result<Run> {
    let body = dir.join("h2load-frame.bin");
    let log = dir.join("h2load.log");
    std::fs::write(&body, window.frame)?;
    let _ = std::fs::remove_file(&log);
    let connections = window.connections.max(1);
    let mut command = Command::new("h2load");
    command
        .args(["-c", &connections.to_string()])
        .args(["-m", &window.streams.max(1).to_string()]);
    // The calls a closed-loop window asks for, each of which must answer.
    let mut asked = None;
    match window.load {
        Load::Rate {
            rate,
            warmup,
            duration,
        } => {
            let per_client = (rate / connections as f64).round().max(1.0);
            command
                .arg(format!("--rps={per_client}"))
                .arg(format!("--warm-up-time={}ms", warmup.as_millis()))
                .arg(format!("--duration={}ms", duration.as_millis()));
        }
        Load::Calls { requests } => {
            // h2load wants at least one call per connection.
            let requests = requests.max((connections * window.streams.max(1)) as u64);
            asked = Some(requests);
            command.args(["-n", &requests.to_string()]);
        }
    }
    if window.http1 {
        command.arg("--h1");
    } else {
        command.arg("-d").arg(&body).args([
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
        ]);
    }
    for h in window.headers {
        command.args(["-H", h]);
    }
    let started = SystemTime::now();
    let clock = Instant::now();
    let child = command
        .arg("--log-file")
        .arg(&log)
        .arg(window.url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("h2load runs")?;
    // CPU of h2load and of the server over the window: from its start to
    // just before its end, or (a fixed number of calls) from h2load's start
    // to the last reading before it exits.
    let meter = CpuMeter::new();
    let pids = [Some(child.id()), window.server_pid];
    let read = || (Instant::now(), pids.map(|p| p.and_then(cpu_ticks)));
    let mut child = child;
    let (first, last) = match window.load {
        Load::Rate {
            warmup, duration, ..
        } => {
            let at = |offset: Duration| {
                std::thread::sleep((clock + offset).saturating_duration_since(Instant::now()));
                read()
            };
            (
                at(warmup),
                at(warmup + duration.saturating_sub(Duration::from_millis(50))),
            )
        }
        Load::Calls { .. } => {
            let first = read();
            let mut last = first;
            while child.try_wait()?.is_none() {
                last = read();
                std::thread::sleep(Duration::from_millis(20));
            }
            (first, last)
        }
    };
    let share = |i: usize| match (first.1[i], last.1[i]) {
        (Some(a), Some(b)) if b >= a && last.0 > first.0 => {
            Some(meter.share(b - a, last.0 - first.0))
        }
        _ => None,
    };
    let (generator_cpu_pct, server_cpu_pct) = (share(0), share(1));
    let output = child.wait_with_output().context("h2load runs")?;
    if !output.status.success() {
        bail!(
            "h2load failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let (from_us, until_us) = match window.load {
        Load::Rate {
            warmup, duration, ..
        } => {
            let from = (started + warmup).duration_since(UNIX_EPOCH)?.as_micros();
            (from, from + duration.as_micros())
        }
        Load::Calls { .. } => (0, u128::MAX),
    };
    let mut rec = Recorder::default();
    let (mut first_start, mut last_done) = (u128::MAX, 0u128);
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
        // Fixed rate: the calls started inside the window. A fixed number
        // of calls: all of them.
        if start < from_us || start >= until_us {
            continue;
        }
        first_start = first_start.min(start);
        last_done = last_done.max(start + u128::from(took));
        if status == "200" {
            rec.ok(Duration::from_micros(took));
        } else {
            rec.error(&format!("http_{status}"));
        }
    }
    // A call h2load gave up on (connection error, timeout) leaves no line
    // in its log: booked as unanswered, so that a window without a server
    // count to check against (plain HTTP) still sees it.
    if let Some(asked) = asked {
        let seen = (rec.ok_count() as u64).saturating_add(rec.error_count());
        rec.errors_n("not_answered", asked.saturating_sub(seen));
    }
    let elapsed = match window.load {
        Load::Rate { duration, .. } => duration,
        Load::Calls { .. } => Duration::from_micros(
            u64::try_from(last_done.saturating_sub(first_start)).unwrap_or(u64::MAX),
        )
        .max(Duration::from_millis(1)),
    };
    Ok(Run {
        recorder: rec,
        elapsed,
        succeeded: succeeded(&stdout).unwrap_or(0),
        generator_cpu_pct,
        server_cpu_pct,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_successes_of_the_requests_line() {
        let out = "finished in 2.00s, 100.00 req/s, 1KB/s\n\
                   requests: 210 total, 210 started, 200 done, 198 succeeded, 2 failed, 0 errored, 0 timeout\n";
        assert_eq!(succeeded(out), Some(198));
        assert_eq!(succeeded("nothing"), None);
    }

    #[test]
    fn reads_this_process_cpu_ticks() {
        assert!(cpu_ticks(std::process::id()).is_some());
        let m = CpuMeter {
            ticks_per_s: 100.0,
            cores: 2.0,
        };
        assert_eq!(m.share(100, Duration::from_secs(1)), 50.0);
    }
}
