"""kind: host-device without a kernel: what the plan reads from the root before the move,
what the record keeps of it and refuses, and the order destroy gives the NIC back in (the
kernel test, test_hostdevice_kernel.py, proves the moves themselves)."""

from __future__ import annotations

import pytest

from netdecl.engine.planner import make_plan
from netdecl.engine.planner.plan import CREATE, DELETE
from netdecl.engine.state.record import OwnershipRecord, validated
from netdecl.engine.state.untrusted import Untrusted
from netdecl.model import ROOT, Address, Link, Namespace, Topology
from netdecl.topology.loader import load_topology_text

FILE = """\
version: 1
name: hd
namespaces:
  c: {}
links:
  - {name: eth0, kind: host-device, namespace: c, device: nic0, addresses: [10.0.0.2/24]}
"""


def observed(*objects) -> Topology:
    topo = Topology(name="hd")
    topo.extend(objects)
    return topo


def test_the_plan_reads_what_to_give_back_from_the_root_before_the_move():
    nic = Link(ROOT, "nic0", kind="device", up=True, mtu=1400, alias="uplink NIC")
    plan = make_plan(load_topology_text(FILE),
                     observed(nic, Address(ROOT, "nic0", "192.0.2.7/24"),
                              Address(ROOT, "nic0", "fe80::1/64")),
                     OwnershipRecord("hd"))
    assert not plan.conflicts
    (move,) = [a for a in plan.actions if a.type == "link"]
    assert move.op == CREATE and move.after is not None
    assert move.after.spec.given_back() == {
        "kind": "host-device", "device": "nic0", "mtu": 1400, "up": True,
        "alias": "uplink NIC", "addresses": ["192.0.2.7/24"]}  # (link-local: the kernel's)


def test_a_device_not_in_the_root_is_a_conflict_not_a_failed_apply():
    plan = make_plan(load_topology_text(FILE), observed(), OwnershipRecord("hd"))
    assert [c.message for c in plan.conflicts] == [
        "nic0 is not in namespace root: there is no such link to move into c as eth0"]


def test_destroy_gives_the_nic_back_before_its_namespace_goes():
    kept = {"kind": "host-device", "device": "nic0", "mtu": 1400, "up": True, "alias": None,
            "addresses": ["192.0.2.7/24"]}
    record = OwnershipRecord("hd", namespaces={"c"}, device_originals={("c", "eth0"): kept},
                             identities={("namespace", "c"): "ns:1",
                                         ("link", "c", "eth0"): "ns:1/if5"})
    moved = Link("c", "eth0", kind="veth", mtu=1450, alias="netdecl:hd", owner="hd",
                 ifindex=5, ident="ns:1/if5")
    plan = make_plan(Topology(name="hd"),
                     observed(Namespace("c", ident="ns:1"), moved), record)
    order = [(a.op, a.key) for a in plan.actions]
    assert order.index((DELETE, ("link", "c", "eth0"))) < \
        order.index((DELETE, ("namespace", "c"))), order
    (back,) = [a for a in plan.actions if a.key == ("link", "c", "eth0")]
    assert back.before is not None and back.before.spec.given_back() == kept


def test_the_record_keeps_what_to_give_back_and_refuses_what_it_would_not_write():
    kept = {"kind": "host-device", "device": "nic0", "mtu": 1400, "up": False,
            "alias": None, "addresses": ["192.0.2.7/24", "2001:db8::7/64"]}
    record = OwnershipRecord("hd", device_originals={("c", "eth0"): kept})
    again = OwnershipRecord.from_json(record.to_json())
    assert again.device_originals == {("c", "eth0"): kept}
    assert validated(again, "hd") is again
    for bad in ({**kept, "device": "../x"}, {**kept, "addresses": ["nope"]},
                {**kept, "mtu": -1}, {**kept, "shell": "rm"}):
        with pytest.raises(Untrusted):
            validated(OwnershipRecord("hd", device_originals={("c", "eth0"): bad}), "hd")
