"""The apply journal: the pre-apply snapshot, then each action's intent and completion.

Between an intent and its completion, a ``made`` line names the identity of each object the
action made (journal.made), written as soon as the kernel reports it; a rollback writes its own
intents (``undo``) and ``made`` lines to the same journal, so what a crashed rollback re-made is
known too. Recovery trusts only what these lines prove (engine/ownership.py).

If netdecl dies mid-apply (SIGKILL, power loss), the journal is still there; `netdecl rollback`
(and the next apply or destroy, by itself) reads it and reconciles back to the snapshot. A
journal is removed once its apply finished or was rolled back.

Each line goes down in one write(2), so a process killed around it leaves the line whole or
absent; a write that fails part-way (a full disk) is cut back off before the error is raised.
A last line left without its newline all the same (a crash inside the write) is treated as a
write-ahead log treats it: that record did not happen (load() discards it and says so). Any
other damage - a bad line in the middle, a bad header, lines that are not what netdecl writes -
is refused as a whole (untrusted.DamagedStateFile) rather than half-replayed, which would take
the claims after the damage for someone else's; ``salvage`` reads what it can of such a journal
for `netdecl rollback --salvage`, which undoes only what those parts prove.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

from netdecl.engine.claims import Ticket, claim
from netdecl.engine.planner.plan import DELETE, REPLACE, Action
from netdecl.engine.state import reserve, statedir, untrusted
from netdecl.engine.state.planfile import action_from_json, action_to_json
from netdecl.engine.state.record import OwnershipRecord, record_shape, validated
from netdecl.engine.state.reserve import Reserve
from netdecl.engine.state.statedir import journal_dir, journal_path, write_atomically
from netdecl.engine.state.untrusted import DamagedStateFile, Untrusted, parse_problem
from netdecl.errors import EnvironmentProblem
from netdecl.kinds import object_from_dict
from netdecl.model import Key, Topology

SALVAGED_SUFFIX = ".salvaged"


def damaged_advice(topology: str) -> str:
    """What to do about a damaged journal, in an order that works: plan reads the host
    without it; salvage undoes what the readable lines prove and names the rest."""
    return (f"the interrupted apply of {topology} cannot be rolled back from it as it is: "
            f"`netdecl plan FILE` shows what is on the host, then `netdecl rollback --salvage "
            f"--name {topology}` undoes what the readable parts prove that apply made and "
            f"names what it keeps")


def _split_lines(raw: bytes) -> tuple[list[bytes], bytes]:
    """The complete lines of ``raw`` (each decoded on its own, so that damage is named at its
    line) and what follows the last newline (empty when ``raw`` ends with one)."""
    *lines, tail = raw.split(b"\n")
    return lines, tail


class Journal:
    def __init__(self, path: Path, snapshot: Topology, record_before: OwnershipRecord,
                 total: int | None = None, entries: list[dict[str, Any]] | None = None):
        self.path = path
        self.snapshot = snapshot
        self.record_before = record_before
        self.total = total  # the plan's number of actions (None: an older journal without it)
        self.entries = entries or []  # read back by load(): what the dead apply wrote
        self.torn: int | None = None  # load(): the number of the torn last line it discarded
        self.complete_size: int | None = None  # load(): bytes up to the last complete line
        self.header_lost = False  # salvage(): the header was unreadable: no snapshot
        self.reserve: Reserve | None = None  # begin(): the room kept for a rollback
        self._fd: int | None = None  # open from the first line written to finish()
        self._size = 0  # the file's size in bytes, while _fd is open

    @classmethod
    def begin(cls, state_root: Path, topology: str, snapshot: Topology,
              record: OwnershipRecord, total: int | None = None) -> Journal:
        statedir.secure(state_root)
        path = journal_path(state_root, topology)
        header = {
            "journal": 1,
            "topology": topology,
            "pid": os.getpid(),
            # so that an interrupted apply can be described as "step N of M"
            "actions": total,
            "snapshot": [o.to_dict() for o in snapshot.objects.values()],
            "record_before": record.to_json(),
        }
        # the header goes down atomically and durably before the first action runs, with the
        # room for the rollback's record: a full state dir stops the apply here, unchanged
        try:
            write_atomically(path, json.dumps(header) + "\n")
            room = Reserve.take(path, len(json.dumps(record.to_json(), indent=1)))
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            path.unlink(missing_ok=True)
            reserve.release(path)
            raise EnvironmentProblem(f"no room in the state dir {state_root} for the journal "
                                     f"of this apply: nothing was changed; free some space "
                                     f"there and apply again") from None
        journal = cls(path, snapshot, record.copy(), total)
        journal.reserve = room
        return journal

    def intend(self, number: int, action: Action, ticket: Ticket,
               undo: bool = False) -> None:
        """Written before an action runs. It is the action's ownership claim (the record itself
        is saved once, at the end): after a crash, ``claimed()`` replays the claims. ``undo``:
        an action of a rollback. An apply's intent first takes the room to undo it (reserve.py):
        without that room the action does not start (OSError ENOSPC)."""
        line = (json.dumps({"undo" if undo else "start": number,
                            "action": action_to_json(action), **ticket.to_json()})
                + "\n").encode()
        if not undo and self.reserve is not None:
            self.reserve.for_undoing(line)
        self._write(line)

    def made(self, key: Key, ident: str) -> None:
        """The identity of an object an action has just made (before it takes its name)."""
        self._append({"made": list(key), "ident": ident})

    def step(self, number: int, action: Action) -> None:
        self._append({"step": number})

    def _append(self, entry: dict[str, Any]) -> None:
        self._write((json.dumps(entry) + "\n").encode())

    def _write(self, line: bytes) -> None:
        # Written through to the kernel, not fsynced: the journal guards against netdecl dying
        # (SIGKILL, OOM, a bug), and written data survives that. What it describes - links,
        # routes, namespaces - lives in kernel memory and does not survive a reboot either, so
        # an fsync per action (a third of a cold apply's time at 500 namespaces) buys nothing.
        # The file stays open from the first line to the last, and its size is counted here
        # (no other process writes it: the host lock is held): a line is one write(2), not an
        # open, fstat, write and close, which cost a thousand-action apply four thousand
        # system calls, dear where each is (the kernel lab's user-mode Linux).
        fd, size = self._open()
        try:
            statedir.write_all(fd, line)
        except BaseException as exc:
            # a write cut short (ENOSPC after part of the line) must not leave half a
            # line for the next one to be glued to: put the file back as it was
            os.ftruncate(fd, size)
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                raise OSError(errno.ENOSPC, f"no room left in {self.path.parent} for the "
                                            f"journal") from None
            raise
        self._size = size + len(line)

    def _open(self) -> tuple[int, int]:
        """The journal's descriptor, opened at its first line after begin() or load(), and
        the file's size."""
        if self._fd is None:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                self._size = os.fstat(fd).st_size
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
        return self._fd, self._size

    def close(self) -> None:
        """Close the journal's descriptor (the next line opens it again)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        # a journal kept (a rollback that failed) in a process that goes on (the agent)
        # must not keep its descriptor for ever
        if getattr(self, "_fd", None) is not None:
            self.close()

    def release_reserve(self) -> None:
        """Free the room kept for the rollback: first thing a rollback does."""
        reserve.release(self.path)
        self.reserve = None

    def finish(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)
        reserve.release(self.path)
        statedir.remove_stale_temps(self.path)

    @classmethod
    def load(cls, state_root: Path, topology: str) -> Journal | None:
        """The journal ``topology``'s interrupted apply left, checked line by line; None when
        there is none; DamagedStateFile when it cannot be trusted whole.

        A last line without its newline is the mark of a write cut short (a full disk, a
        crash inside write(2)): as in a write-ahead log, that record did not happen. An intent
        is written before its action runs, so the action it announced never started; the
        line is discarded (``torn`` says which) and the rest is used."""
        path = journal_path(state_root, topology)
        advice = damaged_advice(topology)
        try:
            raw = statedir.read_state_file(path)
        except FileNotFoundError:
            return None
        except statedir.UnreadableStateFile as exc:
            raise DamagedStateFile(path, str(exc), advice) from None
        lines, tail = _split_lines(raw)
        line_number = 1
        try:
            if not raw.strip():
                raise Untrusted("empty")
            if not lines:
                raise Untrusted("cut short: its header is incomplete")
            journal = cls._header(path, topology, json.loads(lines[0]))
            for at, line in enumerate(lines[1:], start=2):
                line_number = at  # named in the message if this line is the damaged one
                journal.entries.append(_entry(json.loads(line)))
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            problem = parse_problem(exc, "a journal entry")
            raise DamagedStateFile(path, f"line {line_number}: {problem}", advice) from None
        if tail:
            journal.torn = len(lines) + 1
        journal.complete_size = len(raw) - len(tail)
        return journal

    @classmethod
    def salvage(cls, state_root: Path, topology: str,
                stored: OwnershipRecord) -> tuple[Journal, list[str]] | None:
        """What can still be read of ``topology``'s journal, damaged or not (None: there is
        none): the header if it is whole (else no snapshot, ``header_lost``, and ``stored`` -
        the record from before that apply, which saves its own only at its end - as the record
        before), and every later line that passes on its own. Returns it with a note per part
        that could not be read. Nothing read here is trusted more than load() trusts it: each
        part is checked by the same rules; only what is lost is left out."""
        path = journal_path(state_root, topology)
        try:
            raw = statedir.read_state_file(path)
        except FileNotFoundError:
            return None
        except statedir.UnreadableStateFile as exc:
            raise DamagedStateFile(path, str(exc), "move it away") from None
        lines, tail = _split_lines(raw)
        lost: list[str] = []
        journal: Journal | None = None
        if lines:
            try:
                journal = cls._header(path, topology, json.loads(lines[0]))
            except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
                lost.append(f"line 1, the header ({parse_problem(exc, 'a journal header')})")
        if journal is None:
            if not lines:
                lost.append("line 1, the header (cut short)")
            journal = cls(path, Topology(name=topology), stored.copy())
            journal.header_lost = True
        for at, line in enumerate(lines[1:], start=2):
            try:
                journal.entries.append(_entry(json.loads(line)))
            except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
                lost.append(f"line {at} ({parse_problem(exc, 'a journal entry')})")
        if tail:
            journal.torn = len(lines) + 1
        journal.complete_size = len(raw) - len(tail)
        return journal, lost

    def mentioned(self) -> set[Key]:
        """The key of every object an action of the readable lines was to make or change."""
        keys = set()
        for entry in self.entries:
            if "start" in entry or "undo" in entry:
                action = action_from_json(entry["action"])
                for obj in (action.after, action.peer_after):
                    if obj is not None:
                        keys.add(obj.key)
        return keys

    def removing(self) -> set[str]:
        """The namespaces an action of this journal set out to remove and may not have finished
        (an apply's without its step; any of a rollback's): a plain file left at such a name is
        what that removal left when it was killed between the unmount and the unlink."""
        applying: dict[int, str] = {}  # an apply's removals not yet completed, by step
        names = set()
        for entry in self.entries:
            if "step" in entry:
                applying.pop(entry["step"], None)
            elif "start" in entry or "undo" in entry:
                action = action_from_json(entry["action"])
                if action.type == "namespace" and action.op in (DELETE, REPLACE):
                    if "start" in entry:
                        applying[entry["start"]] = action.key[1]
                    else:  # a rollback writes no steps: any of its removals may be cut
                        names.add(action.key[1])
        return names | set(applying.values())

    def set_aside(self) -> Path:
        """After a salvage: keep the damaged file for people, under a name that is no
        journal (NAME.jsonl.salvaged, replacing an older one); returns that name."""
        kept = self.path.with_name(self.path.name + SALVAGED_SUFFIX)
        self.close()
        os.replace(self.path, kept)
        statedir.remove_stale_temps(self.path)
        return kept

    def torn_note(self) -> str | None:
        """A line for people when load() discarded a torn last line, else None."""
        if self.torn is None:
            return None
        return (f"netdecl: {self.path}: line {self.torn} was cut short while it was written "
                f"(a crash or a full disk); it is discarded: what it was to record never "
                f"happened, and the rollback uses the {self.torn - 1} complete lines before it")

    def discard_torn_tail(self) -> None:
        """Cut the torn last line off the file (under the host lock, before a rollback adds
        its own lines after it: those must start on a line of their own). Shrinking a file
        needs no free space."""
        if self.torn is None or self.complete_size is None:
            return
        self.close()  # (its size is counted afresh at the next line)
        fd = os.open(self.path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.ftruncate(fd, self.complete_size)
        finally:
            os.close(fd)
        self.torn = None

    @classmethod
    def _header(cls, path: Path, topology: str, header: Any) -> Journal:
        if not (isinstance(header, dict) and header.get("journal") == 1
                and isinstance(header.get("snapshot"), list)):
            raise Untrusted("not a netdecl journal header")
        if untrusted.topology_name(header.get("topology")) != topology:
            raise Untrusted(f"it names topology {header['topology']!r}, not {topology!r}")
        snapshot = Topology(name=topology)
        snapshot.extend(untrusted.check_object(object_from_dict(d)) for d in header["snapshot"])
        before = validated(OwnershipRecord.from_json(record_shape(header["record_before"])),
                           topology)
        total = header.get("actions")
        if total is not None and not _number(total):
            raise Untrusted("its number of actions is not a number")
        return cls(path, snapshot, before, total)

    def _entries(self) -> list[dict[str, Any]]:
        return self.entries

    def steps_done(self) -> int:
        return sum(1 for e in self._entries() if "step" in e)

    def claimed(self) -> OwnershipRecord:
        """The record as it stood when netdecl died: the one before, plus every claim made and
        every identity reported, in the order they were written."""
        record = self.record_before.copy()
        for entry in self._entries():
            if "start" in entry or "undo" in entry:
                claim(action_from_json(entry["action"]), record, Ticket.from_json(entry))
            elif "made" in entry and isinstance(entry.get("ident"), str):
                record.identities[tuple(entry["made"])] = entry["ident"]
        return record


_TICKET = {"secret", "stamp"}  # claims.Ticket: optional in journals written before it


def _entry(data: Any) -> dict[str, Any]:
    """One line after the header, checked: {"step": N}; {"start": N, "action": ..., ticket}
    (an apply's action) or {"undo": N, ...} (a rollback's); {"made": KEY, "ident": ...} (the
    identity of an object an action has just made)."""
    if not isinstance(data, dict):
        raise Untrusted("not a journal entry")
    if set(data) == {"step"} and _number(data["step"]):
        return data
    for mark in ("start", "undo"):
        if mark in data and {mark, "action"} <= set(data) <= {mark, "action", *_TICKET} \
                and _number(data[mark]):
            check_action(action_from_json(data["action"]))
            if _TICKET & set(data) and Ticket.from_json(data) is None:
                raise Untrusted("its claim's secret or time is not what netdecl writes")
            return data
    if set(data) == {"made", "ident"}:
        untrusted.check_key(data["made"])
        untrusted.identity(data["ident"])
        return data
    raise Untrusted("not a journal entry")


def _number(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def check_action(action: Action) -> Action:
    """``action`` if its kind, key and objects pass the loader's rules."""
    untrusted.check_key(action.key)
    if action.key[0] != action.type:
        raise Untrusted(f"action key {list(action.key)!r} is not of a {action.type}")
    for obj in (action.before, action.after, action.peer_before, action.peer_after):
        if obj is not None:
            untrusted.check_object(obj)
    return action


def pending(state_root: Path) -> list[str]:
    """Topologies with a journal left behind by an apply that did not finish."""
    return sorted(p.name[: -len(".jsonl")] for p in journal_dir(state_root).glob("*.jsonl")
                  if not p.name.startswith("."))


__all__ = ["Journal", "check_action", "pending"]
