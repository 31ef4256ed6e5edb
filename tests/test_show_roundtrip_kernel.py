"""`show` rebuilds what it reads: its output validates and, applied to an empty host, makes
the same kernel state; what the file cannot say is named in a comment, never dropped silently.

Every kind this kernel has (bridge, veth, vxlan, macvlan, external; dummy and vlan are in
tests/test_show_lab.py, in the kernel lab) with routes (a second table, a blackhole), a
policy rule, FDB and neighbour entries, NAT and sysctls: apply -> show -> destroy -> apply
what show wrote -> the whole host (`ip -j -d link`, addresses, every routing table, the nft
ruleset, /proc/sys) is what it was, and HTTP crosses it again.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

EVERY = """\
version: 1
name: every
sysctls: {net.ipv4.ip_forward: 1}
namespaces:
  c1: {sysctls: {net.ipv4.conf.all.rp_filter: 0}}
  c2: {}
links:
  - {name: lan0, kind: external, addresses: [10.99.0.5/24]}
  - {name: br0, kind: bridge, addresses: [10.30.0.1/24, "fd00:30::1/64"], mtu: 1450,
     bridge: {stp: false}}
  - name: v1
    kind: veth
    master: br0
    hairpin: true
    peer: {name: eth0, namespace: c1, addresses: [10.30.0.2/24]}
  - name: v2
    kind: veth
    namespace: c2
    addresses: [10.40.0.1/24]
    peer: {name: v2p, namespace: c1, addresses: [10.40.0.2/24], mtu: 1400}
  - {name: vx0, kind: vxlan, master: br0,
     vxlan: {id: 7, local: 10.99.0.5, dev: lan0, port: 4789, remotes: [10.99.0.6]}}
  - {name: mv0, kind: macvlan, namespace: c1, link: v2p, macvlan: {mode: private},
     addresses: [10.41.0.2/24]}
routes:
  - {namespace: c1, to: default, via: 10.30.0.1}
  - {namespace: c1, to: 10.50.0.0/24, via: 10.40.0.1, table: 100, metric: 5}
  - {to: 10.60.0.0/24, type: blackhole}
rules:
  - {namespace: c1, priority: 100, from: 10.40.0.0/24, table: 100}
fdb:
  - {link: vx0, mac: "02:00:00:00:00:09", dst: 10.99.0.7}
neighbors:
  - {namespace: c1, link: eth0, address: 10.30.0.9, mac: "02:00:00:00:00:0a"}
nat:
  masquerade:
    - {source: 10.30.0.0/24, not_out: br0}
  port_forwards:
    - {proto: tcp, port: 8080, to: "10.30.0.2:80"}
"""
SHOWN = ("--name", "every", "--namespace", "root", "--namespace", "c1", "--namespace", "c2")


def ok(host, *args: str) -> str:
    result = host.netdecl(*args)
    assert result.returncode == 0, f"{args}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def the_nic(host) -> None:
    """The host's NIC, made by hand: one end of a veth whose other end is in a namespace
    `show` is not asked for, so it is written as kind: external, as a real NIC is."""
    host.run(["ip", "netns", "add", "wire"])
    host.run(["ip", "link", "add", "lan0", "type", "veth", "peer", "name", "lan1", "netns",
              "wire"])
    host.run(["ip", "link", "set", "lan0", "up"])


def notes(text: str) -> list[str]:
    return [line[4:] for line in text.splitlines() if line.startswith("# - ")]


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def http(host, client: str | None, server_ns: str, address: str, port: int = 80) -> str:
    server = host.start_server(server_ns, 80)
    try:
        result = host.http_get(client, address, port)
        assert result.ok, f"{client} -> {address}:{port}: {result.error}"
        return server.seen_sources()[-1]
    finally:
        server.stop()


def test_what_show_writes_rebuilds_every_kind_on_an_empty_host(host, tmp_path: Path):
    the_nic(host)
    ok(host, "apply", write(tmp_path, "every.yaml", EVERY))
    text = ok(host, "show", *SHOWN)
    # the one thing it cannot write as it is: the NIC, whose other end is not shown
    assert notes(text) == ["link lan0 (kind veth) is written as external: its kind cannot be "
                           "written from what show read (its other end or parent is not "
                           "shown)"]
    shown = write(tmp_path, "shown.yaml", text)
    ok(host, "validate", shown)
    kinds = {(e.get("namespace", ""), e["name"]): e["kind"]
             for e in yaml.safe_load(text)["links"]}
    assert kinds == {("", "br0"): "bridge", ("", "v1"): "veth", ("c1", "v2p"): "veth",
                     ("", "vx0"): "vxlan", ("c1", "mv0"): "macvlan", ("", "lan0"): "external"}
    before = host.snapshot()

    ok(host, "destroy", write(tmp_path, "every.yaml", EVERY))
    assert host.netns_list() == ["wire"]
    ok(host, "apply", shown)
    assert host.snapshot() == before
    assert "No changes" in ok(host, "plan", str(tmp_path / "every.yaml"))
    # and it carries traffic: across the bridge, the veth, and the published port
    assert http(host, None, "c1", "10.30.0.2") == "10.30.0.1"
    assert http(host, "c2", "c1", "10.40.0.2") == "10.40.0.1"
    # the host to its own address's published port: DNAT to c1 (the output hook)
    assert http(host, None, "c1", "10.99.0.5", 8080) == "10.99.0.5"


SMALL = """\
version: 1
name: small
namespaces: {c1: {}, c2: {}}
links:
  - name: v2
    kind: veth
    namespace: c2
    addresses: [10.40.0.1/24]
    peer: {name: v2p, namespace: c1, addresses: [10.40.0.2/24]}
"""


def test_a_prefix_route_moved_to_another_table_is_written_and_main_named(host, tmp_path):
    ok(host, "apply", write(tmp_path, "small.yaml", SMALL))
    host.run(["ip", "-n", "c1", "route", "del", "10.40.0.0/24", "dev", "v2p"])
    host.run(["ip", "-n", "c1", "route", "add", "10.40.0.0/24", "dev", "v2p", "table", "100",
              "proto", "kernel", "scope", "link", "src", "10.40.0.2"])
    text = ok(host, "show", "--name", "small")
    routes = yaml.safe_load(text)["routes"]
    assert {"namespace": "c1", "to": "10.40.0.0/24", "dev": "v2p", "src": "10.40.0.2",
            "table": 100} in routes
    assert any("route 10.40.0.0/24 table 100 in c1 is an address's prefix route outside "
               "table main" in note for note in notes(text)), text
    shown = write(tmp_path, "shown.yaml", text)
    ok(host, "destroy", str(tmp_path / "small.yaml"))
    ok(host, "apply", shown)
    (moved,) = host.ip_json("route", "show", "table", "100", ns="c1")
    assert (moved["dst"], moved["dev"], moved["prefsrc"]) == ("10.40.0.0/24", "v2p",
                                                              "10.40.0.2")
    # as the note says: main has one again (the address brings it)
    assert [r["dst"] for r in host.ip_json("route", "show", "table", "main", ns="c1")] == [
        "10.40.0.0/24"]


def test_a_link_of_a_kind_netdecl_does_not_know_and_a_qdisc_are_named(host,
                                                                              tmp_path):
    ok(host, "apply", write(tmp_path, "small.yaml", SMALL))
    # macvtap: a kind this kernel has and netdecl does not know
    for argv in (["link", "add", "x0", "link", "v2", "type", "macvtap"],
                 ["addr", "add", "10.77.0.1/24", "dev", "x0"],
                 ["link", "set", "x0", "up"], ["route", "add", "10.78.0.0/24", "via",
                                               "10.77.0.9"]):
        host.run(["ip", "-n", "c2", *argv])
    # and a qdisc the file cannot say (htb; a pfifo it writes as `qdisc: pfifo`): the
    # kernel's own defaults are not named
    host.run(["tc", "qdisc", "add", "dev", "v2p", "root", "handle", "1:", "htb"], ns="c1")
    qdiscs = json.loads(host.run(["tc", "-j", "qdisc", "show"], ns="c1").stdout)
    assert ("v2p", "htb", "1:") in {(q["dev"], q["kind"], q["handle"]) for q in qdiscs}
    text = ok(host, "show", "--name", "small")
    assert notes(text) == ["qdisc htb 1: (root) on link c1/v2p: the file cannot say it",
                           "link c2/x0: kind macvtap, which netdecl does not know",
                           "address 10.77.0.1/24: on link c2/x0, which is not written",
                           "route 10.78.0.0/24 in c2: on link c2/x0, which is not written"]
    names = [e["name"] for e in yaml.safe_load(text)["links"]]
    assert names == ["v2p"]  # the veth pair, written from its c1 end
    ok(host, "validate", write(tmp_path, "shown.yaml", text))
    host.run(["ip", "-n", "c2", "link", "del", "x0"])
