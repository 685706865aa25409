"""Helpers shared by the chart tests (a module name unlikely to clash)."""

from __future__ import annotations

from typing import Any

import template

KUBE_VERSIONS = ["1.29.0", "1.30.0", "1.31.0"]
HEALTH_PORT = 50052


class Rendered:
    """The objects of one render, with small helpers to find them."""

    def __init__(self, values: dict[str, Any]):
        self.values = values
        self.objects, self.notes = template.render(values)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, component: str | None = None) -> dict[str, Any]:
        found = [
            o
            for o in self.of_kind(kind)
            if component is None
            or o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component
        ]
        assert len(found) == 1, f"expected one {kind} ({component}), got {len(found)}"
        return found[0]

    def pod_specs(self) -> list[tuple[str, dict[str, Any]]]:
        """(object name, pod spec) of every workload that runs containers."""
        specs = []
        for obj in self.objects:
            if obj["kind"] == "Pod":
                specs.append((f"Pod/{obj['metadata']['name']}", obj["spec"]))
            elif obj["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
                specs.append((f"{obj['kind']}/{obj['metadata']['name']}", obj["spec"]["template"]["spec"]))
        return specs

    def containers(self) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
        """(owner, pod spec, container) for every container and init container."""
        out = []
        for owner, spec in self.pod_specs():
            for c in spec.get("initContainers", []) + spec["containers"]:
                out.append((f"{owner}/{c['name']}", spec, c))
        return out

    def settings_configmap(self) -> dict[str, Any]:
        """The server's settings (the dashboard, when on, is a ConfigMap too)."""
        found = [
            o
            for o in self.of_kind("ConfigMap")
            if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") != "dashboard"
        ]
        assert len(found) == 1, f"expected one settings ConfigMap, got {len(found)}"
        return found[0]

    def configmap_data(self) -> dict[str, str]:
        return self.settings_configmap()["data"]
