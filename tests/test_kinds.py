"""Every registered kind has its engine behaviour: a diff rule, a host writer, a stage."""

from __future__ import annotations

import pytest

from netdecl.backends.kernelhost import WRITERS
from netdecl.engine.planner.diff import rule_for
from netdecl.kinds import KINDS, Kind, Ownership, Stage, object_from_dict, register
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
    Route,
    Rule,
    Sysctl,
    Vxlan,
)

SAMPLES = [
    Namespace("ns1"),
    Link(ROOT, "vx0", "vxlan", vxlan=Vxlan(id=42, local="192.0.2.1"), owner="t"),
    Link(ROOT, "veth0", "veth", peer=("ns1", "eth0")),
    ExternalLink(ROOT, "eth0", mtu=9000, master="br0"),
    Address(ROOT, "veth0", "10.0.0.1/24"),
    Route("ns1", "0.0.0.0/0", via="10.0.0.1"),
    Rule(ROOT, priority=100, table=100, src="10.0.0.0/24"),
    FdbEntry(ROOT, "vx0", "00:00:00:00:00:00", dst="192.0.2.2"),
    Neighbor(ROOT, "veth0", "10.0.0.2", "02:00:00:00:00:02"),
    Sysctl(ROOT, "net.ipv4.ip_forward", "1"),
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
