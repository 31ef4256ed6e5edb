"""The file format and the backends agree: whatever the schema and checks accept renders.

`validate` and `plan` must never pass a value that `apply` then cannot write (IPv6 NAT once
did: the checks accepted it, the IPv4-only nftables backend failed with AddressValueError). So
this test generates NAT rules, forward-filter rules and routes from values near every edge
(both families, /0 and /32, the port bounds, ranges, lists, the longest names) and, for each
topology:

* refused: with InvalidTopology whose every diagnostic points into the file (LINE:COL);
* accepted: every NatTable renders as the nft document the backend would commit, and reads
  back from that document as the same rules (the comment codec agrees with the renderer),
  IPv4 rules in the ip table and IPv6 ones in the ip6 table;
  every route gives the netlink arguments of its own family, and survives ``show``'s export
  and a reload unchanged.

Nothing here needs nft or root: the backend's rule building and route arguments are pure.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netdecl.backends import nftables
from netdecl.backends.netlink import ROUTE_TYPE_CODES, Kernel
from netdecl.errors import InvalidTopology
from netdecl.links.vxlan import PORT as VXLAN_PORT
from netdecl.links.vxlan import Vxlan
from netdecl.model import Link, NatTable, Route, Topology, decode_comment
from netdecl.topology import format as fmt
from netdecl.topology.export import to_document
from netdecl.topology.loader import SCHEMA_PATH, load_topology_text

SETTINGS = settings(max_examples=int(os.environ.get("NETDECL_FUZZ_EXAMPLES", "300")),
                    deadline=None, suppress_health_check=[HealthCheck.too_slow])
LONGEST_IFNAME = "x" * 15

# Two namespaces joined by a veth (eth0 on both sides), an uplink and a 15-byte bridge in the
# root only, so references resolve in some namespaces and not in others.
BASE: dict[str, Any] = {
    "version": 1,
    "name": "agree",
    "sysctls": {"net.ipv4.ip_forward": 1},
    "namespaces": {"ns1": {"sysctls": {"net.ipv4.ip_forward": 1}}},
    "links": [
        {"name": "eth0", "kind": "veth", "addresses": ["10.0.0.1/24", "fd00::1/64"],
         "peer": {"name": "eth0", "namespace": "ns1",
                  "addresses": ["10.0.0.2/24", "fd00::2/64"]}},
        {"name": "uplink", "kind": "veth", "addresses": ["192.0.2.10/24"],
         "peer": {"name": "up0", "namespace": "ns1"}},
        {"name": LONGEST_IFNAME, "kind": "bridge"},
    ],
}

ADDRESSES = ["172.17.0.2", "0.0.0.0", "255.255.255.255", "127.0.0.1", "10.0.0.1",
             "fd00::2", "::1", "::ffff:10.0.0.1", "fe80::1%eth0", "300.1.1.1"]
NETWORKS = ["10.0.0.0/8", "172.17.0.0/16", "0.0.0.0/0", "255.255.255.255/32", "127.0.0.0/8",
            "10.0.0.1/8", "fd00::/64", "::/0", "2001:db8::1/128"]
PORTS: list[Any] = [1, 80, 65535, 0, 65536, 80.0, "8080", "8080-8090", "1-65535", "8080-8080",
                    "65535-65535", "90-80", "0-10", "08080", "80 ", "http"]
TARGETS = ["172.17.0.2", "172.17.0.2:80", "255.255.255.255:65535", "10.0.0.2:1",
           "172.17.0.2:0", "172.17.0.2:65536", "172.17.0.2:http", "[172.17.0.2]:80",
           "fd00::2", "[fd00::2]:80", "[fd00::2]", "fd00::2:80", ":80"]
TARGET_LISTS: list[Any] = [["172.17.0.2:80", "172.17.0.3:80"], ["172.17.0.2", "172.17.0.3"],
                           ["[fd00::2]:80", "[fd00::3]:80"], ["172.17.0.2:80", "172.17.0.3:81"],
                           ["172.17.0.2", "172.17.0.2"], ["172.17.0.2:80", "[fd00::3]:80"],
                           ["172.17.0.2"], [], [f"10.0.0.{i}:65535" for i in range(2, 12)]]
NETWORK_LISTS: list[Any] = [["10.244.0.0/16"], ["10.244.0.0/16", "10.96.0.0/12"],
                            ["10.0.0.0/8", "10.1.0.0/16"], ["fd00::/64", "fd01::/64"],
                            ["10.0.0.0/8", "fd00::/64"], [], ["10.0.0.1/8"],
                            [f"2001:db8:{i}::/48" for i in range(6)]]
LINKS = ["eth0", "uplink", "up0", LONGEST_IFNAME, "lo", "nope"]
NAMESPACES = [None, "ns1"]


def maybe(values: list[Any]) -> st.SearchStrategy[Any]:
    """A value from the list, or the key left out (None)."""
    return st.one_of(st.none(), st.sampled_from(values))


def spec(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


destinations = maybe(NETWORKS + NETWORK_LISTS)
masquerade = st.builds(spec, namespace=maybe(NAMESPACES), source=maybe(NETWORKS),
                       out=maybe(LINKS), not_out=maybe(LINKS), destination=destinations,
                       not_destination=destinations)
snat = st.builds(spec, namespace=maybe(NAMESPACES), source=maybe(NETWORKS), out=maybe(LINKS),
                 not_out=maybe(LINKS), to_source=st.sampled_from(ADDRESSES),
                 destination=destinations, not_destination=destinations)
port_forward = st.builds(spec, namespace=maybe(NAMESPACES), proto=st.sampled_from(["tcp", "udp"]),
                         port=st.sampled_from(PORTS), to=st.sampled_from(TARGETS + TARGET_LISTS),
                         **{"in": maybe(LINKS), "from": maybe(NETWORKS),
                            "address": maybe(ADDRESSES)})
filter_rule = st.builds(spec, namespace=maybe(NAMESPACES), source=maybe(NETWORKS),
                        destination=destinations, proto=maybe(["tcp", "udp"]),
                        port=maybe(PORTS), action=st.sampled_from(["accept", "drop", "reject"]),
                        **{"in": maybe(LINKS), "out": maybe(LINKS)})
nat_sections = st.fixed_dictionaries({}, optional={
    "masquerade": st.lists(masquerade, min_size=1, max_size=3),
    "snat": st.lists(snat, min_size=1, max_size=3),
    "port_forwards": st.lists(port_forward, min_size=1, max_size=3),
})
filter_sections = st.fixed_dictionaries({"forward": st.lists(filter_rule, min_size=1,
                                                              max_size=3)})

route = st.builds(
    spec, namespace=maybe(NAMESPACES),
    to=st.sampled_from(["default", "0.0.0.0/0", "::/0", "10.1.0.0/16", "fd01::/64",
                        "192.0.2.1/32", "10.1.0.1/16"]),
    via=maybe(["10.0.0.254", "fd00::fe", "fe80::1", "198.51.100.1", "10.0.0.1"]),
    dev=maybe(["eth0", "nope"]), src=maybe(["10.0.0.1", "fd00::1", "10.0.0.2"]),
    metric=maybe([0, 5, 1024, 4294967295]), table=maybe([1, 100, 254, 4294967295]),
    type=maybe(["unicast", "blackhole", "unreachable", "prohibit"]), onlink=maybe([True, False]),
    scope=maybe(["global", "link", "host"]),
)


def load(extra: dict[str, Any]) -> Topology | None:
    """The topology, or None after checking that the refusal is a proper diagnostic."""
    text = yaml.safe_dump({**BASE, **extra}, sort_keys=False)
    try:
        return load_topology_text(text, "agree.yaml")
    except InvalidTopology as e:
        assert e.diagnostics
        lines = text.count("\n")
        for d in e.diagnostics:
            assert d.file == "agree.yaml" and 1 <= d.line <= lines and d.col >= 1, str(d)
        return None


def committed(document: dict[str, Any]) -> dict[str, Any]:
    """What nft lists for our tables after committing ``document``: per family, what was
    added after the table's last delete."""
    objects: list[dict[str, Any]] = []
    for command in document["nftables"]:
        (verb, body_of), = command.items()
        (kind, body), = body_of.items()
        if verb == "delete":
            assert kind == "table"
            objects = [o for o in objects if next(iter(o.values()))["family"] != body["family"]]
        else:
            objects.append(body_of)
    return json.loads(json.dumps({"nftables": objects}))


def assert_nat_renders(topology: Topology) -> None:
    for table in topology.of_type(NatTable):
        assert table.rules
        document = nftables.render(topology.name, table.rules)  # raises if it cannot
        commands = document["nftables"]
        for family in ("ip", "ip6"):
            ours = {"family": family, "name": "netdecl-agree"}
            assert {"add": {"table": ours}} in commands and {"delete": {"table": ours}} in commands
        listing = committed(document)
        for obj in listing["nftables"]:
            body = next(iter(obj.values()))
            assert body.get("table", body.get("name")) == "netdecl-agree"
            if "rule" in obj:  # each rule in the table of its own family
                decoded = decode_comment(body["comment"])
                assert decoded is not None
                assert {"ip": 4, "ip6": 6}[body["family"]] in decoded[1].families
        assert nftables.decode(topology.name, listing) == table.rules
    assert_rules_survive_export(topology)


def assert_rules_survive_export(topology: Topology) -> None:
    """`show` writes the rules of netdecl's tables back in the file's words (nat: and filter:
    sections, lists where the file had lists); loading that gives the very same rules."""
    text = yaml.safe_dump(to_document(topology, topology.name), sort_keys=False)
    again = load_topology_text(text, "exported.yaml")
    assert {t.namespace: t.rules for t in again.of_type(NatTable)} == \
        {t.namespace: t.rules for t in topology.of_type(NatTable)}


class Addressless(Kernel):
    """The real route arguments, with link indexes made up instead of asked from a kernel."""

    def index_of(self, ns: str, name: str) -> int:
        return 7


def assert_routes_render(topology: Topology) -> None:
    kernel = Addressless()
    for r in topology.of_type(Route):
        net = ipaddress.ip_network(r.to)
        args = kernel._route_args(r)
        family = 10 if net.version == 6 else 2  # AF_INET6, AF_INET
        assert (args["family"], args["dst"], args["dst_len"]) == (
            family, str(net.network_address), net.prefixlen)
        assert args["rtype"] == ROUTE_TYPE_CODES[r.type or "unicast"]
        for key in ("gateway", "prefsrc"):
            if key in args:
                assert ipaddress.ip_address(args[key]).version == net.version, (key, r)
        delete = kernel._route_args(r, for_delete=True)
        assert (delete["dst"], delete["dst_len"], delete["metric"]) == (
            args["dst"], args["dst_len"], r.metric)


def assert_routes_survive_export(topology: Topology) -> None:
    """`show` writes routes back in the file's words ('default', metric left out when it is
    the kernel's); loading that must give the very same routes."""
    text = yaml.safe_dump(to_document(topology, topology.name), sort_keys=False)
    again = load_topology_text(text, "exported.yaml")
    assert comparable(again) == comparable(topology)


def comparable(topology: Topology) -> list[Route]:
    # onlink: false is written as nothing, which the planner reads the same way ("not asked
    # for"): the kernel sets the flag only when asked
    return sorted((dataclasses.replace(r, onlink=r.onlink or None)
                   for r in topology.of_type(Route)), key=repr)


@SETTINGS
@given(nat_sections)
def test_every_accepted_nat_rule_renders_and_reads_back(nat: dict[str, Any]) -> None:
    topology = load({"nat": nat})
    if topology is not None:
        assert_nat_renders(topology)


@SETTINGS
@given(filter_sections)
def test_every_accepted_filter_rule_renders_and_reads_back(filters: dict[str, Any]) -> None:
    topology = load({"filter": filters})
    if topology is not None:
        assert_nat_renders(topology)


@SETTINGS
@given(nat_sections, filter_sections)
def test_nat_and_filter_rules_share_the_tables(nat: dict[str, Any],
                                               filters: dict[str, Any]) -> None:
    topology = load({"nat": nat, "filter": filters})
    if topology is not None:
        assert_nat_renders(topology)


@SETTINGS
@given(st.lists(route, min_size=1, max_size=3))
def test_every_accepted_route_renders_and_survives_export(routes: list[dict[str, Any]]) -> None:
    topology = load({"routes": routes})
    if topology is not None:
        assert_routes_render(topology)
        assert_routes_survive_export(topology)


# The generated cases would pass if everything were refused: these pin what must be accepted
# (and so rendered) and what must be refused, with the message users see.
ACCEPTED_NAT = [
    {"masquerade": [{"source": "172.17.0.0/16", "not_out": "eth0"}]},
    {"masquerade": [{}]},
    {"masquerade": [{"source": "0.0.0.0/0", "out": LONGEST_IFNAME}]},
    {"snat": [{"source": "255.255.255.255/32", "out": "uplink", "to_source": "192.0.2.10"}]},
    {"port_forwards": [{"proto": "tcp", "port": 8080, "to": "172.17.0.2:80"}]},
    {"port_forwards": [{"proto": "udp", "port": "1-65535", "to": "10.0.0.2"}]},
    {"port_forwards": [{"proto": "tcp", "port": "65535-65535", "to": "255.255.255.255:65535",
                        "in": LONGEST_IFNAME, "from": "255.255.255.255/32",
                        "address": "255.255.255.255"}]},
    {"port_forwards": [{"namespace": "ns1", "proto": "tcp", "port": 80.0,
                        "to": "127.0.0.1:1", "address": "127.0.0.1"}]},
    # IPv6, as Docker's dual-stack networks write it
    {"masquerade": [{"source": "fd00::/64"}]},
    {"snat": [{"to_source": "fd00::1"}]},
    {"port_forwards": [{"proto": "tcp", "port": 80, "to": "[fd00::2]:80"}]},
    {"masquerade": [{"source": "::/0", "out": "eth0"}]},
    {"port_forwards": [{"proto": "tcp", "port": 80, "to": "fd00::2", "from": "::/0",
                        "address": "::1"}]},
    # flannel: pod-to-pod across nodes keeps its source
    {"masquerade": [{"source": "10.244.1.0/24", "not_destination": "10.244.0.0/16"}]},
    {"snat": [{"to_source": "192.0.2.10", "destination": ["198.51.100.0/24", "10.0.0.0/8"],
               "not_destination": ["10.1.0.0/16"]}]},
    # kube-proxy: a virtual IP spread over several pods
    {"port_forwards": [{"proto": "tcp", "port": 80, "address": "10.96.0.10",
                        "to": ["172.17.0.2:8080", "172.17.0.3:8080", "172.17.0.4:8080"]}]},
    {"port_forwards": [{"proto": "udp", "port": 53, "address": "fd00::53",
                        "to": ["fd00::2", "fd00::3"]}]},
    {"port_forwards": [{"proto": "tcp", "port": 80, "to": ["172.17.0.2:80"]}]},
    # the same port on two different addresses is two forwards, not an overlap
    {"port_forwards": [{"proto": "tcp", "port": 80, "address": "10.96.0.10", "to": "10.0.0.2"},
                       {"proto": "tcp", "port": 80, "address": "10.96.0.11", "to": "10.0.0.2"},
                       {"proto": "tcp", "port": 80, "to": "10.0.0.2:8080"},
                       {"proto": "tcp", "port": 80, "to": "[fd00::2]:80"}]},
]

ACCEPTED_FILTERS = [
    [{"in": "eth0", "out": "uplink", "action": "drop"}],  # both families
    [{"source": "10.0.0.0/24", "destination": ["192.0.2.0/24", "198.51.100.0/24"],
      "proto": "tcp", "port": "8000-8080", "action": "reject"}],
    [{"destination": "fd00::/64", "proto": "udp", "action": "accept"},
     {"namespace": "ns1", "in": "up0", "action": "reject"}],
]

REFUSED_NAT = [
    ({"port_forwards": [{"proto": "tcp", "port": 80, "to": "10.0.0.2", "address": "::1"}]},
     "mixes address families"),
    ({"port_forwards": [{"proto": "tcp", "port": 80, "to": "[fd00::2]:80",
                         "from": "10.0.0.0/8"}]}, "mixes address families"),
    ({"masquerade": [{"source": "10.0.0.0/8", "not_destination": "fd00::/8"}]},
     "mixes address families"),
    ({"port_forwards": [{"proto": "tcp", "port": "90-80", "to": "10.0.0.2"}]},
     "runs backwards"),
    ({"port_forwards": [{"proto": "tcp", "port": "0-10", "to": "10.0.0.2"}]},
     "is not in 1..65535"),
    ({"port_forwards": [{"proto": "tcp", "port": 80, "to": "10.0.0.2:0"}]},
     "is not in 1..65535"),
    ({"port_forwards": [{"proto": "tcp", "port": 80, "to": "10.0.0.2:http"}]},
     "is not ADDRESS[:PORT]"),
    ({"masquerade": [{"out": "nope"}]}, "no link 'nope'"),
    ({"masquerade": [{"not_destination": ["10.0.0.0/8", "10.1.0.0/16"]}]}, "overlaps"),
    ({"port_forwards": [{"proto": "tcp", "port": 80, "to": ["10.0.0.2:80", "10.0.0.3:81"]}]},
     "must share one port"),
    ({"port_forwards": [{"proto": "tcp", "port": 80, "to": ["10.0.0.2", "10.0.0.2"]}]},
     "listed twice"),
    ({"port_forwards": [{"proto": "tcp", "port": 80, "to": "10.0.0.2"},
                        {"proto": "tcp", "port": "79-81", "to": "10.0.0.3"}]},
     "catches the same connections"),
    ({"port_forwards": [{"proto": "tcp", "port": 80, "to": "10.0.0.2", "address": "10.0.0.1"},
                        {"proto": "tcp", "port": 80, "to": "10.0.0.3"}]},
     "catches the same connections"),  # 10.0.0.1 is a local address: both catch it
    ({"port_forwards": [{"proto": "tcp", "port": 80,
                         "to": [f"10.0.0.{i}:65535" for i in range(2, 12)]}]},
     "too long for netdecl to label"),
]


@pytest.mark.parametrize("filters", ACCEPTED_FILTERS)
def test_these_filter_rules_are_accepted_and_render(filters: list[dict[str, Any]]) -> None:
    topology = load({"filter": {"forward": filters}})
    assert topology is not None
    assert_nat_renders(topology)


@pytest.mark.parametrize("nat", ACCEPTED_NAT)
def test_these_nat_rules_are_accepted_and_render(nat: dict[str, Any]) -> None:
    topology = load({"nat": nat})
    assert topology is not None
    assert_nat_renders(topology)


@pytest.mark.parametrize(("nat", "message"), REFUSED_NAT)
def test_these_nat_rules_are_refused_at_validate_time(nat: dict[str, Any], message: str) -> None:
    text = yaml.safe_dump({**BASE, "nat": nat}, sort_keys=False)
    with pytest.raises(InvalidTopology) as refused:
        load_topology_text(text, "agree.yaml")
    assert [d.message for d in refused.value.diagnostics if message in d.message], \
        refused.value.diagnostics
    assert len(refused.value.diagnostics) == 1, refused.value.diagnostics


ACCEPTED_ROUTES = [
    {"to": "default", "via": "10.0.0.254"},
    {"to": "default", "via": "fd00::fe"},  # IPv6 by its gateway; metric 1024 by the kernel
    {"to": "::/0", "dev": "eth0", "metric": 0},
    {"to": "0.0.0.0/0", "via": "198.51.100.1", "dev": "eth0", "onlink": True},
    {"to": "10.1.0.0/16", "type": "blackhole", "table": 4294967295, "metric": 4294967295},
    {"to": "fd01::/64", "via": "fe80::1", "dev": "eth0", "src": "fd00::1"},
]


def test_an_ipv6_route_holds_the_metric_the_kernel_will_give_it() -> None:
    """Linux stores an IPv6 route added with metric 0 (or none) at 1024: the model must say
    1024 too, or every plan would show that route as missing."""
    topology = load({"routes": [{"to": "fd01::/64", "dev": "eth0", "metric": 0},
                                {"to": "fd02::/64", "dev": "eth0"},
                                {"to": "10.1.0.0/16", "dev": "eth0"}]})
    assert topology is not None
    assert {(r.to, r.metric) for r in topology.of_type(Route)} == {
        ("fd01::/64", 1024), ("fd02::/64", 1024), ("10.1.0.0/16", 0)}
    refused = load({"routes": [{"to": "fd01::/64", "dev": "eth0", "metric": 0},
                               {"to": "fd01::/64", "dev": "eth0", "metric": 1024}]})
    assert refused is None  # one route, declared twice


@pytest.mark.parametrize("spec_", ACCEPTED_ROUTES)
def test_these_routes_are_accepted_render_and_survive_export(spec_: dict[str, Any]) -> None:
    topology = load({"routes": [spec_]})
    assert topology is not None
    assert_routes_render(topology)
    assert_routes_survive_export(topology)


# -- the schema's own statements about values --------------------------------------------------


def schema() -> dict[str, Any]:
    return json.loads(Path(SCHEMA_PATH).read_text(encoding="utf-8"))


def test_the_schema_defaults_are_what_the_loader_applies() -> None:
    defs = schema()["$defs"]
    assert defs["vxlan"]["properties"]["port"]["default"] == VXLAN_PORT
    vxlan = {"name": "vx0", "kind": "vxlan", "vxlan": {"id": 1}}
    topology = load({"links": [*BASE["links"], vxlan]})
    assert topology is not None
    vx0 = topology.get(("link", "", "vx0"))
    assert isinstance(vx0, Link) and isinstance(vx0.spec, Vxlan)
    assert vx0.spec.port == defs["vxlan"]["properties"]["port"]["default"]
    assert vx0.spec.learning is defs["vxlan"]["properties"]["learning"]["default"]
    assert vx0.up is defs["link"]["properties"]["up"]["default"]
    peer = topology.get(("link", "ns1", "eth0"))
    assert isinstance(peer, Link) and peer.up is defs["peer"]["properties"]["up"]["default"]


def test_the_schema_port_bounds_and_route_types_are_the_backends() -> None:
    defs = schema()["$defs"]
    assert (defs["port"]["minimum"], defs["port"]["maximum"]) == (fmt.PORT_MIN, fmt.PORT_MAX)
    forward_port = defs["port_forward"]["properties"]["port"]
    assert (forward_port["minimum"], forward_port["maximum"]) == (fmt.PORT_MIN, fmt.PORT_MAX)
    assert set(defs["route"]["properties"]["type"]["enum"]) == set(ROUTE_TYPE_CODES)
    assert set(schema()["properties"]["nat"]["properties"]) == set(fmt.NAT_SECTIONS)
    assert set(fmt.NAT_SECTIONS.values()) == {"masquerade", "snat", "dnat"}
