#!/usr/bin/env python3
"""nmstate's own benchmark: N bridges over N VLANs on one NIC, against `ip -batch`, in the lab.

nmstate publishes this one (N = 1000 took it 8 min 34 s): one NIC, N VLANs on it (ids 1..N),
each VLAN the only port of a bridge of its own. This machine's kernel has no 8021q, so both
sides run in one boot of the kernel lab (tests/kernellab.py, a user-mode Linux 6.1), one after
the other, on the same NIC: `nic0`, a dummy made by hand before anything is timed and declared
`kind: external` in the topology (netdecl never creates or deletes it, as with a real NIC).

For each N: the floor (one `ip -batch` building it) and its teardown (one `ip -batch` of
`link del`), then netdecl's cold `apply`, a `plan` with nothing to do, an `apply` changing one
VLAN (the last VLAN's MTU to 1400, in place), a `plan` with nothing to do again, and `destroy`.
Wall clock, measured inside the lab around each command.

Run as root:  python3 benchmarks/bench_vlans.py [--sizes 100,300,1000] [--runs 1]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
NIC = "nic0"


def _load(name: str):
    """A module of tests/ by its path (tests/ is no package; nothing here edits sys.path)."""
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "tests" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def write_bytecode() -> None:
    """Compile netdecl's modules as installing the package does: the lab sees this checkout
    read-only with PYTHONDONTWRITEBYTECODE set, so a module changed since its last compile
    would be compiled again by every command (as in bench_star.py)."""
    package = REPO_ROOT / "netdecl"
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="")  # (empty: unset, for Python)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)],
                   check=True, stdout=subprocess.DEVNULL, env=env)


def vlan_topology(n: int, changed: bool = False) -> str:
    """VLANs 1..n on the NIC, VLAN i the port of bridge br<i>; `changed`: the last VLAN's
    MTU at 1400 (the one-VLAN change)."""
    lines = ["version: 1", f"name: bench-vlans-{n}", "links:",
             f"  - {{name: {NIC}, kind: external}}"]
    for i in range(1, n + 1):
        mtu = ", mtu: 1400" if changed and i == n else ""
        lines.append(f"  - {{name: {NIC}.{i}, kind: vlan, link: {NIC}, vlan: {{id: {i}}},"
                     f" master: br{i}{mtu}}}")
        lines.append(f"  - {{name: br{i}, kind: bridge}}")
    return "\n".join(lines) + "\n"


def vlan_batch(n: int) -> tuple[str, str]:
    """The hand-written script: what an admin would put in one `ip -batch`."""
    build, teardown = [], []
    for i in range(1, n + 1):
        build += [f"link add br{i} type bridge", f"link set br{i} up",
                  f"link add link {NIC} name {NIC}.{i} type vlan id {i}",
                  f"link set {NIC}.{i} master br{i}", f"link set {NIC}.{i} up"]
        teardown += [f"link del {NIC}.{i}", f"link del br{i}"]
    return "\n".join(build) + "\n", "\n".join(teardown) + "\n"


# Runs in the lab (this interpreter, so netdecl imports): times each command of a case.
TIMER = r"""
import json, os, subprocess, sys, time
results = {}
def run(argv, ok=(0,)):
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode not in ok:
        sys.exit(f"{argv} exited {done.returncode}\n{done.stdout}\n{done.stderr}")
def timed(name, argv, ok=(0,)):
    started = time.monotonic()
    run(argv, ok)
    results[name] = time.monotonic() - started
run(["ip", "link", "add", NIC, "type", "dummy"])  # the NIC, by hand, untimed
run(["ip", "link", "set", NIC, "up"])
for case in sys.argv[1:]:
    timed(f"{case} floor", ["ip", "-batch", f"{case}.build"])
    timed(f"{case} floor teardown", ["ip", "-batch", f"{case}.teardown"])
    timed(f"{case} apply (cold)", ["netdecl", "apply", "-q", f"{case}.yaml"])
    timed(f"{case} plan (no changes)", ["netdecl", "plan", "--detailed-exitcode",
                                        f"{case}.yaml"])
    timed(f"{case} apply (one VLAN)", ["netdecl", "apply", "-q", f"{case}-changed.yaml"])
    timed(f"{case} plan (no changes, again)", ["netdecl", "plan", "--detailed-exitcode",
                                               f"{case}-changed.yaml"])
    timed(f"{case} destroy", ["netdecl", "destroy", "-q", f"{case}-changed.yaml"])
    left = json.loads(subprocess.run(["ip", "-j", "link", "show"], capture_output=True,
                                     text=True, check=True).stdout)
    extra = sorted(link["ifname"] for link in left if link["ifname"] not in ("lo", NIC))
    if extra:
        sys.exit(f"{case}: destroy left {extra[:10]}")
with open(os.path.join(os.environ["OUT"], "times.json"), "w") as f:
    json.dump(results, f)
"""

STEPS = ("floor", "floor teardown", "apply (cold)", "plan (no changes)", "apply (one VLAN)",
         "plan (no changes, again)", "destroy")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,300,1000")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    write_bytecode()
    _load("labcore")  # kernellab imports it by name: there first, as tests/ is no package
    kernellab = _load("kernellab")
    lab = kernellab.KernelLab(["dummy", "8021q", "bridge"], timeout=3600)
    reason = kernellab.unavailable(lab.modules)
    if reason:
        print(f"bench_vlans: {reason}", file=sys.stderr)
        return 1
    print("| N | what | wall s | against the floor |")
    print("|---:|---|---:|---:|")
    for n in (int(s) for s in args.sizes.split(",")):
        case = f"vlan-{n}"
        files: dict[str, str | bytes] = {f"{case}.yaml": vlan_topology(n),
                                         f"{case}-changed.yaml": vlan_topology(n, True)}
        files[f"{case}.build"], files[f"{case}.teardown"] = vlan_batch(n)
        for _ in range(args.runs):
            code = f"import sys\nsys.argv[1:] = {[case]!r}\nNIC = {NIC!r}\n" + TIMER
            result = lab.run([kernellab.Step.python("bench", code)], files=files)["bench"]
            result.ok()
            times = result.json["times"]
            floor, teardown = times[f"{case} floor"], times[f"{case} floor teardown"]
            for what in STEPS:
                wall = times[f"{case} {what}"]
                against = (teardown if what == "destroy" else
                           floor if what in ("apply (cold)",) else None)
                ratio = f"{wall / against:.2f}x" if against else ""
                print(f"| {case} | {what} | {wall:.3f} | {ratio} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
