"""Shared fixtures. Integration tests take `host`: a HermeticHost, so they never touch the real
network; on a machine where that's impossible (not root, no user/mount namespaces) they skip."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import HermeticHost, HermeticUnavailable

# `netdecl` is the installed package (.ci/setup installs this checkout editable into .venv);
# `harness` is found because pytest puts this conftest's directory on sys.path.
REPO_ROOT = Path(__file__).resolve().parent.parent

_unavailable: str | None = None  # remembered so a machine that can't do it fails fast


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) for a hermetic network namespace"
    for tool in ("nsenter", "ip"):
        if shutil.which(tool) is None:
            return f"needs `{tool}` for the hermetic host"
    return _unavailable


@pytest.fixture
def host() -> Iterator[HermeticHost]:
    """A fresh hermetic host (private network + mount namespace), torn down after the test."""
    global _unavailable
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    hermetic = HermeticHost(cwd=REPO_ROOT)
    try:
        hermetic.start()
    except HermeticUnavailable as exc:
        _unavailable = str(exc)
        pytest.skip(str(exc))
    try:
        yield hermetic
    finally:
        hermetic.stop()


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def topologies(repo_root: Path) -> Path:
    return repo_root / "topologies"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Tests that use the hermetic host need the kernel: mark them so `-m "not kernel"` runs
    # only the pure unit tests.
    for item in items:
        if "host" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kernel)
