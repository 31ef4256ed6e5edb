#!/usr/bin/env python3
"""When veth pairs come up, and what it costs: the experiment behind engine/linkup.py.

N namespaces and a bridge; N veth pairs, one end on the bridge, the other in a namespace, made
with bare rtnetlink requests (netdecl's own codec, backends/rtnl.py) in three orders:

- pair-by-pair: each pair made, its bridge end enslaved and up, its container end up, then the
  next pair (netdecl before engine/linkup.py);
- all-then-up: every pair made and its bridge end enslaved and up, then every container end
  brought up (a hand-written script's order, and netdecl's now);
- pair-by-pair, IPv6 off: the first order with IPv6 disabled everywhere, to show what the
  difference is.

Then each namespace gets an address and a default route, and every namespace is read once
(links, addresses, routes), as a verification would. Each order runs in its own throwaway
network + mount namespace (tests/harness.py HermeticHost) after the machine is quiet.
Run as root:  python3 benchmarks/bench_linkup.py [--sizes 500,1000] [--runs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ORDERS = ("pair-by-pair", "all-then-up", "pair-by-pair, IPv6 off")


def inside(order: str, n: int) -> dict[str, float]:
    """The measurement itself, run inside a throwaway namespace."""
    from netdecl.backends import namespaces, rtnl
    from netdecl.links import veth
    from netdecl.model import ROOT

    def netlink() -> socket.socket:
        return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                             socket.NETLINK_ROUTE)

    names = [f"s{i}" for i in range(n)]
    setup = "".join(f"netns add {name}\n" for name in names)
    setup += "link add br0 type bridge\nlink set br0 up\naddr add 10.0.0.1/16 dev br0\n"
    subprocess.run(["ip", "-batch", "-"], input=setup, text=True, check=True)
    if order.endswith("IPv6 off"):
        def ipv6_off(_name: str) -> None:
            for conf in ("all", "default"):
                with open(f"/proc/sys/net/ipv6/conf/{conf}/disable_ipv6", "w") as fh:
                    fh.write("1")
        namespaces.run_in_each([ROOT, *names], ipv6_off)
    root = rtnl.RtnlSocket(netlink())
    inner = {name: rtnl.RtnlSocket(sock)
             for name, sock in namespaces.run_in_each(names, lambda _name: netlink()).items()}
    bridge = root.link_by_name("br0")
    assert bridge is not None
    held = []
    start = time.perf_counter()
    for i, name in enumerate(names):
        fd = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            root.new_link(f"v{i}", veth.NAME, veth.peer_data("eth0", fd))
        finally:
            os.close(fd)
        outer, end = root.link_by_name(f"v{i}"), inner[name].link_by_name("eth0")
        assert outer is not None and end is not None
        root.set_link(outer.index, master=bridge.index, up=True)
        if order == "all-then-up":
            held.append((name, end.index))
        else:
            inner[name].set_link(end.index, up=True)
    for name, index in held:
        inner[name].set_link(index, up=True)
    links = time.perf_counter()
    for i, name in enumerate(names):
        end = inner[name].link_by_name("eth0")
        assert end is not None
        inner[name].add_address(end.index, f"10.0.{(i + 2) // 250}.{(i + 2) % 250}", 16)
        inner[name].replace_route(family=socket.AF_INET, dst="0.0.0.0", dst_len=0, table=254,
                                  metric=0, proto=4, gateway="10.0.0.1")
    configured = time.perf_counter()
    for name in names:
        inner[name].links()
        inner[name].addresses()
        inner[name].routes()
    done = time.perf_counter()
    return {"links": links - start, "addresses and routes": configured - links,
            "read back": done - configured, "total": done - start}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="500,1000", help="comma-separated N (default 500,1000)")
    parser.add_argument("--runs", type=int, default=1, help="repeat every measurement")
    parser.add_argument("--inside", nargs=2, metavar=("ORDER", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        print(json.dumps(inside(args.inside[0], int(args.inside[1]))))
        return 0
    if os.geteuid() != 0:
        print("bench_linkup.py needs root (it makes throwaway network namespaces)",
              file=sys.stderr)
        return 1
    import bench_star as star  # beside this script; it loads tests/harness.py
    print("| N | order | links s | addresses and routes s | read back s | total s |")
    print("|---:|---|---:|---:|---:|---:|")
    for _ in range(args.runs):
        for n in [int(size) for size in args.sizes.split(",")]:
            for order in ORDERS:
                with star.HermeticHost(cwd=REPO_ROOT) as host:
                    star.quiet()
                    result = host.run([sys.executable, str(Path(__file__).resolve()),
                                       "--inside", order, str(n)], timeout=1800)
                t = json.loads(result.stdout)
                print(f"| {n} | {order} | {t['links']:.2f} | {t['addresses and routes']:.2f} "
                      f"| {t['read back']:.2f} | {t['total']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
