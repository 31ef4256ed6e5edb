"""Applies that did not finish: what their journals say, for people and for `plan`.

A journal left in the state dir means an apply was interrupted (netdecl died: the host is
half-changed until `netdecl rollback`, or the next apply or destroy, restores the state before
it) or is running right now. Either way a plan of that topology would describe a host in
between two states: a conflict list for every object the dead apply created, or "No changes"
for a change nobody will keep. So `plan` refuses, saying which apply and how far it got (and
notes another topology's interrupted apply, which only an operation on that topology rolls
back); `show` warns. A journal of its own that is damaged stops nothing here: plan changes
nothing, so it reads the host without it and says so in a note (`rollback --salvage` is what
undoes that apply).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from netdecl.engine.state import confirm as confirmation
from netdecl.engine.state.journal import Journal, pending
from netdecl.engine.state.lock import holder
from netdecl.engine.state.untrusted import DamagedStateFile
from netdecl.errors import NetdeclError

__all__ = ["PendingApply", "UnfinishedApply", "check_before_plan", "unfinished_applies"]


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


@dataclass(frozen=True)
class PendingApply:
    """An apply whose journal is still there: interrupted (netdecl died mid-way: the host is
    half-changed until a rollback), or running right now in another process."""

    topology: str
    steps_done: int  # actions completed
    total: int | None  # actions in its plan (None: an older journal that did not say)
    running: int | None = None  # PID of the netdecl holding the host lock (0: unknown)
    waiting_for_confirmation: bool = False  # running, and waiting for `netdecl confirm`

    @property
    def interrupted(self) -> bool:
        return self.running is None

    def how_far(self) -> str:
        """'after step 328 of 1202', said so that people can tell how much is half-done."""
        done, total = self.steps_done, self.total
        if total is None:
            return f"after {_plural(done, 'step')}"
        if done == 0:
            return f"before it completed any of its {_plural(total, 'step')}"
        if done >= total:
            return f"after its last step ({done} of {total}), before it finished"
        return f"after step {done} of {total}"


class UnfinishedApply(NetdeclError):
    """This topology's last apply did not finish (or is still running), so a plan would
    describe a host in between two states: a conflict list, or "No changes" for a change
    nobody kept."""

    def __init__(self, unfinished: PendingApply):
        self.unfinished = unfinished
        super().__init__(_refusal(unfinished))


def _refusal(apply: PendingApply) -> str:
    name = repr(apply.topology)
    if not apply.interrupted:
        who = f"process {apply.running}" if apply.running else "another process"
        if apply.waiting_for_confirmation:
            return (f"an apply of {name} is waiting for `netdecl confirm` ({who}); plan again "
                    f"once it is confirmed or rolled back")
        done = (f"{apply.steps_done} of {_plural(apply.total, 'step')}"
                if apply.total is not None else _plural(apply.steps_done, "step"))
        return (f"an apply of {name} is running right now ({who}, {done} done); plan again "
                f"once it has finished")
    return (f"an apply of {name} was interrupted {apply.how_far()}: the host is half-changed, "
            f"so there is no plan to show.\nRun `netdecl rollback` to restore the state "
            f"before it (the next apply or destroy also does that first), then plan again.")


def unfinished_applies(state_root: Path,
                       damaged: list[str] | None = None) -> list[PendingApply]:
    """Every apply that left a journal: interrupted ones, or the one running right now. A
    journal that cannot be trusted raises DamagedStateFile, or with ``damaged`` is named
    there instead (another topology's damage must not block this one)."""
    names = pending(state_root)
    if not names:
        return []
    running = holder(state_root)  # whoever holds the lock is working on every journal there
    waiting = confirmation.waiting(state_root) if running is not None else {}
    found = []
    for name in names:
        try:
            journal = Journal.load(state_root, name)
        except DamagedStateFile:
            if damaged is None:
                raise
            damaged.append(name)
            continue
        if journal is None:  # finished between the listing and now
            continue
        found.append(PendingApply(name, journal.steps_done(), journal.total, running,
                                  name in waiting))
    return found


def check_before_plan(state_root: Path, topology: str) -> list[str]:
    """Raise UnfinishedApply when ``topology``'s own apply is unfinished. Return a note for
    each other topology's interrupted apply: the next apply of this one rolls those back
    first, and a plan must not hide that. (Another topology's apply that is running is that
    apply's business: plan needs no lock.)"""
    notes = []
    damaged: list[str] = []
    for found in unfinished_applies(state_root, damaged):
        if found.topology == topology:
            raise UnfinishedApply(found)
        if found.interrupted:
            notes.append(f"an apply of {found.topology!r} was interrupted {found.how_far()}; "
                         f"`netdecl rollback --name {found.topology}` rolls it back")
    if topology in damaged:
        # plan changes nothing, so it reads the host without the journal: what is there, and
        # what the topology owns (what the dead apply made shows as conflicts, or not at all)
        try:
            Journal.load(state_root, topology)
        except DamagedStateFile as exc:
            notes.append(f"the journal of an interrupted apply of {topology!r} is damaged "
                         f"({exc.path}, {exc.problem}): this plan reads the host without it, "
                         f"so what that apply made shows as conflicts, or not at all; `netdecl "
                         f"rollback --salvage --name {topology}` undoes what its readable "
                         f"parts prove")
        damaged.remove(topology)
    notes += [f"the journal an interrupted apply of {name!r} left is damaged: `netdecl "
              f"rollback --salvage --name {name}` undoes what it can prove" for name in damaged]
    return notes
