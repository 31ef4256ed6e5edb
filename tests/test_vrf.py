"""kind: vrf without a kernel: the file (tables named by the VRF, overlapping addresses per
VRF), the plan (joining a VRF flushes the port's routes) and `show` (tables written by name).
The kernel side is tests/test_lab_vrf.py."""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from test_planner import as_observed

from netdecl.engine.planner import make_plan
from netdecl.engine.planner.plan import CREATE, Reason
from netdecl.errors import InvalidTopology
from netdecl.links.vrf import VrfSpec
from netdecl.model import Link, Route, Rule, Topology
from netdecl.topology.export import to_document
from netdecl.topology.loader import load_topology_text

TENANTS = """\
version: 1
name: tenants
links:
  - {name: red, kind: vrf, vrf: {table: 10}}
  - {name: blue, kind: vrf, vrf: {table: 20}}
  - {name: d-red, kind: dummy, master: red, addresses: [10.0.0.1/24]}
  - {name: d-blue, kind: dummy, master: blue, addresses: [10.0.0.1/24]}
routes:
  - {to: 192.0.2.0/24, via: 10.0.0.254, dev: d-red, table: red}
  - {to: 192.0.2.0/24, via: 10.0.0.254, dev: d-blue, table: 20000}
rules:
  - {priority: 100, from: 10.9.0.0/16, table: blue}
"""


def test_routes_and_rules_name_the_vrf_for_its_table():
    topo = load_topology_text(TENANTS)
    red = topo.get(("link", "", "red"))
    assert isinstance(red, Link) and red.spec == VrfSpec(table=10)
    tables = sorted(r.table for r in topo.of_type(Route))
    assert tables == [10, 20000]
    (rule,) = topo.of_type(Rule)
    assert rule.table == 20


def test_one_address_in_two_vrfs_is_fine_but_not_twice_in_one():
    load_topology_text(TENANTS)  # 10.0.0.1 in red and in blue
    twice = TENANTS.replace("master: blue, addresses", "master: red, addresses")
    with pytest.raises(InvalidTopology, match="already on 'd-red'.* in VRF 'red'"):
        load_topology_text(twice)
    plain = TENANTS.replace("master: blue, ", "").replace("master: red, ", "")
    with pytest.raises(InvalidTopology, match="already on 'd-red'"):
        load_topology_text(plain)


def test_a_link_joins_a_vrf_or_a_bridge_and_nothing_else():
    bad = TENANTS.replace("master: red, addresses", "master: d-blue, addresses")
    with pytest.raises(InvalidTopology, match="is a dummy, not a bridge or a "):
        load_topology_text(bad)


def test_show_writes_a_vrfs_table_by_its_name():
    topo = load_topology_text(TENANTS)
    doc = to_document(topo, "tenants")
    assert {r.get("table") for r in doc["routes"]} == {"red", 20000}
    assert doc["rules"][0]["table"] == "blue"
    again = load_topology_text(yaml.safe_dump(doc))
    assert {r.key for r in again.of_type(Route)} == {r.key for r in topo.of_type(Route)}


def test_joining_a_vrf_in_place_makes_the_ports_routes_again():
    """A link that joins a VRF is taken down and up by the kernel, which drops its routes."""
    desired = load_topology_text(TENANTS)
    before = Topology(desired.name)
    before.extend(dataclasses.replace(o, master=None) if isinstance(o, Link) and o.master
                  else o for o in desired.objects.values())
    observed, record = as_observed(before)
    for route in observed.of_type(Route):  # (as_observed puts every route on eth0)
        observed.add(dataclasses.replace(route, dev=desired.objects[route.key].dev))
    plan = make_plan(desired, observed, record)
    moved = [a for a in plan.actions if a.type == "link"]
    assert moved and all(set(a.changes) == {"master"} for a in moved)
    remade = {a.key for a in plan.actions if a.type == "route" and a.op == CREATE
              and a.why is Reason.DEPENDENCY_REBUILT}
    assert remade == {r.key for r in desired.of_type(Route)}
