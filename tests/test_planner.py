"""Planner unit tests: pure, no root, no kernel."""

from __future__ import annotations

import dataclasses
import json

from builders import docker_bridge

from netdecl.engine.planner import make_plan
from netdecl.engine.state.planfile import action_from_json
from netdecl.engine.state.record import OwnershipRecord
from netdecl.links.macvlan import MacvlanSpec
from netdecl.links.veth import VethSpec
from netdecl.links.vlan import VlanSpec
from netdecl.model import (
    ROOT,
    Address,
    Link,
    Namespace,
    NatRule,
    NatTable,
    Route,
    Sysctl,
    Topology,
)
from netdecl.tools.render import plan_json, plan_text


def as_observed(desired: Topology, owner: str | None = None) -> tuple[Topology, OwnershipRecord]:
    """What the kernel would report after applying ``desired`` (links marked, identities
    observed and recorded: the record names what ``owner``, default the topology, made)."""
    owner = owner or desired.name
    seen = Topology(name=desired.name)
    record = OwnershipRecord(desired.name)
    for number, obj in enumerate(desired.objects.values()):
        if isinstance(obj, Link):
            obj = dataclasses.replace(obj, owner=owner, mtu=obj.mtu or 1500,
                                      mac=obj.mac or "02:00:00:00:00:01", ident=f"if{number}")
        if isinstance(obj, (Namespace, NatTable)):
            obj = dataclasses.replace(obj, ident=f"id{number}")
        if isinstance(obj, Namespace):
            record.namespaces.add(obj.namespace)
        if isinstance(obj, Route):
            record.objects.add(obj.key)
            obj = dataclasses.replace(obj, dev="eth0", proto=211)
        if isinstance(obj, NatTable):
            record.nat_namespaces.add(obj.namespace)
        if isinstance(obj, (Namespace, Link, NatTable)) and owner == desired.name:
            record.identities[obj.key] = obj.ident
        seen.add(obj)
    return seen, record


def positions(plan, predicate) -> list[int]:
    return [i for i, a in enumerate(plan.actions) if predicate(a)]


def test_cold_plan_is_ordered_by_dependencies():
    desired = docker_bridge()
    plan = make_plan(desired, Topology(name=desired.name), OwnershipRecord(desired.name))
    assert not plan.conflicts
    ops = [(a.op, a.key) for a in plan.actions]
    assert ("create", ("namespace", "nginx-1")) in ops
    index = {a.key: i for i, a in enumerate(plan.actions)}
    # namespaces before the veth whose peer lives there; bridge before its ports
    assert index[("namespace", "nginx-1")] < index[("link", "", "veth-n1")]
    assert index[("link", "", "docker0")] < index[("link", "", "veth-n1")]
    # the peer end's address waits for the pair's creation, routes wait for addresses
    assert index[("link", "", "veth-n1")] < index[("address", "nginx-1", "eth0", "172.17.0.2/16")]
    assert index[("address", "nginx-1", "eth0", "172.17.0.2/16")] < \
        index[("route", "nginx-1", 254, "0.0.0.0/0", 0)]
    # a veth pair is one action, not two
    assert ("link", "nginx-1", "eth0") not in index
    assert plan.counts() == (10, 1, 0)


def test_plan_against_matching_state_is_empty():
    desired = docker_bridge()
    observed, record = as_observed(desired)
    observed.add(dataclasses.replace(desired.get(("sysctl", ROOT, "net.ipv4.ip_forward"))))
    plan = make_plan(desired, observed, record)
    assert plan.actions == []
    assert "No changes" in plan_text(plan)


def test_foreign_link_with_declared_name_is_a_conflict():
    desired = docker_bridge()
    observed = Topology(name=desired.name)
    observed.add(Link(ROOT, "docker0", "bridge", owner=None))
    plan = make_plan(desired, observed, OwnershipRecord(desired.name))
    assert [c.key for c in plan.conflicts] == [("link", "", "docker0")]
    assert "netdecl will not adopt it" in plan.conflicts[0].message
    observed = Topology(name=desired.name)
    observed.add(Link(ROOT, "docker0", "bridge", owner="other-topo"))
    plan = make_plan(desired, observed, OwnershipRecord(desired.name))
    assert "topology other-topo" in plan.conflicts[0].message


def test_existing_namespace_not_in_record_is_a_conflict():
    desired = docker_bridge()
    observed = Topology(name=desired.name)
    observed.add(Namespace("nginx-1"))
    plan = make_plan(desired, observed, OwnershipRecord(desired.name))
    assert [c.key for c in plan.conflicts] == [("namespace", "nginx-1")]


def test_prune_deletes_in_reverse_dependency_order():
    desired = docker_bridge()
    observed, record = as_observed(desired)
    smaller = docker_bridge()
    for key in [k for k in smaller.objects if "nginx-2" in k or "veth-n2" in k]:
        del smaller.objects[key]
    plan = make_plan(smaller, observed, record)
    kinds = [(a.op, a.key) for a in plan.actions]
    # the namespace first: the kernel removes the veth pair with it (in one batched cleanup
    # for every namespace deleted together); the link's action then waits for its root end
    assert kinds == [
        ("delete", ("namespace", "nginx-2")),
        ("delete", ("link", "", "veth-n2")),
    ], kinds
    # the route and address inside the deleted namespace go with it, unlisted
    assert plan.counts() == (0, 0, 2)


def test_foreign_link_inside_namespace_to_delete_blocks_the_delete():
    desired = docker_bridge()
    observed, record = as_observed(desired)
    observed.add(Link("nginx-2", "handmade", "bridge", owner=None))
    smaller = Topology(name=desired.name)
    plan = make_plan(smaller, observed, record)
    assert any("handmade" in c.message for c in plan.conflicts)


def test_peer_moving_namespace_is_a_replace_and_re_adds_dependents():
    desired = docker_bridge()
    observed, record = as_observed(desired)
    moved = docker_bridge()
    del moved.objects[("link", "nginx-1", "eth0")]
    del moved.objects[("address", "nginx-1", "eth0", "172.17.0.2/16")]
    del moved.objects[("route", "nginx-1", 254, "0.0.0.0/0", 0)]
    moved.add(Link(ROOT, "veth-n1", "veth", master="docker0",
                   spec=VethSpec(peer=("nginx-2", "eth1"))))
    moved.add(Link("nginx-2", "eth1", "veth", spec=VethSpec(peer=(ROOT, "veth-n1"))))
    moved.add(Address("nginx-2", "eth1", "172.17.0.9/16"))
    plan = make_plan(moved, observed, record)
    replace = [a for a in plan.actions if a.op == "replace"]
    assert len(replace) == 1 and replace[0].key == ("link", "", "veth-n1")
    assert replace[0].reason == "peer changed"
    assert "-/+ link veth-n1 <-> nginx-2/eth1" in plan_text(plan)


def _on_a_veth(peer: str, vlan_mtu: int | None = None) -> Topology:
    """A veth, a macvlan on its root end and a VLAN on the macvlan, with an address."""
    topo = Topology(name="t")
    topo.add(Namespace("ns1"))
    topo.add(Link(ROOT, "va", "veth", spec=VethSpec(peer=("ns1", peer))))
    topo.add(Link("ns1", peer, "veth", spec=VethSpec(peer=(ROOT, "va"))))
    topo.add(Link(ROOT, "mv", "macvlan", spec=MacvlanSpec(link="va")))
    topo.add(Link(ROOT, "mv.10", "vlan", mtu=vlan_mtu, spec=VlanSpec(id=10, link="mv")))
    topo.add(Address(ROOT, "mv.10", "10.10.0.1/24"))
    return topo


def test_links_made_on_a_link_made_again_are_made_again_after_it():
    """The kernel deletes a VLAN or a macvlan with its parent: a new parent takes them along,
    each made again after the link it is made on, its in-place changes in the new one."""
    observed, record = as_observed(_on_a_veth("vb"))
    plan = make_plan(_on_a_veth("vc", vlan_mtu=1400), observed, record)
    replaced = [a.key[2] for a in plan.actions if a.op == "replace"]
    assert replaced == ["va", "mv", "mv.10"]  # in this order
    assert not [a for a in plan.actions if a.op == "modify"]
    assert [a.key for a in plan.actions if a.type == "address"] == [
        ("address", ROOT, "mv.10", "10.10.0.1/24")]
    text = plan_text(plan)
    assert "-/+ link mv (macvlan)" in text and "made on va, which is made again" in text
    # nothing made again when the parent stays
    assert not make_plan(_on_a_veth("vb"), observed, record).actions


def test_modify_shows_before_and_after():
    desired = docker_bridge()
    observed, record = as_observed(desired)
    changed = docker_bridge()
    changed.add(dataclasses.replace(changed.get(("link", "", "docker0")), mtu=1400))
    plan = make_plan(changed, observed, record)
    modify = [a for a in plan.actions if a.op == "modify" and a.type == "link"]
    assert len(modify) == 1 and modify[0].changes == {"mtu": [1500, 1400]}
    assert "~ link docker0 (bridge, mtu 1400): mtu 1500 -> 1400" in plan_text(plan)


def test_removing_master_from_the_file_detaches_the_port():
    desired = docker_bridge()
    observed, record = as_observed(desired)
    changed = docker_bridge()
    changed.add(dataclasses.replace(changed.get(("link", "", "veth-n1")), master=None))
    plan = make_plan(changed, observed, record)
    assert [a.changes for a in plan.actions if a.type == "link"] == [{"master": ["docker0", None]}]


def test_extra_address_on_owned_link_is_removed_but_not_on_foreign_links():
    desired = docker_bridge()
    observed, record = as_observed(desired)
    observed.add(Address(ROOT, "docker0", "10.9.9.9/24"))
    observed.add(Link(ROOT, "eth0", "device", owner=None))
    observed.add(Address(ROOT, "eth0", "192.0.2.1/24"))
    plan = make_plan(desired, observed, record)
    assert [(a.op, a.key) for a in plan.actions] == [
        ("delete", ("address", "", "docker0", "10.9.9.9/24"))]


def test_route_not_in_record_is_a_conflict_and_foreign_routes_are_ignored():
    desired = docker_bridge()
    observed, record = as_observed(desired)
    record.objects.discard(("route", "nginx-1", 254, "0.0.0.0/0", 0))
    observed.add(Route(ROOT, "198.51.100.0/24", via="10.0.0.1", proto=4))  # someone else's
    plan = make_plan(desired, observed, record)
    assert [c.key for c in plan.conflicts] == [("route", "nginx-1", 254, "0.0.0.0/0", 0)]
    assert not plan.actions


def test_nat_rules_are_diffed_rule_by_rule():
    desired = docker_bridge()
    masq = NatRule("masquerade", source="172.17.0.0/16", not_out="docker0")
    fwd = NatRule("dnat", proto="tcp", port=8080, to_address="172.17.0.2", to_port=80)
    desired.add(NatTable(ROOT, rules=(masq, fwd)))
    observed, record = as_observed(desired)
    observed.add(dataclasses.replace(observed.get(("nat", ROOT)), rules=(masq,)))
    plan = make_plan(desired, observed, record)
    nat = [a for a in plan.actions if a.type == "nat"]
    assert len(nat) == 1 and nat[0].op == "modify"
    text = plan_text(plan)
    assert "+ dnat proto=tcp port=8080 to=172.17.0.2:80" in text
    assert "masquerade" not in text.split("nat table")[1].split("+ dnat")[0]


def test_plan_json_round_trips_actions():
    desired = docker_bridge()
    plan = make_plan(desired, Topology(name=desired.name), OwnershipRecord(desired.name))
    data = json.loads(plan_json(plan))
    assert data["summary"] == {"add": 10, "change": 1, "destroy": 0}
    restored = [action_from_json(a) for a in data["actions"]]
    assert [(a.op, a.key, a.after) for a in restored] == \
        [(a.op, a.key, a.after) for a in plan.actions]


def test_plan_text_ends_with_summary_line():
    desired = docker_bridge()
    plan = make_plan(desired, Topology(name=desired.name), OwnershipRecord(desired.name))
    assert plan_text(plan).splitlines()[-1] == "Plan: 10 to add, 1 to change, 0 to destroy."


def test_forwarding_note_when_nat_without_ip_forward():
    desired = Topology(name="t")
    desired.add(NatTable(ROOT, rules=(NatRule("masquerade", source="10.0.0.0/8"),)))
    plan = make_plan(desired, Topology(name="t"), OwnershipRecord("t"))
    assert plan.notes and "ip_forward" in plan.notes[0]


def test_hairpin_without_master_is_not_a_difference():
    # found by the apply fuzz test: the flag lives on a bridge port, so a link without a
    # master can never show it and verification would fail forever
    desired = docker_bridge()
    observed, record = as_observed(desired)
    observed.add(Sysctl(ROOT, "net.ipv4.ip_forward", "1"))
    loose = dataclasses.replace(desired.get(("link", "", "veth-n1")), master=None, hairpin=True)
    desired.add(loose)
    observed.add(dataclasses.replace(observed.get(("link", "", "veth-n1")), master=None,
                                     hairpin=None))
    assert make_plan(desired, observed, record).actions == []


def test_someone_elses_route_on_a_key_we_once_owned_is_a_conflict():
    # our route vanished and another daemon's (proto 16, dhcp) now has the same key: the
    # record alone must not make it ours to overwrite or delete
    desired = docker_bridge()
    observed, record = as_observed(desired)
    key = ("route", "nginx-1", 254, "0.0.0.0/0", 0)
    observed.add(dataclasses.replace(observed.get(key), via="172.17.0.254", proto=16))
    plan = make_plan(desired, observed, record)
    assert [c.key for c in plan.conflicts] == [key]
    assert not [a for a in plan.actions if a.key == key]
    pruned = make_plan(Topology(name=desired.name), observed, record)
    assert not [a for a in pruned.actions if a.key == key]


def test_a_plan_with_only_conflicts_never_says_the_host_matches():
    from netdecl.engine.planner.plan import Conflict, Plan

    plan = Plan(topology="t", conflicts=[Conflict(("link", "", "docker0"),
                                                  "link docker0 already exists")])
    text = plan_text(plan)
    assert "No changes" not in text and "matches the host" not in text
    assert text.splitlines()[-1] == "1 conflict: apply changes nothing until it is resolved."


def test_forwarding_note_for_each_family_the_nat_rules_translate():
    v6 = NatRule("masquerade", source="fd00:18::/64")
    desired = Topology(name="t")
    desired.add(NatTable(ROOT, rules=(NatRule("masquerade", source="10.0.0.0/8"), v6)))
    notes = make_plan(desired, Topology(name="t"), OwnershipRecord("t")).notes
    assert [note.split(" is ")[0] for note in notes] == [
        "nat in root: net.ipv4.ip_forward", "nat in root: net.ipv6.conf.all.forwarding"]
    assert "IPv6 packets" in notes[1]
    # on in the kernel (IPv4 under its other name, declared): nothing to say
    observed = Topology(name="t")
    observed.add(Sysctl(ROOT, "net.ipv6.conf.all.forwarding", "1"))
    desired.add(Sysctl(ROOT, "net.ipv4.conf.all.forwarding", "1"))
    assert make_plan(desired, observed, OwnershipRecord("t")).notes == []
    # declared off in the file: said even though the kernel has it on now
    desired.add(Sysctl(ROOT, "net.ipv6.conf.all.forwarding", "0"))
    notes = make_plan(desired, observed, OwnershipRecord("t")).notes
    assert len(notes) == 1 and "net.ipv6.conf.all.forwarding is 0" in notes[0]


def test_a_filter_only_table_still_needs_ipv4_forwarding_and_nothing_more():
    desired = Topology(name="t")
    desired.add(NatTable(ROOT, rules=(NatRule("filter", action="drop", source="fd00::/8"),)))
    notes = make_plan(desired, Topology(name="t"), OwnershipRecord("t")).notes
    assert len(notes) == 1 and "net.ipv4.ip_forward is unset" in notes[0]


def _ipv6_off_but_eth0(desired: Topology) -> Topology:
    """Docker's IPv6 network: IPv6 off for every link of the containers but eth0."""
    for ns in ("nginx-1", "nginx-2"):
        desired.add(Sysctl(ns, "net.ipv6.conf.all.disable_ipv6", "1"))
        desired.add(Sysctl(ns, "net.ipv6.conf.eth0.disable_ipv6", "0"))
        desired.add(Address(ns, "eth0", f"fd00:18::{ns[-1]}/64"))
    return desired


def test_namespace_sysctls_go_before_links_and_a_links_own_before_its_addresses():
    desired = _ipv6_off_but_eth0(docker_bridge())
    plan = make_plan(desired, Topology(name=desired.name), OwnershipRecord(desired.name))
    index = {a.key: i for i, a in enumerate(plan.actions)}
    everywhere = ("sysctl", "nginx-1", "net.ipv6.conf.all.disable_ipv6")
    on_eth0 = ("sysctl", "nginx-1", "net.ipv6.conf.eth0.disable_ipv6")
    assert index[("namespace", "nginx-1")] < index[everywhere] < index[("link", "", "veth-n1")]
    assert index[("link", "", "veth-n1")] < index[on_eth0] < min(
        index[("address", "nginx-1", "eth0", "fd00:18::1/64")],
        index[("address", "nginx-1", "eth0", "172.17.0.2/16")])
    # the links are still made in one run (engine/linkup.py brings the pairs up after it)
    links = positions(plan, lambda a: a.type == "link")
    assert links == list(range(links[0], links[0] + len(links)))


def test_a_per_link_sysctl_names_its_link_whatever_the_spelling():
    assert Sysctl("a", "net.ipv6.conf.eth0.disable_ipv6", "0").per_link == "eth0"
    assert Sysctl("a", "net/ipv4/conf/eth0.100/rp_filter", "0").per_link == "eth0.100"
    assert Sysctl("a", "net.ipv4.neigh.eth0.gc_stale_time", "9").per_link == "eth0"
    for wide in ("net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6",
                 "net.ipv4.ip_forward", "net.core.somaxconn"):
        assert Sysctl("a", wide, "1").per_link is None, wide


def test_turning_ipv6_off_everywhere_rewrites_eth0_and_re_adds_its_ipv6():
    """On a running namespace `all.disable_ipv6: 1` overwrites eth0's own value and drops its
    IPv6 addresses: eth0's sysctl is written again (although it reads 0 now) and its IPv6
    address and IPv6 routes are added again; its IPv4 ones stay."""
    desired = _ipv6_off_but_eth0(docker_bridge())
    desired.add(Route("nginx-1", "fd00:99::/64", via="fd00:18::9", dev="eth0"))
    observed, record = as_observed(desired)
    for ns in ("nginx-1", "nginx-2"):
        observed.add(Sysctl(ns, "net.ipv6.conf.all.disable_ipv6", "0"))
        observed.add(Sysctl(ns, "net.ipv6.conf.eth0.disable_ipv6", "0"))
    plan = make_plan(desired, observed, record)
    index = {a.key: i for i, a in enumerate(plan.actions)}
    on_eth0 = ("sysctl", "nginx-1", "net.ipv6.conf.eth0.disable_ipv6")
    assert plan.actions[index[on_eth0]].why == "overwritten"
    assert plan.actions[index[on_eth0]].changes == {"value": ["1", "0"]}
    readded = ("address", "nginx-1", "eth0", "fd00:18::1/64")
    assert plan.actions[index[readded]].why == "dependency-rebuilt"
    assert index[on_eth0] < index[readded]
    assert index[readded] < index[("route", "nginx-1", 254, "fd00:99::/64", 0)]
    assert ("address", "nginx-1", "eth0", "172.17.0.2/16") not in index
    assert ("route", "nginx-1", 254, "0.0.0.0/0", 0) not in index
    # once `all` holds, nothing is done again
    for ns in ("nginx-1", "nginx-2"):
        observed.add(Sysctl(ns, "net.ipv6.conf.all.disable_ipv6", "1"))
    assert not make_plan(desired, observed, record).actions


def test_a_links_own_sysctl_is_written_again_when_the_link_is_made_again():
    """A new device starts with the namespace's defaults: a per-link sysctl that reads right
    on the old link is written again after its link is made again (here the VLAN goes with
    the veth it is made on, whose peer changes)."""
    on_vlan = Sysctl(ROOT, "net/ipv4/conf/mv.10/rp_filter", "0")
    before = _on_a_veth("vb")
    before.add(on_vlan)
    observed, record = as_observed(before)
    after = _on_a_veth("vc")
    after.add(on_vlan)
    plan = make_plan(after, observed, record)
    index = {a.key: i for i, a in enumerate(plan.actions)}
    rewrite = plan.actions[index[on_vlan.key]]
    assert (rewrite.op, rewrite.why) == ("modify", "dependency-rebuilt")
    assert plan.actions[index[("link", ROOT, "mv.10")]].op == "replace"
    assert index[("link", ROOT, "mv.10")] < index[on_vlan.key] < \
        index[("address", ROOT, "mv.10", "10.10.0.1/24")]
    # the link kept: nothing to write
    assert on_vlan.key not in {a.key for a in make_plan(before, observed, record).actions}
