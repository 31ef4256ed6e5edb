"""Every registered kind has its engine behaviour: a diff rule, a host writer, a stage."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml

import netdecl
from netdecl.backends.kernelhost import WRITERS
from netdecl.engine.planner.diff import rule_for
from netdecl.kinds import KINDS, Kind, Ownership, Stage, object_from_dict, register
from netdecl.links import LINK_KINDS
from netdecl.links.veth import VethSpec
from netdecl.links.vxlan import Vxlan
from netdecl.model import (
    ROOT,
    Address,
    ExternalLink,
    FdbEntry,
    Link,
    Namespace,
    NatRule,
    NatTable,
    Neighbor,
    Qdisc,
    QdiscStage,
    Route,
    Rule,
    Sysctl,
    Topology,
)
from netdecl.nlattr import parse_attrs
from netdecl.nlconst import IFLA_LINK
from netdecl.topology.export import to_document
from netdecl.topology.loader import load_topology_text

SAMPLES = [
    Namespace("ns1"),
    Link(ROOT, "vx0", "vxlan", spec=Vxlan(id=42, local="192.0.2.1"), owner="t"),
    Link(ROOT, "veth0", "veth", spec=VethSpec(peer=("ns1", "eth0"))),
    ExternalLink(ROOT, "eth0", mtu=9000, master="br0"),
    Address(ROOT, "veth0", "10.0.0.1/24"),
    Route("ns1", "0.0.0.0/0", via="10.0.0.1"),
    Rule(ROOT, priority=100, table=100, src="10.0.0.0/24"),
    FdbEntry(ROOT, "vx0", "00:00:00:00:00:00", dst="192.0.2.2"),
    Neighbor(ROOT, "veth0", "10.0.0.2", "02:00:00:00:00:02"),
    Sysctl(ROOT, "net.ipv4.ip_forward", "1"),
    Qdisc("ns1", "eth0", stages=(QdiscStage("tbf", (("burst", 32768), ("rate", 2500000))),
                                 QdiscStage("netem", (("delay", 40000000),))),
          handle=0xD30000, original="default"),
    NatTable(ROOT, (NatRule("dnat", proto="tcp", port=8080, to_address="10.0.0.2", to_port=80),
                    NatRule("masquerade", source="fd00::/64", not_destination=("fd01::/64",)),
                    NatRule("dnat", proto="tcp", port=80, address="10.96.0.10",
                            to_addresses=("10.0.0.2", "10.0.0.3"), to_port=8080),
                    NatRule("filter", in_="br1", out="br2", destination=("10.0.0.0/8",),
                            action="drop"))),
]


@pytest.mark.parametrize("kind", list(KINDS.values()), ids=list(KINDS))
def test_every_kind_has_its_engine_behaviour(kind: Kind):
    assert kind.cls.TYPE == kind.name
    assert callable(rule_for(kind))
    assert kind.name in WRITERS
    assert kind.stage in vars(Stage).values()
    assert isinstance(kind.ownership, Ownership)


def test_every_kind_round_trips_through_its_dict():
    assert {o.TYPE for o in SAMPLES} == set(KINDS)
    for obj in SAMPLES:
        assert object_from_dict(obj.to_dict()) == obj


def test_a_kind_registers_once():
    with pytest.raises(ValueError, match="twice"):
        register(KINDS["link"])


def test_every_kind_is_built_from_the_file():
    from netdecl.topology.loader import BUILDERS, BUILT_WITH

    for name in KINDS:
        assert name in BUILDERS or BUILT_WITH.get(name) in BUILDERS, name
    assert set(BUILDERS) <= set(KINDS)


# -- link kinds: one module each (netdecl/links/) ------------------------------------------------

# A links entry of every link kind, with what it needs around it. A kind registered without a
# sample here fails test_every_link_kind_has_a_sample, so every piece below covers it.
LINK_SAMPLES = {
    "bridge": "  - {name: br0, kind: bridge, bridge: {stp: true}, addresses: [10.0.0.1/24]}\n",
    "veth": "  - {name: v0, kind: veth, master: br0, hairpin: true, promisc: true,\n"
            "     vlans: [{id: 10, pvid: true, untagged: true}, {id: \"20-21\"}],\n"
            "     peer: {name: eth0, namespace: ns1, mtu: 1400, addresses: [10.0.0.2/24]}}\n",
    "vxlan": "  - {name: vx0, kind: vxlan, master: br0,\n"
             "     vxlan: {id: 42, local: 192.0.2.1, dev: uplink, remotes: [192.0.2.2]}}\n",
    "dummy": "  - {name: svc0, kind: dummy, addresses: [10.96.0.10/32]}\n",
    "vlan": "  - {name: uplink.100, kind: vlan, link: uplink, vlan: {id: 100, protocol: 802.1ad},\n"
            "     addresses: [10.100.0.1/24]}\n",
    "macvlan": "  - {name: mv0, kind: macvlan, link: uplink, macvlan: {mode: private}}\n",
    "ifb": "  - {name: ifb0, kind: ifb}\n",
    "vrf": "  - {name: blue, kind: vrf, vrf: {table: 10}}\n"
           "  - {name: svc1, kind: dummy, master: blue, addresses: [10.1.0.1/24]}\n",
    "ipip": "  - {name: ipip0, kind: ipip, mtu: 1400,\n"
            "     ipip: {local: 192.0.2.1, remote: 192.0.2.2, ttl: 64, dev: uplink}}\n",
    "sit": "  - {name: sit1, kind: sit,\n"
           "     sit: {local: 192.0.2.1, remote: 192.0.2.3, pmtudisc: false}}\n",
    "ip6tnl": "  - {name: t6, kind: ip6tnl,\n"
              "     ip6tnl: {local: '2001:db8::1', remote: '2001:db8::2'}}\n",
    "gre": "  - {name: gre1, kind: gre,\n"
           "     gre: {local: 192.0.2.1, remote: 192.0.2.2, key: 42, tos: 8}}\n",
    "gretap": "  - {name: gt1, kind: gretap, master: br0, gretap: {remote: 192.0.2.9}}\n",
    "geneve": "  - {name: gnv0, kind: geneve, geneve: {id: 7, remote: 192.0.2.2}}\n",
    "ipvlan": "  - {name: ipv0, kind: ipvlan, link: uplink, ipvlan: {mode: l2, flag: private},\n"
              "     addresses: [10.2.0.1/24]}\n",
    "bond": "  - {name: bond0, kind: bond, addresses: [10.1.0.1/24],\n"
            "     bond: {mode: 802.3ad, miimon: 100, lacp_rate: fast, xmit_hash_policy: layer3+4,\n"
            "            ad_select: count, updelay: 200, downdelay: 200, min_links: 1}}\n",
    "tap": "  - {name: vm0, kind: tap, master: br0,\n"
           "     tap: {owner: 1000, group: 100, vnet_hdr: true, multi_queue: true}}\n",
    "tun": "  - {name: vpn0, kind: tun, tun: {owner: 0}, addresses: [10.3.0.1/24]}\n",
    "host-device": "  - {name: eth9, kind: host-device, namespace: ns1, device: nic9,\n"
                   "     mtu: 1400, addresses: [10.4.0.1/24]}\n",
    "external": "  - {name: uplink, kind: external, mtu: 9000, addresses: [192.0.2.1/24]}\n",
}
SAMPLE_FILE = ("version: 1\nname: kinds\nnamespaces:\n  ns1: {}\nlinks:\n"
               + "".join(LINK_SAMPLES.values()))


def _sample() -> Topology:
    return load_topology_text(SAMPLE_FILE)


def test_every_link_kind_has_a_sample():
    assert set(LINK_SAMPLES) == set(LINK_KINDS)


@pytest.mark.parametrize("name", list(LINK_KINDS))
def test_a_link_kind_builds_from_the_file_and_round_trips_through_records(name):
    kind = LINK_KINDS[name]
    topo = _sample()
    built = [o for o in topo.objects.values()
             if (isinstance(o, Link) and o.kind == name)
             or (not kind.made and isinstance(o, ExternalLink))]
    assert built, f"the sample of {name} built no link"
    for obj in built:
        assert object_from_dict(obj.to_dict()) == obj
        if isinstance(obj, Link) and kind.settings_key:
            assert obj.spec is not None, f"{name}: the file's settings were not read"


# (a kind that takes the host's link, a host-device, is not told apart by the kernel: show
# writes it as the link it is)
@pytest.mark.parametrize("name", [k.name for k in LINK_KINDS.values()
                                  if k.made and not k.takes])
def test_a_link_kind_is_written_back_by_show_as_itself(name):
    topo = _sample()
    seen = Topology(topo.name)  # as `show` sees it: the host's NIC is a link like any other
    seen.extend(Link(o.namespace, o.name, "device", mtu=o.mtu) if isinstance(o, ExternalLink)
                else o for o in topo.objects.values())
    again = load_topology_text(yaml.safe_dump(to_document(seen, "kinds")))
    mine = {o.key: o for o in topo.of_type(Link) if o.kind == name}
    assert mine and {o.key: o for o in again.of_type(Link) if o.kind == name} == mine


@pytest.mark.parametrize("name", [k.name for k in LINK_KINDS.values() if k.made])
def test_a_link_kind_made_by_netdecl_says_how_the_kernel_makes_it(name):
    """Its create request is the kind's own, and a setting it says needs a new link is one
    of its settings."""
    kind = LINK_KINDS[name]
    link = next(o for o in _sample().of_type(Link) if o.kind == name)

    class Request:
        temp_names = ("nd0", "nd1")
        peer_netns_fd = 3

        def index_of(self, name: str) -> int:
            return 7

    data = kind.create_data(link, Request())
    assert isinstance(data, bytes) and len(data) % 4 == 0
    attrs = kind.create_attrs(link, Request())
    assert isinstance(attrs, bytes) and len(attrs) % 4 == 0
    if kind.parented:  # the parent is IFLA_LINK, by its index in the link's namespace
        assert parse_attrs(attrs) == {IFLA_LINK: (7).to_bytes(4, sys.byteorder)}
        assert link.spec is not None and link.spec.uses()
    assert set(link.recreated_by()) <= set(link.settings())


def test_the_schema_file_holds_every_link_kind_as_its_module_says():
    """topology.schema.json's link section is written from netdecl/links/ (run
    `python -m netdecl.topology.compile_schema` after changing a kind)."""
    from netdecl.topology.compile_schema import schema_text
    from netdecl.topology.loader import SCHEMA_PATH

    assert SCHEMA_PATH.read_text(encoding="utf-8") == schema_text()
    schema = json.loads(schema_text())
    assert schema["$defs"]["link"]["properties"]["kind"]["enum"] == list(LINK_KINDS)


def test_no_kind_name_is_spelled_outside_its_module():
    """The layers above ask a kind (netdecl/links/) and never test a link's kind by name."""
    # an external link is also an object type of its own (model.ExternalLink): its keys and
    # its registration spell that type's name; and a record's layout (model.RECORD_SETTINGS)
    # names the settings every link carried before kinds had modules
    names = "|".join(name for name in LINK_KINDS if name not in KINDS)
    spelled = re.compile(rf"""["']({names})["']""")
    package = Path(netdecl.__file__).parent
    found = []
    for path in sorted(package.rglob("*.py")):
        if path.parent.name == "links" or path.name == "schema_compiled.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if spelled.search(line) and "RECORD_SETTINGS = " not in line:
                found.append(f"{path.relative_to(package)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)
