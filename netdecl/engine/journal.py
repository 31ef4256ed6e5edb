"""The apply journal: the pre-apply snapshot, then each action's intent and completion.

Between an intent and its completion, a ``made`` line names the identity of each object the
action made (journal.made), written as soon as the kernel reports it; a rollback writes its own
intents (``undo``) and ``made`` lines to the same journal, so what a crashed rollback re-made is
known too. Recovery trusts only what these lines prove (engine/ownership.py).

If netdecl dies mid-apply (SIGKILL, power loss), the journal is still there; `netdecl rollback`
(and the next apply or destroy, by itself) reads it and reconciles back to the snapshot. A
journal is removed once its apply finished or was rolled back.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from netdecl.engine.executor import Ticket, claim
from netdecl.engine.planfile import action_from_json, action_to_json
from netdecl.engine.planner.plan import Action
from netdecl.engine.record import OwnershipRecord
from netdecl.engine.statedir import journal_dir, journal_path, write_atomically
from netdecl.kinds import object_from_dict
from netdecl.model import Key, Topology


class Journal:
    def __init__(self, path: Path, snapshot: Topology, record_before: OwnershipRecord):
        self.path = path
        self.snapshot = snapshot
        self.record_before = record_before

    @classmethod
    def begin(cls, state_root: Path, topology: str, snapshot: Topology,
              record: OwnershipRecord) -> Journal:
        path = journal_path(state_root, topology)
        header = {
            "journal": 1,
            "topology": topology,
            "pid": os.getpid(),
            "snapshot": [o.to_dict() for o in snapshot.objects.values()],
            "record_before": record.to_json(),
        }
        # the header goes down atomically and durably before the first action runs
        write_atomically(path, json.dumps(header) + "\n")
        return cls(path, snapshot, record.copy())

    def intend(self, number: int, action: Action, ticket: Ticket,
               undo: bool = False) -> None:
        """Written before an action runs. It is the action's ownership claim (the record itself
        is saved once, at the end): after a crash, ``claimed()`` replays the claims. ``undo``:
        an action of a rollback."""
        self._append({"undo" if undo else "start": number, "action": action_to_json(action),
                      **ticket.to_json()})

    def made(self, key: Key, ident: str) -> None:
        """The identity of an object an action has just made (before it takes its name)."""
        self._append({"made": list(key), "ident": ident})

    def step(self, number: int, action: Action) -> None:
        self._append({"step": number})

    def _append(self, entry: dict[str, Any]) -> None:
        # Written through to the kernel, not fsynced: the journal guards against netdecl dying
        # (SIGKILL, OOM, a bug), and written data survives that. What it describes - links,
        # routes, namespaces - lives in kernel memory and does not survive a reboot either, so
        # an fsync per action (a third of a cold apply's time at 500 namespaces) buys nothing.
        with open(self.path, "a") as fh:
            fh.write(json.dumps(entry) + "\n")

    def finish(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    @classmethod
    def load(cls, state_root: Path, topology: str) -> Journal | None:
        path = journal_path(state_root, topology)
        try:
            with open(path) as fh:
                header: dict[str, Any] = json.loads(fh.readline())
        except FileNotFoundError:
            return None
        snapshot = Topology(name=header["topology"])
        snapshot.extend(object_from_dict(d) for d in header["snapshot"])
        return cls(path, snapshot, OwnershipRecord.from_json(header["record_before"]))

    def _entries(self) -> list[dict[str, Any]]:
        entries = []
        with open(self.path) as fh:
            next(fh, None)  # the header
            for line in fh:
                try:
                    entries.append(json.loads(line))
                except ValueError:
                    break  # a line torn by a crash: nothing after it was written either
        return entries

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


def pending(state_root: Path) -> list[str]:
    """Topologies with a journal left behind by an apply that did not finish."""
    return sorted(p.name[: -len(".jsonl")] for p in journal_dir(state_root).glob("*.jsonl"))


__all__ = ["Journal", "pending"]
