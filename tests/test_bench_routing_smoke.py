"""Keeps benchmarks/bench_routing.py working: a run at N=5 must finish and print every row
(it fails itself when a netdecl step fails, e.g. a plan after apply that is not empty).
Timing is never asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.lab("vrf", "dummy", "ip_gre")  # the modules the script loads


def test_bench_routing_smoke(lab) -> None:  # (the fixture skips where the lab cannot run)
    result = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "bench_routing.py"),
                             "--sizes", "5"], capture_output=True, text=True, timeout=600,
                            cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    for case in ("vrf-5", "gre-5"):
        for step in ("floor", "floor teardown", "apply (cold)", "plan (no changes)", "destroy"):
            assert f"| {case} | {step} |" in result.stdout, result.stdout
