#!/usr/bin/env python3
"""Templates: loading and expanding topologies/star.yaml with n=N against loading the plain
file it expands to (what `netdecl render --var n=N` prints), for N = 100 and 1000.

Both go through the whole loader (YAML, expansion for the template, schema, checks, the
model), in this process, interleaved run by run; each figure is the minimum over --runs runs
of CPU time (time.process_time: the machine may be shared, and other processes' work must not
count) and of wall time. The issue's bar: the template costs at most 1.2x the plain file.
Needs no root: nothing touches the kernel.

    python3 benchmarks/bench_template.py [--runs 15] [--sizes 100,1000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from netdecl import api
from netdecl.topology.loader import load_topology

REPO_ROOT = Path(__file__).resolve().parent.parent
STAR = REPO_ROOT / "topologies" / "star.yaml"


def measure(load: Callable[[], object], runs: list[tuple[float, float]]) -> None:
    wall, cpu = time.perf_counter(), time.process_time()
    load()
    runs.append((time.perf_counter() - wall, time.process_time() - cpu))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--sizes", default="100,1000")
    args = parser.parse_args()
    print("| N | what | CPU ms (min) | wall ms (min) | template / plain (CPU) |")
    print("|---:|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            plain = Path(tmp) / f"star-{n}.yaml"
            plain.write_text(api.render(STAR, variables={"n": n}))
            assert load_topology(plain).objects == \
                load_topology(STAR, variables={"n": n}).objects  # the same topology
            timed: dict[str, list[tuple[float, float]]] = {"plain": [], "template": []}
            for _ in range(args.runs):
                measure(lambda p=plain: load_topology(p), timed["plain"])
                measure(lambda k=n: load_topology(STAR, variables={"n": k}), timed["template"])
            best = {k: (min(w for w, _ in v), min(c for _, c in v)) for k, v in timed.items()}
            ratio = best["template"][1] / best["plain"][1]
            for what, label in (("plain", f"plain star-{n}.yaml"),
                                ("template", f"star.yaml --var n={n}")):
                wall, cpu = best[what]
                shown = f"{ratio:.2f}x" if what == "template" else ""
                print(f"| {n} | {label} | {cpu * 1000:.0f} | {wall * 1000:.0f} | {shown} |")


if __name__ == "__main__":
    main()
