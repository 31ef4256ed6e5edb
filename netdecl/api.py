"""netdecl as a library: load a topology, plan, apply, destroy, roll back; results as data.

    import netdecl
    topology = netdecl.load("topologies/docker-bridge.yaml")
    plan = netdecl.plan(topology)
    if plan.has_changes:
        result = netdecl.apply(plan)  # exactly this plan, refused if the host changed since

The command line is one client of this module; the Ansible module and the GitOps agent call it
in-process. So nothing here prints or exits: progress comes through ``Events`` callbacks,
results are frozen dataclasses, and every failure is a ``NetdeclError`` whose ``status`` is the
exit code the command line would use. An apply installs SIGTERM/SIGINT handlers (to roll back
at an action boundary) only in the main thread, and puts the previous ones back before it
returns. Calls keep no state between them; the host lock serialises applies across threads and
processes alike.

A string is always a path: ``load(path)`` reads a file, ``load(text=...)`` parses YAML text,
and ``destroy`` takes a Topology or a topology's name.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netdecl.engine import service
from netdecl.engine.planner import plan as _engine
from netdecl.engine.state import LOCK_TIMEOUT as DEFAULT_LOCK_TIMEOUT
from netdecl.engine.state.planfile import SavedPlan, StalePlan, action_from_json, action_to_json
from netdecl.engine.state.planfile import plan_to_json as _plan_to_json
from netdecl.engine.state.statedir import state_dir as _state_dir
from netdecl.engine.state.unfinished import PendingApply, UnfinishedApply
from netdecl.errors import (
    ActionFailed,
    ApplyFailed,
    Diagnostic,
    EnvironmentProblem,
    InvalidTopology,
    NetdeclError,
    NotConfirmed,
    RollbackFailed,
    VerificationFailed,
)
from netdecl.model import Topology
from netdecl.tools.render import action_line, plan_text

__all__ = [
    # functions
    "load", "plan", "read_plan", "apply", "destroy", "rollback", "unfinished",
    # data
    "Action", "ApplyResult", "Conflict", "Events", "PendingApply", "Plan", "Topology",
    "Diagnostic",
    # the exception hierarchy: everything is a NetdeclError with an exit ``status``
    "NetdeclError", "InvalidTopology", "EnvironmentProblem", "PlanConflicts", "StalePlan",
    "UnfinishedApply", "ActionFailed", "ApplyFailed", "VerificationFailed", "NotConfirmed",
    "RollbackFailed",
]

StateDir = str | os.PathLike[str] | None
# the schema's pattern for `name:` (a name, unlike a path, has no '/' or '.')
_TOPOLOGY_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,15}")


# -- data ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Action:
    """One planned change to one kernel object."""

    op: str  # create | delete | modify | replace | adopt
    kind: str  # namespace | link | address | route | rule | fdb | neighbor | sysctl | nat
    key: tuple[Any, ...]  # the object's identity, e.g. ("link", "nginx-1", "eth0")
    object: str  # as people name it: "link nginx-1/eth0"
    reason: str  # why, for people ("" when the file simply asks for it)
    why: str  # the same as a stable code to decide on: none | prune | recreate | ...
    changes: Mapping[str, tuple[Any, Any]]  # modify: attribute -> (before, after)
    _action: _engine.Action = field(repr=False, compare=False)

    @classmethod
    def _of(cls, action: _engine.Action) -> Action:
        return cls(op=action.op.value, kind=action.type, key=tuple(action.key),
                   object=action.describe(), reason=action.reason, why=action.why.value,
                   changes={k: (v[0], v[1]) for k, v in action.changes.items()},
                   _action=action)

    def text(self, color: bool = False) -> str:
        """One line: symbol, object, details, reason ("+ link veth-n1 <-> nginx-1/eth0 ...")."""
        return action_line(self._action, color)[0].strip()


@dataclass(frozen=True)
class Conflict:
    """A declared object that exists but is not netdecl's: apply refuses the whole plan."""

    key: tuple[Any, ...]
    message: str


@dataclass(frozen=True)
class Plan:
    """What apply would do, in order. ``apply(plan)`` applies exactly this plan."""

    topology: str
    actions: tuple[Action, ...]
    conflicts: tuple[Conflict, ...]
    notes: tuple[str, ...]  # e.g. why forwarding will not work
    _plan: _engine.Plan = field(repr=False, compare=False)
    _desired: Topology | None = field(default=None, repr=False, compare=False)
    _saved: SavedPlan | None = field(default=None, repr=False, compare=False)

    @classmethod
    def _of(cls, plan: _engine.Plan, desired: Topology | None = None,
            saved: SavedPlan | None = None) -> Plan:
        return cls(topology=plan.topology, actions=tuple(Action._of(a) for a in plan.actions),
                   conflicts=tuple(Conflict(tuple(c.key), c.message) for c in plan.conflicts),
                   notes=tuple(plan.notes), _plan=plan,
                   _desired=desired, _saved=saved)

    @property
    def fingerprint(self) -> str:
        """Of the host state it was planned against (computed when first asked for: only a
        plan saved, printed as JSON or applied later needs it); "" in what apply and destroy
        return."""
        return self._plan.fingerprint

    @property
    def has_changes(self) -> bool:
        return bool(self.actions)

    def counts(self) -> tuple[int, int, int]:
        """(to add, to change, to destroy), a replace counting as one add and one destroy."""
        return self._plan.counts()

    def adoptions(self) -> int:
        """How many existing objects it takes over (planned with ``adopt=True``)."""
        return self._plan.adoptions()

    def text(self, color: bool = False) -> str:
        """As `netdecl plan` prints it, ending with "Plan: N to add, ..." or "No changes"."""
        return plan_text(self._plan, color)

    def to_json(self) -> dict[str, Any]:
        """As `netdecl plan --json` prints it."""
        return _plan_to_json(self._plan)

    def save(self, path: str | os.PathLike[str], *, source: str | os.PathLike[str]) -> None:
        """Save it for `netdecl apply PLAN` (or ``apply(read_plan(path))``); ``source`` is the
        topology file it was made from: its text travels with the plan."""
        service.save_plan(self._plan, Path(path), Path(source))


@dataclass(frozen=True)
class ApplyResult:
    """What an apply or destroy did."""

    topology: str
    plan: Plan  # what was executed (no actions: the host already matched)
    executed: tuple[Action, ...]
    recovered: tuple[str, ...]  # interrupted applies rolled back first, by topology name
    confirmed: bool  # confirm_timeout was given and the apply was confirmed in time

    @property
    def has_changes(self) -> bool:
        return bool(self.executed)

    def counts(self) -> tuple[int, int, int]:
        """(added, changed, destroyed)."""
        return self.plan.counts()


class PlanConflicts(service.PlanConflicts):
    """The plan has conflicts (declared objects netdecl does not own): nothing was changed.
    ``plan`` is the refused Plan; its ``conflicts`` say what is in the way."""

    plan: Plan  # type: ignore[assignment]  # the API's Plan, where the engine's has its own


Progress = Callable[[int, int, Action], None]


def _ignore(*_: object) -> None:
    return None


@dataclass
class Events:
    """Callbacks for what happens while apply, destroy and rollback work (all optional).
    They run in the calling thread, between actions; an exception raised in one rolls the
    apply back like any other failure."""

    planned: Callable[[Plan], None] | None = None  # the plan, before its first action
    progress: Progress | None = None  # before each action: (number, total, action)
    rollback_progress: Progress | None = None  # before each action of a rollback
    notice: Callable[[str], None] | None = None  # waiting for confirmation, confirmed
    recovering: Callable[[PendingApply], None] | None = None  # rolling back an interrupted apply
    recovered: Callable[[str], None] | None = None  # ... done (its topology's name)

    def _for_service(self, desired: Topology | None = None) -> service.Events:
        def each(callback: Progress | None) -> Callable[[int, int, _engine.Action], None] | None:
            if callback is None:
                return None
            return lambda number, total, action: callback(number, total, Action._of(action))

        planned = self.planned
        return service.Events(
            planned=(lambda p: planned(Plan._of(p, desired))) if planned else _ignore,
            progress=each(self.progress),
            rollback_progress=each(self.rollback_progress),
            notice=self.notice or _ignore,
            recovering=self.recovering or _ignore,
            recovered=self.recovered or _ignore,
        )


# -- functions -----------------------------------------------------------------------------------


def load(path: str | os.PathLike[str] | None = None, *, text: str | bytes | None = None,
         name: str = "<text>") -> Topology:
    """The topology in the file at ``path``, or in YAML ``text`` (``name`` stands for the file
    in diagnostics). Raises InvalidTopology carrying every problem as a Diagnostic (file,
    line, col, message). Warnings (valid, but probably not meant) are in ``.warnings``."""
    from netdecl.topology.loader import load_topology, load_topology_text

    if (path is None) == (text is None):
        raise TypeError("load() takes a path or text=..., exactly one of them")
    if text is not None:
        return load_topology_text(text, name)
    return load_topology(path)  # type: ignore[arg-type]  # not None: checked above


def plan(topology: Topology, *, state_dir: StateDir = None, adopt: bool = False) -> Plan:
    """What ``apply(topology)`` would do on this host now. Raises UnfinishedApply while this
    topology's last apply waits for ``rollback()`` (or is still running); another topology's
    interrupted apply (only operations on that topology roll it back) is one of the ``notes``. With
    ``adopt``, declared objects that exist and belong to nobody are taken over (op "adopt")
    instead of being conflicts."""
    return Plan._of(service.plan(topology, _root(state_dir), adopt=adopt), topology)


def read_plan(path: str | os.PathLike[str]) -> Plan | None:
    """The plan saved at ``path`` by `netdecl plan --out` or ``Plan.save``, its topology
    validated again; None when the file is not a saved plan (a topology file, say)."""
    loaded = service.load_saved_plan(os.fspath(path))
    if loaded is None:
        return None
    saved, desired = loaded
    engine_plan = _engine.Plan(topology=desired.name,
                               actions=[action_from_json(a) for a in saved.actions],
                               known_fingerprint=saved.fingerprint)
    return Plan._of(engine_plan, desired, saved)


def apply(target: Topology | Plan, *, state_dir: StateDir = None,
          lock_timeout: float = DEFAULT_LOCK_TIMEOUT, confirm_timeout: float | None = None,
          events: Events | None = None, adopt: bool = False,
          gate: Callable[[], None] | None = None) -> ApplyResult:
    """Make the host match a Topology, or apply exactly a Plan (refused with StalePlan if the
    host changed since it was made). First rolls back any apply that was interrupted. Verifies
    the result; on any failure rolls back to the state before and raises ApplyFailed (or
    RollbackFailed, exit 4, when even that could not restore everything). With
    ``confirm_timeout`` it then waits that many seconds for `netdecl confirm` and rolls back
    without it (NotConfirmed). ``adopt`` takes over declared objects that exist and belong to
    nobody. ``gate`` runs after the verified apply, under the lock: whatever it raises rolls
    the apply back (e.g. probes with real traffic: ``tools.verify.run_probes``)."""
    saved: SavedPlan | None = None
    if isinstance(target, Plan):
        if target._desired is None:
            raise NetdeclError("this Plan does not know its topology; apply the Topology")
        desired = target._desired
        saved = target._saved or SavedPlan(
            path="<plan>", source="", source_text="", fingerprint=target.fingerprint,
            actions=[action_to_json(a) for a in target._plan.actions])
    elif isinstance(target, Topology):
        desired = target
    else:
        raise TypeError(f"apply() takes a Topology or a Plan, not {type(target).__name__} "
                        f"(for a file: apply(load(path)) or apply(read_plan(path)))")
    events = events or Events()
    try:
        result = service.apply(desired, _root(state_dir), saved=saved,
                               lock_timeout=lock_timeout, confirm_timeout=confirm_timeout,
                               events=events._for_service(desired), adopt=adopt, gate=gate)
    except service.PlanConflicts as exc:
        raise PlanConflicts(Plan._of(exc.plan, desired)) from None
    return _result(result, desired)


def destroy(topology: Topology | str, *, state_dir: StateDir = None,
            lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
            events: Events | None = None) -> ApplyResult:
    """Remove everything the topology (a Topology, or its name) owns on this host and restore
    the root sysctls it changed. Nothing it does not own is touched."""
    name = topology.name if isinstance(topology, Topology) else topology
    if not isinstance(name, str) or not _TOPOLOGY_NAME.fullmatch(name):
        raise TypeError(f"destroy() takes a Topology or a topology's name, not {topology!r} "
                        f"(for a file: destroy(load(path)))")
    events = events or Events()
    try:
        result = service.destroy(name, _root(state_dir), lock_timeout=lock_timeout,
                                 events=events._for_service())
    except service.PlanConflicts as exc:
        raise PlanConflicts(Plan._of(exc.plan)) from None
    return _result(result, None)


def rollback(topology: Topology | str | None = None, *, state_dir: StateDir = None,
             lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
             events: Events | None = None) -> tuple[str, ...]:
    """Roll back the interrupted (killed mid-way) apply of ``topology`` (a Topology or its
    name), or of every topology when None, to the state before it; returns their topologies'
    names (none: nothing was interrupted). A damaged journal is reported and does not stop
    the others."""
    name = topology.name if isinstance(topology, Topology) else topology
    if name is not None and (not isinstance(name, str) or not _TOPOLOGY_NAME.fullmatch(name)):
        raise TypeError(f"rollback() takes a Topology, a topology's name or None, not "
                        f"{topology!r}")
    events = events or Events()
    return tuple(service.rollback(_root(state_dir), name, lock_timeout=lock_timeout,
                                  events=events._for_service()))


def unfinished(*, state_dir: StateDir = None) -> tuple[PendingApply, ...]:
    """Applies that did not finish: interrupted (``.interrupted``; ``rollback()`` restores the
    state before them) or running right now in another process (``.running`` is its PID)."""
    # a damaged journal is not an unfinished apply one can describe: rollback() names it
    return tuple(service.unfinished_applies(_root(state_dir), damaged=[]))


def _root(state_dir: StateDir) -> Path:
    """``state_dir``, else $NETDECL_STATE_DIR, else /var/lib/netdecl (as the command line)."""
    return _state_dir(os.fspath(state_dir) if state_dir is not None else None)


def _result(result: service.ApplyResult, desired: Topology | None) -> ApplyResult:
    executed = Plan._of(result.plan, desired)
    return ApplyResult(topology=result.plan.topology, plan=executed,
                       executed=tuple(Action._of(a) for a in result.executed),
                       recovered=tuple(result.recovered), confirmed=result.confirmed)
