//! The service's metrics: one registry, rendered as Prometheus text on the
//! admin port and exported as OTLP metrics when a collector is configured.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Upper bounds of the latency histogram, in seconds.
pub const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// A counter reading for OTLP export: name, attributes, value.
pub type Sample = (&'static str, Vec<(String, String)>, f64);

type GaugeSource = Box<dyn Fn() -> Vec<(String, f64)> + Send + Sync>;

#[derive(Default)]
pub struct Metrics {
    /// By method label — static, so only a fixed set (see
    /// `rpc::method_label`), never a caller's path — and status code.
    rpc: Mutex<BTreeMap<(&'static str, &'static str), Histogram>>,
    login_failures: Mutex<BTreeMap<&'static str, u64>>,
    rate_limited: Mutex<BTreeMap<&'static str, u64>>,
    housekeeping_purged: Mutex<BTreeMap<&'static str, u64>>,
    pub bcrypt_shed: AtomicU64,
    pub jwks_refetches: AtomicU64,
    pub spans_dropped: AtomicU64,
    pub spans_exported: AtomicU64,
    pub audit_dropped: AtomicU64,
    /// Refusals counted into an aggregated audit row instead of one of their own.
    pub audit_aggregated: AtomicU64,
    gauges: Mutex<Vec<(&'static str, &'static str, GaugeSource)>>,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// The process-wide registry.
pub fn metrics() -> &'static Metrics {
    METRICS.get_or_init(Metrics::default)
}

/// gRPC status codes by number, as Prometheus labels.
pub fn code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    pub fn record_rpc(&self, method: &'static str, code: i32, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let mut rpc = self.rpc.lock().expect("metrics lock");
        let h = rpc.entry((method, code_name(code))).or_default();
        h.count += 1;
        h.sum += seconds;
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                h.counts[i] += 1;
            }
        }
    }

    pub fn login_failed(&self, reason: &'static str) {
        *self
            .login_failures
            .lock()
            .expect("metrics lock")
            .entry(reason)
            .or_default() += 1;
    }

    pub fn rate_limited(&self, rpc: &'static str) {
        *self
            .rate_limited
            .lock()
            .expect("metrics lock")
            .entry(rpc)
            .or_default() += 1;
    }

    /// Rows deleted by housekeeping from `table`.
    pub fn purged(&self, table: &'static str, rows: usize) {
        *self
            .housekeeping_purged
            .lock()
            .expect("metrics lock")
            .entry(table)
            .or_default() += rows as u64;
    }

    /// A gauge read at scrape time; `source` returns (labels, value) pairs,
    /// labels already in Prometheus form (`state="idle"`) or empty.
    pub fn gauge(&self, name: &'static str, help: &'static str, source: GaugeSource) {
        self.gauges
            .lock()
            .expect("metrics lock")
            .push((name, help, source));
    }

    pub fn snapshot_counters(&self) -> Vec<Sample> {
        let mut out = Vec::new();
        for ((method, code), h) in self.rpc.lock().expect("metrics lock").iter() {
            out.push((
                "identity.rpc.requests",
                vec![
                    ("rpc.method".into(), (*method).into()),
                    ("rpc.grpc.status_code".into(), (*code).into()),
                ],
                h.count as f64,
            ));
        }
        for (reason, n) in self.login_failures.lock().expect("metrics lock").iter() {
            out.push((
                "identity.login.failures",
                vec![("reason".into(), (*reason).into())],
                *n as f64,
            ));
        }
        for (rpc, n) in self.rate_limited.lock().expect("metrics lock").iter() {
            out.push((
                "identity.rate_limited",
                vec![("rpc".into(), (*rpc).into())],
                *n as f64,
            ));
        }
        for (table, n) in self
            .housekeeping_purged
            .lock()
            .expect("metrics lock")
            .iter()
        {
            out.push((
                "identity.housekeeping.purged",
                vec![("table".into(), (*table).into())],
                *n as f64,
            ));
        }
        out.push((
            "identity.bcrypt.shed",
            vec![],
            self.bcrypt_shed.load(Ordering::Relaxed) as f64,
        ));
        out.push((
            "identity.jwks.refetches",
            vec![],
            self.jwks_refetches.load(Ordering::Relaxed) as f64,
        ));
        out.push((
            "identity.spans.dropped",
            vec![],
            self.spans_dropped.load(Ordering::Relaxed) as f64,
        ));
        out
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP identity_rpc_requests_total RPCs served, by method and gRPC status.\n",
        );
        out.push_str("# TYPE identity_rpc_requests_total counter\n");
        let rpc = self.rpc.lock().expect("metrics lock").clone();
        for ((method, code), h) in &rpc {
            let _ = writeln!(
                out,
                "identity_rpc_requests_total{{method=\"{}\",code=\"{code}\"}} {}",
                escape(method),
                h.count
            );
        }
        out.push_str(
            "# HELP identity_rpc_duration_seconds RPC latency, by method and gRPC status.\n",
        );
        out.push_str("# TYPE identity_rpc_duration_seconds histogram\n");
        for ((method, code), h) in &rpc {
            let labels = format!("method=\"{}\",code=\"{code}\"", escape(method));
            for (i, bound) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "identity_rpc_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "identity_rpc_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "identity_rpc_duration_seconds_sum{{{labels}}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "identity_rpc_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }
        out.push_str("# HELP identity_login_failures_total Failed logins, by reason.\n");
        out.push_str("# TYPE identity_login_failures_total counter\n");
        for (reason, n) in self.login_failures.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                out,
                "identity_login_failures_total{{reason=\"{reason}\"}} {n}"
            );
        }
        out.push_str("# HELP identity_rate_limited_total Calls refused by a rate limit, by RPC.\n");
        out.push_str("# TYPE identity_rate_limited_total counter\n");
        for (rpc, n) in self.rate_limited.lock().expect("metrics lock").iter() {
            let _ = writeln!(out, "identity_rate_limited_total{{rpc=\"{rpc}\"}} {n}");
        }
        out.push_str(
            "# HELP identity_housekeeping_purged_total Rows deleted by housekeeping, by table.\n",
        );
        out.push_str("# TYPE identity_housekeeping_purged_total counter\n");
        for (table, n) in self
            .housekeeping_purged
            .lock()
            .expect("metrics lock")
            .iter()
        {
            let _ = writeln!(
                out,
                "identity_housekeeping_purged_total{{table=\"{table}\"}} {n}"
            );
        }
        for (name, help, value) in [
            (
                "identity_bcrypt_shed_total",
                "Password hashing calls shed because the queue was full.",
                &self.bcrypt_shed,
            ),
            (
                "identity_jwks_refetches_total",
                "Fetches of the external provider's JWKS.",
                &self.jwks_refetches,
            ),
            (
                "identity_spans_dropped_total",
                "Trace spans dropped because the export queue was full or the export failed.",
                &self.spans_dropped,
            ),
            (
                "identity_spans_exported_total",
                "Trace spans exported.",
                &self.spans_exported,
            ),
            (
                "identity_audit_dropped_total",
                "Audit rows dropped because the audit queue was full.",
                &self.audit_dropped,
            ),
            (
                "identity_audit_aggregated_total",
                "Refusals counted into an aggregated audit row (one per address, reason and minute) instead of a row of their own.",
                &self.audit_aggregated,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        for (name, help, source) in self.gauges.lock().expect("metrics lock").iter() {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for (labels, value) in source() {
                if labels.is_empty() {
                    let _ = writeln!(out, "{name} {value}");
                } else {
                    let _ = writeln!(out, "{name}{{{labels}}} {value}");
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms_in_prometheus_text() {
        let m = Metrics::default();
        m.record_rpc(
            "identity.v1.AuthService/Login",
            16,
            Duration::from_millis(3),
        );
        m.login_failed("bad_password");
        m.purged("sessions", 2);
        m.purged("sessions", 3);
        let text = m.render();
        assert!(text.contains("identity_housekeeping_purged_total{table=\"sessions\"} 5"));
        assert!(text.contains("identity_rpc_requests_total{method=\"identity.v1.AuthService/Login\",code=\"UNAUTHENTICATED\"} 1"));
        assert!(text.contains("le=\"0.005\"} 1"));
        assert!(text.contains("le=\"0.0025\"} 0"));
        assert!(text.contains("identity_login_failures_total{reason=\"bad_password\"} 1"));
    }
}
