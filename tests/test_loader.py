"""The loader: shipped topologies become the expected model objects, with positions and warnings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from netdecl.errors import InvalidTopology
from netdecl.links.bridge import BridgeSpec
from netdecl.links.veth import VethSpec
from netdecl.links.vxlan import Vxlan
from netdecl.model import (
    ROOT,
    Address,
    FdbEntry,
    Link,
    Namespace,
    NatRule,
    NatTable,
    Neighbor,
    Probe,
    Route,
    Rule,
    Sysctl,
)
from netdecl.topology.loader import SCHEMA_PATH, load_topology, load_topology_text

REPO = Path(__file__).resolve().parent.parent
BRIDGE = REPO / "topologies" / "docker-bridge.yaml"
NAT = REPO / "topologies" / "docker-nat.yaml"


def messages(text: str) -> list[str]:
    """Diagnostics of an invalid text as 'LINE:COL: message' strings."""
    with pytest.raises(InvalidTopology) as info:
        load_topology_text(text, "t.yaml")
    return [f"{d.line}:{d.col}: {d.message}" for d in info.value.diagnostics]


def line_of(path: Path, needle: str, occurrence: int = 1) -> int:
    """1-based line of the n-th line containing ``needle`` (keeps position tests readable)."""
    hits = [i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line]
    return hits[occurrence - 1]


# ---------------------------------------------------------------------------- schema file


def test_schema_path_points_at_a_valid_draft_2020_12_schema():
    assert SCHEMA_PATH == REPO / "netdecl" / "topology" / "topology.schema.json"
    schema = json.loads(SCHEMA_PATH.read_text())
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"].endswith("2020-12/schema")


def test_shipped_topologies_point_editors_at_the_schema():
    for path in (BRIDGE, NAT):
        first = path.read_text().splitlines()[0]
        assert first == "# yaml-language-server: $schema=../netdecl/topology/topology.schema.json"


# ---------------------------------------------------------------------------- docker-bridge


def test_docker_bridge_objects():
    topo = load_topology(str(BRIDGE))
    assert topo.name == "docker-bridge"
    assert topo.warnings == []
    assert topo.probes == []
    assert topo.namespaces() == ["nginx-1", "nginx-2"]
    assert topo.get(("sysctl", ROOT, "net.ipv4.ip_forward")) == Sysctl(
        ROOT, "net.ipv4.ip_forward", "1")
    assert topo.get(("link", ROOT, "docker0")) == Link(ROOT, "docker0", kind="bridge")
    assert topo.get(("link", ROOT, "veth-n1")) == Link(
        ROOT, "veth-n1", kind="veth", master="docker0", spec=VethSpec(peer=("nginx-1", "eth0")))
    assert topo.get(("link", "nginx-1", "eth0")) == Link(
        "nginx-1", "eth0", kind="veth", spec=VethSpec(peer=(ROOT, "veth-n1")))
    assert topo.get(("link", "nginx-2", "eth0")).peer == (ROOT, "veth-n2")
    assert {a.key for a in topo.of_type(Address)} == {
        ("address", ROOT, "docker0", "172.17.0.1/16"),
        ("address", "nginx-1", "eth0", "172.17.0.2/16"),
        ("address", "nginx-2", "eth0", "172.17.0.3/16"),
    }
    route = topo.get(("route", "nginx-1", 254, "0.0.0.0/0", 0))
    assert route == Route("nginx-1", to="0.0.0.0/0", table=254, metric=0, via="172.17.0.1",
                          type="unicast", scope="global")
    assert len(topo.of_type(Route)) == 2
    assert topo.of_type(NatTable) == []
    # 1 sysctl + 2 namespaces + 5 links + 3 addresses + 2 routes
    assert len(topo.objects) == 13


def test_docker_bridge_positions():
    topo = load_topology(str(BRIDGE))
    assert topo.positions[("namespace", "nginx-2")] == (line_of(BRIDGE, "nginx-2: {}"), 3)
    assert topo.positions[("link", ROOT, "docker0")] == (line_of(BRIDGE, "name: docker0"), 5)
    assert topo.positions[("link", "nginx-1", "eth0")] == (line_of(BRIDGE, "name: eth0"), 7)
    assert topo.positions[("sysctl", ROOT, "net.ipv4.ip_forward")] == (
        line_of(BRIDGE, "net.ipv4.ip_forward"), 3)
    assert topo.positions[("address", "nginx-2", "eth0", "172.17.0.3/16")] == (
        line_of(BRIDGE, "172.17.0.3/16"), 19)
    assert topo.positions[("route", "nginx-2", 254, "0.0.0.0/0", 0)] == (
        line_of(BRIDGE, "namespace: nginx-2", 2), 5)
    assert set(topo.positions) == set(topo.objects)


# ---------------------------------------------------------------------------- docker-nat


def test_docker_nat_objects():
    topo = load_topology(str(NAT))
    assert topo.name == "docker-nat"
    assert topo.warnings == []
    assert topo.namespaces() == ["ext", "nginx-1", "nginx-2"]
    assert topo.get(("sysctl", ROOT, "net.ipv4.conf.all.route_localnet")).value == "1"
    assert topo.get(("link", ROOT, "veth-n1")).hairpin is True
    assert topo.get(("link", ROOT, "veth-n2")).hairpin is True
    assert topo.get(("link", ROOT, "uplink")) == Link(ROOT, "uplink", kind="veth",
                                                      spec=VethSpec(peer=("ext", "eth0")))
    assert topo.get(("link", "ext", "eth0")).peer == (ROOT, "uplink")
    assert topo.get(("address", ROOT, "uplink", "10.168.0.1/24")) is not None
    assert topo.get(("address", "ext", "eth0", "10.168.0.3/24")) is not None
    nat = topo.get(("nat", ROOT))
    assert nat == NatTable(ROOT, rules=(
        NatRule(kind="masquerade", source="172.17.0.0/16", not_out="docker0"),
        NatRule(kind="dnat", proto="tcp", port=8080, to_address="172.17.0.2", to_port=80),
    ))
    assert Probe(source="nginx-1", to="10.168.0.3", port=80, expect_source="10.168.0.1") \
        in topo.probes
    assert topo.positions[("nat", ROOT)] == (line_of(NAT, "- source: 172.17.0.0/16"), 7)


def test_docker_nat_is_docker_bridge_plus_nat():
    bridge = load_topology(str(BRIDGE)).objects
    nat = load_topology(str(NAT)).objects
    changed = {k for k in bridge if bridge[k] != nat.get(k)}
    assert changed == {("link", ROOT, "veth-n1"), ("link", ROOT, "veth-n2")}  # hairpin only


# ---------------------------------------------------------------------------- warnings

MINIMAL_NAT = """\
version: 1
name: t
links:
  - {name: br0, kind: bridge, addresses: [10.0.0.1/24]}
nat:
  masquerade:
    - source: 10.0.0.0/24
"""


def test_warns_when_nat_without_ip_forward():
    topo = load_topology_text(MINIMAL_NAT, "t.yaml")
    assert len(topo.warnings) == 1
    assert topo.warnings[0].startswith("t.yaml:7:7: warning: nat rules in namespace root")
    assert "net.ipv4.ip_forward" in topo.warnings[0]


def test_no_warning_once_ip_forward_is_set_in_that_namespace():
    assert load_topology_text(MINIMAL_NAT + "sysctls: {net.ipv4.ip_forward: true}\n").warnings \
        == []


def test_ipv6_nat_warns_about_ipv6_forwarding_on_its_own():
    text = MINIMAL_NAT + '    - source: "fd00::/64"\nsysctls: {net.ipv4.ip_forward: 1}\n'
    (warning,) = load_topology_text(text, "t.yaml").warnings
    assert warning.startswith("t.yaml:8:7: warning: IPv6 nat rules in namespace root")
    assert "net.ipv6.conf.all.forwarding is not 1" in warning
    assert load_topology_text(text.replace("ip_forward: 1}", "ip_forward: 1, "
                                                                "net.ipv6.conf.all.forwarding: 1}")
                              ).warnings == []


def test_hairpin_defaults_on_only_behind_a_forward_and_not_against_the_file():
    topo = load_topology("topologies/docker-networks.yaml")
    hairpin = {link.name: link.hairpin for link in topo.of_type(Link) if link.master}
    assert hairpin == {"veth-web1": True, "veth-web2": True, "veth-db1": None}
    nat = load_topology("topologies/docker-nat.yaml")  # says hairpin: true itself
    assert all(link.hairpin for link in nat.of_type(Link) if link.master)


def test_forwarding_must_be_set_in_the_namespace_doing_nat():
    text = MINIMAL_NAT.replace("links:", "namespaces: {r: {}}\nlinks:").replace(
        "- source: 10.0.0.0/24", "- {source: 10.0.0.0/24, namespace: r}")
    warnings = load_topology_text(text + "sysctls: {net.ipv4.ip_forward: 1}\n").warnings
    assert len(warnings) == 1 and "namespace r " in warnings[0]


def test_warns_port_forward_to_loopback_without_route_localnet():
    text = MINIMAL_NAT + """\
  port_forwards:
    - {proto: tcp, port: 8080, to: "10.0.0.2:80", address: 127.0.0.1}
sysctls: {net.ipv4.ip_forward: 1}
"""
    (warning,) = load_topology_text(text).warnings
    assert "route_localnet" in warning and ":9:7:" in warning
    fixed = text.replace("ip_forward: 1}", "ip_forward: 1, net.ipv4.conf.all.route_localnet: 1}")
    assert load_topology_text(fixed).warnings == []


# ---------------------------------------------------------------------------- other objects

EVERYTHING = """\
version: 1
name: all
namespaces:
  node1: {sysctls: {net.ipv4.ip_forward: on}}
links:
  - name: eth1
    kind: veth
    namespace: node1
    mac: "02:AA:BB:CC:DD:EE"
    mtu: 9000
    up: false
    addresses: [192.168.117.207/24, "FD00:0:0::1/64"]
    peer: {name: e1, mtu: 1400}
  - name: vxlan42
    kind: vxlan
    namespace: node1
    vxlan: {id: 42, local: 192.168.117.207, dev: eth1, remotes: [192.168.117.208]}
  - {name: br0, kind: bridge, bridge: {stp: true}}
routes:
  - {namespace: node1, to: default, via: "fd00::fe"}
  - {namespace: node1, to: 10.244.0.0/16, dev: vxlan42, metric: 5, table: 100, onlink: true}
  - {namespace: node1, to: 10.9.0.0/16, type: blackhole}
fdb: [{namespace: node1, link: vxlan42, mac: "AA:BB:CC:DD:EE:FF", dst: 192.168.117.208}]
neighbors: [{namespace: node1, link: vxlan42, address: 10.244.2.0, mac: "aa:bb:cc:dd:ee:ff"}]
rules: [{namespace: node1, priority: 100, from: "fd00::/64", table: 100, iif: eth1}]
nat:
  snat: [{namespace: node1, source: 10.244.0.0/16, out: eth1, to_source: 192.168.117.207}]
  port_forwards:
    - {namespace: node1, proto: udp, port: "8080-8090", to: 10.244.2.5, in: eth1,
       from: 10.0.0.0/8, address: 192.168.117.207}
probes: [{from: node1, to: 10.244.2.5, expect: blocked}]
"""


def test_every_section_converts():
    topo = load_topology_text(EVERYTHING)
    assert topo.get(("sysctl", "node1", "net.ipv4.ip_forward")).value == "1"  # YAML 'on'
    eth1 = topo.get(("link", "node1", "eth1"))
    assert (eth1.mac, eth1.mtu, eth1.up, eth1.peer) == ("02:aa:bb:cc:dd:ee", 9000, False,
                                                        (ROOT, "e1"))
    assert topo.get(("link", ROOT, "e1")) == Link(ROOT, "e1", kind="veth", mtu=1400,
                                                  spec=VethSpec(peer=("node1", "eth1")))
    assert topo.get(("address", "node1", "eth1", "fd00::1/64")) is not None
    assert topo.get(("link", "node1", "vxlan42")).spec == Vxlan(
        42, local="192.168.117.207", dev="eth1", port=4789, learning=True)
    assert topo.get(("link", ROOT, "br0")).spec == BridgeSpec(stp=True)
    flood = ("fdb", "node1", "vxlan42", "00:00:00:00:00:00", "192.168.117.208")
    assert topo.get(flood) == FdbEntry("node1", "vxlan42", "00:00:00:00:00:00",
                                       dst="192.168.117.208")
    assert topo.get(("fdb", "node1", "vxlan42", "aa:bb:cc:dd:ee:ff", "192.168.117.208"))
    assert topo.get(("route", "node1", 254, "::/0", 1024)).via == "fd00::fe"
    assert topo.get(("route", "node1", 100, "10.244.0.0/16", 5)).onlink is True
    assert topo.get(("route", "node1", 254, "10.9.0.0/16", 0)).type == "blackhole"
    assert topo.get(("neighbor", "node1", "vxlan42", "10.244.2.0")) == Neighbor(
        "node1", "vxlan42", "10.244.2.0", "aa:bb:cc:dd:ee:ff")
    assert topo.get(("rule", "node1", 6, 100)) == Rule(
        "node1", priority=100, family=6, src="fd00::/64", table=100, iif="eth1")
    assert topo.get(("nat", "node1")).rules == (
        NatRule(kind="snat", source="10.244.0.0/16", out="eth1", to_source="192.168.117.207"),
        NatRule(kind="dnat", proto="udp", port=8080, port_end=8090, to_address="10.244.2.5",
                in_="eth1", from_="10.0.0.0/8", address="192.168.117.207"),
    )
    assert topo.probes == [Probe(source="node1", to="10.244.2.5", expect="blocked")]
    assert topo.get(("namespace", "node1")) == Namespace("node1")


# ---------------------------------------------------------------------------- errors


def test_unknown_key_suggests_the_nearest():
    text = "version: 1\nname: t\nlinks:\n  - name: br0\n    knid: bridge\n"
    assert messages(text) == [
        "4:5: links[0]: missing required key 'kind'",
        "5:5: unknown key 'knid' (did you mean 'kind'?)",
    ]


def test_type_error_says_what_was_expected():
    text = "version: 1\nname: t\nlinks:\n  - {name: br0, kind: bridge, mtu: big}\n"
    assert messages(text) == ['4:36: mtu: expected an integer 68..65535, got "big"']


def test_all_problems_reported_at_once_and_sorted():
    text = ("version: 1\nname: t\nlinks:\n  - {name: br0, kind: bridge, mtu: 1}\n"
            "  - {name: v, kind: veth, master: br1, peer: {name: p}}\n")
    found = messages(text)
    assert found == ["4:36: mtu: expected an integer 68..65535, got 1",
                     "5:35: no link 'br1' in namespace root (did you mean 'br0'?)"]


def test_duplicate_key_is_reported_at_the_second():
    assert messages("version: 1\nname: a\nname: b\n") == [
        "3:1: duplicate key 'name' (first at line 2)"]


@pytest.mark.parametrize("text, where, opened", [
    # the case: an unclosed `[` at 6:16 of a 6-line file was reported at 7:1
    ("version: 1\nname: t\nlinks:\n  - name: d0\n    kind: dummy\n"
     "    addresses: [10.0.0.1/24\n", "6:16", "'['"),
    ("version: 1\nname: t\nnamespaces:\n  a: {}\nlinks: []\nrules: [{to: x}, {to: y}\n",
     "6:8", "'['"),
    ("version: 1\nname: t\nnamespaces:\n  a: {}\nlinks: []\nrules: [\n\n\n", "6:8", "'['"),
    ("version: 1\nname: \"t\n", "2:7", "'\"'"),  # a quote, with no newline at the end either
])
def test_syntax_error_at_the_end_names_where_the_unclosed_thing_opens(text, where, opened):
    (message,) = messages(text)
    assert message.startswith(f"{where}: YAML syntax error: this {opened} is never closed"), \
        message


def test_syntax_error_inside_the_file_keeps_its_own_position():
    (message,) = messages("version: 1\nname: t\nnamespaces:\n  a: {}\n"
                          "links:\n  - {name: [x, y, kind: dummy}\nrules: []\n")
    assert message.startswith("6:30: YAML syntax error: did not find expected ',' or ']'"), \
        message


def test_missing_file_and_directory(tmp_path):
    for path, fragment in ((tmp_path / "nope.yaml", "no such file"),
                           (tmp_path, "is a directory")):
        with pytest.raises(InvalidTopology) as info:
            load_topology(str(path))
        (diag,) = info.value.diagnostics
        assert (diag.file, diag.line, diag.col) == (str(path), 0, 0)
        assert fragment in diag.message


def test_bytes_input_and_empty_file():
    assert load_topology_text(BRIDGE.read_bytes()).name == "docker-bridge"
    assert messages("") == ["1:1: the file is empty; a topology needs at least 'version: 1' "
                            "and 'name:'"]


def test_warns_hairpin_without_master():
    text = ("version: 1\nname: t\nlinks:\n"
            "  - {name: v, kind: veth, hairpin: true, peer: {name: p}}\n")
    (warning,) = load_topology_text(text, "t.yaml").warnings
    assert warning == "t.yaml:4:36: warning: hairpin on 'v' does nothing without a master bridge"


def test_accepts_path_objects_and_null_namespace_bodies(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("version: 1\nname: t\nnamespaces:\n  a:\n  b: {}\n")
    assert load_topology(path).namespaces() == ["a", "b"]


def test_the_schema_compiled_ahead_is_made_from_the_installed_schema():
    """schema_compiled.py (see compile_schema.py) is used only when made from this very schema;
    a stale one would cost every command 60 ms of compiling. After editing the schema, run
    `python -m netdecl.topology.compile_schema`."""
    from netdecl.topology import loader, schema_compiled

    assert schema_compiled.SCHEMA_DIGEST == loader.schema_digest(), \
        "run: python -m netdecl.topology.compile_schema"
    assert loader.fast_check() is schema_compiled.validate


def bridge_with_ports(count: int) -> str:
    lines = ["version: 1", "name: ports", "links:", "  - {name: br0, kind: bridge}"]
    lines += [f"  - {{name: v{i}, kind: veth, master: br0, peer: {{name: p{i}}}}}"
              for i in range(count)]
    return "\n".join(lines) + "\n"


def test_a_bridge_takes_at_most_1024_ports():
    """The kernel refuses a bridge's 1025th port (EXFULL, "Exchange full") in the middle of
    an apply; the file says so first, at the port that is one too many."""
    load_topology_text(bridge_with_ports(1024), "ok.yaml")
    with pytest.raises(InvalidTopology) as refused:
        load_topology_text(bridge_with_ports(1026), "full.yaml")
    [problem] = refused.value.diagnostics
    line = "  - {name: v1024, kind: veth, master: br0, peer: {name: p1024}}"
    assert (problem.line, problem.col) == (4 + 1025, line.index("br0") + 1)  # the 1025th
    assert "bridge 'br0' would have more than 1024 ports" in problem.message


def test_a_default_route_spelled_as_a_network_makes_no_gateway_on_link():
    """`default` and 0.0.0.0/0 are one route: neither spelling of a scope-link default makes a
    gateway on-link (hypothesis found a file valid with 0.0.0.0/0 that `show` wrote back as
    `default` and its own validate then refused)."""
    for to in ("default", "0.0.0.0/0"):
        text = ("version: 1\nname: t\nlinks:\n  - {name: br0, kind: bridge}\n"
                f"routes:\n  - {{to: '{to}', dev: br0, table: 1}}\n"
                "  - {to: default, via: 198.51.100.1}\n")
        with pytest.raises(InvalidTopology, match="gateway 198.51.100.1 is not on-link"):
            load_topology_text(text)


def test_a_rule_whose_namespace_is_a_list_is_invalid_not_a_crash():
    # the fuzz test found it: source routing's check used the namespace as a dict key
    text = ("version: 1\nname: t\nnamespaces: {n1: {}}\n"
            "rules:\n  - {namespace: [], priority: 100, from: 10.0.0.0/24, table: 100}\n")
    with pytest.raises(InvalidTopology) as raised:
        load_topology_text(text, "t.yaml")
    assert any(d.line == 5 for d in raised.value.diagnostics), raised.value.diagnostics
