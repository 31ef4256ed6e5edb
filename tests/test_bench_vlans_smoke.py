"""Keeps benchmarks/bench_vlans.py working: a run at N=5 must finish and print every row (it
fails itself when a netdecl step fails: a plan after an apply that is not empty, a destroy
that leaves a link behind). Timing is never asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.lab("dummy", "8021q", "bridge")  # the modules the script loads


def test_bench_vlans_smoke(lab) -> None:  # (the fixture skips where the lab cannot run)
    result = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "bench_vlans.py"),
                             "--sizes", "5"], capture_output=True, text=True, timeout=600,
                            cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    for step in ("floor", "floor teardown", "apply (cold)", "plan (no changes)",
                 "apply (one VLAN)", "plan (no changes, again)", "destroy"):
        assert f"| vlan-5 | {step} |" in result.stdout, result.stdout
