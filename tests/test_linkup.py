"""Which veth ends an apply leaves down for a moment (engine/linkup.py): only the second end of
a pair it makes whose ends are both declared up; every held end is brought up, as declared."""

from __future__ import annotations

import dataclasses

from netdecl.engine.linkup import LateUp
from netdecl.engine.planner.plan import Action, Op
from netdecl.links.veth import VethSpec
from netdecl.model import ROOT, Address, Link, NetObject


def pair(up: bool = True, peer_up: bool = True, op: Op = Op.CREATE) -> Action:
    link = Link(ROOT, "v0", "veth", master="br0", spec=VethSpec(peer=("s0", "eth0")), up=up)
    peer = Link("s0", "eth0", "veth", spec=VethSpec(peer=(ROOT, "v0")), up=peer_up)
    return Action(op, link.key, after=link, peer_after=peer)


def test_only_a_pair_made_with_both_ends_up_waits():
    assert LateUp.defers(pair())
    assert LateUp.defers(pair(op=Op.REPLACE))  # deleted and made again
    assert not LateUp.defers(pair(peer_up=False))  # stays down: made down, as declared
    assert not LateUp.defers(pair(up=False))  # no carrier until someone raises that end
    modify = dataclasses.replace(pair(), op=Op.MODIFY, changes={"mtu": [1500, 1400]})
    assert not LateUp.defers(modify)
    bridge = Link(ROOT, "br0", "bridge")
    assert not LateUp.defers(Action(Op.CREATE, bridge.key, after=bridge))
    address = Address("s0", "eth0", "10.0.0.2/24")
    assert not LateUp.defers(Action(Op.CREATE, address.key, after=address))


def test_held_ends_are_made_down_and_brought_up_once_each_in_order():
    late_up = LateUp()
    ends = [Link(f"s{n}", "eth0", "veth",
                 spec=VethSpec(peer=(ROOT, f"v{n}")), mtu=1400) for n in range(3)]
    made = [late_up.hold(end) for end in ends]
    assert [end.up for end in made] == [False] * 3
    assert [dataclasses.replace(end, up=True) for end in made] == ends  # nothing else differs
    raised: list[tuple[NetObject, NetObject]] = []
    late_up.release(lambda down, up: raised.append((down, up)))
    assert raised == list(zip(made, ends, strict=True))
    assert late_up.pending == []
    late_up.release(lambda down, up: raised.append((down, up)))
    assert len(raised) == 3  # released once
