"""The tunnel kinds without a kernel: plan's check that a tunnel riding on the host's NIC
reaches its remote through it (only the live addresses and routes can say). The kernel side
is tests/test_lab_tunnels.py and tests/test_lab_calico.py."""

from __future__ import annotations

from netdecl.engine.planner import make_plan
from netdecl.engine.state.record import OwnershipRecord
from netdecl.model import Address, ExternalLink, Link, Route, Topology
from netdecl.topology.loader import load_topology_text

FILE = """\
version: 1
name: tun
links:
  - {name: eth0, kind: external}
  - {name: ipip1, kind: ipip, ipip: {remote: REMOTE, dev: eth0}}
"""


def plan_with(remote: str, *routes: Route):
    desired = load_topology_text(FILE.replace("REMOTE", remote))
    observed = Topology("tun")
    observed.extend([Link("", "eth0", "device", mtu=1500), ExternalLink("", "eth0", up=True,
                                                                        mtu=1500),
                     Address("", "eth0", "192.0.2.1/24"), *routes])
    return make_plan(desired, observed, OwnershipRecord("tun"))


def test_a_remote_on_the_nics_subnet_or_behind_its_routes_is_reached():
    assert not plan_with("192.0.2.9").conflicts
    default = Route("", "0.0.0.0/0", via="192.0.2.254", dev="eth0", proto=3)
    assert not plan_with("203.0.113.9", default).conflicts


def test_a_remote_the_underlay_does_not_reach_is_a_conflict():
    elsewhere = Route("", "0.0.0.0/0", via="10.0.0.1", dev="eth1", proto=3)
    (conflict,) = plan_with("203.0.113.9", elsewhere).conflicts
    assert "remote 203.0.113.9 is not reachable through its underlay eth0" in conflict.message


def test_graph_draws_a_tunnel_between_mirrored_ends_of_one_key():
    from netdecl.tools.graph import edges

    text = """\
version: 1
name: tun
namespaces: {n1: {}, n2: {}}
links:
  - {name: g, namespace: n1, kind: gre, gre: {local: 192.0.2.1, remote: 192.0.2.2, key: 7}}
  - {name: g, namespace: n2, kind: gre, gre: {local: 192.0.2.2, remote: 192.0.2.1, key: 7}}
  - {name: h, namespace: n2, kind: gre, gre: {local: 192.0.2.2, remote: 192.0.2.1, key: 8}}
  - {name: v, namespace: n1, kind: geneve, geneve: {id: 5, remote: 192.0.2.2}}
  - {name: v, namespace: n2, kind: geneve, geneve: {id: 5, remote: 192.0.2.1}}
"""
    drawn = {(e.a, e.b, e.label) for e in edges(load_topology_text(text)) if e.how == "tunnel"}
    assert drawn == {(("n1", "g"), ("n2", "g"), "gre key 7"),
                     (("n1", "v"), ("n2", "v"), "geneve 5")}
