"""What a command pays before and besides its work, held without timing (house rule: no
timing assertions; benchmarks/ measures): which modules `netdecl validate` and `--help`
import, and that loading a file costs in proportion to it (a check that walks every link
for every route made validate of star-1000 take 7 s before 0d9d6a1)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from netdecl.links import LINK_KINDS
from netdecl.topology.loader import load_topology

REPO_ROOT = Path(__file__).resolve().parent.parent
STAR = REPO_ROOT / "topologies" / "star.yaml"
SMALL = REPO_ROOT / "topologies" / "docker-bridge.yaml"

# What neither validate nor --help uses: the engine (its two package __init__s are a docstring
# and a constant, LOCK_TIMEOUT, which --help shows), the kernel, the tools, the agent;
# jsonschema is for a file the compiled check refuses, difflib for its suggestions,
# importlib.resources and hashlib for files netdecl ships and ifb names, socket for netlink;
# shutil is what argparse would import for the terminal's width.
NOT_FOR_VALIDATE = ("netdecl.engine.", "netdecl.backends", "netdecl.tools", "netdecl.agent",
                    "pyroute2", "jsonschema", "fastjsonschema", "hashlib", "_hashlib",
                    "importlib.resources", "zipfile", "difflib", "socket", "shutil")
ENGINE_PACKAGES = {"netdecl.engine.state"}  # (no code: a docstring and LOCK_TIMEOUT)


def modules_after(*argv: str) -> tuple[int, list[str]]:
    """The exit status of `netdecl ARGV` (run as the CLI runs it, in a fresh interpreter)
    and every module it had imported by the end."""
    code = ("import json, sys\n"
            "from netdecl.cli import main\n"
            f"status = main({list(argv)!r})\n"
            "sys.stdout.flush()\n"
            "sys.stderr.write(json.dumps([status, sorted(sys.modules)]))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=REPO_ROOT, check=False)
    status, modules = json.loads(result.stderr.splitlines()[-1])
    return status, modules


def unwanted(modules: list[str]) -> list[str]:
    return [m for m in modules if m.startswith(NOT_FOR_VALIDATE) and m not in ENGINE_PACKAGES]


def test_validate_imports_neither_the_engine_nor_the_kernel():
    status, modules = modules_after("validate", str(SMALL))
    assert status == 0
    assert "netdecl.topology.loader" in modules  # (it did load the file)
    assert unwanted(modules) == []


def test_help_imports_no_loader():
    result = subprocess.run(
        [sys.executable, "-c",
         "import sys, json\nfrom netdecl.cli import main\n"
         # (argparse exits after printing the help)
         "try:\n    main(['--help'])\nexcept SystemExit as e:\n    status = e.code\n"
         "sys.stderr.write(json.dumps([status, sorted(sys.modules)]))\n"],
        capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    status, modules = json.loads(result.stderr.splitlines()[-1])
    assert status == 0 and "usage: netdecl" in result.stdout
    assert unwanted(modules) == []
    assert [m for m in modules if m.startswith(("netdecl.topology", "netdecl.links",
                                                "netdecl.model", "yaml"))] == []


def load_star(n: int) -> tuple[Counter[str], int]:
    """Load star.yaml with N containers counting two things: calls of every link kind's
    ends() (what checks and sbr walk), and Python function calls in all (sys.setprofile: a
    count, the same on any machine, not a time)."""
    ends: Counter[str] = Counter()
    calls = 0

    def count(frame: Any, event: str, arg: Any) -> None:
        nonlocal calls
        if event == "call":
            calls += 1

    originals = {kind: kind.ends for kind in LINK_KINDS.values()}

    def counting(kind: Any) -> Any:
        def ends_of(*args: Any, **kwargs: Any) -> Any:
            ends[kind.name] += 1
            return originals[kind](*args, **kwargs)
        return ends_of

    for kind in originals:
        kind.ends = counting(kind)  # type: ignore[method-assign]
    sys.setprofile(count)
    try:
        topology = load_topology(STAR, variables={"n": str(n)})
    finally:
        sys.setprofile(None)
        for kind in originals:
            del kind.ends  # (the class's own again)
    assert len(topology.namespaces()) == n
    return ends, calls


def test_loading_a_file_costs_in_proportion_to_it():
    """star-50 against star-200: four times the file must cost about four times the calls.
    A check walking every link per route (quadratic: sixteen times) fails this long before
    anyone times it."""
    load_star(10)  # warms what is cached per process (parsed networks, compiled templates)
    small_ends, small_calls = load_star(50)
    big_ends, big_calls = load_star(200)
    assert small_ends["veth"] > 0
    for kind, count in big_ends.items():
        assert count <= 4.5 * small_ends[kind], (kind, small_ends[kind], count)
    assert big_calls <= 4.5 * small_calls, (small_calls, big_calls)
