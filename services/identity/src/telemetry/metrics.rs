//! The service's metrics: one `prometheus-client` registry, rendered as
//! Prometheus text (format 0.0.4) on the admin port and exported as OTLP
//! metrics when a collector is configured.
//!
//! Recording takes no process-wide lock: a family finds an existing series
//! under a shared read lock, counters are atomics, and each histogram series
//! has a lock of its own.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

/// Upper bounds of the latency histogram, in seconds.
pub const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The `Content-Type` of what [`Metrics::render`] writes.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// A counter reading for OTLP export: name, attributes, value.
pub type Sample = (&'static str, Vec<(String, String)>, f64);

type GaugeSource = Box<dyn Fn() -> Vec<(String, f64)> + Send + Sync>;

/// Labels of the RPC metrics. Both are static: the method is one of a fixed
/// set (see `transport::rpc_telemetry::method_label`), never a caller's
/// path, and the code one of gRPC's seventeen.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    method: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabel {
    rpc: &'static str,
}

/// The `event.name` of a security event: one of the fixed vocabulary
/// (`identity_core::events::EventName`), never input.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabel {
    event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableLabel {
    table: &'static str,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // What the lock guards stays consistent even if a holder panicked: a
    // list that is only appended to, and gauge sources.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A [`Family`] whose series can also be read back as values:
/// prometheus-client encodes a family as text but has no iterator over it,
/// and the OTLP export needs the values. A series is listed once, when it
/// first appears, so an RPC that finds its series never takes the list's
/// lock.
#[derive(Debug)]
struct Series<S, M, C = fn() -> M> {
    family: Family<S, M, C>,
    listed: Arc<Mutex<Vec<(S, M)>>>,
}

impl<S, M, C: Clone> Clone for Series<S, M, C> {
    fn clone(&self) -> Self {
        Series {
            family: self.family.clone(),
            listed: Arc::clone(&self.listed),
        }
    }
}

impl<S: Clone + Hash + Eq, M: Default> Default for Series<S, M> {
    fn default() -> Self {
        Series {
            family: Family::default(),
            listed: Arc::default(),
        }
    }
}

impl<S: Clone + Hash + Eq, M: Clone, C: MetricConstructor<M>> Series<S, M, C> {
    fn with_constructor(constructor: C) -> Self {
        Series {
            family: Family::new_with_constructor(constructor),
            listed: Arc::default(),
        }
    }

    /// Records on the series of `labels`, creating it on first use.
    fn record(&self, labels: &S, record: impl FnOnce(&M)) {
        if let Some(metric) = self.family.get(labels) {
            return record(&metric);
        }
        let metric = self.family.get_or_create_owned(labels);
        {
            let mut listed = lock(&self.listed);
            // Two first uses may race to here.
            if !listed.iter().any(|(known, _)| known == labels) {
                listed.push((labels.clone(), metric.clone()));
            }
        }
        record(&metric);
    }

    fn listed(&self) -> Vec<(S, M)> {
        lock(&self.listed).clone()
    }
}

impl<S, M, C> EncodeMetric for Series<S, M, C>
where
    Family<S, M, C>: EncodeMetric,
{
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.family.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.family.metric_type()
    }

    /// Never: a family without series yet still gets its HELP and TYPE
    /// lines, as it always did on this endpoint.
    fn is_empty(&self) -> bool {
        false
    }
}

struct Gauge {
    name: &'static str,
    help: &'static str,
    source: GaugeSource,
}

/// The gauges read at scrape time, encoded after every registered metric.
#[derive(Clone, Default)]
struct Gauges(Arc<Mutex<Vec<Gauge>>>);

impl std::fmt::Debug for Gauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = lock(&self.0).iter().map(|g| g.name).collect();
        f.debug_tuple("Gauges").field(&names).finish()
    }
}

impl Collector for Gauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for gauge in lock(&self.0).iter() {
            let mut metric =
                encoder.encode_descriptor(gauge.name, gauge.help, None, MetricType::Gauge)?;
            for (labels, value) in (gauge.source)() {
                let Some(labels) = parse_labels(&labels) else {
                    tracing::warn!(
                        metric = gauge.name,
                        labels,
                        "gauge labels not in Prometheus form; sample left out"
                    );
                    continue;
                };
                metric.encode_family(&labels)?.encode_gauge(&value)?;
            }
        }
        Ok(())
    }
}

/// Reads labels written in Prometheus form (`state="idle",pool="main"`, or
/// nothing) back into pairs; `None` if they are not in that form.
fn parse_labels(text: &str) -> Option<Vec<(String, String)>> {
    let mut labels = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"")?;
        let name = name.trim();
        let mut chars = name.chars();
        let starts_well = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if !starts_well || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return None;
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()? {
                    (_, 'n') => value.push('\n'),
                    (_, c) => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((name.to_owned(), value));
        rest = after[end + 1..].trim_start();
        if let Some(next) = rest.strip_prefix(',') {
            rest = next.trim_start();
        } else if !rest.is_empty() {
            return None;
        }
    }
    Some(labels)
}

/// Registers `metric` under `name` with `help` as it reads here: the
/// registry ends every help text with a full stop of its own.
fn register(registry: &mut Registry, name: &str, help: &str, metric: impl Metric) {
    registry.register(name, help.strip_suffix('.').unwrap_or(help), metric);
}

fn rpc_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

pub struct Metrics {
    registry: Registry,
    rpc_requests: Series<RpcLabels, Counter>,
    rpc_duration: Series<RpcLabels, Histogram>,
    login_failures: Series<ReasonLabel, Counter>,
    rate_limited: Series<RpcLabel, Counter>,
    security_events: Series<EventLabel, Counter>,
    housekeeping_purged: Series<TableLabel, Counter>,
    pub bcrypt_shed: Counter,
    pub jwks_refetches: Counter,
    pub spans_dropped: Counter,
    pub spans_exported: Counter,
    pub audit_dropped: Counter,
    /// Refusals counted into an aggregated audit row instead of one of their own.
    pub audit_aggregated: Counter,
    gauges: Gauges,
}

impl Default for Metrics {
    fn default() -> Self {
        let metrics = Metrics {
            registry: Registry::default(),
            rpc_requests: Series::default(),
            rpc_duration: Series::with_constructor(rpc_histogram),
            login_failures: Series::default(),
            rate_limited: Series::default(),
            security_events: Series::default(),
            housekeeping_purged: Series::default(),
            bcrypt_shed: Counter::default(),
            jwks_refetches: Counter::default(),
            spans_dropped: Counter::default(),
            spans_exported: Counter::default(),
            audit_dropped: Counter::default(),
            audit_aggregated: Counter::default(),
            gauges: Gauges::default(),
        };
        let mut registry = Registry::default();
        // Counters are registered without `_total`: the encoder appends it.
        register(
            &mut registry,
            "identity_rpc_requests",
            "RPCs served, by method and gRPC status.",
            metrics.rpc_requests.clone(),
        );
        register(
            &mut registry,
            "identity_rpc_duration_seconds",
            "RPC latency, by method and gRPC status.",
            metrics.rpc_duration.clone(),
        );
        register(
            &mut registry,
            "identity_login_failures",
            "Failed logins, by reason.",
            metrics.login_failures.clone(),
        );
        register(
            &mut registry,
            "identity_rate_limited",
            "Calls refused by a rate limit, by RPC.",
            metrics.rate_limited.clone(),
        );
        register(
            &mut registry,
            "identity_security_events",
            "Security events, by event name.",
            metrics.security_events.clone(),
        );
        register(
            &mut registry,
            "identity_housekeeping_purged",
            "Rows deleted by housekeeping, by table.",
            metrics.housekeeping_purged.clone(),
        );
        for (name, help, total) in [
            (
                "identity_bcrypt_shed",
                "Password hashing calls shed because the queue was full.",
                &metrics.bcrypt_shed,
            ),
            (
                "identity_jwks_refetches",
                "Fetches of the external provider's JWKS.",
                &metrics.jwks_refetches,
            ),
            (
                "identity_spans_dropped",
                "Trace spans dropped because the export queue was full or the export failed.",
                &metrics.spans_dropped,
            ),
            (
                "identity_spans_exported",
                "Trace spans exported.",
                &metrics.spans_exported,
            ),
            (
                "identity_audit_dropped",
                "Audit rows dropped because the audit queue was full.",
                &metrics.audit_dropped,
            ),
            (
                "identity_audit_aggregated",
                "Refusals counted into an aggregated audit row (one per address, reason and minute) instead of a row of their own.",
                &metrics.audit_aggregated,
            ),
        ] {
            register(&mut registry, name, help, total.clone());
        }
        registry.register_collector(Box::new(metrics.gauges.clone()));
        Metrics {
            registry,
            ..metrics
        }
    }
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

impl Metrics {
    pub fn record_rpc(&self, method: &'static str, code: i32, elapsed: Duration) {
        let labels = RpcLabels {
            method,
            code: code_name(code),
        };
        self.rpc_requests.record(&labels, |requests| {
            requests.inc();
        });
        self.rpc_duration
            .record(&labels, |latency| latency.observe(elapsed.as_secs_f64()));
    }

    pub fn login_failed(&self, reason: &'static str) {
        self.login_failures
            .record(&ReasonLabel { reason }, |failures| {
                failures.inc();
            });
    }

    pub fn rate_limited(&self, rpc: &'static str) {
        self.rate_limited.record(&RpcLabel { rpc }, |refused| {
            refused.inc();
        });
    }

    /// A security event (`service::events`), by its `event.name`.
    pub fn security_event(&self, event: &'static str) {
        self.security_events
            .record(&EventLabel { event }, |events| {
                events.inc();
            });
    }

    /// Creates the series of each of `events` at 0. A rare event (a
    /// refresh token re-used) would otherwise first appear as a series
    /// already at 1, an increase that `rate()` and `increase()` never see:
    /// an alert on it would miss the first one of every replica.
    pub fn security_events_from_zero(&self, events: impl IntoIterator<Item = &'static str>) {
        for event in events {
            self.security_events.record(&EventLabel { event }, |_| {});
        }
    }

    /// Rows deleted by housekeeping from `table`.
    pub fn purged(&self, table: &'static str, rows: usize) {
        self.housekeeping_purged
            .record(&TableLabel { table }, |purged| {
                purged.inc_by(rows as u64);
            });
    }

    /// A gauge read at scrape time; `source` returns (labels, value) pairs,
    /// labels already in Prometheus form (`state="idle"`) or empty.
    pub fn gauge(&self, name: &'static str, help: &'static str, source: GaugeSource) {
        lock(&self.gauges.0).push(Gauge { name, help, source });
    }

    pub fn snapshot_counters(&self) -> Vec<Sample> {
        let mut out = Vec::new();
        for (labels, requests) in self.rpc_requests.listed() {
            out.push((
                "identity.rpc.requests",
                vec![
                    ("rpc.method".into(), labels.method.into()),
                    ("rpc.grpc.status_code".into(), labels.code.into()),
                ],
                requests.get() as f64,
            ));
        }
        for (labels, failures) in self.login_failures.listed() {
            out.push((
                "identity.login.failures",
                vec![("reason".into(), labels.reason.into())],
                failures.get() as f64,
            ));
        }
        for (labels, refused) in self.rate_limited.listed() {
            out.push((
                "identity.rate_limited",
                vec![("rpc".into(), labels.rpc.into())],
                refused.get() as f64,
            ));
        }
        for (labels, events) in self.security_events.listed() {
            out.push((
                "identity.security.events",
                vec![("event.name".into(), labels.event.into())],
                events.get() as f64,
            ));
        }
        for (labels, purged) in self.housekeeping_purged.listed() {
            out.push((
                "identity.housekeeping.purged",
                vec![("table".into(), labels.table.into())],
                purged.get() as f64,
            ));
        }
        for (name, total) in [
            ("identity.bcrypt.shed", &self.bcrypt_shed),
            ("identity.jwks.refetches", &self.jwks_refetches),
            ("identity.spans.dropped", &self.spans_dropped),
        ] {
            out.push((name, vec![], total.get() as f64));
        }
        out
    }

    /// Prometheus text exposition format 0.0.4 ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::warn!(error = %e, "metrics could not be rendered in full");
        }
        out
    }
}

#[cfg(test)]
mod tests;
