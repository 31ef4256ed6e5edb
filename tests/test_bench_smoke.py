"""Keeps the benchmarks working: a star-10 run of bench_star.py must finish and print its table,
and bench_linkup.py must measure its three orders at N=5.

Timing is never asserted (CI machines vary); the script itself fails when a netdecl step
fails - e.g. `plan` after `apply` is not empty (plan --detailed-exitcode exits 2) - so this
also checks that netdecl converges on the star topology.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.kernel


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for throwaway network namespaces")
def test_bench_star_smoke() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "bench_star.py"), "--sizes", "10",
         "--no-write"], capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("load average ")
    assert lines[2].startswith("| N | what |")
    for step in ("floor", "floor teardown", "validate", "apply (cold)", "plan (no changes)",
                 "apply (one mtu)", "destroy", "destroy, from its first change",
                 "apply failing at the last action", "rollback (of that apply)"):
        assert any(line.startswith(f"| 10 | {step} |") for line in lines), result.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for throwaway network namespaces")
def test_bench_linkup_smoke() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "bench_linkup.py"), "--sizes", "5"],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| 5 |")]
    assert [row.split("|")[2].strip() for row in rows] == [
        "pair-by-pair", "all-then-up", "pair-by-pair, IPv6 off"], result.stdout
