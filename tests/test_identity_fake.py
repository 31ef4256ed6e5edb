"""Ownership by identity (issue 12, item 1): the pure logic, on the in-memory host and on data.

The kernel tests (test_identity_kernel.py) prove the same on the real kernel; these pin down the
rules: what proves an object is the topology's, what a crash's journal proves, and that a claim
never outlives its object.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from builders import docker_bridge
from fakehost import FakeHost
from test_engine_fake import NAME, applied

from netdecl.engine import service
from netdecl.engine.claims import Ticket
from netdecl.engine.ownership import identity_proven, owns, rules_identity
from netdecl.engine.planner.plan import CREATE, Action
from netdecl.engine.state.journal import Journal
from netdecl.engine.state.record import OwnershipRecord, RecordStore
from netdecl.engine.state.statedir import record_path
from netdecl.errors import ApplyFailed
from netdecl.model import ROOT, Link, Namespace, NatRule, NatTable, Route, Topology


@pytest.fixture(autouse=True)
def _nft_present(monkeypatch):
    monkeypatch.setattr("netdecl.backends.nftables.find_nft", lambda: "/usr/sbin/nft")


def record_of(state: Path) -> dict:
    path = record_path(state, NAME)
    return json.loads(path.read_text()) if path.exists() else {}


# -- rules on data -------------------------------------------------------------------------------

def test_identity_decides_and_a_mark_alone_proves_nothing():
    record = OwnershipRecord(NAME, identities={("link", ROOT, "docker0"): "ns/if5"})
    observed = Topology(name=NAME)
    ours = Link(ROOT, "docker0", "bridge", owner=NAME, ident="ns/if5")
    observed.add(ours)
    assert owns(ours, observed, record)
    impostor = dataclasses.replace(ours, ident="ns/if9")  # same name and mark, another link
    assert not owns(impostor, observed, record)
    stranger = Link(ROOT, "forged0", "bridge", owner=NAME, ident="ns/if7")
    assert not owns(stranger, observed, record)
    # a record from before identities trusts the mark (once: see the legacy test below)
    record.legacy = True
    assert owns(stranger, observed, record)


def test_recorded_alternatives_and_secret_names():
    record = OwnershipRecord(NAME, identities={
        ("namespace", "a"): "file:1:2|nsfs:3:4",
        ("link", ROOT, "nd0123456789ab0"): "secret-name",
        ("nat", ROOT): "ns/nft3|" + rules_identity((NatRule("masquerade", source="10.0.0.0/8"),)),
    })
    assert identity_proven(Namespace("a", ident="nsfs:3:4"), record)
    assert not identity_proven(Namespace("a", ident="nsfs:3:5"), record)
    assert identity_proven(Link(ROOT, "nd0123456789ab0", "bridge", ident="x"), record)
    assert identity_proven(NatTable(ROOT, rules=(), ident="ns/nft3"), record)
    # the table an interrupted nft transaction wrote: a new handle, exactly the rules written
    written = NatTable(ROOT, rules=(NatRule("masquerade", source="10.0.0.0/8"),), ident="n/nft9")
    assert identity_proven(written, record)
    assert not identity_proven(dataclasses.replace(written, rules=()), record)
    assert identity_proven(Namespace("b", ident="nsfs:1:1"), record) is None


def test_a_crash_journal_proves_secret_names_and_reported_identities(tmp_path):
    link = Link(ROOT, "br0", "bridge")
    journal = Journal.begin(tmp_path, NAME, Topology(name=NAME), OwnershipRecord(NAME))
    journal.intend(1, Action(CREATE, link.key, after=link), Ticket("0123456789ab", 7))
    claimed = Journal.load(tmp_path, NAME).claimed()
    # before the kernel reported anything, only the secret name is proven, not "br0"
    assert claimed.identities == {("link", ROOT, "nd0123456789ab0"): "secret-name"}
    journal.made(link.key, "ns/if12")
    claimed = Journal.load(tmp_path, NAME).claimed()
    assert claimed.identities[link.key] == "ns/if12"
    route = Route(ROOT, "10.9.0.0/24", via="10.0.0.1")
    journal.intend(2, Action(CREATE, route.key, after=route), Ticket("ba9876543210", 42))
    assert Journal.load(tmp_path, NAME).claimed().identities[route.key] == "claim:42"


def test_the_newer_claim_on_a_key_wins(tmp_path):
    store = RecordStore(tmp_path)
    key = ("route", ROOT, 254, "10.99.0.0/24", 0)
    store.save(OwnershipRecord("a", objects={key}, identities={key: "claim:100"}))
    store.save(OwnershipRecord("b", objects={key}, identities={key: "claim:200"}))
    assert not store.load("a").owns(key)
    assert store.load("b").owns(key)


# -- the engine on the in-memory host ------------------------------------------------------------

def test_a_bridge_made_by_someone_else_just_before_our_create_is_left_alone(tmp_path):
    host = FakeHost()
    theirs = Link(ROOT, "docker0", "bridge", mtu=9000)
    # the namespaces come first (2 changes): someone takes docker0 just before our create
    host.race(3, lambda: host.add_foreign(theirs))
    with pytest.raises(ApplyFailed, match="EEXIST"):
        applied(host, docker_bridge(), tmp_path)
    now = host.objects[theirs.key]
    assert isinstance(now, Link) and now.mtu == 9000 and now.owner is None
    assert set(host.objects) == {theirs.key}
    assert record_of(tmp_path) == {}


def test_a_namespace_made_again_by_someone_else_is_a_conflict_and_survives(tmp_path):
    host = FakeHost()
    applied(host, docker_bridge(), tmp_path)
    host.delete(host.objects[("namespace", "nginx-2")], NAME)
    host.add_foreign(Namespace("nginx-2"), Link("nginx-2", "mine", "bridge"))
    plan = service.plan(docker_bridge(), tmp_path, host=host)
    assert [c.key for c in plan.conflicts] == [("namespace", "nginx-2")]
    assert not any(a.namespace == "nginx-2" for a in plan.actions)  # nothing put inside
    service.destroy(NAME, tmp_path, host=host)
    assert {k for k in host.objects} == {("namespace", "nginx-2"), ("link", "nginx-2", "mine")}
    assert record_of(tmp_path) == {}


def test_a_forged_mark_is_not_pruned(tmp_path):
    host = FakeHost()
    applied(host, docker_bridge(), tmp_path)
    host.add_foreign(Link(ROOT, "forged0", "bridge", owner=NAME))
    assert service.plan(docker_bridge(), tmp_path, host=host).actions == []
    service.destroy(NAME, tmp_path, host=host)
    assert set(host.objects) == {("link", ROOT, "forged0")}


def test_a_hand_made_nat_table_is_a_conflict_and_is_not_deleted(tmp_path):
    host = FakeHost()
    topo = docker_bridge()
    topo.add(NatTable(ROOT, rules=(NatRule("masquerade", source="172.17.0.0/16"),)))
    host.add_foreign(NatTable(ROOT, rules=None), topology=NAME)
    plan = service.plan(topo, tmp_path, host=host)
    assert [c.key for c in plan.conflicts] == [("nat", ROOT)]
    service.destroy(NAME, tmp_path, host=host)
    assert (NAME, ROOT) in host.nat


def test_claims_of_objects_removed_by_hand_are_dropped(tmp_path):
    host = FakeHost()
    applied(host, docker_bridge(), tmp_path)
    host.delete(host.objects[("namespace", "nginx-2")], NAME)  # by hand: netdecl is not told
    assert "nginx-2" in record_of(tmp_path)["namespaces"]
    applied(host, Topology(name=NAME), tmp_path)  # destroy
    assert record_of(tmp_path) == {}
    # the next namespace of that name is someone else's, whatever netdecl runs
    host.add_foreign(Namespace("nginx-2"))
    applied(host, Topology(name=NAME), tmp_path)
    assert ("namespace", "nginx-2") in host.objects


def test_a_record_from_before_identities_is_trusted_once_then_identified(tmp_path):
    host = FakeHost()
    applied(host, docker_bridge(), tmp_path)
    path = record_path(tmp_path, NAME)
    legacy = json.loads(path.read_text())
    del legacy["identities"]
    path.write_text(json.dumps(legacy))
    assert service.plan(docker_bridge(), tmp_path, host=host).actions == []
    service.apply(docker_bridge(), tmp_path, host=host)
    identities = {tuple(k): v for *k, v in record_of(tmp_path)["identities"]}
    assert identities[("namespace", "nginx-1")] == host.objects[("namespace", "nginx-1")].ident
    assert identities[("link", ROOT, "docker0")] == host.objects[("link", ROOT, "docker0")].ident
