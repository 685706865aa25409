"""docs/deploy-helm.md keeps up with the chart: every value is in its table."""

from __future__ import annotations

import re

import yaml
import template

DOC = template.REPO / "docs" / "deploy-helm.md"

# Values documented as one row (free-form objects and option groups).
GROUPED = (
    "podSecurityContext",
    "securityContext",
    "resources",
    "updateStrategy",
    "migrations.resources",
    "tests.resources",
    "probes.startup",
    "probes.readiness",
    "probes.liveness",
    "networkPolicy.egress.dns",
    "networkPolicy.egress.database",
    "networkPolicy.egress.redis",
    "networkPolicy.egress.otlp",
    "networkPolicy.egress.jwks",
)


def value_keys() -> list[str]:
    values = yaml.safe_load((template.CHART / "values.yaml").read_text())
    keys: list[str] = []

    def walk(node, prefix=""):
        for key, value in node.items():
            path = prefix + key
            if isinstance(value, dict) and value and path not in GROUPED:
                walk(value, path + ".")
            else:
                keys.append(path)

    walk(values)
    return keys


def documented() -> set[str]:
    rows = set()
    table = DOC.read_text().split("\n## Values\n", 1)[1]
    for line in table.splitlines():
        m = re.match(r"^\| (`[^|]+) \|", line)
        if m:
            for key in re.findall(r"`([^`]+)`", m.group(1)):
                rows.add(key.removesuffix(".*"))
    return rows


def test_every_value_is_in_the_docs_table():
    rows = documented()
    missing = [k for k in value_keys() if k not in rows]
    assert not missing, f"add to docs/deploy-helm.md: {missing}"


def test_the_docs_table_has_no_stale_rows():
    keys = set(value_keys())
    stale = sorted(r for r in documented() if r not in keys)
    assert not stale, f"no such value: {stale}"


def test_the_docs_quote_the_real_missing_secret_message():
    helpers = (template.CHART / "templates" / "_helpers.tpl").read_text()
    quoted = re.search(r"^identity: no Secret configured[^\n]*", DOC.read_text(), re.M).group(0)
    assert quoted.rstrip(". ").removesuffix("...").strip() in helpers
