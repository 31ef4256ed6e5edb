"""Recovery from a journal that a crash or a full disk damaged (issue 29), against the in-memory
host: a torn last line is a write that did not happen; damage elsewhere is refused, named at
its own line, and `rollback --salvage` undoes only what the readable lines prove.

A SIGKILL is modelled exactly: just before the n-th change the test copies the journal's bytes
and the host, which is all a killed process leaves behind, then lets the apply fail and puts
those copies back.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
from builders import docker_bridge
from fakehost import FakeHost

from netdecl.engine import service
from netdecl.engine.state import statedir
from netdecl.engine.state.journal import Journal
from netdecl.engine.state.record import RecordStore
from netdecl.engine.state.statedir import journal_path
from netdecl.engine.state.unfinished import UnfinishedApply
from netdecl.engine.state.untrusted import DamagedStateFile, Untrusted, parse_problem
from netdecl.errors import ApplyFailed

NAME = "docker-bridge"


@pytest.fixture(autouse=True)
def _nft_present(monkeypatch):
    monkeypatch.setattr("netdecl.backends.nftables.find_nft", lambda: "/usr/sbin/nft")


def killed_at(change: int, state: Path) -> FakeHost:
    """The host and journal a SIGKILL just before the apply's ``change``-th change leaves."""
    host = FakeHost()
    left: dict[str, object] = {}

    def kill() -> None:
        left["host"] = host.copy()
        left["journal"] = journal_path(state, NAME).read_bytes()
        raise RuntimeError("killed")

    host.race(change, kill)
    with pytest.raises(ApplyFailed):
        service.apply(docker_bridge(), state, host=host)
    journal_path(state, NAME).write_bytes(left["journal"])  # type: ignore[arg-type]
    killed = left["host"]
    assert isinstance(killed, FakeHost)
    killed._race = None
    return killed


def journal_lines(state: Path) -> list[bytes]:
    return journal_path(state, NAME).read_bytes().split(b"\n")


def append(state: Path, data: bytes) -> None:
    with open(journal_path(state, NAME), "ab") as f:
        f.write(data)


def test_a_torn_last_line_is_discarded_and_the_rest_rolled_back(tmp_path):
    empty = FakeHost().state()
    host = killed_at(6, tmp_path)
    assert host.state() != empty
    complete = len(journal_lines(tmp_path)) - 1
    append(tmp_path, b'{"start": 7, "action": {"op": "cre')  # half a line: a crash mid-write

    notices: list[str] = []
    events = service.Events(notice=notices.append)
    assert service.rollback(tmp_path, host=host, events=events) == [NAME]
    assert host.state() == empty
    assert not journal_path(tmp_path, NAME).exists()
    # the note names the torn line itself (the message said line 1 for line 266)
    assert any(f"line {complete + 1} was cut short" in n and "discarded" in n
               for n in notices), notices


@pytest.mark.parametrize("command", ["plan", "apply", "destroy"])
def test_after_a_torn_line_plan_apply_and_destroy_work(tmp_path, command):
    host = killed_at(6, tmp_path)
    append(tmp_path, b'{"step"')
    if command == "plan":
        # not "damaged": the interrupted apply, how far it got, and to roll it back
        with pytest.raises(UnfinishedApply) as refused:
            service.plan(docker_bridge(), tmp_path, host=host)
        assert "netdecl rollback" in str(refused.value)
        return
    if command == "apply":
        service.apply(docker_bridge(), tmp_path, host=host)
        assert service.plan(docker_bridge(), tmp_path, host=host).actions == []
    else:
        service.destroy(NAME, tmp_path, host=host)
        assert host.state() == FakeHost().state()
    assert not journal_path(tmp_path, NAME).exists()


def test_the_rollback_after_a_torn_line_writes_its_own_lines_whole(tmp_path, monkeypatch):
    host = killed_at(6, tmp_path)
    append(tmp_path, b'{"made": ["namespace", "ngi')
    # keep the journal the rollback writes: make its record save fail (exit 4 keeps it)
    monkeypatch.setattr(RecordStore, "save", _no_room)
    with pytest.raises(Exception, match="No space left"):
        service.rollback(tmp_path, host=host)
    lines = journal_lines(tmp_path)
    assert lines[-1] == b""
    for line in lines[:-1]:
        json.loads(line)  # every line whole: the torn one was cut off before the rollback's
    assert any(b'"undo"' in line for line in lines)


def _no_room(*_: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_write_cut_short_by_a_full_disk_leaves_no_half_line(tmp_path, monkeypatch):
    host = FakeHost()
    service.apply(docker_bridge(), tmp_path, host=host)
    journal = Journal.begin(tmp_path, NAME, docker_bridge(), RecordStore(tmp_path).load(NAME))
    size = journal.path.stat().st_size

    def half_then_full(fd: int, data: bytes) -> None:
        import os

        os.write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(statedir, "write_all", half_then_full)
    with pytest.raises(OSError):
        journal.step(1, None)  # type: ignore[arg-type]
    assert journal.path.stat().st_size == size


@pytest.mark.parametrize(("damage", "line"), [
    (lambda lines: [*lines[:3], b"garbage", *lines[3:]], 4),
    (lambda lines: [b'{"journal": 1}', *lines[1:]], 1),
    (lambda lines: [*lines[:2], b"\xff\xfe", *lines[2:]], 3),
])
def test_damage_before_the_last_line_is_refused_naming_its_line(tmp_path, damage, line):
    host = killed_at(6, tmp_path)
    lines = journal_lines(tmp_path)[:-1]
    journal_path(tmp_path, NAME).write_bytes(b"\n".join(damage(lines)) + b"\n")
    with pytest.raises(DamagedStateFile) as refused:
        service.rollback(tmp_path, host=host)
    assert f"(line {line}: " in str(refused.value)
    # the advice works in the order given: plan first (it reads the host without the journal)
    assert str(refused.value).index("netdecl plan") < str(refused.value).index("--salvage")


def test_records_and_journals_say_what_is_wrong_in_the_same_words():
    for exc, said in ((RecursionError(), "nested too deeply"),
                      (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"), "not text"),
                      (ValueError("Expecting value"), "not JSON"),
                      (Untrusted("sysctl name 'x/..' is not a valid sysctl name"),
                       "sysctl name 'x/..' is not a valid sysctl name")):
        assert parse_problem(exc, "a journal entry") == said
        assert parse_problem(exc, "an ownership record") == said
    assert parse_problem(TypeError(), "an ownership record") == \
        "not the shape of an ownership record"


# -- damage elsewhere: plan still works, rollback --salvage undoes what is proven ---------------

def damaged_at(state: Path, change: int, how) -> FakeHost:
    host = killed_at(change, state)
    lines = journal_lines(state)[:-1]
    journal_path(state, NAME).write_bytes(b"\n".join(how(lines)) + b"\n")
    return host


def garbage_after_header(lines: list[bytes]) -> list[bytes]:
    return [lines[0], b"\x00garbage", *lines[1:]]


def made_line_lost(lines: list[bytes]) -> list[bytes]:
    """Every line with the identity of the first namespace the apply made is unreadable."""
    made = b'{"made": ["namespace", "nginx-1"]'
    assert any(line.startswith(made) for line in lines)
    return [b"{not json" if line.startswith(made) else line for line in lines]


def test_plan_reads_the_host_without_a_damaged_journal_and_says_so(tmp_path):
    host = damaged_at(tmp_path, 6, garbage_after_header)
    plan = service.plan(docker_bridge(), tmp_path, host=host)
    assert any("is damaged" in note and "--salvage" in note for note in plan.notes), plan.notes
    assert host.state() != FakeHost().state()  # nothing changed by planning


def test_salvage_shows_the_plan_first_and_a_refusal_changes_nothing(tmp_path):
    host = damaged_at(tmp_path, 6, garbage_after_header)
    before = host.state()
    shown: list[object] = []

    def refuse(plan: object) -> None:
        shown.append(plan)
        raise service.NetdeclError("not confirmed")

    with pytest.raises(service.NetdeclError, match="not confirmed"):
        service.salvage(tmp_path, NAME, host=host, events=service.Events(planned=refuse))
    assert len(shown) == 1 and shown[0].actions  # type: ignore[attr-defined]
    assert host.state() == before
    assert journal_path(tmp_path, NAME).exists()


def test_salvage_undoes_what_the_readable_lines_prove(tmp_path):
    host = damaged_at(tmp_path, 6, garbage_after_header)
    kept = service.salvage(tmp_path, NAME, host=host)
    assert host.state() == FakeHost().state()
    assert kept == ["line 2 (not JSON) could not be read: whatever it recorded was made or "
                    "changed is kept"]
    assert not journal_path(tmp_path, NAME).exists()
    assert (tmp_path / "journal" / f"{NAME}.jsonl.salvaged").exists()
    assert service.rollback(tmp_path, host=host) == []  # nothing left to roll back


def test_salvage_keeps_and_names_what_a_lost_line_would_have_proven(tmp_path):
    host = damaged_at(tmp_path, 6, made_line_lost)
    kept = service.salvage(tmp_path, NAME, host=host)
    assert kept is not None
    assert any(line.startswith("namespace nginx-1: nothing readable proves") for line in kept), \
        kept
    # what it kept is there, the rest is gone
    assert host.named_namespaces() == ["nginx-1"]


def test_salvage_without_a_header_keeps_what_the_topology_owned_before(tmp_path):
    host = FakeHost()
    older = docker_bridge()
    del older.objects[("namespace", "nginx-2")]
    for key in [k for k in older.objects if "nginx-2" in k or "veth-n2" in k]:
        del older.objects[key]
    service.apply(older, tmp_path, host=host)
    owned_before = host.state()
    # the apply that adds nginx-2 dies; its header is then lost
    left: dict[str, object] = {}

    def kill() -> None:
        left["host"] = host.copy()
        left["journal"] = journal_path(tmp_path, NAME).read_bytes()
        raise RuntimeError("killed")

    host.race(2, kill)
    with pytest.raises(ApplyFailed):
        service.apply(docker_bridge(), tmp_path, host=host)
    killed = left["host"]
    assert isinstance(killed, FakeHost)
    killed._race = None
    lines = left["journal"].split(b"\n")  # type: ignore[union-attr]
    journal_path(tmp_path, NAME).write_bytes(b"\n".join([b'{"journal": 2}', *lines[1:]]))
    assert killed.state() != owned_before

    kept = service.salvage(tmp_path, NAME, host=killed)
    assert kept is not None and any("the header" in line for line in kept), kept
    assert killed.state() == owned_before


# -- the room a rollback needs ------------------------------------------------------------------

def _full(*_: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_no_room_for_the_rollback_stops_an_apply_before_it_changes_anything(tmp_path,
                                                                            monkeypatch):
    monkeypatch.setattr("os.posix_fallocate", _full)
    host = FakeHost()
    with pytest.raises(service.NetdeclError, match="no room in the state dir"):
        service.apply(docker_bridge(), tmp_path, host=host)
    assert host.state() == FakeHost().state()
    assert [p.name for p in (tmp_path / "journal").iterdir()] == []


def test_an_action_without_room_to_undo_it_does_not_start(tmp_path, monkeypatch):
    import os

    host = FakeHost()
    real = os.posix_fallocate

    def room_for_a_while(fd: int, offset: int, length: int) -> None:
        if offset + length > 3000:  # the record's room and a few actions' worth
            _full()
        real(fd, offset, length)

    monkeypatch.setattr("os.posix_fallocate", room_for_a_while)
    with pytest.raises(ApplyFailed, match="no room left in") as failed:
        service.apply(docker_bridge(), tmp_path, host=host)
    done = int(str(failed.value).split("rolled back: the ")[1].split(" ")[0])
    assert done > 0  # it got going first: the room ran out mid-apply
    assert host.state() == FakeHost().state()
    assert [p.name for p in (tmp_path / "journal").iterdir()] == []


def test_the_removals_a_leftover_file_may_come_from_are_the_unfinished_ones(tmp_path):
    from netdecl.engine.claims import Ticket
    from netdecl.engine.planner.plan import DELETE, Action
    from netdecl.model import Namespace, Topology

    def delete(ns: str) -> Action:
        return Action(DELETE, ("namespace", ns), before=Namespace(ns, ident="nsfs:1:2"))

    journal = Journal.begin(tmp_path, NAME, Topology(name=NAME), RecordStore(tmp_path).load(NAME))
    journal.intend(1, delete("done"), Ticket())
    journal.step(1, delete("done"))
    journal.intend(2, delete("cut"), Ticket())  # killed inside it
    journal.intend(1, delete("undoing"), Ticket(), undo=True)  # a rollback writes no steps
    loaded = Journal.load(tmp_path, NAME)
    assert loaded is not None
    assert loaded.removing() == {"cut", "undoing"}
