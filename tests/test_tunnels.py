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
