"""The checker behind `make checklist` (scripts/check-checklist.py).

Fixtures: `fixtures/repo/` is a tiny repository (a Rust e2e file, a Rust
module with unit tests, a pytest file, a decision record) and
`fixtures/repo/docs/*.md` are documents citing it, one defect each. The
rename and removal tests edit a copy of the fixture repository, which is
exactly what happens when someone renames a test the checklist cites.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SCRIPT = REPO / "scripts" / "check-checklist.py"
FIXTURE = HERE / "fixtures" / "repo"


def run(root: Path, *docs: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--root", str(root), *[str(root / "docs" / d) for d in docs]],
        capture_output=True,
        text=True,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    copy = tmp_path / "repo"
    shutil.copytree(FIXTURE, copy)
    return copy


def test_a_good_checklist_passes_and_counts_what_it_saw():
    result = run(FIXTURE, "good.md")
    assert result.returncode == 0, result.stderr
    assert "5 distinct tests" in result.stdout
    assert "3 met, 1 not met, 1 n/a" in result.stdout
    assert result.stderr == ""


def test_a_renamed_test_fails_naming_the_reference():
    result = run(FIXTURE, "renamed-test.md")
    assert result.returncode == 1
    assert "tests/e2e/sample.rs has no `fn a_test_that_was_renamed`" in result.stderr
    assert "renamed-test.md:3" in result.stderr


def test_renaming_a_cited_test_in_the_source_breaks_the_check(repo: Path):
    assert run(repo, "good.md").returncode == 0
    source = repo / "tests" / "e2e" / "sample.rs"
    source.write_text(source.read_text().replace("fn a_real_test(", "fn a_renamed_test("))
    result = run(repo, "good.md")
    assert result.returncode == 1
    assert "has no `fn a_real_test`" in result.stderr


def test_removing_a_cited_unit_test_breaks_the_check(repo: Path):
    module = repo / "services" / "demo" / "src" / "throttle.rs"
    text = module.read_text()
    start = text.index("    #[test]")
    module.write_text(text[:start] + "}\n")
    result = run(repo, "good.md")
    assert result.returncode == 1
    assert "services/demo/src/throttle.rs has no `fn delays_escalate`" in result.stderr


def test_removing_a_cited_python_test_breaks_the_check(repo: Path):
    (repo / "tests" / "helm" / "test_sample.py").write_text('"""Emptied."""\n')
    result = run(repo, "good.md")
    assert result.returncode == 1
    assert "has no `def test_every_pod_is_hardened`" in result.stderr


def test_a_deleted_test_file_fails():
    result = run(FIXTURE, "missing-file.md")
    assert result.returncode == 1
    assert "no file tests/e2e/removed.rs" in result.stderr


def test_commented_out_tests_and_string_literals_do_not_count():
    result = run(FIXTURE, "commented-out.md")
    assert result.returncode == 1
    for name in (
        "fn a_commented_out_test",
        "fn a_block_commented_test",
        "def test_commented_out",
        "fn only_in_a_string_literal_is_still_text",
    ):
        assert f"has no `{name}`" in result.stderr, name


def test_a_met_row_without_a_test_fails():
    result = run(FIXTURE, "met-without-test.md")
    assert result.returncode == 1
    assert "a `met` row must name the test that proves it" in result.stderr


def test_an_unknown_status_fails():
    result = run(FIXTURE, "unknown-status.md")
    assert result.returncode == 1
    assert "status `partially met` is not one of met, not met, n/a" in result.stderr


def test_a_cited_file_that_does_not_exist_fails():
    result = run(FIXTURE, "missing-path.md")
    assert result.returncode == 1
    assert "`docs/decisions/0099-never-written.md`: no such file or folder" in result.stderr


def test_the_cells_of_a_row_ignore_pipes_inside_code():
    spec = importlib.util.spec_from_file_location("check_checklist", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    assert module.cells("| a | `x | y` | met |") == ["a", "`x | y`", "met"]


def test_the_repository_documents_resolve():
    """The real checklist and threat model, as `make checklist` runs them."""
    result = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
