"""Shared fixtures. Integration tests take `host`: a HermeticHost, so they never touch the real
network; on a machine where that's impossible (not root, no user/mount namespaces) they skip.
Tests of what this machine's kernel lacks take `lab` (or `module_lab`, one boot for a whole
module): a KernelLab with the modules their `lab` marks name (tests/kernellab.py)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import kernellab
import pytest
from harness import HermeticHost, HermeticUnavailable

# `netdecl` is the installed package (.ci/setup installs this checkout editable into .venv);
# `harness` and `kernellab` are found because pytest puts this conftest's directory on
# sys.path.
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


def _kernel_lab(node: pytest.Item | pytest.Collector) -> kernellab.KernelLab:
    """A KernelLab loading every module the `lab` marks on `node` (and above it) name, or a
    skip naming what this machine lacks for it."""
    modules = list(dict.fromkeys(m for mark in node.iter_markers("lab") for m in mark.args))
    reason = kernellab.unavailable(modules)
    if reason:
        pytest.skip(reason)
    return kernellab.KernelLab(modules)


@pytest.fixture
def lab(request: pytest.FixtureRequest) -> kernellab.KernelLab:
    """The kernel lab for this test: `@pytest.mark.lab("dummy", "8021q")`, then
    `lab.run([Step(...)])` boots it once."""
    return _kernel_lab(request.node)


@pytest.fixture(scope="module")
def module_lab(request: pytest.FixtureRequest) -> kernellab.KernelLab:
    """The kernel lab for a module's `pytestmark = pytest.mark.lab(...)`: for a module-scoped
    fixture that boots once and lets several tests assert on the one run."""
    return _kernel_lab(request.node)


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def topologies(repo_root: Path) -> Path:
    return repo_root / "topologies"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Tests that use the hermetic host or the kernel lab need the kernel: mark them so
    # `-m "not kernel"` runs only the pure unit tests.
    for item in items:
        if "host" in getattr(item, "fixturenames", ()) or item.get_closest_marker("lab"):
            item.add_marker(pytest.mark.kernel)
