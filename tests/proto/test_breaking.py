"""`make proto-breaking` really refuses what buf.yaml's breaking rules claim.

`make test` compares proto/ with the previous commit's. These tests make
one change to a copy of proto/ the way a careless edit would and run the
same `buf breaking` against the untouched copy: a field deleted without
reserving its number and name, a field renumbered, a method removed must
each fail, and a deletion that reserves both must pass (buf.yaml allows it,
as for ValidateTokenResponse.scopes).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROTO = REPO / "proto"
BUF = REPO / "tools" / "node_modules" / ".bin" / "buf"
AUTH = Path("identity/v1/auth.proto")


def breaking(tmp_path: Path, edit) -> subprocess.CompletedProcess[str]:
    if not BUF.exists():
        pytest.fail("buf is missing: run `make tools`")
    before, after = tmp_path / "before", tmp_path / "after"
    shutil.copytree(PROTO, before)
    shutil.copytree(PROTO, after)
    path = after / AUTH
    text = path.read_text()
    edited = edit(text)
    assert edited != text, "the edit changed nothing"
    path.write_text(edited)
    return subprocess.run(
        [str(BUF), "breaking", str(after), "--against", str(before)],
        capture_output=True,
        text=True,
    )


def validate_request(text: str, body: str) -> str:
    return re.sub(
        r"message ValidateTokenRequest \{.*?\n\}",
        "message ValidateTokenRequest {\n" + body + "}",
        text,
        count=1,
        flags=re.S,
    )


def test_the_unchanged_proto_passes(tmp_path: Path) -> None:
    result = breaking(tmp_path, lambda t: t + "\n")
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_field_deleted_without_reserving_it_is_refused(tmp_path: Path) -> None:
    result = breaking(tmp_path, lambda t: validate_request(t, ""))
    assert result.returncode != 0
    assert "ValidateTokenRequest" in result.stdout, result.stdout + result.stderr


def test_a_renumbered_field_is_refused(tmp_path: Path) -> None:
    result = breaking(
        tmp_path, lambda t: validate_request(t, "  string access_token = 2;\n")
    )
    assert result.returncode != 0
    assert "access_token" in result.stdout, result.stdout + result.stderr


def test_a_removed_method_is_refused(tmp_path: Path) -> None:
    result = breaking(
        tmp_path,
        lambda t: re.sub(r"\n\s*rpc ValidateToken\(.*?\n", "\n", t, count=1),
    )
    assert result.returncode != 0
    assert "ValidateToken" in result.stdout, result.stdout + result.stderr


def test_a_deletion_that_reserves_number_and_name_passes(tmp_path: Path) -> None:
    result = breaking(
        tmp_path,
        lambda t: validate_request(
            t, '  reserved 1;\n  reserved "access_token";\n'
        ),
    )
    assert result.returncode == 0, result.stdout + result.stderr
