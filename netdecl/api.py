"""netdecl as a library: load a topology, plan, apply, destroy, roll back; results as data.

    import netdecl
    topology = netdecl.load("topologies/docker-bridge.yaml")
    plan = netdecl.plan(topology)
    if plan.has_changes:
        result = netdecl.apply(plan)  # exactly this plan, refused if the host changed since

The one front door: the command line, the GitOps agent and the Ansible module make every plan,
apply, rollback, probe and sandbox of theirs through this module (in-process). So nothing
here prints or exits: progress comes through ``Events`` callbacks, results are frozen
dataclasses, and every failure is a ``NetdeclError`` whose ``status`` is the exit code the
command line would use. An apply installs SIGTERM/SIGINT handlers (to roll back at an action
boundary) only in the main thread, and puts the previous ones back before it returns. Calls
keep no state between them; the host lock serialises applies across threads and processes
alike.

A string is always a path: ``load(path)`` reads a file, ``load(text=...)`` parses YAML text,
and ``destroy`` takes a Topology or a topology's name.

Importing this module imports no engine: each function imports what it uses when called, and
the names below that live elsewhere (``Events``, ``ApplyResult``, ``PlanConflicts``: the
service's, declared once there; ``Topology``, ``StalePlan``...) are looked up on first use
(``__getattr__``). So `netdecl validate` pays for the file format only.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:  # at run time __getattr__ provides them (see the docstring)
    from netdecl.backends.host import Scope
    from netdecl.engine.planner import plan as _engine
    from netdecl.engine.service import (
        ApplyResult,
        EngineEvents,
        EngineResult,
        Events,
        PlanConflicts,
    )
    from netdecl.engine.state.planfile import SavedPlan, StalePlan
    from netdecl.engine.state.unfinished import PendingApply, UnfinishedApply
    from netdecl.model import NetObject, Topology
    from netdecl.tools.verify import ProbeResult, VerifyResult

__all__ = [
    # functions
    "load", "plan", "read_plan", "apply", "destroy", "rollback", "salvage", "unfinished",
    "confirm", "show", "scope", "verify", "probe_gate", "enter_sandbox", "sandboxes",
    "remove_sandbox", "render", "read_var_file", "wait_for_links",
    # data
    "Action", "ApplyResult", "Conflict", "Events", "PendingApply", "Plan", "ProbeResult",
    "Scope", "Topology", "VerifyResult", "Diagnostic",
    # the exception hierarchy: everything is a NetdeclError with an exit ``status``
    "NetdeclError", "InvalidTopology", "EnvironmentProblem", "PlanConflicts", "StalePlan",
    "UnfinishedApply", "ActionFailed", "ApplyFailed", "VerificationFailed", "NotConfirmed",
    "RollbackFailed",
]

# where the exported names that are not declared here live (imported on first use)
_ELSEWHERE = {
    "ApplyResult": "netdecl.engine.service",
    "Events": "netdecl.engine.service",
    "PlanConflicts": "netdecl.engine.service",
    "PendingApply": "netdecl.engine.state.unfinished",
    "UnfinishedApply": "netdecl.engine.state.unfinished",
    "StalePlan": "netdecl.engine.state.planfile",
    "Topology": "netdecl.model",
    "Scope": "netdecl.backends.host",
    "ProbeResult": "netdecl.tools.verify",
    "VerifyResult": "netdecl.tools.verify",
}


def __getattr__(name: str) -> Any:
    if name in _ELSEWHERE:
        value = getattr(importlib.import_module(_ELSEWHERE[name]), name)
        globals()[name] = value  # once: later lookups find it as a plain global
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


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
    # the objects as the host has them (none: it creates them) and as the action leaves them
    # (none: it deletes them); a veth pair's two ends, or one object
    before: tuple[NetObject, ...] = field(repr=False)
    after: tuple[NetObject, ...] = field(repr=False)
    _action: _engine.Action = field(repr=False, compare=False)

    @classmethod
    def _of(cls, action: _engine.Action) -> Action:
        return cls(op=action.op.value, kind=action.type, key=tuple(action.key),
                   object=action.describe(), reason=action.reason, why=action.why.value,
                   changes={k: (v[0], v[1]) for k, v in action.changes.items()},
                   before=_present(action.before, action.peer_before),
                   after=_present(action.after, action.peer_after), _action=action)

    def text(self, color: bool = False) -> str:
        """One line: symbol, object, details, reason ("+ link veth-n1 <-> nginx-1/eth0 ...")."""
        from netdecl.tools.render import action_line

        return action_line(self._action, color)[0].strip()


def _present(*objects: NetObject | None) -> tuple[NetObject, ...]:
    return tuple(o for o in objects if o is not None)


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

    @property
    def declared(self) -> Topology | None:
        """The topology it was planned for (a saved plan's, validated again); None in what
        destroy returns."""
        return self._desired

    def counts(self) -> tuple[int, int, int]:
        """(to add, to change, to destroy), a replace counting as one add and one destroy."""
        return self._plan.counts()

    def adoptions(self) -> int:
        """How many existing objects it takes over (planned with ``adopt=True``)."""
        return self._plan.adoptions()

    def text(self, color: bool = False) -> str:
        """As `netdecl plan` prints it, ending with "Plan: N to add, ..." or "No changes"."""
        from netdecl.tools.render import plan_text

        return plan_text(self._plan, color)

    def to_json(self) -> dict[str, Any]:
        """As `netdecl plan --json` prints it, less its ``format_version`` (docs/json.md)."""
        from netdecl.engine.state.planfile import plan_to_json

        return plan_to_json(self._plan)

    def save(self, path: str | os.PathLike[str], *, source: str | os.PathLike[str]) -> None:
        """Save it for `netdecl apply PLAN` (or ``apply(read_plan(path))``); ``source`` is the
        topology file it was made from: its text travels with the plan (of a template: its
        expansion, which needs no vars, facts or includes when the plan is applied)."""
        from netdecl.engine import service

        desired = self._desired
        text = _plain_text(desired) if desired and desired.expanded is not None else None
        service.save_plan(self._plan, Path(path), Path(source), text)


Progress = Callable[[int, int, Action], None]


def _for_service(events: Events[Plan, Action] | None,
                 desired: Topology | None = None) -> EngineEvents:
    """``events`` as the service calls them: with the engine's plans and actions, each shown
    to the callback as the API's view."""
    from netdecl.engine.service import Events

    events = events or Events()

    def each(callback: Progress | None) -> Callable[[int, int, _engine.Action], None] | None:
        if callback is None:
            return None
        return lambda number, total, action: callback(number, total, Action._of(action))

    planned = events.planned
    return Events(
        planned=(lambda p: planned(Plan._of(p, desired))) if planned else None,
        progress=each(events.progress),
        rollback_progress=each(events.rollback_progress),
        notice=events.notice, recovering=events.recovering, recovered=events.recovered)


# -- functions -----------------------------------------------------------------------------------


def load(path: str | os.PathLike[str] | None = None, *, text: str | bytes | None = None,
         name: str = "<text>", variables: Mapping[str, Any] | None = None,
         facts: Mapping[str, Any] | None = None) -> Topology:
    """The topology in the file at ``path`` (a directory: all its ``*.yaml`` as one), or in
    YAML ``text`` (``name`` stands for the file in diagnostics). A template's ``vars`` take
    ``variables`` (text, as from --var, or typed values) over their defaults; ``${facts...}``
    reads ``facts``, by default this host's (read only if the file uses them). Raises
    InvalidTopology carrying every problem as a Diagnostic (file, line, col, message).
    Warnings (valid, but probably not meant) are in ``.warnings``."""
    from netdecl.topology.loader import load_topology, load_topology_text

    if (path is None) == (text is None):
        raise TypeError("load() takes a path or text=..., exactly one of them")
    facts = _host_facts() if facts is None else facts
    if text is not None:
        return load_topology_text(text, name, variables=variables, facts=facts)
    return load_topology(path, variables=variables, facts=facts)  # type: ignore[arg-type]


def render(path: str | os.PathLike[str], *, variables: Mapping[str, Any] | None = None,
           facts: Mapping[str, Any] | None = None) -> str:
    """The topology at ``path`` with its template expanded: a plain topology file (YAML)
    that validates and that apply takes as it is. Raises InvalidTopology as load() does."""
    import yaml

    from netdecl.topology.loader import expand

    facts = _host_facts() if facts is None else facts
    topology = load(path, variables=variables, facts=facts)  # valid: or InvalidTopology
    if topology.expanded is None:  # a plain file: itself, comments and all
        return Path(path).read_text(encoding="utf-8")
    # expanded again, as written: the loader fills in defaults (up: true) as it builds
    data = expand(os.fspath(path), None, variables, facts).data
    return yaml.safe_dump(data, sort_keys=False, width=100)


def read_var_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The variables in a YAML file of NAME: VALUE (what --var-file reads)."""
    from netdecl.topology.loader import load_var_file

    return load_var_file(os.fspath(path))


def _host_facts() -> Mapping[str, Any]:
    """This host's facts, read (and backends imported) only if a template looks at them."""
    from netdecl.topology.template.expand import LazyFacts

    def read() -> dict[str, Any]:
        from netdecl.backends.facts import gather

        return gather()
    return LazyFacts(read)


def _plain_text(topology: Topology) -> str:
    import yaml

    return yaml.safe_dump(topology.expanded, sort_keys=False, width=100)


def plan(topology: Topology, *, state_dir: StateDir = None, adopt: bool = False) -> Plan:
    """What ``apply(topology)`` would do on this host now. Raises UnfinishedApply while this
    topology's last apply waits for ``rollback()`` (or is still running); another topology's
    interrupted apply (only operations on that topology roll it back) is one of the ``notes``. With
    ``adopt``, declared objects that exist and belong to nobody are taken over (op "adopt")
    instead of being conflicts."""
    from netdecl.engine import service

    return Plan._of(service.plan(topology, _root(state_dir), adopt=adopt), topology)


def read_plan(path: str | os.PathLike[str]) -> Plan | None:
    """The plan saved at ``path`` by `netdecl plan --out` or ``Plan.save``, its topology
    validated again; None when the file is not a saved plan (a topology file, say)."""
    from netdecl.engine import service
    from netdecl.engine.planner.plan import Plan as EnginePlan
    from netdecl.engine.state.planfile import action_from_json

    loaded = service.load_saved_plan(os.fspath(path))
    if loaded is None:
        return None
    saved, desired = loaded
    engine_plan = EnginePlan(topology=desired.name,
                             actions=[action_from_json(a) for a in saved.actions],
                             known_fingerprint=saved.fingerprint)
    return Plan._of(engine_plan, desired, saved)


def apply(target: Topology | Plan, *, state_dir: StateDir = None,
          lock_timeout: float | None = None, confirm_timeout: float | None = None,
          events: Events[Plan, Action] | None = None, adopt: bool = False,
          gate: Callable[[], None] | None = None) -> ApplyResult[Plan, Action]:
    """Make the host match a Topology, or apply exactly a Plan (refused with StalePlan if the
    host changed since it was made). First rolls back any apply that was interrupted. Verifies
    the result; on any failure rolls back to the state before and raises ApplyFailed (or
    RollbackFailed, exit 4, when even that could not restore everything). With
    ``confirm_timeout`` it then waits that many seconds for `netdecl confirm` and rolls back
    without it (NotConfirmed). ``adopt`` takes over declared objects that exist and belong to
    nobody. ``gate`` runs after the verified apply, under the lock: whatever it raises rolls
    the apply back (e.g. the topology's probes with real traffic: ``verify``)."""
    from netdecl.engine import service
    from netdecl.engine.state.planfile import SavedPlan, action_to_json
    from netdecl.model import Topology

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
    try:
        result = service.apply(desired, _root(state_dir), saved=saved,
                               lock_timeout=_lock_timeout(lock_timeout),
                               confirm_timeout=confirm_timeout,
                               events=_for_service(events, desired), adopt=adopt, gate=gate)
    except service.PlanConflicts as exc:
        raise service.PlanConflicts(Plan._of(exc.plan, desired)) from None
    return _result(result, desired)


def destroy(topology: Topology | str, *, state_dir: StateDir = None,
            lock_timeout: float | None = None,
            events: Events[Plan, Action] | None = None) -> ApplyResult[Plan, Action]:
    """Remove everything the topology (a Topology, or its name) owns on this host and restore
    the root sysctls it changed. Nothing it does not own is touched."""
    from netdecl.engine import service

    name = _name_of(topology)
    if not isinstance(name, str) or not _TOPOLOGY_NAME.fullmatch(name):
        raise TypeError(f"destroy() takes a Topology or a topology's name, not {topology!r} "
                        f"(for a file: destroy(load(path)))")
    try:
        result = service.destroy(name, _root(state_dir), lock_timeout=_lock_timeout(lock_timeout),
                                 events=_for_service(events))
    except service.PlanConflicts as exc:
        raise service.PlanConflicts(Plan._of(exc.plan)) from None
    return _result(result, None)


def rollback(topology: Topology | str | None = None, *, state_dir: StateDir = None,
             lock_timeout: float | None = None,
             events: Events[Plan, Action] | None = None) -> tuple[str, ...]:
    """Roll back the interrupted (killed mid-way) apply of ``topology`` (a Topology or its
    name), or of every topology when None, to the state before it; returns their topologies'
    names (none: nothing was interrupted). A damaged journal is reported and does not stop
    the others."""
    from netdecl.engine import service

    name = _name_of(topology)
    if name is not None and (not isinstance(name, str) or not _TOPOLOGY_NAME.fullmatch(name)):
        raise TypeError(f"rollback() takes a Topology, a topology's name or None, not "
                        f"{topology!r}")
    return tuple(service.rollback(_root(state_dir), name, lock_timeout=_lock_timeout(lock_timeout),
                                  events=_for_service(events)))


def salvage(topology: Topology | str, *, state_dir: StateDir = None,
            lock_timeout: float | None = None,
            events: Events[Plan, Action] | None = None) -> tuple[str, ...] | None:
    """Roll back what can still be proven of the interrupted apply of ``topology`` whose
    journal is damaged (``rollback()`` refuses it): ``events.planned`` sees the plan first and
    may raise to stop before anything is done. Returns what was kept because nothing proves
    that apply made it, one line each; None when there was no journal."""
    from netdecl.engine import service

    name = _name_of(topology)
    if not isinstance(name, str) or not _TOPOLOGY_NAME.fullmatch(name):
        raise TypeError(f"salvage() takes a Topology or a topology's name, not {topology!r}")
    kept = service.salvage(_root(state_dir), name, lock_timeout=_lock_timeout(lock_timeout),
                           events=_for_service(events))
    return None if kept is None else tuple(kept)


def _lock_timeout(seconds: float | None) -> float:
    """How long to wait for the host lock: ``seconds``, or netdecl's default for None (one
    definition, in engine/state/, imported only once the engine is needed anyway)."""
    from netdecl.engine.state import LOCK_TIMEOUT

    return LOCK_TIMEOUT if seconds is None else seconds


def unfinished(*, state_dir: StateDir = None) -> tuple[PendingApply, ...]:
    """Applies that did not finish: interrupted (``.interrupted``; ``rollback()`` restores the
    state before them) or running right now in another process (``.running`` is its PID)."""
    from netdecl.engine import service

    # a damaged journal is not an unfinished apply one can describe: rollback() names it
    return tuple(service.unfinished_applies(_root(state_dir), damaged=[]))


def confirm(topology: str | None = None, *, state_dir: StateDir = None) -> str:
    """Keep the changes of the apply that waits for confirmation (``confirm_timeout``) in
    another process or thread; ``topology`` is needed only when several wait. Returns the
    name of the topology confirmed; raises NetdeclError when none waits."""
    from netdecl.engine import service

    return service.confirm(_root(state_dir), topology)


def show(namespaces: list[str] | None = None, *, state_dir: StateDir = None) -> Topology:
    """The live state of ``namespaces`` ("root" or "" for the host's own; default: root and
    every named one) as a Topology, everything in them, netdecl's or not, with the NAT rules
    of netdecl's tables and the sysctls topologies manage (their records in the state dir say
    where). What `netdecl show` prints, before it is written as YAML."""
    from netdecl.engine import service

    return service.show(namespaces, state_root=_root(state_dir))


def scope(topology: Topology, *, state_dir: StateDir = None) -> Scope:
    """What plan and apply read for ``topology`` on this host: the namespaces it declares and
    those its ownership record names (``.namespaces``), and whether and where its NAT table
    (``.nat``, ``.nat_namespaces``) and FDB entries (``.fdb``) are read. A watcher of the
    kernel's events (the agent) listens in exactly these."""
    from netdecl.engine import service

    return service.scope(topology, _root(state_dir))


def wait_for_links(topology: Topology, timeout: float) -> None:
    """Wait up to ``timeout`` seconds for the host's NICs ``topology`` declares (``kind:
    external`` in the root namespace) to appear, from the kernel's link notifications (udev may
    rename a NIC late in boot); EnvironmentProblem naming those still missing after it."""
    from netdecl.backends.linkwait import wait_for_links as wait
    from netdecl.model import ROOT, ExternalLink

    names = [o.name for o in topology.of_type(ExternalLink) if o.namespace == ROOT]
    missing = wait(names, timeout)
    if missing:
        listed = ", ".join(missing)
        raise EnvironmentProblem(
            f"topology {topology.name}: external link{'s' if len(missing) > 1 else ''} "
            f"{listed} did not appear within {timeout:g}s (declared kind: external; netdecl "
            f"never creates it: check the NIC's name, `ip link`, and its driver)")


def verify(topology: Topology, *, timeout: float = 2.0, measure: bool = False) -> VerifyResult:
    """Run the topology's probes with real traffic, each from inside its source namespace
    (starting a short-lived listener where nothing listens), ``timeout`` seconds at most each;
    only to the topology's own addresses and into networks it declares (another host's pods).
    A ``VerifyResult``: ``.ok``, ``.probes`` (each a ``ProbeResult``: ``.ok``, ``.result``,
    ``.detail``...), ``.failed()``, ``.text()`` and ``.to_json()`` as `netdecl verify` prints
    them. ``measure``: also measure the loss and rate the file declares on each probe's way
    (seconds per probe; tools/measure.py). Needs root; changes nothing."""
    from netdecl.tools.verify import verify as run

    return run(topology, timeout, measure)


def probe_gate(topology: Topology, *, timeout: float = 2.0,
               seen: Callable[[VerifyResult], None] | None = None) -> Callable[[], None]:
    """A ``gate`` for ``apply``: runs the topology's probes (as ``verify``) after the verified
    apply, under its lock, and raises VerificationFailed naming each failed probe, so the
    apply is rolled back unless real traffic passes. ``seen`` gets each run's VerifyResult
    first (to report it). The Ansible module's ``verify`` and `netdecl apply --verify`."""

    def gate() -> None:
        result = verify(topology, timeout=timeout)
        if seen is not None:
            seen(result)
        failed = result.failed()
        if failed:
            lines = "".join(f"\n  {r.probe.source} -> {r.probe.to}"
                            f"{':' + str(r.probe.port) if r.probe.port else ''}: {r.detail}"
                            for r in failed)
            raise VerificationFailed(f"verify: {len(failed)} of {len(result.probes)} probes "
                                     f"failed:{lines}")

    return gate


def enter_sandbox(name: str, *, create: bool = True) -> None:
    """Move this process into the sandbox ``name``: a persistent private network + mount
    namespace (made on first use unless ``create`` is false), with its own /run/netns and
    state dir. Everything netdecl does afterwards, in this process, happens in there; the
    host's network is untouched. Call it first, before any thread starts (the kernel refuses
    to move a multi-threaded process). Needs root."""
    from netdecl.tools import sandbox

    sandbox.enter(name, create_if_missing=create)


def sandboxes() -> tuple[str, ...]:
    """The names of the sandboxes on this host."""
    from netdecl.tools import sandbox

    return tuple(sandbox.list_sandboxes())


def remove_sandbox(name: str) -> None:
    """Remove the sandbox ``name`` and everything made in it (its namespaces vanish once no
    process is left inside). Needs root."""
    from netdecl.tools import sandbox

    sandbox.remove(name)


def _name_of(topology: Topology | str | None) -> str | None:
    from netdecl.model import Topology

    return topology.name if isinstance(topology, Topology) else topology


def _root(state_dir: StateDir) -> Path:
    """``state_dir``, else $NETDECL_STATE_DIR, else /var/lib/netdecl (as the command line)."""
    from netdecl.engine.state.statedir import state_dir as resolve

    return resolve(os.fspath(state_dir) if state_dir is not None else None)


def _result(result: EngineResult, desired: Topology | None) -> ApplyResult[Plan, Action]:
    from netdecl.engine.service import ApplyResult

    return ApplyResult(topology=result.topology, plan=Plan._of(result.plan, desired),
                       executed=tuple(Action._of(a) for a in result.executed),
                       recovered=result.recovered, confirmed=result.confirmed)
