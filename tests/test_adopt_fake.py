"""A failed `apply --adopt`, against the in-memory host: every step, and a rollback that is
itself cut short while putting back what adoption overwrote (tests/test_adopt_rollback.py
proves the same on the kernel)."""

from __future__ import annotations

from pathlib import Path

import pytest
from builders import docker_bridge
from fakehost import FakeHost

from netdecl.engine import service
from netdecl.engine.planner.plan import Op
from netdecl.engine.state import untrusted
from netdecl.engine.state.statedir import journal_path
from netdecl.errors import ApplyFailed, RollbackFailed
from netdecl.links.veth import VethSpec
from netdecl.model import ROOT, RTPROT_NETDECL, Address, Link, Namespace, Route, Topology

NAME = "docker-bridge"
RTPROT_BOOT, RTPROT_STATIC = 3, 4


def hand_made() -> FakeHost:
    """docker0 and two containers made by hand: some links with an alias of their own, the
    containers' default routes (protocol boot) and a static route on the host."""
    host = FakeHost()
    host.add_foreign(Namespace("nginx-1"), Namespace("nginx-2"),
                     Link(ROOT, "docker0", "bridge", alias="made by hand"),
                     Address(ROOT, "docker0", "172.17.0.1/16"))
    for i in (1, 2):
        ns = f"nginx-{i}"
        host.add_foreign(
            Link(ROOT, f"veth-n{i}", "veth", master="docker0", spec=VethSpec(peer=(ns, "eth0")),
                 alias="web one" if i == 1 else None),
            Link(ns, "eth0", "veth", spec=VethSpec(peer=(ROOT, f"veth-n{i}"))),
            Address(ns, "eth0", f"172.17.0.{i + 1}/16"),
            Route(ns, "0.0.0.0/0", via="172.17.0.1", proto=RTPROT_BOOT))
    host.add_foreign(Route(ROOT, "10.9.0.0/24", via="172.17.0.2", proto=RTPROT_STATIC))
    return host


def declared() -> Topology:
    """docker_bridge, the static route, and a third container that does not exist yet."""
    topo = docker_bridge()
    topo.add(Route(ROOT, "10.9.0.0/24", via="172.17.0.2"))
    topo.add(Namespace("nginx-3"))
    topo.add(Link(ROOT, "veth-n3", "veth", master="docker0",
                  spec=VethSpec(peer=("nginx-3", "eth0"))))
    topo.add(Link("nginx-3", "eth0", "veth", spec=VethSpec(peer=(ROOT, "veth-n3"))))
    topo.add(Address("nginx-3", "eth0", "172.17.0.4/16"))
    return topo


def adopting(host: FakeHost, state: Path) -> service.EngineResult:
    return service.apply(declared(), state, host=host, adopt=True)


def changes_of_adopting(host: FakeHost, state: Path) -> tuple[int, service.EngineResult]:
    """How many changes the adopting apply makes on a copy of ``host``, and what it did."""
    dry = host.copy()
    start = dry.changes
    result = adopting(dry, state)
    return dry.changes - start, result


def files(state: Path) -> list[str]:
    return sorted(str(p.relative_to(state)) for p in state.rglob("*")
                  if p.is_file() and p.name != "lock")


def test_a_failure_at_every_step_of_an_adopting_apply_puts_aliases_and_protocols_back(
        tmp_path):
    base = hand_made()
    dry = base.copy()
    start = dry.changes
    result = adopting(dry, tmp_path / "dry")
    steps = dry.changes - start
    adopted = [a for a in result.plan.actions if a.op is Op.ADOPT]
    assert len(adopted) == 8  # 2 namespaces, docker0, 2 veth pairs, 3 routes
    assert len(result.plan.actions) > len(adopted)  # and it makes and changes things too
    # a veth pair adopted: two marks; a namespace: none; the veth pair it makes: its second
    # end brought up after it (engine/linkup.py)
    assert steps == 13
    docker0 = dry.objects[("link", ROOT, "docker0")]
    assert (docker0.owner, docker0.alias) == (NAME, f"netdecl:{NAME}")
    assert dry.objects[("route", ROOT, 254, "10.9.0.0/24", 0)].proto == RTPROT_NETDECL

    for step in range(1, steps + 1):
        state = tmp_path / f"step-{step}"
        host = base.copy()
        host.arm(step)
        with pytest.raises(ApplyFailed, match="injected"):
            adopting(host, state)
        assert host.state() == base.state(), f"after a failure at change {step}"
        assert files(state) == [], f"state files after a failure at change {step}"


def test_a_rollback_cut_short_while_putting_back_finishes_with_netdecl_rollback(tmp_path):
    host = hand_made()
    before = host.state()
    original = host.set_alias

    def refuse_to_give_docker0_back(link, alias):
        if alias == "made by hand":
            raise RuntimeError("the kernel is having a bad day")
        original(link, alias)

    steps, _ = changes_of_adopting(host, tmp_path / "dry")
    host.arm(steps)  # the last change: docker0 has its mark by then
    host.set_alias = refuse_to_give_docker0_back  # type: ignore[method-assign]
    with pytest.raises(RollbackFailed) as failed:
        adopting(host, tmp_path / "state")
    message = str(failed.value)
    assert "put back the alias of link docker0" in message, message
    assert "the kernel is having a bad day" in message
    assert "not restored: the alias of link docker0 ('netdecl:docker-bridge', was " \
           "'made by hand')" in message, message
    assert journal_path(tmp_path / "state", NAME).exists()
    # the rest was put back: the other links' aliases and every route's protocol
    assert host.objects[("link", ROOT, "veth-n1")].alias == "web one"
    assert host.objects[("link", "nginx-1", "eth0")].alias is None
    assert host.objects[("route", ROOT, 254, "10.9.0.0/24", 0)].proto == RTPROT_STATIC
    assert host.objects[("route", "nginx-2", 254, "0.0.0.0/0", 0)].proto == RTPROT_BOOT

    # from the journal: what is back already counts as restored, and docker0's alias is
    # put back now that the host behaves
    host.set_alias = original  # type: ignore[method-assign]
    assert service.rollback(tmp_path / "state", host=host) == [NAME]
    assert host.state() == before
    assert files(tmp_path / "state") == []


def test_a_route_someone_else_replaced_meanwhile_is_not_given_a_protocol(tmp_path):
    """The protocol goes back only onto the route the topology owns: one that carries another
    protocol at that key by the time of the rollback is someone else's and stays as it is."""
    host = hand_made()
    key = ("route", ROOT, 254, "10.9.0.0/24", 0)
    theirs = Route(ROOT, "10.9.0.0/24", via="172.17.0.3", proto=RTPROT_BOOT)

    def replaced_by_someone_else() -> None:
        host.objects[key] = theirs

    steps, _ = changes_of_adopting(host, tmp_path / "dry")
    host.race(steps, replaced_by_someone_else)
    host.arm(steps)
    with pytest.raises(RollbackFailed) as failed:
        adopting(host, tmp_path / "state")
    assert "not restored: route 10.9.0.0/24 already exists" in str(failed.value)
    assert host.objects[key] == theirs


def test_an_alias_or_protocol_read_back_from_a_journal_is_checked_before_it_is_written():
    """A rollback writes a snapshot's alias and route protocol to the kernel: read back from
    the journal, they must be what the kernel keeps, or the journal is damaged."""
    good = (Link(ROOT, "docker0", "bridge", alias="made by hand: ünïcode"),
            Route(ROOT, "10.9.0.0/24", via="172.17.0.2", proto=RTPROT_STATIC))
    for obj in good:
        assert untrusted.check_object(obj) is obj
    bad = (Link(ROOT, "docker0", "bridge", alias=7), Link(ROOT, "docker0", "bridge",
                                                         alias="x\0y"),
           Link(ROOT, "docker0", "bridge", alias="é" * 128),  # 256 bytes
           Route(ROOT, "10.9.0.0/24", proto=256), Route(ROOT, "10.9.0.0/24", proto=True),
           Route(ROOT, "10.9.0.0/24", proto="static"))
    for obj in bad:
        with pytest.raises(untrusted.Untrusted):
            untrusted.check_object(obj)
