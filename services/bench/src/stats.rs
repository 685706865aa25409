//! Latency samples and their summary.

use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// What one worker saw inside the measurement window.
#[derive(Debug, Default)]
pub struct Recorder {
    /// Latencies of successful calls, in microseconds.
    latencies_us: Vec<u32>,
    errors: BTreeMap<String, u64>,
}

impl Recorder {
    pub fn ok(&mut self, latency: Duration) {
        self.latencies_us
            .push(latency.as_micros().min(u32::MAX as u128) as u32);
    }

    pub fn error(&mut self, label: &str) {
        self.errors_n(label, 1);
    }

    /// `n` failures under `label` at once (counted by the server, not seen
    /// one by one).
    pub fn errors_n(&mut self, label: &str, n: u64) {
        if n > 0 {
            *self.errors.entry(label.to_owned()).or_default() += n;
        }
    }

    /// Successful calls recorded.
    pub fn ok_count(&self) -> usize {
        self.latencies_us.len()
    }

    /// Failed calls recorded, whatever their label.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn merge(&mut self, other: Recorder) {
        self.latencies_us.extend(other.latencies_us);
        for (label, n) in other.errors {
            *self.errors.entry(label).or_default() += n;
        }
    }

    pub fn summarize(mut self, window: Duration) -> Summary {
        self.latencies_us.sort_unstable();
        let ok = self.latencies_us.len() as u64;
        let errors: u64 = self.errors.values().sum();
        let pct = |p: f64| -> f64 {
            if self.latencies_us.is_empty() {
                return 0.0;
            }
            // Nearest rank.
            let rank = ((p / 100.0) * self.latencies_us.len() as f64).ceil() as usize;
            self.latencies_us[rank.clamp(1, self.latencies_us.len()) - 1] as f64 / 1000.0
        };
        let mean = if ok == 0 {
            0.0
        } else {
            self.latencies_us.iter().map(|&l| l as f64).sum::<f64>() / ok as f64 / 1000.0
        };
        Summary {
            requests: ok + errors,
            ok,
            errors: self.errors,
            window_s: window.as_secs_f64(),
            rps: ok as f64 / window.as_secs_f64().max(1e-9),
            latency_ms: Latency {
                p50: pct(50.0),
                p90: pct(90.0),
                p99: pct(99.0),
                p999: pct(99.9),
                max: pct(100.0),
                mean,
            },
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Calls completed in the window (successful + failed).
    pub requests: u64,
    pub ok: u64,
    /// Failed calls by gRPC status (or `wrong_answer`).
    pub errors: BTreeMap<String, u64>,
    pub window_s: f64,
    /// Successful calls per second.
    pub rps: f64,
    pub latency_ms: Latency,
}

impl Summary {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Percentile (nearest rank) of durations, in milliseconds.
pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut r = Recorder::default();
        for ms in 1..=100 {
            r.ok(Duration::from_millis(ms));
        }
        r.error("Unavailable");
        let s = r.summarize(Duration::from_secs(2));
        assert_eq!(s.requests, 101);
        assert_eq!(s.rps, 50.0);
        assert_eq!(s.latency_ms.p50, 50.0);
        assert_eq!(s.latency_ms.p99, 99.0);
        assert_eq!(s.latency_ms.max, 100.0);
        assert_eq!(s.error_count(), 1);
        let d: Vec<Duration> = (1..=10).map(Duration::from_millis).collect();
        assert_eq!(percentile_ms(&d, 50.0), 5.0);
        assert_eq!(percentile_ms(&d, 99.0), 10.0);
    }
}
