"""`show`'s export names what the file cannot say and never writes it invalid. Pure: observed
state built from model objects, the output loaded again."""

from __future__ import annotations

import yaml

from netdecl.links.bridge import BridgeSpec
from netdecl.model import ROOT, Address, Link, Namespace, Route, Rule, Topology
from netdecl.topology.export import export, to_yaml
from netdecl.topology.loader import load_topology_text


def observed() -> Topology:
    topo = Topology(name="")
    topo.add(Namespace("v"))
    # a VRF written by a kind that knows it would carry the kernel's MTU: 65575 (a bridge
    # stands in for it here); the schema allows 68..65535
    topo.add(Link("v", "big0", "bridge", mtu=65575, spec=BridgeSpec()))
    topo.add(Link("v", "vrf-blue", "macsec", mtu=65575))  # a kind netdecl does not know
    topo.add(Link("v", "d1", "device", mtu=1500, master="vrf-blue"))
    topo.add(Address("v", "d1", "10.9.0.1/24"))
    topo.add(Address("v", "vrf-blue", "127.0.0.1/8"))
    topo.add(Route("v", "10.8.0.0/24", via="10.9.0.9", dev="vrf-blue"))
    topo.add(Rule("v", priority=1000, table=0))
    topo.add(Rule("v", priority=2000, table=7, src="10.9.0.0/24"))
    return topo


def test_what_the_file_cannot_say_is_named_and_left_out():
    result = export(observed(), "imported")
    assert list(result.notes) == [
        "link v/vrf-blue: kind macsec, which netdecl does not know",
        "address 127.0.0.1/8: on link v/vrf-blue, which is not written",
        "link v/big0: mtu 65575 left out: 65575 is greater than the maximum of 65535",
        "link v/d1's master vrf-blue: on link v/vrf-blue, which is not written",
        "route 10.8.0.0/24 in v: on link v/vrf-blue, which is not written",
        "rule 1000 in v: the kernel's l3mdev rule (lookup in a VRF's table), which the file "
        "cannot say",
    ]
    links = {e["name"]: e for e in result.document["links"]}
    assert set(links) == {"big0", "d1"} and "mtu" not in links["big0"]
    assert links["d1"] == {"name": "d1", "kind": "external", "namespace": "v",
                           "addresses": ["10.9.0.1/24"], "mtu": 1500}
    assert result.document["rules"] == [{"namespace": "v", "priority": 2000,
                                         "from": "10.9.0.0/24", "table": 7}]


def test_the_notes_are_a_comment_above_a_document_that_loads():
    text = to_yaml(observed(), "imported")
    head, body = text.split("\nversion: 1\n", 1)
    assert head.startswith("# netdecl show read these but cannot write them")
    assert all(line.startswith("#") for line in head.splitlines())
    assert yaml.safe_load(text) == export(observed(), "imported").document
    topo = load_topology_text(text, "shown.yaml")
    assert ("link", "v", "big0") in topo.objects and ("link", "v", "vrf-blue") not in \
        topo.objects
    # nothing to say, nothing said
    plain = Topology(name="")
    plain.add(Link(ROOT, "br0", "bridge", mtu=1500, spec=BridgeSpec()))
    assert to_yaml(plain, "p").startswith("version: 1\n")


def test_a_ports_vlans_are_written_only_when_they_differ_from_the_bridges_default_pvid():
    """A VLAN-aware bridge gives itself and every port its default PVID (pvid, untagged):
    writing that back for each port would repeat the bridge on every line."""
    topo = Topology(name="")
    topo.add(Link(ROOT, "br0", "bridge", spec=BridgeSpec(vlan_filtering=True, default_pvid=10),
                  vlans=((10, True, True),)))
    topo.add(Link(ROOT, "p1", "dummy", master="br0", vlans=((10, True, True),)))
    topo.add(Link(ROOT, "p2", "dummy", master="br0",
                  vlans=((10, True, True), (20, False, False))))
    topo.add(Link(ROOT, "p3", "dummy", master="br0", vlans=((1, True, True),)))
    links = {e["name"]: e for e in export(topo, "imported").document["links"]}
    assert "vlans" not in links["br0"] and "vlans" not in links["p1"]
    assert links["p2"]["vlans"] == [{"id": 10, "pvid": True, "untagged": True}, {"id": 20}]
    # VLAN 1 is not this bridge's default: it was set on purpose
    assert links["p3"]["vlans"] == [{"id": 1, "pvid": True, "untagged": True}]
