"""Static checks of the Dockerfile and .dockerignore (no Docker engine here):
they must agree with what the chart assumes about the image."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import template

REPO = template.REPO
DOCKERFILE = REPO / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in instructions():
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def final_stage() -> list[tuple[str, str]]:
    return stages()[-1]


def args_of(name: str) -> list[str]:
    return [a for i, a in final_stage() if i == name]


def test_multi_stage_with_dependency_caching():
    froms = [a for i, a in instructions() if i == "FROM"]
    assert len(froms) >= 3
    text = DOCKERFILE.read_text()
    # Dependencies are built from the recipe alone before the sources arrive.
    cook = text.index("cargo chef cook")
    assert text.index("COPY --from=planner") < cook < text.rindex("COPY . .")
    assert "--locked" in text


def test_runtime_is_distroless_nonroot():
    text = DOCKERFILE.read_text()
    m = re.search(r"^ARG RUNTIME_IMAGE=(\S+)$", text, re.M)
    assert m and m.group(1).startswith("gcr.io/distroless/cc-"), m
    assert m.group(1).endswith(":nonroot") or "@sha256:" in m.group(1)
    assert final_stage()[0][1].startswith("${RUNTIME_IMAGE}")


def test_runs_as_the_fixed_non_root_uid_the_chart_expects():
    import yaml

    values = yaml.safe_load((template.CHART / "values.yaml").read_text())
    users = args_of("USER")
    assert users == [f"{values['securityContext']['runAsUser']}:{values['securityContext']['runAsGroup']}"]
    assert users[0] != "0:0" and not users[0].startswith("root")


def exec_form(arg: str) -> list[str]:
    parsed = json.loads(arg)
    assert isinstance(parsed, list) and all(isinstance(x, str) for x in parsed)
    return parsed


def test_entrypoint_and_healthcheck_need_no_shell():
    entry = exec_form(args_of("ENTRYPOINT")[0])
    assert entry == ["/usr/local/bin/identity"]
    assert exec_form(args_of("CMD")[0]) == ["serve"]
    health = args_of("HEALTHCHECK")
    assert len(health) == 1
    flags, _, cmd = health[0].partition("CMD ")
    assert exec_form(cmd) == ["/usr/local/bin/identity", "healthcheck"]
    assert "--timeout=" in flags and "--interval=" in flags


def test_no_latest_base_images():
    text = DOCKERFILE.read_text()
    stage_names = set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, re.M | re.I))
    refs = re.findall(r"^(?:FROM\s+|ARG \w+_IMAGE=)(\S+)", text, re.M)
    assert refs
    for ref in refs:
        if ref in stage_names:
            continue
        assert not ref.endswith(":latest"), ref
        # A bare name without a tag or digest means latest.
        if not ref.startswith("${") and not ref.startswith("$"):
            tail = ref.rsplit("/", 1)[-1]
            assert ":" in tail or "@" in ref, ref


def test_every_base_image_is_pinned_by_digest():
    """A tag can be re-pointed at other content; a digest cannot."""
    text = DOCKERFILE.read_text()
    stage_names = set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, re.M | re.I))
    defaults = dict(re.findall(r"^ARG (\w+_IMAGE)=(\S+)", text, re.M))
    assert set(defaults) == {"BUILDER_IMAGE", "RUNTIME_IMAGE"}
    for ref in re.findall(r"^FROM\s+(\S+)", text, re.M):
        if ref in stage_names:
            continue
        ref = defaults.get(ref.strip("${}"), ref)
        assert re.fullmatch(r"[^@\s]+:[^@\s]+@sha256:[0-9a-f]{64}", ref), ref


def test_renovate_keeps_every_pinned_base_current():
    config = json.loads((REPO / "renovate.json").read_text())
    patterns = [
        m for manager in config["customManagers"] for m in manager["matchStrings"]
    ]
    text = DOCKERFILE.read_text()
    for line in re.findall(r"^ARG \w+_IMAGE=\S+$", text, re.M):
        found = [
            re.search(p.replace("(?<", "(?P<"), line) for p in patterns
        ]
        assert any(f and f.group("currentDigest") for f in found), line


@pytest.mark.parametrize(
    "label",
    [
        "org.opencontainers.image.title",
        "org.opencontainers.image.version",
        "org.opencontainers.image.revision",
        "org.opencontainers.image.created",
        "org.opencontainers.image.source",
        "org.opencontainers.image.description",
        "org.opencontainers.image.base.name",
        "org.opencontainers.image.licenses",
        "identity.sbom.path",
    ],
)
def test_oci_labels(label):
    labels = " ".join(args_of("LABEL"))
    assert f"{label}=" in labels


def test_sbom_is_copied_where_the_label_points():
    labels = " ".join(args_of("LABEL"))
    path = re.search(r'identity\.sbom\.path="([^"]+)"', labels).group(1)
    copies = [a for a in args_of("COPY") if a.endswith(" " + path)]
    assert copies and "target/sbom/identity.cdx.json" in copies[0]


def test_image_listens_where_the_chart_probes():
    env = " ".join(args_of("ENV"))
    assert "IDENTITY_HEALTH_LISTEN_ADDR=0.0.0.0:50052" in env
    assert "IDENTITY_HEALTHCHECK_ADDR=http://127.0.0.1:50052" in env
    assert "IDENTITY_LISTEN_ADDR=0.0.0.0:50051" in env


def test_dockerignore_is_an_allow_list():
    lines = [
        x.strip()
        for x in (REPO / ".dockerignore").read_text().splitlines()
        if x.strip() and not x.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = {x[1:] for x in lines if x.startswith("!")}
    for needed in ("Cargo.toml", "Cargo.lock", "services/", "proto/", "migrations/", "target/sbom/identity.cdx.json"):
        assert needed in allowed, needed
    assert lines[-1] != "!target/"
    assert not any(p in allowed for p in (".git/", ".venv/", "target/"))


def test_build_reads_only_allowed_paths():
    """Each COPY source from the build context is in the .dockerignore allow-list."""
    allowed = [
        x.strip()[1:]
        for x in (REPO / ".dockerignore").read_text().splitlines()
        if x.strip().startswith("!")
    ]
    for stage in stages():
        for ins, arg in stage:
            if ins != "COPY" or "--from=" in arg:
                continue
            parts = [p for p in arg.split() if not p.startswith("--")]
            for src in parts[:-1]:
                if src == ".":
                    continue
                assert any(src == a or src.startswith(a) for a in allowed), src


def test_chart_app_version_matches_the_image_default_version():
    import yaml

    chart = yaml.safe_load((template.CHART / "Chart.yaml").read_text())
    m = re.search(r"^ARG VERSION=(\S+)$", DOCKERFILE.read_text(), re.M)
    assert m and m.group(1) == chart["appVersion"]


def test_dockerfile_exists_at_the_top_level():
    assert Path(DOCKERFILE).is_file()
