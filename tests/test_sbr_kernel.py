"""Source-based routing (``route_table`` on a link) on this machine's kernel, as the CNI sbr
plugin builds it: a container with two interfaces, eth0 in table 100 with a rule from its
address, eth1 in main. `ip -j route`/`ip -j rule` are the independent eye; traffic proves that
what a socket bound to eth0's address sends leaves by eth0 (the server sees that address),
and what an unbound one sends leaves by main's default route, eth1.
"""

from __future__ import annotations

import sys
from pathlib import Path

TOPOLOGY = """\
version: 1
name: sbr
namespaces: {c1: {}}
links:
  - name: veth-a
    kind: veth
    addresses: [10.0.0.1/24]
    peer: {name: eth0, namespace: c1, addresses: [10.0.0.2/24], route_table: 100}
  - name: veth-b
    kind: veth
    addresses: [10.1.0.1/24, 192.0.2.1/32]
    peer: {name: eth1, namespace: c1, addresses: [10.1.0.2/24]}
routes:
  - {namespace: c1, to: default, via: 10.0.0.1, dev: eth0}   # table 100: eth0's
  - {namespace: c1, to: default, via: 10.1.0.1, dev: eth1}
"""

# GET http://ADDRESS:PORT/ from a socket bound to SOURCE (0.0.0.0: the kernel picks)
BOUND_CLIENT = r"""
import socket, sys
source, address, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.create_connection((address, port), timeout=5, source_address=(source, 0))
s.sendall(b"GET / HTTP/1.0\r\n\r\n")
answer = b""
while chunk := s.recv(4096):
    answer += chunk
print(answer.decode().split("\r\n\r\n", 1)[-1])
"""


def routes(host, table: str) -> list[dict]:
    return host.ip_json("route", "show", "table", table, ns="c1")


def test_a_links_routes_live_in_its_table_and_its_address_routes_there(host, tmp_path: Path):
    path = tmp_path / "sbr.yaml"
    path.write_text(TOPOLOGY)
    before = host.snapshot()
    applied = host.netdecl("apply", str(path))
    assert applied.returncode == 0, applied.stdout + applied.stderr

    main = routes(host, "main")
    assert [r for r in main if r.get("dev") == "eth0"] == []  # nothing of eth0 left in main
    own = {r["dst"]: r for r in routes(host, "100")}
    assert own["10.0.0.0/24"]["dev"] == "eth0" and own["10.0.0.0/24"]["prefsrc"] == "10.0.0.2"
    assert (own["default"]["gateway"], own["default"]["dev"]) == ("10.0.0.1", "eth0")
    rules = [r for r in host.ip_json("rule", "show", ns="c1") if r.get("src") == "10.0.0.2"]
    assert [(r["priority"], r["table"]) for r in rules] == [(32765, "100")]

    server = host.start_server(None, 80, address="192.0.2.1")

    def get(source: str) -> str:
        result = host.run([sys.executable, "-c", BOUND_CLIENT, source, "192.0.2.1", "80"],
                          ns="c1")
        return result.stdout

    assert "client=10.0.0.2" in get("10.0.0.2")  # by eth0, through table 100
    assert "client=10.1.0.2" in get("0.0.0.0")  # unbound: main's default, eth1
    assert server.seen_sources() == ["10.0.0.2", "10.1.0.2"]

    plan = host.netdecl("plan", "--detailed-exitcode", str(path))
    assert plan.returncode == 0, plan.stdout + plan.stderr
    shown = host.netdecl("show", "--namespace", "root", "--namespace", "c1").stdout
    assert "route_table: 100" in shown and "priority" not in shown, shown
    destroyed = host.netdecl("destroy", str(path))
    assert destroyed.returncode == 0, destroyed.stdout + destroyed.stderr
    assert host.snapshot() == before


def test_a_link_that_takes_a_table_gets_its_addresses_again(host, tmp_path: Path):
    """Without route_table first, then with it: the kernel keeps an address's prefix route
    flag from when it was added, so the plan adds eth0's address again, without one."""
    path = tmp_path / "sbr.yaml"
    eth0_default = ("  - {namespace: c1, to: default, via: 10.0.0.1, dev: eth0}"
                    "   # table 100: eth0's\n")
    assert eth0_default in TOPOLOGY
    path.write_text(TOPOLOGY.replace(", route_table: 100", "").replace(eth0_default, ""))
    assert host.netdecl("apply", str(path)).returncode == 0
    assert [r for r in routes(host, "main") if r.get("dev") == "eth0"]
    path.write_text(TOPOLOGY)
    applied = host.netdecl("apply", str(path))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert [r for r in routes(host, "main") if r.get("dev") == "eth0"] == []
    assert {r["dst"] for r in routes(host, "100")} == {"default", "10.0.0.0/24"}
    assert host.netdecl("plan", "--detailed-exitcode", str(path)).returncode == 0


def test_show_writes_route_table_back_instead_of_what_it_implies():
    """`show` of a host built from route_table writes route_table again (not its rules,
    prefix routes and a table on each route), and the file rebuilds the same objects."""
    import yaml

    from netdecl.topology.export import to_document
    from netdecl.topology.loader import load_topology_text

    topo = load_topology_text(TOPOLOGY)
    doc = to_document(topo, "sbr")
    eth0 = next(link["peer"] for link in doc["links"] if link["name"] == "veth-a")
    assert eth0["route_table"] == 100
    assert "rules" not in doc
    assert all("table" not in route for route in doc["routes"])
    again = load_topology_text(yaml.safe_dump(doc))
    assert again.objects == topo.objects
