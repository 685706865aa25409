"""The Grafana dashboard and the PrometheusRule: off by default, labelled for
the Grafana sidecar, every expression valid PromQL over the service's own
metrics, every alert with a runbook section in docs/operations.md.

Which names the service really exports is checked against a live scrape of
the real server by tests/e2e/dashboards.rs, which reads the same two files
(dashboards/identity.json and templates/prometheusrule.yaml) from the
chart: test_the_e2e_test_sees_every_name_that_is_rendered keeps what it
reads equal to what Helm renders.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import jsonschema
import promql_parser
import pytest
import template
from chart_helpers import Rendered
from test_kubernetes_validate import CRD_SCHEMAS
from test_lint_and_values import schema_error, with_overrides

DASHBOARD_FILE = template.CHART / "dashboards" / "identity.json"
RULES_TEMPLATE = template.CHART / "templates" / "prometheusrule.yaml"
OPERATIONS = template.REPO / "docs" / "operations.md"
README = template.REPO / "README.md"
RULE_KEY = ("monitoring.coreos.com/v1", "PrometheusRule")

# Grafana's range variables are not PromQL; any duration stands in for them.
GRAFANA_RANGES = ("$__rate_interval", "$__interval", "$__range")
# Suffixes Prometheus derives from a histogram's name.
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


# --- PromQL ------------------------------------------------------------------


def parse(expr: str) -> promql_parser.Expr:
    for variable in GRAFANA_RANGES:
        expr = expr.replace(variable, "5m")
    return promql_parser.parse(expr)


def vector_selectors(expr: str) -> list[promql_parser.VectorSelector]:
    """Every vector selector of an expression, ranges and subqueries included."""
    found: list[promql_parser.VectorSelector] = []

    def walk(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)
        elif isinstance(node, promql_parser.MatrixSelector):
            walk(node.vector_selector)
        elif isinstance(node, promql_parser.BinaryExpr):
            walk(node.lhs)
            walk(node.rhs)
        elif isinstance(node, promql_parser.AggregateExpr):
            walk(node.expr)
            if node.param is not None:
                walk(node.param)
        elif isinstance(node, promql_parser.Call):
            for arg in node.args:
                walk(arg)
        elif isinstance(node, (promql_parser.ParenExpr, promql_parser.UnaryExpr, promql_parser.SubqueryExpr)):
            walk(node.expr)

    walk(parse(expr))
    return found


def metric_names(expr: str) -> set[str]:
    """Every metric an expression selects (by name or by `__name__`)."""
    names: set[str] = set()
    for node in vector_selectors(expr):
        if node.name:
            names.add(node.name)
        for m in node.matchers.matchers:
            if m.name == "__name__":
                names.add(m.value)
    return names


def equality_matches(expr: str, label: str) -> set[tuple[str, str]]:
    """(metric, value) of each `label="value"` matcher of an expression."""
    return {
        (node.name, m.value)
        for node in vector_selectors(expr)
        for m in node.matchers.matchers
        if m.name == label and m.op == promql_parser.MatchOp.Equal
    }


def label_values_metrics(query: str) -> set[str]:
    """A Grafana variable query `label_values(SELECTOR, label)`: SELECTOR's metrics."""
    m = re.fullmatch(r"\s*label_values\((.+),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*", query)
    assert m, f"not a label_values() query: {query}"
    return metric_names(m.group(1))


def base_name(name: str) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def test_name_extraction_finds_every_selector_and_nothing_else():
    """Guard against an extractor that finds nothing (and so passes anything)."""
    expr = (
        'sum by (method) (rate(identity_nope_total{code="OK",method=~"a|b"}[$__rate_interval]))'
        " / on (method) group_left () max_over_time(up[5m:1m])"
        ' or {__name__="identity_other"} unless -absent(kube_pod_info offset 5m)'
    )
    assert metric_names(expr) == {"identity_nope_total", "up", "identity_other", "kube_pod_info"}
    assert equality_matches(expr, "code") == {("identity_nope_total", "OK")}
    assert equality_matches(expr, "method") == set()  # =~ is not equality
    assert label_values_metrics('label_values(identity_x{namespace="$namespace"}, pod)') == {"identity_x"}
    with pytest.raises(ValueError):
        metric_names("sum(rate(identity_rpc_requests_total[5m])")


# --- what the chart renders --------------------------------------------------


def with_monitoring(base: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    return with_overrides(
        base,
        metrics__enabled=True,
        grafanaDashboard__enabled=True,
        prometheusRule__enabled=True,
        **overrides,
    )


def dashboard_configmap(r: Rendered) -> dict[str, Any]:
    return r.one("ConfigMap", component="dashboard")


def dashboard(r: Rendered) -> dict[str, Any]:
    data = dashboard_configmap(r)["data"]
    assert list(data) == ["identity.json"]
    return json.loads(data["identity.json"])


def panels(d: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows too."""
    out = []
    for p in d["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def dashboard_exprs(d: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in panels(d) for t in p.get("targets", [])]


def variable_queries(d: dict[str, Any]) -> list[str]:
    return [v["query"]["query"] for v in d["templating"]["list"] if v["type"] == "query"]


def rules(r: Rendered) -> list[dict[str, Any]]:
    [rule] = r.of_kind("PrometheusRule")
    return [x for group in rule["spec"]["groups"] for x in group["rules"]]


def rendered_names(r: Rendered) -> set[str]:
    d = dashboard(r)
    names = set()
    for expr in dashboard_exprs(d) + [x["expr"] for x in rules(r)]:
        names |= metric_names(expr)
    for query in variable_queries(d):
        names |= label_values_metrics(query)
    return names


def test_both_are_off_by_default(minimal, full_values):
    assert not [c for c in minimal.of_kind("ConfigMap") if c["metadata"]["labels"].get("grafana_dashboard")]
    assert not minimal.of_kind("PrometheusRule")
    with pytest.raises(AssertionError):
        dashboard_configmap(minimal)
    # And the defaults of values.yaml say so.
    values = template.load_values(template.CHART / "values.yaml")
    assert values["grafanaDashboard"]["enabled"] is False
    assert values["prometheusRule"]["enabled"] is False


def test_the_dashboard_configmap_is_labelled_for_the_grafana_sidecar(full, full_values):
    cm = dashboard_configmap(full)
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == full_values["grafanaDashboard"]["annotations"]
    assert cm["metadata"]["namespace"] == template.NAMESPACE
    # What the chart ships, unchanged.
    assert dashboard(full) == json.loads(DASHBOARD_FILE.read_text())


def test_the_sidecar_label_and_namespace_are_configurable(minimal_values):
    r = Rendered(
        with_monitoring(
            minimal_values,
            grafanaDashboard__label="example.com/dashboard",
            grafanaDashboard__labelValue="identity",
            grafanaDashboard__namespace="monitoring",
        )
    )
    cm = dashboard_configmap(r)
    assert cm["metadata"]["labels"]["example.com/dashboard"] == "identity"
    assert "grafana_dashboard" not in cm["metadata"]["labels"]
    assert cm["metadata"]["namespace"] == "monitoring"


def test_the_dashboard_parses_and_every_panel_queries_through_the_chosen_data_source(full):
    d = dashboard(full)
    assert d["uid"] and d["title"]
    ids = [p["id"] for p in panels(d)]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    graphs = [p for p in panels(d) if p["type"] != "row"]
    assert len(graphs) >= 8
    for p in graphs:
        assert p["targets"], p["title"]
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        for t in p["targets"]:
            assert t["expr"].strip(), p["title"]
            parse(t["expr"])
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"


def test_the_dashboard_shows_what_operators_asked_for(full):
    exprs = dashboard_exprs(dashboard(full))
    used = set().union(*map(metric_names, exprs))
    for name in (
        "identity_rpc_requests_total",  # request and error rate by method
        "identity_rpc_duration_seconds_bucket",  # latency by method
        "identity_login_failures_total",
        "identity_rate_limited_total",  # throttled
        "identity_bcrypt_shed_total",  # shed
        "identity_db_pool_connections",
        "identity_bcrypt_queue_depth",
        "identity_security_events_total",  # refresh re-use detections
        "identity_revocation_listener_up",
        "identity_revocation_staleness_seconds",
    ):
        assert name in used, name
    reuse = set().union(*(equality_matches(e, "event") for e in exprs))
    assert ("identity_security_events_total", "identity.refresh.reused") in reuse
    # Successful logins are the Login method's OK answers.
    assert any('method="identity.v1.AuthService/Login",code="OK"' in e for e in exprs)
    assert any("histogram_quantile(0.99" in e and "by (method, le)" in e for e in exprs)


def test_every_expression_reads_only_the_services_documented_metrics(full):
    names = rendered_names(full)
    assert names
    strangers = sorted(n for n in names if not n.startswith("identity_"))
    assert not strangers, f"not the service's own metrics: {strangers}"
    # README's Metrics paragraph lists every series the service exports.
    metrics_doc = README.read_text().split("**Metrics.**", 1)[1].split("\n\n", 1)[0]
    undocumented = sorted(n for n in names if f"`{base_name(n)}" not in metrics_doc)
    assert not undocumented, f"used but not in README's list of metrics: {undocumented}"


def raw_rule_exprs() -> list[str]:
    """The rule expressions as tests/e2e/dashboards.rs reads them: each
    `expr: |` block of the template, Helm actions replaced by a number."""
    exprs, block, indent = [], None, 0
    for line in RULES_TEMPLATE.read_text().splitlines():
        if block is not None:
            if line.strip() and len(line) - len(line.lstrip()) > indent:
                block.append(line.strip())
                continue
            exprs.append(" ".join(block))
            block = None
        m = re.match(r"^(\s*)expr: \|-?\s*$", line)
        if m:
            block, indent = [], len(m.group(1))
        else:
            assert not re.match(r"^\s*expr:", line), f"write each expr as a `|` block: {line}"
    assert block is None
    return [re.sub(r"\{\{.*?\}\}", "0", e) for e in exprs]


def test_the_e2e_test_sees_every_name_that_is_rendered(full, minimal_values):
    raw = set()
    for expr in raw_rule_exprs():
        raw |= metric_names(expr)
    d = json.loads(DASHBOARD_FILE.read_text())
    for expr in dashboard_exprs(d):
        raw |= metric_names(expr)
    for query in variable_queries(d):
        raw |= label_values_metrics(query)
    assert raw == rendered_names(full)
    assert raw == rendered_names(Rendered(with_monitoring(minimal_values)))
    assert len(raw_rule_exprs()) == len(rules(full))


# --- alerts ------------------------------------------------------------------


def heading_anchors(markdown: str) -> dict[str, str]:
    """GitHub's anchor of each heading -> the section's text."""
    sections: dict[str, str] = {}
    parts = re.split(r"^(#{1,6} .+)$", markdown, flags=re.M)
    for heading, body in zip(parts[1::2], parts[2::2]):
        title = heading.lstrip("#").strip()
        anchor = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
        sections[anchor] = body
    return sections


def test_the_alerts_operators_asked_for_are_there(full):
    alerts = {r["alert"]: r["expr"] for r in rules(full)}
    for name in (
        "IdentityBruteForceWave",
        "IdentityDatabaseUnavailable",
        "IdentityBcryptQueueSaturated",
        "IdentityRefreshReuse",
        "IdentityRevocationListenerDown",
    ):
        assert name in alerts
    assert equality_matches(alerts["IdentityRefreshReuse"], "event") == {
        ("identity_security_events_total", "identity.refresh.reused")
    }
    # Any one re-use: the counter starts at 0, so increase() sees the first.
    assert re.search(r"increase\(identity_security_events_total\{[^}]*\}\[\d+m\]\)\) > 0$", alerts["IdentityRefreshReuse"].strip())
    assert metric_names(alerts["IdentityRevocationListenerDown"]) == {"identity_revocation_listener_up"}
    assert alerts["IdentityRevocationListenerDown"].strip().endswith("== 0")


def event_vocabulary() -> set[str]:
    """The `event.name`s the service knows (identity-core's `event_names!`)."""
    source = (template.REPO / "crates" / "identity-core" / "src" / "events.rs").read_text()
    block = source.split("event_names! {", 1)[1].split("\n}", 1)[0]
    names = set(re.findall(r'^\s*[A-Z]\w* = "([a-z_.]+)",$', block, flags=re.M))
    assert "identity.login.failed" in names and len(names) > 20, names
    return names


def test_every_event_matched_on_is_one_the_service_emits(full):
    """A misspelt event name matches no series and the alert never fires;
    the live scrape (tests/e2e/dashboards.rs) checks label names only."""
    known = event_vocabulary()
    exprs = dashboard_exprs(dashboard(full)) + [r["expr"] for r in rules(full)]
    matched = set().union(*(equality_matches(e, "event") for e in exprs))
    assert matched
    for metric, event in matched:
        assert metric == "identity_security_events_total", metric
        assert event in known, f"{event}: no such event.name in identity-core"


def test_every_alert_has_a_runbook_section_that_says_what_to_do(full, full_values):
    sections = heading_anchors(OPERATIONS.read_text())
    base = full_values["prometheusRule"]["runbookBaseUrl"] + "docs/operations.md#"
    for rule in rules(full):
        name = rule["alert"]
        url = rule["annotations"]["runbook_url"]
        assert url.startswith(base), url
        anchor = url.removeprefix(base)
        assert anchor == name.lower(), f"{name}: the section is headed by the alert's name"
        assert anchor in sections, f"{name}: no section #{anchor} in docs/operations.md"
        body = sections[anchor]
        for part in ("**What it means.**", "**What to check.**", "**What to do.**"):
            assert part in body, f"{name}: its runbook lacks {part}"
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["labels"]["team"] == "platform"  # prometheusRule.alertLabels
        assert re.fullmatch(r"\d+m", rule["for"])
    # And no runbook section without its alert.
    alerts = {r["alert"].lower() for r in rules(full)}
    documented = {a for a in sections if re.fullmatch(r"identity[a-z]+", a)}
    assert documented <= alerts, f"runbook sections without an alert: {documented - alerts}"


def test_a_relative_runbook_link_by_default(minimal_values):
    for rule in rules(Rendered(with_monitoring(minimal_values))):
        assert rule["annotations"]["runbook_url"] == f"docs/operations.md#{rule['alert'].lower()}"


def test_every_alert_is_scoped_to_the_release_namespace(full):
    for rule in rules(full):
        for selector in re.findall(r"identity_\w+\{([^}]*)\}", rule["expr"]):
            assert f'namespace="{template.NAMESPACE}"' in selector, rule["alert"]


def test_thresholds_follow_the_values(full, minimal_values):
    by_name = {r["alert"]: r["expr"] for r in rules(full)}
    assert re.search(r"\* 60 > 120\b", by_name["IdentityBruteForceWave"])
    # 80% of config.bcryptQueue (32 in full-values.yaml)...
    assert re.search(r">= 25\b", by_name["IdentityBcryptQueueSaturated"])
    # ...and of the server's default queue (64) when it is not set.
    defaults = {r["alert"]: r["expr"] for r in rules(Rendered(with_monitoring(minimal_values)))}
    assert re.search(r">= 51\b", defaults["IdentityBcryptQueueSaturated"])
    assert re.search(r"\* 60 > 60\b", defaults["IdentityBruteForceWave"])


def test_rule_labels_reach_the_object(full):
    [rule] = full.of_kind("PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    assert rule["metadata"]["labels"]["app.kubernetes.io/component"] == "alerts"


def test_the_prometheusrule_schema_would_catch_a_mistake(full):
    """Guard against a CRD schema that passes everything."""
    [rule] = full.of_kind("PrometheusRule")
    schema = json.loads(CRD_SCHEMAS[RULE_KEY].read_text())
    jsonschema.validate(rule, schema)
    for breakage in (
        lambda r: r["spec"]["groups"][0]["rules"][0].update({"expression": r["spec"]["groups"][0]["rules"][0].pop("expr")}),
        lambda r: r["spec"]["groups"][0]["rules"][0].update({"for": "5 minutes"}),
        lambda r: r["spec"]["groups"][0]["rules"][0].pop("alert"),
        lambda r: r["spec"]["groups"][0]["rules"][0]["annotations"].update({"runbook_url": 1}),
    ):
        broken = copy.deepcopy(rule)
        breakage(broken)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)


SCHEMA_REFUSALS = {
    "label-with-a-space": {"grafanaDashboard__label": "grafana dashboard"},
    "label-value-not-a-string": {"grafanaDashboard__labelValue": 1},
    "runbook-base-without-slash": {"prometheusRule__runbookBaseUrl": "https://git.example.com/identity"},
    "no-failed-logins-threshold": {"prometheusRule__failedLoginsPerMinute": 0},
    "unknown-key": {"prometheusRule__severity": "page"},
}


@pytest.mark.parametrize("case", SCHEMA_REFUSALS, ids=list(SCHEMA_REFUSALS))
def test_the_schema_refuses_wrong_monitoring_values(case, minimal_values):
    schema_error(with_monitoring(minimal_values, **SCHEMA_REFUSALS[case]))
