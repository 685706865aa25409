use super::*;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;

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

/// Every family's HELP and TYPE lines, as this endpoint has always
/// written them (dashboards and alerts are built on these names).
const EXPOSED: &str = "\
# HELP identity_rpc_requests_total RPCs served, by method and gRPC status.
# TYPE identity_rpc_requests_total counter
# HELP identity_rpc_duration_seconds RPC latency, by method and gRPC status.
# TYPE identity_rpc_duration_seconds histogram
# HELP identity_login_failures_total Failed logins, by reason.
# TYPE identity_login_failures_total counter
# HELP identity_rate_limited_total Calls refused by a rate limit, by RPC.
# TYPE identity_rate_limited_total counter
# HELP identity_security_events_total Security events, by event name.
# TYPE identity_security_events_total counter
# HELP identity_housekeeping_purged_total Rows deleted by housekeeping, by table.
# TYPE identity_housekeeping_purged_total counter
# HELP identity_bcrypt_shed_total Password hashing calls shed because the queue was full.
# TYPE identity_bcrypt_shed_total counter
# HELP identity_jwks_refetches_total Fetches of the external provider's JWKS.
# TYPE identity_jwks_refetches_total counter
# HELP identity_spans_dropped_total Trace spans dropped because the export queue was full or the export failed.
# TYPE identity_spans_dropped_total counter
# HELP identity_spans_exported_total Trace spans exported.
# TYPE identity_spans_exported_total counter
# HELP identity_audit_dropped_total Audit rows dropped because the audit queue was full.
# TYPE identity_audit_dropped_total counter
# HELP identity_audit_aggregated_total Refusals counted into an aggregated audit row (one per address, reason and minute) instead of a row of their own.
# TYPE identity_audit_aggregated_total counter
# HELP identity_bcrypt_queue_depth Password hashing jobs waiting or running.
# TYPE identity_bcrypt_queue_depth gauge
";

fn descriptors(text: &str) -> String {
    text.lines()
        .filter(|l| l.starts_with("# "))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn every_family_keeps_its_name_type_and_help_before_and_after_its_first_sample() {
    let m = Metrics::default();
    m.gauge(
        "identity_bcrypt_queue_depth",
        "Password hashing jobs waiting or running.",
        Box::new(|| vec![(String::new(), 0.0)]),
    );
    assert_eq!(descriptors(&m.render()), EXPOSED);

    m.record_rpc("identity.v1.AuthService/Login", 0, Duration::from_millis(1));
    m.login_failed("bad_password");
    m.rate_limited("login");
    m.purged("sessions", 1);
    for total in [
        &m.bcrypt_shed,
        &m.jwks_refetches,
        &m.spans_dropped,
        &m.spans_exported,
        &m.audit_dropped,
        &m.audit_aggregated,
    ] {
        total.inc_by(2);
    }
    let text = m.render();
    assert_eq!(descriptors(&text), EXPOSED);
    assert!(!text.contains("_total_total"), "{text}");
    assert!(!text.contains("# EOF"), "{text}");
    for series in [
        "identity_rate_limited_total{rpc=\"login\"} 1",
        "identity_bcrypt_shed_total 2",
        "identity_jwks_refetches_total 2",
        "identity_spans_dropped_total 2",
        "identity_spans_exported_total 2",
        "identity_audit_dropped_total 2",
        "identity_audit_aggregated_total 2",
    ] {
        assert!(text.lines().any(|l| l == series), "{series}: {text}");
    }
}

#[test]
fn the_latency_histogram_has_the_same_buckets_sum_and_count() {
    let m = Metrics::default();
    let method = "identity.v1.AuthService/Refresh";
    m.record_rpc(method, 0, Duration::from_micros(300));
    m.record_rpc(method, 0, Duration::from_millis(700));
    m.record_rpc(method, 0, Duration::from_secs(9));
    let text = m.render();
    let labels = format!("method=\"{method}\",code=\"OK\"");
    let bucket = |le: &str| format!("identity_rpc_duration_seconds_bucket{{{labels},le=\"{le}\"}}");
    let mut expected: Vec<String> = BUCKETS
        .iter()
        .map(|bound| {
            let below = [0.0003, 0.7, 9.0].iter().filter(|v| *v <= bound).count();
            format!("{} {below}", bucket(&bound.to_string()))
        })
        .collect();
    expected.push(format!("{} 3", bucket("+Inf")));
    expected.push(format!("identity_rpc_duration_seconds_count{{{labels}}} 3"));
    let histogram: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.starts_with("identity_rpc_duration_seconds_")
                && !l.starts_with("identity_rpc_duration_seconds_sum")
        })
        .collect();
    assert_eq!(histogram, expected, "{text}");
    let sum: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("identity_rpc_duration_seconds_sum{{{labels}}} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_default();
    assert!((sum - 9.7003).abs() < 1e-9, "{text}");
}

#[test]
fn a_label_value_cannot_break_out_of_its_quotes() {
    let m = Metrics::default();
    m.login_failed("a\"b\\c\nd");
    m.gauge(
        "identity_test_gauge",
        "A gauge.",
        Box::new(|| vec![("state=\"x\\\"y\"".into(), 1.0)]),
    );
    let text = m.render();
    assert!(
        text.contains("identity_login_failures_total{reason=\"a\\\"b\\\\c\\nd\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("identity_test_gauge{state=\"x\\\"y\"} 1"),
        "{text}"
    );
    assert_eq!(text.lines().filter(|l| l.contains("reason=")).count(), 1);
}

#[test]
fn gauges_are_read_at_scrape_time_with_their_labels() {
    let m = Metrics::default();
    let depth = Arc::new(AtomicU64::new(0));
    let read = Arc::clone(&depth);
    m.gauge(
        "identity_db_pool_connections",
        "Database pool connections by state.",
        Box::new(move || {
            vec![
                (
                    "state=\"in_use\"".into(),
                    read.load(Ordering::Relaxed) as f64,
                ),
                ("state=\"idle\"".into(), 4.0),
                ("not labels".into(), 9.0),
            ]
        }),
    );
    let value = |text: &str, series: &str| {
        text.lines().find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .parse::<f64>()
                .ok()
        })
    };
    let text = m.render();
    assert!(text.contains("# TYPE identity_db_pool_connections gauge\n"));
    assert_eq!(
        value(&text, "identity_db_pool_connections{state=\"in_use\"}"),
        Some(0.0)
    );
    assert_eq!(
        value(&text, "identity_db_pool_connections{state=\"idle\"}"),
        Some(4.0)
    );
    assert!(
        !text.lines().any(|l| l.ends_with(" 9.0")),
        "malformed labels are left out: {text}"
    );
    depth.store(3, Ordering::Relaxed);
    let text = m.render();
    assert_eq!(
        value(&text, "identity_db_pool_connections{state=\"in_use\"}"),
        Some(3.0)
    );
}

#[test]
fn labels_in_prometheus_form_are_read_back_or_refused() {
    let pairs = |list: &[(&str, &str)]| {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<Vec<_>>()
    };
    assert_eq!(parse_labels(""), Some(vec![]));
    assert_eq!(
        parse_labels("state=\"idle\""),
        Some(pairs(&[("state", "idle")]))
    );
    assert_eq!(
        parse_labels("a=\"1\", b_2=\"x,\\\"y\\\\\\n\""),
        Some(pairs(&[("a", "1"), ("b_2", "x,\"y\\\n")]))
    );
    for bad in [
        "state",
        "state=idle",
        "state=\"idle",
        "2x=\"1\"",
        "a=\"1\" b=\"2\"",
        "=\"1\"",
    ] {
        assert_eq!(parse_labels(bad), None, "{bad}");
    }
}

#[test]
fn the_otlp_snapshot_reads_every_counter() {
    let m = Metrics::default();
    m.record_rpc("identity.v1.AuthService/Login", 0, Duration::from_millis(1));
    m.record_rpc("identity.v1.AuthService/Login", 0, Duration::from_millis(1));
    m.record_rpc("unknown", 12, Duration::from_millis(1));
    m.login_failed("throttled");
    m.rate_limited("register");
    m.purged("refresh_tokens", 7);
    m.bcrypt_shed.inc();
    m.spans_dropped.inc_by(4);
    let mut samples = m.snapshot_counters();
    samples.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let attrs = |list: &[(&str, &str)]| {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        samples,
        vec![
            ("identity.bcrypt.shed", vec![], 1.0),
            (
                "identity.housekeeping.purged",
                attrs(&[("table", "refresh_tokens")]),
                7.0
            ),
            ("identity.jwks.refetches", vec![], 0.0),
            (
                "identity.login.failures",
                attrs(&[("reason", "throttled")]),
                1.0
            ),
            ("identity.rate_limited", attrs(&[("rpc", "register")]), 1.0),
            (
                "identity.rpc.requests",
                attrs(&[
                    ("rpc.method", "identity.v1.AuthService/Login"),
                    ("rpc.grpc.status_code", "OK")
                ]),
                2.0
            ),
            (
                "identity.rpc.requests",
                attrs(&[
                    ("rpc.method", "unknown"),
                    ("rpc.grpc.status_code", "UNIMPLEMENTED")
                ]),
                1.0
            ),
            ("identity.spans.dropped", vec![], 4.0),
        ]
    );
}

#[test]
fn concurrent_rpcs_are_all_counted() {
    let m = Metrics::default();
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for i in 0..1000 {
                    m.record_rpc("identity.v1.AuthService/Login", i % 2, Duration::ZERO);
                }
            });
        }
    });
    let text = m.render();
    for code in ["OK", "CANCELLED"] {
        let series = format!(
            "identity_rpc_requests_total{{method=\"identity.v1.AuthService/Login\",code=\"{code}\"}} 2000"
        );
        assert!(text.lines().any(|l| l == series), "{series}: {text}");
    }
    let listed = m.snapshot_counters();
    assert_eq!(
        listed
            .iter()
            .filter(|s| s.0 == "identity.rpc.requests")
            .count(),
        2,
        "each series listed once: {listed:?}"
    );
}

#[test]
fn security_events_can_start_at_zero_before_their_first_occurrence() {
    let m = Metrics::default();
    let series = "identity_security_events_total{event=\"identity.refresh.reused\"}";
    assert_eq!(m.render().lines().find(|l| l.starts_with(series)), None);
    m.security_events_from_zero(["identity.refresh.reused", "identity.login.failed"]);
    let text = m.render();
    assert!(text.lines().any(|l| l == format!("{series} 0")), "{text}");
    m.security_event("identity.refresh.reused");
    m.security_events_from_zero(["identity.refresh.reused"]);
    let text = m.render();
    assert!(text.lines().any(|l| l == format!("{series} 1")), "{text}");
    assert!(
        text.lines()
            .any(|l| l == "identity_security_events_total{event=\"identity.login.failed\"} 0"),
        "{text}"
    );
}
