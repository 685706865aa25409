#!/usr/bin/env python3
"""Render the identity chart offline, one file per Kubernetes object.

    .venv/bin/python tests/helm/template.py OUTDIR [--values minimal|full|FILE ...]

Default: helm/identity/ci/full-values.yaml (an example chart-made Secret and
every optional feature on). Writes OUTDIR/NN-<kind>-<name>.yaml plus
OUTDIR/NOTES.txt, after emptying OUTDIR of earlier *.yaml files. Uses Helm's
own Go SDK through helm-python-sdk: no helm binary, no cluster, no network.
The chart tests import render() from here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import helm_python
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "identity"
VALUES = {
    "minimal": CHART / "ci" / "secret-values.yaml",
    "full": CHART / "ci" / "full-values.yaml",
}
RELEASE = "identity"
NAMESPACE = "identity"


def load_values(*names_or_paths: str | Path) -> dict[str, Any]:
    """Merge values files (later wins, maps deep-merged like `helm -f a -f b`)."""
    merged: dict[str, Any] = {}
    for item in names_or_paths:
        path = VALUES.get(str(item), Path(item))
        merged = _merge(merged, yaml.safe_load(Path(path).read_text()) or {})
    return merged


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def render_raw(
    values: dict[str, Any] | None,
    *,
    name: str = RELEASE,
    namespace: str = NAMESPACE,
    kube_version: str | None = None,
    **opts: Any,
) -> dict[str, str]:
    """Template path -> rendered text, as Helm returns it (raises on failure).

    kube_version ("1.29.0") sets .Capabilities.KubeVersion like
    `helm template --kube-version`; without it Helm assumes its newest.
    """
    with helm_python.Chart.load(CHART) as chart:
        if kube_version is None:
            return chart.render(values, name=name, namespace=namespace, **opts)
        # Chart.render() does not expose the option the C library takes.
        from helm_python import _native

        options = {"name": name, "namespace": namespace, **opts}
        options["kube_version"] = "v" + kube_version.lstrip("v")
        rendered: dict[str, str] = json.loads(
            _native.call_string(
                "helm_render", chart._raw(), json.dumps(values), json.dumps(options)
            )
        )
        return rendered


def render(values: dict[str, Any] | None, **kwargs: Any) -> tuple[list[dict[str, Any]], str]:
    """Every rendered object (template order), and NOTES.txt."""
    raw = render_raw(values, **kwargs)
    objects: list[dict[str, Any]] = []
    notes = ""
    for path in sorted(raw):
        if path.endswith("NOTES.txt"):
            notes = raw[path]
            continue
        for doc in yaml.safe_load_all(raw[path]):
            if doc:
                doc.setdefault("metadata", {}).setdefault("annotations", {})
                objects.append(doc)
    for obj in objects:
        if not obj["metadata"]["annotations"]:
            del obj["metadata"]["annotations"]
    return objects, notes


def write(objects: list[dict[str, Any]], notes: str, outdir: Path) -> list[Path]:
    outdir.mkdir(parents=True, exist_ok=True)
    for old in outdir.glob("*.yaml"):
        old.unlink()
    written = []
    for i, obj in enumerate(objects, 1):
        fname = f"{i:02d}-{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"
        path = outdir / fname
        path.write_text(yaml.safe_dump(obj, sort_keys=False, default_flow_style=False))
        written.append(path)
    (outdir / "NOTES.txt").write_text(notes)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument(
        "--values",
        "-f",
        action="append",
        help="minimal, full, or a values file; repeatable (default: full)",
    )
    parser.add_argument("--namespace", "-n", default=NAMESPACE)
    parser.add_argument("--name", default=RELEASE)
    parser.add_argument("--kube-version", help="e.g. 1.29.0 (default: Helm's newest)")
    args = parser.parse_args(argv)
    try:
        objects, notes = render(
            load_values(*(args.values or ["full"])),
            name=args.name,
            namespace=args.namespace,
            kube_version=args.kube_version,
        )
    except helm_python.HelmError as err:
        print(f"render failed: {err}", file=sys.stderr)
        return 1
    for path in write(objects, notes, args.outdir):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
