"""deny.toml really refuses what it claims to (`make deny` runs these).

Each test takes the real dependency graph (`cargo metadata --locked`),
changes one thing in it the way a bad dependency update would, and runs
cargo-deny with the repository's deny.toml on the doctored graph
(`--metadata-path`): a disallowed license, a git source, a banned crate, a
duplicate version nobody justified. The unchanged graph must pass, so each
failure is about the one change. Offline; needs cargo and cargo-deny
(`make deny` installs it when missing).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DENY_TOML = REPO / "deny.toml"
REGISTRY = "registry+https://github.com/rust-lang/crates.io-index"
# A leaf crate the binary really uses; any would do.
VICTIM = "zxcvbn"


@pytest.fixture(scope="module")
def metadata_text() -> str:
    if shutil.which("cargo") is None:
        pytest.fail("cargo is not on PATH")
    if subprocess.run(["cargo", "deny", "--version"], capture_output=True).returncode != 0:
        pytest.fail("cargo-deny is missing: run `make deny` (it installs it)")
    out = subprocess.run(
        ["cargo", "metadata", "--locked", "--format-version", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout


def victim_of(metadata: dict) -> dict:
    [pkg] = [p for p in metadata["packages"] if p["name"] == VICTIM]
    return pkg


def deny(tmp_path: Path, metadata: dict, *checks: str, config: Path = DENY_TOML):
    path = tmp_path / "metadata.json"
    path.write_text(json.dumps(metadata))
    result = subprocess.run(
        ["cargo", "deny", "--color", "never", "--metadata-path", str(path), "--config", str(config), "check", *checks],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    return result.returncode, result.stderr + result.stdout


def diagnostics(output: str) -> set[str]:
    return set(re.findall(r"^error\[([a-z-]+)\]", output, re.M))


def test_the_real_graph_passes(metadata_text, tmp_path):
    code, output = deny(tmp_path, json.loads(metadata_text), "licenses", "bans", "sources")
    assert code == 0, output
    assert not diagnostics(output), output


def test_a_copyleft_license_is_refused(metadata_text, tmp_path):
    metadata = json.loads(metadata_text)
    victim_of(metadata)["license"] = "GPL-3.0-only"
    code, output = deny(tmp_path, metadata, "licenses")
    assert code != 0, output
    assert diagnostics(output) == {"rejected"}, output
    assert VICTIM in output


def test_a_git_source_is_refused(metadata_text, tmp_path):
    version = victim_of(json.loads(metadata_text))["version"]
    old_id = f"{REGISTRY}#{VICTIM}@{version}"
    new_id = f"git+https://github.com/example/{VICTIM}?rev=0123456#{VICTIM}@{version}"
    metadata = json.loads(metadata_text.replace(old_id, new_id))
    victim_of(metadata)["source"] = (
        f"git+https://github.com/example/{VICTIM}?rev=0123456#0123456789abcdef0123456789abcdef01234567"
    )
    code, output = deny(tmp_path, metadata, "sources")
    assert code != 0, output
    assert diagnostics(output) == {"source-not-allowed"}, output


@pytest.mark.parametrize("banned", ["openssl", "openssl-sys", "native-tls", "aws-lc-rs", "aws-lc-sys"])
def test_a_second_tls_stack_is_refused(metadata_text, tmp_path, banned):
    version = victim_of(json.loads(metadata_text))["version"]
    metadata = json.loads(metadata_text.replace(f"#{VICTIM}@{version}", f"#{banned}@{version}"))
    for pkg in metadata["packages"]:
        if pkg["name"] == VICTIM:
            pkg["name"] = banned
        for dep in pkg["dependencies"]:
            if dep["name"] == VICTIM:
                dep["name"] = banned
    lib = banned.replace("-", "_")
    for node in metadata["resolve"]["nodes"]:
        for dep in node.get("deps", []):
            if dep["name"] == VICTIM:
                dep["name"] = lib
    code, output = deny(tmp_path, metadata, "bans")
    assert code != 0, output
    assert "banned" in diagnostics(output), output
    assert f"'{banned} = " in output


def test_an_unjustified_duplicate_version_is_refused(metadata_text, tmp_path):
    """Dropping one `skip` entry (as if the duplicate were new) fails bans."""
    text = DENY_TOML.read_text()
    entry = re.search(r'^\s*\{ crate = "sha2@[^"]+",.*\n', text, re.M)
    assert entry, "deny.toml skips the sha2 duplicate"
    config = tmp_path / "deny.toml"
    config.write_text(text.replace(entry.group(0), ""))
    code, output = deny(tmp_path, json.loads(metadata_text), "bans", config=config)
    assert code != 0, output
    assert diagnostics(output) == {"duplicate"}, output
    assert "'sha2'" in output
