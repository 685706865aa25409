#!/usr/bin/env python3
"""make checklist: the security documents may only cite tests that exist.

Reads docs/security-checklist.md and docs/threat-model.md (or the files
given) and checks every reference in backticks:

  `tests/e2e/hardening.rs::an_attacker_failing_50_times_does_not_lock_the_owner_out`
      the file exists and defines the function: `fn NAME` in a .rs file,
      `def NAME` in a .py file (outside comments);
  `docs/decisions/0002-refuse-passwords-over-72-bytes.md`, `deny.toml`
      a path under a top-level folder or file of the repository exists.

In every Markdown table with a `Status` column the status is one of
`met`, `not met`, `n/a`, and a `met` row names at least one test
(`FILE::FUNCTION`) — a requirement is met when a test proves it, not when
a document says so.

Exit status 0 when everything resolves, 1 otherwise (each problem printed
with its file and line). Python 3.9+, standard library only.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_DOCS = ("docs/security-checklist.md", "docs/threat-model.md")
STATUSES = ("met", "not met", "n/a")
# `path::name` where path ends in a source extension.
TEST_REF = re.compile(r"^(?P<path>[A-Za-z0-9_.\-/]+\.(?:rs|py))::(?P<name>[A-Za-z_][A-Za-z0-9_]*)$")
BACKTICKED = re.compile(r"`([^`\s]+)`")
# Things in backticks that look like paths but name no repository file.
NOT_REPO_PREFIXES = ("/", "target/", "data/", "~", "$", "http://", "https://")


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    tests: set[str] = field(default_factory=set)
    paths: set[str] = field(default_factory=set)
    rows: dict[str, int] = field(default_factory=lambda: {s: 0 for s in STATUSES})

    def problem(self, where: str, text: str) -> None:
        self.problems.append(f"{where}: {text}")


def strip_comments(source: str, suffix: str) -> str:
    """Removes comments so that a test commented out no longer counts."""
    if suffix == ".rs":
        source = re.sub(r"/\*.*?\*/", "", source, flags=re.S)
        return "\n".join(line.split("//", 1)[0] for line in source.splitlines())
    return "\n".join(line.split("#", 1)[0] for line in source.splitlines())


def defines(path: Path, name: str) -> bool:
    text = strip_comments(path.read_text(encoding="utf-8", errors="replace"), path.suffix)
    keyword = "fn" if path.suffix == ".rs" else "def"
    return re.search(rf"\b{keyword}\s+{re.escape(name)}\s*[(<]", text) is not None


def top_level_entries(root: Path) -> set[str]:
    ignored = {".git", "target", "data", ".venv", "node_modules", ".pytest_cache", "__pycache__"}
    return {p.name for p in root.iterdir() if p.name not in ignored}


def looks_like_repo_path(token: str, tops: set[str]) -> bool:
    if token.startswith(NOT_REPO_PREFIXES) or "::" in token or "*" in token or "…" in token:
        return False
    first = token.split("/", 1)[0]
    if "/" in token:
        return first in tops
    # A bare top-level file (`deny.toml`, `Cargo.lock`, `SECURITY.md`).
    return token in tops and "." in token


def check_reference(token: str, where: str, root: Path, tops: set[str], report: Report) -> bool:
    """Returns True when `token` is a test reference (valid or not)."""
    m = TEST_REF.match(token)
    if m:
        path = root / m["path"]
        if not path.is_file():
            report.problem(where, f"`{token}`: no file {m['path']}")
        elif not defines(path, m["name"]):
            keyword = "fn" if path.suffix == ".rs" else "def"
            report.problem(where, f"`{token}`: {m['path']} has no `{keyword} {m['name']}` (renamed or removed?)")
        else:
            report.tests.add(token)
        return True
    if looks_like_repo_path(token, tops):
        if (root / token.rstrip("/")).exists():
            report.paths.add(token)
        else:
            report.problem(where, f"`{token}`: no such file or folder")
    return False


def cells(line: str) -> list[str]:
    body = line.strip()
    if body.startswith("|"):
        body = body[1:]
    if body.endswith("|"):
        body = body[:-1]
    # A `|` inside backticks does not split cells.
    out, cur, tick = [], "", False
    for ch in body:
        if ch == "`":
            tick = not tick
        if ch == "|" and not tick:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    out.append(cur.strip())
    return out


def check_document(doc: Path, root: Path, report: Report) -> None:
    tops = top_level_entries(root)
    status_col: int | None = None
    in_table = False
    for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), start=1):
        where = f"{doc}:{number}"
        is_row = line.lstrip().startswith("|")
        if not is_row:
            in_table, status_col = False, None
        test_refs = 0
        for token in BACKTICKED.findall(line):
            if check_reference(token, where, root, tops, report):
                test_refs += 1
        if not is_row:
            continue
        row = cells(line)
        if not in_table:
            in_table = True
            lowered = [c.lower() for c in row]
            status_col = lowered.index("status") if "status" in lowered else None
            continue
        if all(re.fullmatch(r":?-{3,}:?", c) for c in row if c):
            continue
        if status_col is None:
            continue
        if status_col >= len(row):
            report.problem(where, "row has no Status cell")
            continue
        status = row[status_col].strip("*_ ").lower()
        if status not in STATUSES:
            report.problem(where, f"status `{row[status_col]}` is not one of {', '.join(STATUSES)}")
            continue
        report.rows[status] += 1
        if status == "met" and test_refs == 0:
            report.problem(where, "a `met` row must name the test that proves it (`FILE::FUNCTION`)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("docs", nargs="*", help=f"Markdown files (default: {' '.join(DEFAULT_DOCS)})")
    parser.add_argument("--root", default=Path(__file__).resolve().parents[1], type=Path, help="repository root")
    args = parser.parse_args(argv)
    root: Path = args.root.resolve()
    docs = [Path(d) for d in args.docs] or [root / d for d in DEFAULT_DOCS]
    report = Report()
    for doc in docs:
        if not doc.is_file():
            report.problem(str(doc), "document not found")
            continue
        check_document(doc, root, report)
    for problem in report.problems:
        print(problem, file=sys.stderr)
    rows = ", ".join(f"{n} {s}" for s, n in report.rows.items())
    summary = (
        f"checklist: {len(docs)} document(s), {len(report.tests)} distinct tests and "
        f"{len(report.paths)} paths referenced; status rows: {rows}"
    )
    if report.problems:
        print(f"{summary}; {len(report.problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"{summary}; all resolve")
    return 0


if __name__ == "__main__":
    sys.exit(main())
