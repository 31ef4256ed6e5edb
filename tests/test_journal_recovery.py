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
