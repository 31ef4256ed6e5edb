#!/usr/bin/env python3
"""VRFs and tunnels: netdecl against the hand-written `ip -batch` script, in the kernel lab.

This machine's kernel may have neither (tests/kernellab.py boots a user-mode Linux 6.1 that
has both), so both sides run in the same lab boot, one after the other, each on an empty
host and each torn down before the next:

- vrf-N: N VRFs (tables 1000...), each with a dummy port holding the same 10.0.0.1/24 (VRFs
  are for overlapping addresses) and 10 routes via 10.0.0.254 in its table;
- gre-N: N GRE tunnels with keys 1..N over one dummy underlay, each with an address.

For each: the floor (one `ip -batch` building it), netdecl's cold `apply`, a `plan` with
nothing to do, netdecl's `destroy`, and the floor's teardown (one `ip -batch` of `link del`).
Wall clock, measured inside the lab around each command.

Run as root:  python3 benchmarks/bench_routing.py [--sizes 100] [--runs 1]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ROUTES_PER_VRF = 10


def _load(name: str):
    """A module of tests/ by its path (tests/ is no package; nothing here edits sys.path)."""
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "tests" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def vrf_topology(n: int) -> str:
    lines = ["version: 1", "name: bench-vrf", "links:"]
    routes = ["routes:"]
    for i in range(n):
        lines.append(f"  - {{name: vrf{i}, kind: vrf, vrf: {{table: {1000 + i}}}}}")
        lines.append(f"  - {{name: d{i}, kind: dummy, master: vrf{i}, "
                     "addresses: [10.0.0.1/24]}")
        routes += [f"  - {{to: 172.16.{j}.0/24, via: 10.0.0.254, dev: d{i}, table: vrf{i}}}"
                   for j in range(ROUTES_PER_VRF)]
    return "\n".join(lines + routes) + "\n"


def vrf_batch(n: int) -> tuple[str, str]:
    build, teardown = [], []
    for i in range(n):
        build += [f"link add vrf{i} type vrf table {1000 + i}", f"link set vrf{i} up",
                  f"link add d{i} type dummy", f"link set d{i} master vrf{i}",
                  f"link set d{i} up", f"addr add 10.0.0.1/24 dev d{i}"]
        build += [f"route add 172.16.{j}.0/24 via 10.0.0.254 dev d{i} table {1000 + i}"
                  for j in range(ROUTES_PER_VRF)]
        teardown += [f"link del d{i}", f"link del vrf{i}"]
    return "\n".join(build) + "\n", "\n".join(teardown) + "\n"


def gre_topology(n: int) -> str:
    lines = ["version: 1", "name: bench-gre", "links:",
             "  - {name: u0, kind: dummy, addresses: [192.0.2.1/24]}"]
    for i in range(n):
        lines.append(f"  - {{name: tun{i}, kind: gre, addresses: [10.{i // 250}.{i % 250}.1/30],"
                     f" gre: {{local: 192.0.2.1, remote: 192.0.2.2, key: {i + 1}, dev: u0}}}}")
    return "\n".join(lines) + "\n"


def gre_batch(n: int) -> tuple[str, str]:
    build = ["link add u0 type dummy", "link set u0 up", "addr add 192.0.2.1/24 dev u0"]
    teardown = []
    for i in range(n):
        build += [f"link add tun{i} type gre local 192.0.2.1 remote 192.0.2.2 key {i + 1} "
                  "dev u0", f"link set tun{i} up",
                  f"addr add 10.{i // 250}.{i % 250}.1/30 dev tun{i}"]
        teardown.append(f"link del tun{i}")
    return "\n".join(build) + "\n", "\n".join(teardown + ["link del u0"]) + "\n"


# Runs in the lab (this interpreter, so netdecl imports): times each command of a case.
TIMER = r"""
import json, os, subprocess, sys, time
results = {}
def timed(name, argv):
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True)
    results[name] = time.monotonic() - started
    if done.returncode not in (0,):
        sys.exit(f"{name}: {argv} exited {done.returncode}\n{done.stdout}\n{done.stderr}")
for case in sys.argv[1:]:
    timed(f"{case} floor", ["ip", "-batch", f"{case}.build"])
    timed(f"{case} floor teardown", ["ip", "-batch", f"{case}.teardown"])
    timed(f"{case} apply (cold)", ["netdecl", "apply", "-q", f"{case}.yaml"])
    timed(f"{case} plan (no changes)", ["netdecl", "plan", "--detailed-exitcode",
                                        f"{case}.yaml"])
    timed(f"{case} destroy", ["netdecl", "destroy", "-q", f"{case}.yaml"])
with open(os.path.join(os.environ["OUT"], "times.json"), "w") as f:
    json.dump(results, f)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    _load("labcore")  # kernellab imports it by name: there first, as tests/ is no package
    kernellab = _load("kernellab")
    lab = kernellab.KernelLab(["vrf", "dummy", "ip_gre"], timeout=1800)
    reason = kernellab.unavailable(lab.modules)
    if reason:
        print(f"bench_routing: {reason}", file=sys.stderr)
        return 1
    print("| N | what | wall s | against the floor |")
    print("|---:|---|---:|---:|")
    for n in (int(s) for s in args.sizes.split(",")):
        files: dict[str, str | bytes] = {}
        cases = []
        for name, topology, batch in (("vrf", vrf_topology, vrf_batch),
                                      ("gre", gre_topology, gre_batch)):
            case = f"{name}-{n}"
            cases.append(case)
            files[f"{case}.yaml"] = topology(n)
            files[f"{case}.build"], files[f"{case}.teardown"] = batch(n)
        for _ in range(args.runs):
            code = f"import sys\nsys.argv[1:] = {cases!r}\n" + TIMER
            run = lab.run([kernellab.Step.python("bench", code)], files=files)
            result = run["bench"]
            result.ok()
            times = result.json["times"]
            for case in cases:
                floor, teardown = times[f"{case} floor"], times[f"{case} floor teardown"]
                for what, against in (("floor", None), ("floor teardown", None),
                                      ("apply (cold)", floor), ("plan (no changes)", floor),
                                      ("destroy", teardown)):
                    wall = times[f"{case} {what}"]
                    ratio = f"{wall / against:.2f}x" if against else ""
                    print(f"| {case} | {what} | {wall:.3f} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
