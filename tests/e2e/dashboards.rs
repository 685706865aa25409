//! The chart's Grafana dashboard and Prometheus alerts read only what the
//! service exports: every metric (and every label it matches on) named in
//! their PromQL is looked up in a live `/metrics` scrape of the real server.
//!
//! The expressions are read from the chart's own files, as shipped:
//! `helm/identity/dashboards/identity.json` and the `expr: |` blocks of
//! `helm/identity/templates/prometheusrule.yaml` (Helm actions stand in as a
//! number). `tests/helm/test_dashboards.py` checks that Helm renders no
//! metric these files do not show, and that every `event` they match on is
//! an event the service emits.
//!
//! The scrape is of a server on PostgreSQL, where the revocation listener
//! and its series exist; on SQLite they do not, and the alert on them reads
//! nothing. How the listener's series follow its connection:
//! `revocation/listener.rs`.

use crate::support::{Backend, PASSWORD, Server, ServerOptions, TestDb, email, register};
use crate::support::{MAX_STALENESS, eventually, metric, metrics_addr, scrape};
use identity::proto::v1::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use tonic::Code;

/// Labels Prometheus adds to every scraped series from its target (the
/// ServiceMonitor's pod and service), which no scrape of the process shows.
const TARGET_LABELS: [&str; 7] = [
    "namespace",
    "pod",
    "job",
    "instance",
    "service",
    "container",
    "endpoint",
];

/// One vector selector of an expression: a metric and the labels it
/// matches on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Selector {
    metric: String,
    labels: BTreeSet<String>,
}

fn chart() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../helm/identity")
}

/// Replaces each Helm action (`{{ ... }}`) by `0`: in a label value it stays
/// a string, in a comparison a number.
fn without_helm_actions(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find("}}")
            .map(|e| start + e + 2)
            .expect("a Helm action closes");
        out.push('0');
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The `expr: |` blocks of a rules template, one expression each.
fn rule_exprs(template: &str) -> Vec<String> {
    let mut exprs = Vec::new();
    let mut lines = template.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        let Some(after) = trimmed.strip_prefix("expr:") else {
            continue;
        };
        assert!(
            matches!(after.trim(), "|" | "|-"),
            "write each expr as a `|` block, as the test reads it: {line}"
        );
        let indent = line.len() - trimmed.len();
        let mut block = Vec::new();
        while let Some(next) = lines.peek() {
            let next_indent = next.len() - next.trim_start().len();
            if next.trim().is_empty() || next_indent <= indent {
                break;
            }
            block.push(next.trim().to_owned());
            lines.next();
        }
        exprs.push(without_helm_actions(&block.join(" ")));
    }
    exprs
}

/// The dashboard's expressions: every panel's targets (panels inside rows
/// too) and the selector of every `label_values(SELECTOR, label)` variable.
fn dashboard_exprs(dashboard: &serde_json::Value) -> Vec<String> {
    let mut exprs = Vec::new();
    let mut panels: Vec<&serde_json::Value> = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        panels.push(panel);
        panels.extend(panel["panels"].as_array().into_iter().flatten());
    }
    for panel in panels {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().expect("a target's expr").to_owned());
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
    {
        if variable["type"] != "query" {
            continue;
        }
        let query = variable["query"]["query"].as_str().expect("a query");
        let inner = query
            .trim()
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .expect("a label_values() query");
        let (selector, _label) = inner
            .rsplit_once(',')
            .expect("label_values(selector, label)");
        exprs.push(selector.to_owned());
    }
    exprs
}

/// Skips a quoted string starting at `i` (the quote); returns the index
/// after it and its content.
fn string_at(chars: &[char], i: usize) -> (usize, String) {
    let quote = chars[i];
    let mut j = i + 1;
    let mut content = String::new();
    while j < chars.len() && chars[j] != quote {
        if chars[j] == '\\' && quote != '`' {
            j += 1;
        }
        if let Some(c) = chars.get(j) {
            content.push(*c);
        }
        j += 1;
    }
    assert!(j < chars.len(), "unterminated string");
    (j + 1, content)
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// PromQL's aggregation operators: `sum by (x) (...)` puts a label list
/// between one and its `(`.
const AGGREGATIONS: [&str; 14] = [
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// Every vector selector of a PromQL expression. A lexer, not a parser: it
/// knows strings, label matchers (`{...}`), ranges (`[...]`), aggregation
/// operators, function names (followed by `(`), the label lists of `by`,
/// `without`, `on`, `ignoring`, `group_left` and `group_right`, keywords and
/// numbers; any other name is a metric.
fn selectors(expr: &str) -> Vec<Selector> {
    let chars: Vec<char> = expr.chars().collect();
    let next_non_space = |mut j: usize| {
        while j < chars.len() && chars[j].is_whitespace() {
            j += 1;
        }
        j
    };
    let mut out: Vec<Selector> = Vec::new();
    // The metric a following `{...}` belongs to.
    let mut open: Option<usize> = None;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' || c == '\'' || c == '`' {
            i = string_at(&chars, i).0;
            open = None;
        } else if c == '{' {
            let mut labels = BTreeSet::new();
            let mut name_matcher = None;
            let mut j = i + 1;
            loop {
                j = next_non_space(j);
                match chars.get(j) {
                    Some('}') => break,
                    Some(',') => j += 1,
                    Some(c) if is_ident_start(*c) => {
                        let start = j;
                        while j < chars.len() && is_ident(chars[j]) {
                            j += 1;
                        }
                        let label: String = chars[start..j].iter().collect();
                        j = next_non_space(j);
                        while j < chars.len() && matches!(chars[j], '=' | '!' | '~') {
                            j += 1;
                        }
                        j = next_non_space(j);
                        let (after, value) = string_at(&chars, j);
                        j = after;
                        if label == "__name__" {
                            name_matcher = Some(value);
                        } else {
                            labels.insert(label);
                        }
                    }
                    other => panic!("unexpected {other:?} in the label matchers of: {expr}"),
                }
            }
            match (open, name_matcher) {
                (Some(k), _) => out[k].labels.extend(labels),
                (None, Some(metric)) => out.push(Selector { metric, labels }),
                (None, None) => panic!("a selector without a metric name in: {expr}"),
            }
            open = None;
            i = j + 1;
        } else if c == '[' {
            i += chars[i..]
                .iter()
                .position(|c| *c == ']')
                .expect("a range closes")
                + 1;
            open = None;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            // Numbers and durations (5m, 1e3, 0x1f).
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            open = None;
        } else if is_ident_start(c) {
            let start = i;
            while i < chars.len() && is_ident(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let after = next_non_space(i);
            open = None;
            match word.to_ascii_lowercase().as_str() {
                "by" | "without" | "on" | "ignoring" | "group_left" | "group_right" => {
                    if chars.get(after) == Some(&'(') {
                        i = after
                            + chars[after..]
                                .iter()
                                .position(|c| *c == ')')
                                .expect("a label list closes")
                            + 1;
                    }
                }
                "and" | "or" | "unless" | "bool" | "offset" | "inf" | "nan" => {}
                w if AGGREGATIONS.contains(&w) => {}
                _ if chars.get(after) == Some(&'(') => {} // a function or aggregation
                _ => {
                    out.push(Selector {
                        metric: word,
                        labels: BTreeSet::new(),
                    });
                    open = Some(out.len() - 1);
                }
            }
        } else {
            i += 1;
            open = None;
        }
    }
    out
}

/// What a Prometheus text exposition holds: metric families by type, and
/// the label names seen on each sample name.
struct Exposition {
    types: BTreeMap<String, String>,
    samples: BTreeMap<String, BTreeSet<String>>,
}

impl Exposition {
    fn parse(text: &str) -> Exposition {
        let mut types = BTreeMap::new();
        let mut samples: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for line in text.lines() {
            if let Some(declared) = line.strip_prefix("# TYPE ") {
                let (name, kind) = declared.split_once(' ').expect("# TYPE name kind");
                types.insert(name.to_owned(), kind.to_owned());
                continue;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let name_end = line.find(['{', ' ']).expect("a sample line");
            let labels = samples.entry(line[..name_end].to_owned()).or_default();
            if line[name_end..].starts_with('{') {
                let body = &line[name_end + 1..line.rfind('}').expect("labels close")];
                let sample = selectors(&format!("x{{{body}}}"));
                labels.extend(sample.into_iter().flat_map(|s| s.labels));
            }
        }
        Exposition { types, samples }
    }

    /// Why `selector` reads something this exposition does not hold, if it
    /// does: a metric without samples, a histogram suffix on something that
    /// is not a histogram, or a label no sample of the metric carries.
    fn refuses(&self, selector: &Selector) -> Option<String> {
        let metric = &selector.metric;
        let Some(labels) = self.samples.get(metric) else {
            return Some(format!("{metric}: no such series"));
        };
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = metric.strip_suffix(suffix)
                && let Some(kind) = self.types.get(base)
                && kind != "histogram"
                && kind != "summary"
            {
                return Some(format!("{metric}: {base} is a {kind}, not a histogram"));
            }
        }
        let unknown: Vec<&String> = selector
            .labels
            .iter()
            .filter(|l| !TARGET_LABELS.contains(&l.as_str()) && !labels.contains(*l))
            .collect();
        (!unknown.is_empty()).then(|| format!("{metric}: no sample has the label(s) {unknown:?}"))
    }

    fn refusals(&self, exprs: &[String]) -> Vec<String> {
        let mut out = BTreeSet::new();
        for expr in exprs {
            let found = selectors(expr);
            if found.is_empty() {
                out.insert(format!("no metric found in: {expr}"));
            }
            out.extend(found.iter().filter_map(|s| self.refuses(s)));
        }
        out.into_iter().collect()
    }
}

fn chart_exprs() -> (Vec<String>, Vec<String>) {
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(chart().join("dashboards/identity.json")).expect("the dashboard"),
    )
    .expect("the dashboard is JSON");
    let rules = rule_exprs(
        &std::fs::read_to_string(chart().join("templates/prometheusrule.yaml")).expect("the rules"),
    );
    (dashboard_exprs(&dashboard), rules)
}

#[test]
fn the_lexer_finds_every_selector_and_nothing_else() {
    let expr = without_helm_actions(
        r#"sum by (method, le) (rate(identity_a_bucket{code="OK",method=~"x|y"}[$__rate_interval]))
           / on (method) group_left () max_over_time(up[5m:1m]) * 60 > {{ int .Values.x }}
           or {__name__="identity_b", reason!="}"} unless -absent(kube_pod_info offset 5m)
           and sum(identity_c) by (pod) > bool 0.5"#,
    );
    let found = selectors(&expr);
    let names: Vec<&str> = found.iter().map(|s| s.metric.as_str()).collect();
    assert_eq!(
        names,
        [
            "identity_a_bucket",
            "up",
            "identity_b",
            "kube_pod_info",
            "identity_c"
        ]
    );
    assert_eq!(
        found[0].labels,
        BTreeSet::from(["code".to_owned(), "method".to_owned()])
    );
    assert_eq!(found[2].labels, BTreeSet::from(["reason".to_owned()]));

    let template = "        - alert: X\n          expr: |\n            a{namespace=\"{{ $ns }}\"}\n            > {{ .n }}\n          for: 2m\n";
    assert_eq!(rule_exprs(template), [r#"a{namespace="0"} > 0"#]);
}

#[test]
fn what_the_service_does_not_export_is_caught() {
    let scrape = "# TYPE identity_rpc_requests_total counter\n\
        identity_rpc_requests_total{method=\"m\",code=\"OK\"} 1\n\
        # TYPE identity_rpc_duration_seconds histogram\n\
        identity_rpc_duration_seconds_bucket{method=\"m\",code=\"OK\",le=\"+Inf\"} 1\n\
        # TYPE identity_login_failures_total counter\n";
    let exposition = Exposition::parse(scrape);
    let ok = [
        r#"sum by (method) (rate(identity_rpc_requests_total{namespace="n",pod=~"p",code!="OK"}[5m]))"#.to_owned(),
        "histogram_quantile(0.9, sum by (le) (rate(identity_rpc_duration_seconds_bucket[5m])))".to_owned(),
    ];
    assert_eq!(exposition.refusals(&ok), Vec::<String>::new());
    for (bad, why) in [
        (
            "rate(identity_bogus_total[5m])",
            "identity_bogus_total: no such series",
        ),
        // Declared (HELP/TYPE) but never counted: no series to read yet.
        (
            "rate(identity_login_failures_total[5m])",
            "identity_login_failures_total: no such series",
        ),
        (
            "identity_rpc_requests_total{rpc=\"login\"}",
            "no sample has the label(s) [\"rpc\"]",
        ),
        (
            "identity_rpc_duration_seconds_count",
            "identity_rpc_duration_seconds_count: no such series",
        ),
        ("42", "no metric found in"),
    ] {
        let refused = exposition.refusals(&[bad.to_owned()]);
        assert!(
            refused.iter().any(|r| r.contains(why)),
            "{bad}: expected {why:?}, got {refused:?}"
        );
    }
}

/// The whole answer of one GET /metrics, checked to be a 200, as text.
async fn scraped(server: &Server) -> String {
    let response = scrape(metrics_addr(server)).await;
    let (head, text) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    text.to_owned()
}

const REUSED: &str = "identity_security_events_total{event=\"identity.refresh.reused\"}";
const LISTENER_UP: &str = "identity_revocation_listener_up";
const STALENESS: &str = "identity_revocation_staleness_seconds";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_the_alerts_read_is_in_a_live_scrape() {
    let db = TestDb::new(Backend::Postgres);
    let server = Server::start_with(
        &db.url,
        db.dir.path(),
        ServerOptions::default()
            .env("IDENTITY_METRICS_ADDR", "127.0.0.1:0")
            .env("IDENTITY_RATE_LIMIT_ENABLED", "true")
            .env("IDENTITY_RATE_LIMIT_LOGIN", "3/1m")
            // The re-use below follows the refresh at once: no retry grace.
            .env("IDENTITY_REFRESH_REUSE_GRACE", "0s"),
    );
    let mut auth = server.auth().await;

    // The re-use counter is there before the first re-use, at 0: an
    // alert's increase() sees the first one.
    assert_eq!(metric(&scraped(&server).await, REUSED), Some(0.0));

    // Every series the chart reads, brought into existence by real calls.
    let address = email("dashboards");
    let pair = register(&mut auth, &address).await;
    auth.refresh(RefreshRequest {
        refresh_token: pair.refresh_token.clone(),
    })
    .await
    .expect("a refresh");
    let reused = auth
        .refresh(RefreshRequest {
            refresh_token: pair.refresh_token,
        })
        .await
        .expect_err("a spent refresh token is refused");
    assert_eq!(reused.code(), Code::Unauthenticated);
    auth.login(LoginRequest {
        email: address.clone(),
        password: PASSWORD.into(),
        ..Default::default()
    })
    .await
    .expect("a login");
    let mut codes = Vec::new();
    for _ in 0..4 {
        let refused = auth
            .login(LoginRequest {
                email: address.clone(),
                password: "not the password of this account".into(),
                ..Default::default()
            })
            .await
            .expect_err("a wrong password is refused");
        codes.push(refused.code());
    }
    assert!(codes.contains(&Code::Unauthenticated), "{codes:?}");
    assert_eq!(
        codes.last(),
        Some(&Code::ResourceExhausted),
        "the login rate limit answers: {codes:?}"
    );

    // The listener (PostgreSQL) hears its heartbeat.
    assert!(
        eventually(MAX_STALENESS * 10, || async {
            metric(&scraped(&server).await, LISTENER_UP) == Some(1.0)
        })
        .await,
        "the revocation listener is not up: {}",
        server.logs()
    );

    let text = scraped(&server).await;
    let text = text.as_str();
    assert_eq!(metric(text, REUSED), Some(1.0), "{text}");
    let staleness = metric(text, STALENESS).expect("the staleness of the listener");
    assert!(
        staleness < (MAX_STALENESS * 2).as_secs_f64(),
        "{staleness} s stale while the listener hears"
    );
    let exposition = Exposition::parse(text);
    let (dashboard, rules) = chart_exprs();
    assert!(
        dashboard.len() >= 13 && rules.len() >= 5,
        "{dashboard:?} {rules:?}"
    );
    for name in ["identity_security_events_total", LISTENER_UP, STALENESS] {
        assert!(
            rules.iter().chain(&dashboard).any(|e| e.contains(name)),
            "the chart does not read {name}"
        );
    }

    let refused = exposition.refusals(&[dashboard.clone(), rules.clone()].concat());
    assert!(
        refused.is_empty(),
        "the chart reads what the service does not export:\n{}\n\nscrape:\n{text}",
        refused.join("\n")
    );

    // The same check, on the same live scrape, refuses a name one letter off.
    let misspelt: Vec<String> = rules
        .iter()
        .map(|e| {
            e.replace(
                "identity_login_failures_total",
                "identity_login_failure_total",
            )
        })
        .collect();
    assert!(
        exposition
            .refusals(&misspelt)
            .contains(&"identity_login_failure_total: no such series".to_owned())
    );
}

/// SQLite has no revocation listener (a poller of the announcements table
/// keeps its memory true): the server exports no sample of the listener's
/// series, so the dashboard shows no data and the alert on them cannot
/// fire; the rest is there as on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_the_listener_series_are_absent_and_its_alert_reads_nothing() {
    let db = TestDb::new(Backend::Sqlite);
    let server = Server::start_with(
        &db.url,
        db.dir.path(),
        ServerOptions::default().env("IDENTITY_METRICS_ADDR", "127.0.0.1:0"),
    );
    let mut auth = server.auth().await;
    register(&mut auth, &email("sqlite-dashboards")).await;
    let text = scraped(&server).await;
    assert_eq!(metric(&text, LISTENER_UP), None, "{text}");
    assert_eq!(metric(&text, STALENESS), None, "{text}");
    assert_eq!(metric(&text, REUSED), Some(0.0), "{text}");

    let exposition = Exposition::parse(&text);
    let (_, rules) = chart_exprs();
    let listener_rules: Vec<String> = rules
        .into_iter()
        .filter(|e| e.contains(LISTENER_UP))
        .collect();
    assert_eq!(listener_rules.len(), 1, "{listener_rules:?}");
    assert_eq!(
        exposition.refusals(&listener_rules),
        [format!("{LISTENER_UP}: no such series")]
    );
}
