#!/usr/bin/env python3
"""How fast `netdecl agent` repairs drift and applies an edit, on star-N (bench_star.py).

Inside a throwaway network + mount namespace (tests/harness.py), the agent runs on star-N; then
20 changes are made by hand, cycling through: a route deleted in a namespace, a veth deleted
(the pair, with its address and route), an address deleted, the NAT table deleted. For each,
two times: "agent" is the agent's own (first kernel event -> repair applied and verified), and
"wall" is from just before the `ip`/`nft` command starts to the agent's `repaired` log line.
Then file edits (an MTU changed) are timed from the write to the `applied` line.
Run as root:  python3 benchmarks/bench_agent.py [--size 100] [--repairs 20]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


bench_star = _load("bench_star", REPO_ROOT / "benchmarks" / "bench_star.py")  # loads harness
agentproc = _load("agentproc", REPO_ROOT / "tests" / "agentproc.py")


def drifts(n: int, count: int) -> list[tuple[str, list[str], str | None]]:
    kinds = [
        ("route", lambda i: (["ip", "route", "del", "default"], f"s{i}")),
        ("veth pair", lambda i: (["ip", "link", "del", f"vs{i}"], None)),
        ("address", lambda i: (["ip", "addr", "del", f"{bench_star.address_of(i)}/16", "dev",
                                "eth0"], f"s{i}")),
        ("nat table", lambda i: (["nft", "delete", "table", "ip", "netdecl-star"], None)),
    ]
    out = []
    for k in range(count):
        label, make = kinds[k % len(kinds)]
        argv, ns = make((k * 37) % n)
        out.append((label, argv, ns))
    return out


def summary(values: list[float]) -> str:
    return (f"median {statistics.median(values) * 1000:.0f} ms, "
            f"worst {max(values) * 1000:.0f} ms (n={len(values)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--repairs", type=int, default=20)
    parser.add_argument("--edits", type=int, default=5)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_agent.py needs root (it makes throwaway network namespaces)",
              file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="bench-agent-") as tmp:
        topo = Path(tmp) / "star.yaml"
        topo.write_text(bench_star.star_yaml(args.size))
        with bench_star.HermeticHost(cwd=REPO_ROOT) as host, \
                agentproc.AgentProcess(host, str(topo)) as agent:
            agent.wait_for("applied", lambda e: e["reason"] == "start", timeout=600)
            _quiet(agent)
            agent_ms, wall = [], []
            by_kind: dict[str, list[float]] = {}
            for label, argv, ns in drifts(args.size, args.repairs):
                start = time.monotonic()
                host.run(argv, ns=ns)
                event = agent.wait_for("repaired", timeout=60)
                wall.append(time.monotonic() - start)
                agent_ms.append(event["ms"] / 1000)
                by_kind.setdefault(label, []).append(wall[-1])
                _quiet(agent)
            edits = []
            for k in range(args.edits):
                start = time.monotonic()
                _replace(topo, bench_star.star_yaml(args.size, mtu_of_s0=1400 - k))
                agent.wait_for("applied", lambda e: e["reason"] == "file", timeout=60)
                edits.append(time.monotonic() - start)
                _quiet(agent)
            cpu = agent.cpu_seconds()
            assert agent.stop() == 0
    print(f"star-{args.size}, {args.repairs} repairs")
    print(f"  agent (event -> repaired): {summary(agent_ms)}")
    print(f"  wall (command -> repaired): {summary(wall)}")
    for label, values in by_kind.items():
        print(f"    {label}: {summary(values)}")
    print(f"  file edits (write -> applied): {summary(edits)}")
    print(f"  agent CPU for the whole run (start apply included): {cpu:.1f} s")
    return 0


def _quiet(agent) -> None:
    """Let the follow-up check of the agent's own changes pass, so the next change starts
    from an idle agent: wait until no event has come for half a second."""
    count = -1
    while count != len(agent.events):
        count = len(agent.events)
        time.sleep(0.5)
        agent.drain()


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


if __name__ == "__main__":
    sys.exit(main())
