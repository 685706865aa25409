"""Helm lint, the refusals (missing secret and friends) and values.schema.json."""

from __future__ import annotations

import copy
from typing import Any

import helm_python
import pytest
import template

MISSING_SECRET = "no Secret configured"


def lint_errors(values: dict[str, Any] | None) -> list[str]:
    report = helm_python.lint(template.CHART, values, strict=True)
    errors = [m["error"] for m in report["messages"] if m["severity"] >= 3]
    return errors + list(report.get("errors") or [])


@pytest.mark.parametrize("which", ["defaults", "minimal", "full"])
def test_lint_has_no_errors(which):
    values = None if which == "defaults" else template.load_values(which)
    report = helm_python.lint(template.CHART, values, strict=True)
    assert report["total_charts_linted"] == 1
    assert lint_errors(values) == []
    # Nothing above "info" (icon is recommended) either.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_default_values_fail_with_the_missing_secret_message():
    with pytest.raises(helm_python.HelmRenderError) as err:
        template.render_raw(None)
    msg = str(err.value)
    assert MISSING_SECRET in msg
    # The message says what to set.
    assert "secrets.existingSecret" in msg
    assert "secrets.create.databaseUrl" in msg
    assert "signingKeys" in msg


def test_the_chart_ships_no_secret_value():
    with helm_python.Chart.load(template.CHART) as chart:
        defaults = chart.values
    assert defaults["secrets"]["existingSecret"] == ""
    assert all(not v for v in defaults["secrets"]["create"].values())


def with_overrides(base: dict[str, Any], **paths: Any) -> dict[str, Any]:
    """Copy of base with dotted-path overrides (a__b=1 sets a.b)."""
    out = copy.deepcopy(base)
    for dotted, value in paths.items():
        node = out
        *parents, leaf = dotted.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return out


REFUSALS = {
    "tls-without-secret": ({"tls__enabled": True}, "tls.existingSecret"),
    "plaintext-refused": ({"tls__allowPlaintext": False}, "tls.allowPlaintext"),
    "client-ca-without-tls": ({"tls__clientCA__enabled": True}, "tls.clientCA.enabled needs tls.enabled"),
    "provider-without-jwks": ({"provider__enabled": True}, "provider.jwksUrl"),
    "otel-without-endpoint": ({"otel__enabled": True}, "otel.endpoint"),
    "servicemonitor-without-metrics": (
        {"metrics__serviceMonitor__enabled": True},
        "metrics.serviceMonitor.enabled needs metrics.enabled",
    ),
    "dashboard-without-metrics": (
        {"grafanaDashboard__enabled": True},
        "grafanaDashboard.enabled needs metrics.enabled",
    ),
    "alerts-without-metrics": (
        {"prometheusRule__enabled": True},
        "prometheusRule.enabled needs metrics.enabled",
    ),
    "grace-shorter-than-drain": ({"terminationGracePeriodSeconds": 20}, "terminationGracePeriodSeconds must exceed"),
    "existing-and-created-secret": (
        {"secrets__create__databaseUrl": "postgres://x@y/z"},
        "not both",
    ),
    "existing-secret-without-signing-key-names": ({"secrets__keys__signingKeys": []}, "secrets.keys.signingKeys"),
    "extra-env-overrides-a-chart-setting": (
        {"config__extraEnv": {"IDENTITY_ISSUER": "x"}},
        "config.extraEnv.IDENTITY_ISSUER is set by the chart",
    ),
}


@pytest.mark.parametrize("case", REFUSALS, ids=list(REFUSALS))
def test_misconfigurations_fail_with_a_message_naming_the_setting(case, minimal_values):
    overrides, expected = REFUSALS[case]
    with pytest.raises(helm_python.HelmRenderError) as err:
        template.render_raw(with_overrides(minimal_values, **overrides))
    assert expected in str(err.value)


CREATED_REFUSALS = {
    "created-without-database-url": (
        {"secrets": {"create": {"signingKeys": ["-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n"]}}},
        "secrets.create.databaseUrl",
    ),
    "created-without-signing-key": (
        {"secrets": {"create": {"databaseUrl": "postgres://u@db/identity"}}},
        "secrets.create.signingKeys[0]",
    ),
    "hs256-short-key": (
        {
            "signing": {"algorithm": "HS256"},
            "secrets": {"create": {"databaseUrl": "postgres://u@db/identity", "secretKey": "too-short"}},
        },
        "at least 32 bytes",
    ),
    "redis-without-url": (
        {
            "rateLimit": {"redis": {"enabled": True}},
            "secrets": {
                "create": {
                    "databaseUrl": "postgres://u@db/identity",
                    "signingKeys": ["-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n"],
                }
            },
        },
        "secrets.create.redisUrl",
    ),
}


@pytest.mark.parametrize("case", CREATED_REFUSALS, ids=list(CREATED_REFUSALS))
def test_incomplete_chart_made_secret_fails(case):
    values, expected = CREATED_REFUSALS[case]
    with pytest.raises(helm_python.HelmRenderError) as err:
        template.render_raw(values)
    assert expected in str(err.value)


# --- values.schema.json ------------------------------------------------------


def schema_error(values: dict[str, Any]) -> str:
    with helm_python.Chart.load(template.CHART) as chart:
        with pytest.raises(helm_python.HelmValuesError) as err:
            chart.validate_schema(values)
    return str(err.value)


def test_schema_refuses_a_string_replica_count(minimal_values):
    msg = schema_error(with_overrides(minimal_values, replicaCount="two"))
    assert "/replicaCount" in msg
    # And a render (what `helm install` does) refuses it the same way.
    with pytest.raises(helm_python.HelmValuesError):
        template.render_raw(with_overrides(minimal_values, replicaCount="two"))


def test_schema_refuses_an_unknown_top_level_key(minimal_values):
    msg = schema_error(with_overrides(minimal_values, replicas=3))
    assert "replicas" in msg and "not allowed" in msg
    with pytest.raises(helm_python.HelmValuesError):
        template.render_raw(with_overrides(minimal_values, replicas=3))


SCHEMA_REFUSALS = {
    "root-user": {"securityContext__runAsUser": 0},
    "root-pod-user": {"podSecurityContext__runAsUser": 0},
    "run-as-root-allowed": {"securityContext__runAsNonRoot": False},
    "writable-root-fs": {"securityContext__readOnlyRootFilesystem": False},
    "privilege-escalation": {"securityContext__allowPrivilegeEscalation": True},
    "privileged": {"securityContext__privileged": True},
    "added-capability": {"securityContext__capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN"]}},
    "capabilities-kept": {"securityContext__capabilities": {"drop": ["NET_RAW"]}},
    "latest-tag": {"image__tag": "latest"},
    "weak-bcrypt": {"config__bcryptCost": 10},
    "bad-ttl": {"config__accessTokenTtl": "half an hour"},
    "secret-in-configmap": {"config__extraEnv": {"IDENTITY_DATABASE_URL": "postgres://u:p@db/x"}},
    # null deletes a default key, as with `helm --set resources.limits=null`.
    "no-memory-limit": {"resources__limits__memory": None},
    "no-limits": {"resources__limits": None},
    "no-migration-limits": {"migrations__resources__limits": None},
    "unknown-nested-key": {"tls__enable": True},
    "bad-algorithm": {"signing__algorithm": "none"},
    "bad-digest": {"image__digest": "sha256:abc"},
}


@pytest.mark.parametrize("case", SCHEMA_REFUSALS, ids=list(SCHEMA_REFUSALS))
def test_schema_refuses_weakening_or_wrong_values(case, minimal_values):
    values = with_overrides(minimal_values, **SCHEMA_REFUSALS[case])
    schema_error(values)
    with pytest.raises(helm_python.HelmValuesError):
        template.render_raw(values)


@pytest.mark.parametrize("tag", ["latest", "LATEST", "Latest"])
def test_latest_tag_is_refused_at_render(tag, minimal_values):
    # The schema refuses it (and the template would too, case-insensitively).
    with pytest.raises((helm_python.HelmValuesError, helm_python.HelmRenderError)) as err:
        template.render_raw(with_overrides(minimal_values, image__tag=tag))
    assert "/image/tag" in str(err.value) or "latest" in str(err.value)


@pytest.mark.parametrize("which", ["minimal", "full"])
def test_shipped_values_files_pass_the_schema(which):
    with helm_python.Chart.load(template.CHART) as chart:
        chart.validate_schema(template.load_values(which))
        chart.validate_schema(chart.values)
