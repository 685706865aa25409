"""Shared fixtures for the chart tests: offline renders through Helm's Go SDK."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import template  # noqa: E402  (tests/helm/template.py)
from chart_helpers import Rendered  # noqa: E402


@pytest.fixture(scope="session")
def minimal_values() -> dict[str, Any]:
    return template.load_values("minimal")


@pytest.fixture(scope="session")
def full_values() -> dict[str, Any]:
    return template.load_values("full")


@pytest.fixture(scope="session")
def hs256_values() -> dict[str, Any]:
    """A chart-made Secret with an HS256 shared key, otherwise defaults."""
    return {
        "signing": {"algorithm": "HS256"},
        "secrets": {
            "create": {
                "databaseUrl": "postgres://identity:hs-db-password@db:5432/identity",
                "migrationDatabaseUrl": "postgres://identity_owner:hs-owner-password@db:5432/identity",
                "secretKey": "hs256-test-secret-0123456789-abcdefghijkl",
            }
        },
    }


@pytest.fixture(scope="session")
def minimal(minimal_values) -> Rendered:
    return Rendered(minimal_values)


@pytest.fixture(scope="session")
def full(full_values) -> Rendered:
    return Rendered(full_values)


@pytest.fixture(scope="session")
def hs256(hs256_values) -> Rendered:
    return Rendered(hs256_values)


@pytest.fixture(scope="session", params=["minimal", "full", "hs256"])
def rendered(request) -> Rendered:
    """Each of the three renders in turn."""
    return request.getfixturevalue(request.param)
