"""The engine (service, planner, applier, rollback) against an in-memory host: no root.

The real-kernel tests (test_rollback*, test_core_kernel, ...) prove the same properties on the
kernel; these run the riskiest code, rollback, over every step of a plan in milliseconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from builders import docker_bridge
from fakehost import FakeHost

from netdecl.engine import service
from netdecl.engine.planner.plan import Op
from netdecl.engine.state.statedir import journal_path, record_path
from netdecl.errors import ApplyFailed, RollbackFailed
from netdecl.links.veth import VethSpec
from netdecl.model import (
    ROOT,
    Address,
    Link,
    Namespace,
    NatRule,
    NatTable,
    Route,
    Rule,
    Sysctl,
    Topology,
)

NAME = "docker-bridge"


@pytest.fixture(autouse=True)
def _nft_present(monkeypatch):
    # the service refuses NAT topologies when the nft command is missing; the fake needs none
    monkeypatch.setattr("netdecl.backends.nftables.find_nft", lambda: "/usr/sbin/nft")


def with_foreign_objects() -> FakeHost:
    """A host with things netdecl did not make: they must survive every apply and rollback."""
    host = FakeHost()
    host.add_foreign(
        Namespace("other"),
        Link(ROOT, "eth9", "bridge"),
        Address(ROOT, "eth9", "192.0.2.1/24"),
        Route(ROOT, "198.51.100.0/24", via="192.0.2.254", dev="eth9", proto=3),
        Rule(ROOT, priority=100, table=100, proto=3),
    )
    host.sysctls[(ROOT, "net.ipv4.conf.all.rp_filter")] = "1"
    return host


def version_two() -> Topology:
    """docker_bridge changed in every way a plan can change a host."""
    topo = docker_bridge()
    for key in [k for k in topo.objects if "nginx-2" in k or "veth-n2" in k]:
        del topo.objects[key]  # prune a namespace and its veth pair
    topo.add(Link(ROOT, "docker0", "bridge", mtu=1400))  # modify
    topo.add(Namespace("nginx-3"))  # create
    topo.add(Link(ROOT, "veth-n3", "veth", master="docker0",
                  spec=VethSpec(peer=("nginx-3", "eth0"))))
    topo.add(Link("nginx-3", "eth0", "veth", spec=VethSpec(peer=(ROOT, "veth-n3"))))
    topo.add(Address("nginx-3", "eth0", "172.17.0.4/16"))
    topo.add(Route("nginx-3", "0.0.0.0/0", via="172.17.0.1"))
    # the veth of nginx-1 moves its peer: a replace, with the address and route re-added
    del topo.objects[("link", "nginx-1", "eth0")]
    del topo.objects[("address", "nginx-1", "eth0", "172.17.0.2/16")]
    del topo.objects[("route", "nginx-1", 254, "0.0.0.0/0", 0)]
    topo.add(Link(ROOT, "veth-n1", "veth", master="docker0",
                  spec=VethSpec(peer=("nginx-3", "eth1"))))
    topo.add(Link("nginx-3", "eth1", "veth", spec=VethSpec(peer=(ROOT, "veth-n1"))))
    topo.add(Route(ROOT, "10.99.0.0/16", via="172.17.0.4"))
    topo.add(Sysctl(ROOT, "net.ipv4.conf.all.rp_filter", "0"))
    topo.add(NatTable(ROOT, (NatRule("masquerade", source="172.17.0.0/16", not_out="docker0"),)))
    return topo


def applied(host: FakeHost, topo: Topology, state: Path) -> service.EngineResult:
    return service.apply(topo, state, host=host)


def files(state: Path) -> dict[str, str]:
    return {str(p.relative_to(state)): p.read_text() for p in sorted(state.rglob("*"))
            if p.is_file() and p.name != "lock"}


def without_identities(contents: dict[str, str]) -> dict[str, object]:
    """State files with each recorded identity's value blanked: an object a rollback made
    again is a new kernel object (the same name, attributes and MAC, a new identity)."""
    out: dict[str, object] = {}
    for rel, text in contents.items():
        data = json.loads(text) if rel.endswith(".json") else text
        if isinstance(data, dict) and "identities" in data:
            data["identities"] = [[*entry[:-1], "*"] for entry in data["identities"]]
        out[rel] = data
    return out


def assert_identities_live(host: FakeHost, state: Path) -> None:
    """Every identity the record keeps is the one the object at that key has now."""
    record = json.loads((state / "topologies" / f"{NAME}.json").read_text())
    for *key, ident in record["identities"]:
        if key[0] in ("namespace", "link"):
            assert host.objects[tuple(key)].ident == ident, key
        elif key[0] == "nat":
            assert host.nat[(NAME, key[1])].ident == ident, key


def state_dir_with(state: Path, contents: dict[str, str]) -> Path:
    for rel, text in contents.items():
        (state / rel).parent.mkdir(parents=True, exist_ok=True)
        (state / rel).write_text(text)
    return state


def test_apply_converges_and_destroy_leaves_the_host_as_it_was(tmp_path):
    host = with_foreign_objects()
    before = host.state()
    result = applied(host, docker_bridge(), tmp_path)
    assert result.plan.counts() == (10, 1, 0) and len(result.executed) == 11
    assert host.objects[("link", ROOT, "docker0")].owner == NAME
    assert host.sysctls[(ROOT, "net.ipv4.ip_forward")] == "1"
    # idempotent: planning again finds nothing, applying again does nothing
    assert service.plan(docker_bridge(), tmp_path, host=host).actions == []
    assert applied(host, docker_bridge(), tmp_path).executed == ()

    result = service.destroy(NAME, tmp_path, host=host)
    assert {a.op for a in result.plan.actions} == {Op.DELETE, Op.MODIFY}  # sysctl restored
    assert host.state() == before
    assert files(tmp_path) == {}  # no record, no journal left
    assert service.plan(Topology(name=NAME), tmp_path, host=host).actions == []


def test_apply_of_a_changed_topology_converges(tmp_path):
    host = with_foreign_objects()
    applied(host, docker_bridge(), tmp_path)
    result = applied(host, version_two(), tmp_path)
    assert {a.op for a in result.plan.actions} == set(Op) - {Op.ADOPT}  # no --adopt here
    assert service.plan(version_two(), tmp_path, host=host).actions == []
    assert ("namespace", "nginx-2") not in host.objects
    assert host.objects[("link", "nginx-3", "eth1")].peer == (ROOT, "veth-n1")


def test_a_failure_at_every_step_rolls_back_to_exactly_the_snapshot(tmp_path):
    base = with_foreign_objects()
    applied(base, docker_bridge(), tmp_path / "base")
    record_before = files(tmp_path / "base")

    dry = base.copy()
    start = dry.changes
    applied(dry, version_two(), state_dir_with(tmp_path / "dry", record_before))
    steps = dry.changes - start
    # the 13 actions of the plan, the replace being two changes, and the second ends of the
    # two veth pairs it makes brought up after them (engine/linkup.py): a failure at each of
    # those is rolled back too
    assert steps == 16

    for step in range(1, steps + 1):
        state = state_dir_with(tmp_path / f"step-{step}", record_before)
        host = base.copy()
        host.arm(step)
        with pytest.raises(ApplyFailed, match="injected") as failed:
            applied(host, version_two(), state)
        assert "rolled back" in str(failed.value)
        assert host.state() == base.state(), f"after a failure at change {step}"
        assert without_identities(files(state)) == without_identities(record_before), \
            f"record after a failure at change {step}"
        assert_identities_live(host, state)
        assert not journal_path(state, NAME).exists()


def test_a_failed_rollback_is_reported_and_keeps_the_journal(tmp_path):
    host = with_foreign_objects()
    applied(host, docker_bridge(), tmp_path)
    before = host.state()
    original = host.delete

    def refuse_namespace_delete(obj, topology, peer=None):
        if isinstance(obj, Namespace) and obj.namespace == "nginx-3":
            raise RuntimeError("the kernel is having a bad day")
        original(obj, topology, peer)

    # the apply fails after creating nginx-3 (its 5th change); rolling back cannot delete it
    host.arm(7)
    host.delete = refuse_namespace_delete  # type: ignore[method-assign]
    with pytest.raises(RollbackFailed) as failed:
        applied(host, version_two(), tmp_path)
    assert "delete namespace nginx-3: the kernel is having a bad day" in str(failed.value)
    assert "not restored" in str(failed.value)
    assert journal_path(tmp_path, NAME).exists()

    # `netdecl rollback`, once the host behaves again, restores everything from the journal
    host.delete = original  # type: ignore[method-assign]
    assert service.rollback(tmp_path, host=host) == [NAME]
    assert host.state() == before
    assert not journal_path(tmp_path, NAME).exists()


def test_a_saved_plan_is_refused_once_the_host_changed(tmp_path):
    host = FakeHost()
    plan = service.plan(docker_bridge(), tmp_path, host=host)
    topo_file = tmp_path / "topo.yaml"
    topo_file.write_text("version: 1\nname: docker-bridge\n")
    service.save_plan(plan, tmp_path / "plan.json", topo_file)
    saved = json.loads((tmp_path / "plan.json").read_text())
    assert saved["fingerprint"] == plan.fingerprint and saved["source_text"].startswith("version")

    from netdecl.engine.state import planfile

    loaded = planfile.read(str(tmp_path / "plan.json"))
    assert loaded is not None and loaded.actions == saved["actions"]
    assert planfile.plan_from_json(saved).counts() == plan.counts()
    host.add_foreign(Link(ROOT, "eth7", "dummy"))  # in scope: the root namespace
    with pytest.raises(planfile.StalePlan, match="stale"):
        service.apply(docker_bridge(), tmp_path, saved=loaded, host=host)
    assert ("namespace", "nginx-1") not in host.objects
    assert record_path(tmp_path, NAME).exists() is False


class _Watched(FakeHost):
    """Records the namespaces each observation reads; ``lie_about`` makes modify report
    success while leaving those attributes as they were (a kernel that ignores a request)."""

    def __init__(self, lie_about: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.reads: list[list[str]] = []
        self.nat_reads: list[list[str]] = []  # where each observation read the NAT tables
        self.lie_about = lie_about

    def observe(self, topology, scope):
        self.reads.append(list(scope.namespaces))
        self.nat_reads.append(sorted(ns for ns in scope.namespaces if scope.nat and (
            scope.nat_namespaces is None or ns in scope.nat_namespaces)))
        return super().observe(topology, scope)

    def modify(self, before, after, changes, topology, birth=None):
        honest = {k: v for k, v in changes.items() if k not in self.lie_about}
        if honest or not changes:
            super().modify(before, after, honest, topology, birth)


def test_verification_rereads_only_the_namespaces_the_apply_changed(tmp_path):
    host = _Watched()
    applied(host, docker_bridge(), tmp_path)
    changed = docker_bridge()
    changed.add(Link(ROOT, "docker0", "bridge", mtu=1400))
    host.reads.clear()
    result = applied(host, changed, tmp_path)
    assert [a.op for a in result.executed] == [Op.MODIFY]
    everything = sorted([ROOT, "nginx-1", "nginx-2"])
    assert sorted(host.reads[0]) == everything  # the plan reads all the topology's namespaces
    assert host.reads[1:] == [[ROOT]]  # the verification only the one it changed


def test_verification_reads_a_nat_table_again_only_after_a_nat_action(tmp_path):
    host = _Watched()
    start = docker_bridge()
    start.add(NatTable(ROOT, (NatRule("masquerade", source="172.17.0.0/16",
                                      not_out="docker0"),)))
    applied(host, start, tmp_path)
    changed = docker_bridge()
    changed.add(Link(ROOT, "docker0", "bridge", mtu=1400))
    changed.add(start.objects[("nat", ROOT)])
    host.nat_reads.clear()
    applied(host, changed, tmp_path)
    # the plan reads the root's table; the verification of an mtu change in the root does not
    assert host.nat_reads == [[ROOT], []]
    changed.add(NatTable(ROOT, (NatRule("masquerade", source="172.18.0.0/16",
                                        not_out="docker0"),)))
    host.nat_reads.clear()
    result = applied(host, changed, tmp_path)
    assert [a.key for a in result.executed] == [("nat", ROOT)]
    assert host.nat_reads == [[ROOT], [ROOT]]  # a NAT action: its table is read again
    assert service.plan(changed, tmp_path, host=host).actions == []


def test_verification_of_a_partial_read_still_catches_a_change_that_did_not_happen(tmp_path):
    host = _Watched(lie_about=("mtu",))
    applied(host, docker_bridge(), tmp_path)
    before = host.state()
    changed = docker_bridge()
    changed.add(Link(ROOT, "docker0", "bridge", mtu=1400))
    with pytest.raises(ApplyFailed) as failed:
        applied(host, changed, tmp_path)
    assert "verification failed" in str(failed.value)
    assert "mtu" in str(failed.value)
    assert host.state() == before
