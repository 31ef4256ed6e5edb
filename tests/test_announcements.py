"""Which added addresses an apply announces (engine/announcements.py): only where a neighbour
may hold an entry from before, i.e. not on a segment every link of which this apply makes."""

from __future__ import annotations

from builders import docker_bridge
from test_planner import as_observed

from netdecl.engine.announcements import Announcements
from netdecl.engine.planner import make_plan
from netdecl.engine.state.record import OwnershipRecord
from netdecl.links.veth import VethSpec
from netdecl.links.vxlan import Vxlan
from netdecl.model import ROOT, Address, ExternalLink, Link, Topology


def announced(desired: Topology, observed: Topology, record: OwnershipRecord) -> set[str]:
    plan = make_plan(desired, observed, record)
    decide = Announcements.for_apply(desired, plan.actions)
    return {a.after.cidr for a in plan.actions
            if isinstance(a.after, Address) and decide.wanted(a.after)}


def test_a_cold_apply_announces_nothing():
    desired = docker_bridge()
    assert announced(desired, Topology(desired.name), OwnershipRecord(desired.name)) == set()


def test_a_veth_made_again_on_a_bridge_that_stays_is_announced():
    desired = docker_bridge()
    observed, record = as_observed(desired)
    for key in [("link", ROOT, "veth-n1"), ("link", "nginx-1", "eth0"),
                ("address", "nginx-1", "eth0", "172.17.0.2/16")]:
        del observed.objects[key]  # the runtime deleted the pair, and the address with it
    assert announced(desired, observed, record) == {"172.17.0.2/16"}


def test_a_segment_reaching_beyond_the_host_is_never_new():
    for beyond in (ExternalLink(ROOT, "eth0", master="docker0"),
                   Link(ROOT, "vx0", "vxlan", master="docker0",
                        spec=Vxlan(id=42, local="10.0.0.1", dev=None))):
        desired = docker_bridge()
        desired.add(beyond)
        observed = Topology(desired.name)
        if isinstance(beyond, ExternalLink):
            observed.add(ExternalLink(ROOT, "eth0"))  # the host's NIC is there already
        got = announced(desired, observed, OwnershipRecord(desired.name))
        assert got == {"172.17.0.1/16", "172.17.0.2/16", "172.17.0.3/16"}, (beyond, got)


def test_a_new_point_to_point_veth_is_not_announced_but_one_into_an_old_bridge_is():
    desired = docker_bridge()
    observed, record = as_observed(desired)
    desired.add(Link(ROOT, "veth-p", "veth", spec=VethSpec(peer=(ROOT, "veth-q"))))
    desired.add(Link(ROOT, "veth-q", "veth", spec=VethSpec(peer=(ROOT, "veth-p"))))
    desired.add(Address(ROOT, "veth-p", "10.9.0.1/30"))
    desired.add(Link(ROOT, "veth-n3", "veth", master="docker0",
                     spec=VethSpec(peer=(ROOT, "veth-n3b"))))
    desired.add(Link(ROOT, "veth-n3b", "veth", spec=VethSpec(peer=(ROOT, "veth-n3"))))
    desired.add(Address(ROOT, "veth-n3b", "172.17.0.9/16"))
    assert announced(desired, observed, record) == {"172.17.0.9/16"}
