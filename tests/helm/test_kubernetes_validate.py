"""Every rendered manifest passes `kubernetes-validate --strict` for Kubernetes
1.29, 1.30 and 1.31 (CRDs, which it has no schema for, are checked against
tests/helm/schemas/ instead)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import template
from chart_helpers import KUBE_VERSIONS

HERE = Path(__file__).resolve().parent
# Custom resources: kubernetes-validate has no schema for them.
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): HERE / "schemas" / "servicemonitor-monitoring-v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): HERE / "schemas" / "prometheusrule-monitoring-v1.json",
}


def kubernetes_validate_cmd() -> list[str]:
    script = Path(sys.executable).parent / "kubernetes-validate"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "kubernetes_validate"]


def test_kubernetes_validate_knows_the_versions():
    from kubernetes_validate.utils import all_versions

    for version in KUBE_VERSIONS:
        assert version in all_versions(), f"kubernetes-validate has no {version} schemas"


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("which", ["minimal", "full", "hs256"])
def test_every_manifest_passes_kubernetes_validate_strict(which, version, request, tmp_path):
    """Rendered for that Kubernetes version (as `helm install` against such a
    cluster would), then validated against that version's schemas."""
    values = request.getfixturevalue(f"{which}_values")
    objects, notes = template.render(values, kube_version=version)
    files = template.write(objects, notes, tmp_path)
    proc = subprocess.run(
        kubernetes_validate_cmd() + ["--strict", "-k", version, *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "ERROR" not in out and "FATAL" not in out, out

    crd_files = {str(f) for f, obj in zip(files, objects) if (obj["apiVersion"], obj["kind"]) in CRD_SCHEMAS}
    for line in out.splitlines():
        if line.startswith("WARN"):
            # A schema it cannot find means "not validated": only CRDs may.
            assert line.split()[1] in crd_files, line

    # Each built-in object was checked, against this version.
    minor = version.rsplit(".", 1)[0]
    for f in files:
        if str(f) in crd_files:
            continue
        pattern = rf"^INFO {re.escape(str(f))} passed for resource .* against version {minor}$"
        assert re.search(pattern, out, re.M), f"{f.name} not validated for {minor}:\n{out}"

    for obj in objects:
        key = (obj["apiVersion"], obj["kind"])
        if key in CRD_SCHEMAS:
            jsonschema.validate(obj, json.loads(CRD_SCHEMAS[key].read_text()))


def test_pre_stop_sleep_only_where_kubernetes_has_it(minimal_values):
    """lifecycle.preStop.sleep is off by default before 1.30 (PodLifecycleSleepAction)."""

    def spec(version):
        objects, _ = template.render(minimal_values, kube_version=version)
        return [o for o in objects if o["kind"] == "Deployment"][0]["spec"]["template"]["spec"]

    old, new = spec("1.29.0"), spec("1.30.0")
    assert "lifecycle" not in old["containers"][0]
    assert new["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"] == 5
    # The grace period follows: drain (20 s) + sleep + 10 s margin.
    assert old["terminationGracePeriodSeconds"] == 30
    assert new["terminationGracePeriodSeconds"] == 35


def test_custom_resources_match_their_schema(rendered):
    for obj in rendered.objects:
        key = (obj["apiVersion"], obj["kind"])
        if key in CRD_SCHEMAS:
            schema = json.loads(CRD_SCHEMAS[key].read_text())
            jsonschema.validate(obj, schema)


def test_only_known_custom_resources_are_rendered(full):
    builtin = {
        "v1",
        "apps/v1",
        "batch/v1",
        "policy/v1",
        "autoscaling/v2",
        "networking.k8s.io/v1",
    }
    for obj in full.objects:
        assert obj["apiVersion"] in builtin or (obj["apiVersion"], obj["kind"]) in CRD_SCHEMAS, obj["kind"]


def test_strict_validation_would_catch_a_typo(minimal, tmp_path):
    """Guard against a validator that passes everything."""
    import copy

    broken = copy.deepcopy(minimal.one("Deployment"))
    broken["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonroot"] = True
    files = template.write([broken], "", tmp_path)
    proc = subprocess.run(
        kubernetes_validate_cmd() + ["--strict", "-k", "1.31.0", str(files[0])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0 and "runAsNonroot" in proc.stdout


@pytest.mark.parametrize("which", ["minimal", "full"])
def test_template_script_writes_one_file_per_object(which, tmp_path):
    assert template.main([str(tmp_path), "--values", which]) == 0
    written = sorted(tmp_path.glob("*.yaml"))
    objects, _ = template.render(template.load_values(which))
    assert len(written) == len(objects)
    assert (tmp_path / "NOTES.txt").read_text().strip()
