"""The application service: what plan, apply, destroy, rollback, confirm and show do.

netdecl.api is its one caller in netdecl (the CLI, the agent and the Ansible module call the
API): it passes the state dir resolved, and shows the engine's plans and actions to its callers
as its own frozen views. Nothing here prints: progress and notices go through an ``Events``
object, results come back as data. Every function works on a Host (the real kernel unless one
is passed in: the tests pass an in-memory one).

``Events``, ``ApplyResult`` and ``PlanConflicts`` are the API's types as well, declared once
here: generic in the plan and action they carry, the engine's here and the API's views there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from netdecl.backends.host import Host, Scope
from netdecl.backends.managers import Managers
from netdecl.engine.applier import Applier, rollback_record, snapshot_owned
from netdecl.engine.coexistence import managed_names, marks_around_apply, settle_marks
from netdecl.engine.observer import observe, observe_all, observe_for, scope_for
from netdecl.engine.ownership import forget_gone, pin_identities
from netdecl.engine.planner import make_plan
from netdecl.engine.planner.adopt import Adoption
from netdecl.engine.planner.plan import ADOPT, Action, Conflict, Plan
from netdecl.engine.state import LOCK_TIMEOUT, planfile, statedir
from netdecl.engine.state import confirm as confirmation
from netdecl.engine.state.journal import Journal, pending
from netdecl.engine.state.lock import HostLock
from netdecl.engine.state.planfile import SavedPlan
from netdecl.engine.state.record import OwnershipRecord, RecordStore
from netdecl.engine.state.unfinished import (
    PendingApply,
    UnfinishedApply,
    check_before_plan,
    unfinished_applies,
)
from netdecl.errors import EnvironmentProblem, NetdeclError, RollbackFailed
from netdecl.links import link_kind
from netdecl.model import ROOT, Link, NatTable, Qdisc, Topology, qualify

__all__ = ["ApplyResult", "Events", "PendingApply", "PlanConflicts", "UnfinishedApply", "apply",
           "confirm", "destroy", "load_saved_plan", "plan", "rollback", "salvage", "save_plan",
           "scope", "show", "unfinished_applies"]


class _Counted(Protocol):
    """What ApplyResult.counts() asks of its plan (the engine's and the API's both have it)."""

    def counts(self) -> tuple[int, int, int]: ...


PlanT = TypeVar("PlanT", bound=_Counted)
ActionT = TypeVar("ActionT")


@dataclass
class Events(Generic[PlanT, ActionT]):
    """Callbacks for what happens while apply, destroy and rollback work (all optional).
    They run in the calling thread, between actions; an exception raised in one rolls the
    apply back like any other failure."""

    # the plan about to be executed (after the checks, before the first action)
    planned: Callable[[PlanT], None] | None = None
    # before each action: (number, total, action)
    progress: Callable[[int, int, ActionT], None] | None = None
    # before each action of a rollback (after a failure, or of an interrupted apply)
    rollback_progress: Callable[[int, int, ActionT], None] | None = None
    # a line for people: waiting for confirmation, confirmed, another topology's journal
    notice: Callable[[str], None] | None = None
    # an earlier apply that did not finish is being rolled back (first, under the lock)
    recovering: Callable[[PendingApply], None] | None = None
    recovered: Callable[[str], None] | None = None  # ... done (its topology's name)


@dataclass(frozen=True)
class ApplyResult(Generic[PlanT, ActionT]):
    """What an apply or destroy did."""

    topology: str
    plan: PlanT  # what was executed (no actions: the host already matched)
    executed: tuple[ActionT, ...] = ()
    recovered: tuple[str, ...] = ()  # interrupted applies rolled back first, by topology name
    confirmed: bool = False  # confirm_timeout was given and the apply was confirmed in time

    @property
    def has_changes(self) -> bool:
        return bool(self.executed)

    def counts(self) -> tuple[int, int, int]:
        """(added, changed, destroyed), a replace counting as one added and one destroyed."""
        return self.plan.counts()


class PlanConflicts(NetdeclError, Generic[PlanT]):
    """The plan has conflicts (declared objects netdecl does not own): nothing was changed.
    ``plan`` is the refused plan; its ``conflicts`` say what is in the way."""

    def __init__(self, plan: PlanT):
        self.plan = plan
        super().__init__("the plan has conflicts: nothing was changed")


# what the service itself reports with: the engine's plans and actions
EngineEvents = Events[Plan, Action]
EngineResult = ApplyResult[Plan, Action]

HostFactory = Callable[[], Host]


def _ignore(*_: object) -> None:
    return None


def _kernel_host() -> Host:
    from netdecl.backends.kernelhost import KernelHost  # pyroute2 & co only when needed

    return KernelHost()


# -- plan ----------------------------------------------------------------------------------------

def _managers(host: Host | None, managers: Managers | None) -> Managers | None:
    """The host's other network managers: those of this machine when the host is the real
    kernel (none given), none for an in-memory host unless a test gives them."""
    if managers is not None or host is not None:
        return managers
    return Managers()


def plan(desired: Topology, state_root: Path, host: Host | None = None,
         adopt: bool = False, managers: Managers | None = None) -> Plan:
    """Observe what ``desired`` and its record name, and plan toward ``desired``; ``adopt``
    takes over declared objects that exist and belong to nobody (ADOPT actions). Raises
    UnfinishedApply while its last apply is not rolled back (or still running)."""
    statedir.secure(state_root, create=False)
    notes = check_before_plan(state_root, desired.name)
    record = RecordStore(state_root).load(desired.name)
    _check_nft_if_needed(desired, record)
    desired = on_host(desired)
    others = _managers(host, managers)
    with _using(host) as h:
        _check_kernel_modules(h, desired)
        result, observed, _ = _plan_against(h, desired, record, adopt, others)
        result.fingerprint_of = lambda: planfile.fingerprint(observed)  # if asked for
    result.notes += notes
    return result


def _plan_against(host: Host, desired: Topology, record: OwnershipRecord,
                  adopt: bool = False, managers: Managers | None = None
                  ) -> tuple[Plan, Topology, bool]:
    """Observe and plan. ``record`` is brought up to date first: identities written down for
    a record from before them, claims dropped whose object is gone or someone else's now
    (the last value: whether that changed it)."""
    observed = observe_for(host, desired, record)
    pinned = pin_identities(observed, record)
    dropped = forget_gone(observed, record)
    result = make_plan(desired, observed, record, adopt=adopt,
                       managed=managed_names(observed, managers))
    result.conflicts += _missing_qdisc_kinds(host, result, observed)
    return result, observed, pinned or dropped


def on_host(desired: Topology) -> Topology:
    """``desired`` with what its links' settings name on this host read in (a WireGuard key
    file's fingerprint, links/base.LinkKind.on_host), before the pure planner compares it;
    the same object when no link's kind reads anything."""
    changed = {}
    for link in desired.of_type(Link):
        kind = link_kind(link.kind)
        if kind is not None and (done := kind.on_host(link)) is not link:
            changed[link.key] = done
    if not changed:
        return desired
    return dataclasses.replace(desired, objects={key: changed.get(key, obj)
                                                 for key, obj in desired.objects.items()})


def _missing_qdisc_kinds(host: Host, result: Plan, observed: Topology) -> list[Conflict]:
    """A plan that needs a qdisc kind this kernel lacks refuses before anything changes,
    naming the module (asked of the kernel once per kind, not per link). A kind the kernel
    already shows on a link (a rate changed in place: the tbf is there) is not asked: the
    probe makes a throwaway network namespace, 7-20 ms of a one-parameter apply."""
    wanted = {action.key: {stage.kind for stage in action.after.stages}
              for action in result.actions if isinstance(action.after, Qdisc)}
    if not wanted:
        return []
    shown = {stage.kind for q in observed.of_type(Qdisc) for stage in q.stages}
    asked = set().union(*wanted.values()) - shown
    missing = host.missing_qdisc_kinds(asked) if asked else {}
    return [Conflict(key, f"{kind} qdisc for {describe} is not in this kernel: module "
                          f"{missing[kind]} is missing (modprobe {missing[kind]})")
            for key, kinds in sorted(wanted.items()) for kind in sorted(kinds & set(missing))
            for describe in [f"{key[3]} of {qualify(key[1], key[2])}"]]


def scope(desired: Topology, state_root: Path) -> Scope:
    """What plan and apply read for ``desired``: the namespaces it declares and those its
    ownership record names, and where its NAT table can be (the agent watches exactly these)."""
    return scope_for(desired, RecordStore(state_root).load(desired.name))


def save_plan(result: Plan, path: Path, source: Path, text: str | None = None) -> None:
    """Save a plan for `apply PLAN`; the topology file's text (or ``text``: a template's
    expansion) travels with it."""
    planfile.save(path, result, str(source.resolve()),
                  source.read_text(encoding="utf-8") if text is None else text)


def load_saved_plan(path: str) -> tuple[SavedPlan, Topology] | None:
    """The saved plan at ``path`` and its topology (validated again); None if the file is not
    a saved plan."""
    saved = planfile.read(path)
    if saved is None:
        return None
    from netdecl.topology.loader import load_topology_text

    return saved, load_topology_text(saved.source_text, saved.source)


# -- apply, destroy, rollback ----------------------------------------------------------------

def apply(desired: Topology, state_root: Path, *, saved: SavedPlan | None = None,
          lock_timeout: float = LOCK_TIMEOUT, confirm_timeout: float | None = None,
          gate: Callable[[], None] | None = None,
          events: EngineEvents | None = None, host: Host | None = None,
          adopt: bool = False, managers: Managers | None = None) -> EngineResult:
    """Make the host match ``desired``: under the host lock, first roll back whatever an
    interrupted apply left; then observe, plan (a ``saved`` plan must still be exactly what
    is planned now), snapshot, execute, verify, pass the ``gate`` and wait for confirmation
    if asked. Any failure rolls back to the snapshot and raises (ApplyFailed,
    RollbackFailed...).

    ``gate`` runs after the verified apply, still under the lock and with the journal kept,
    so whatever it raises rolls the apply back like a failed action (a caller runs the
    topology's probes there: an apply kept only if real traffic passes). ``adopt`` takes
    over declared objects that exist and belong to nobody; a saved plan adopts when it was
    made with --adopt."""
    events = events or Events()
    notice = events.notice or _ignore
    if saved is not None:
        adopt = adopt or any(a.get("op") == ADOPT.value for a in saved.actions)
    others = _managers(host, managers)
    with HostLock(state_root, lock_timeout), _using(host) as h:
        # only this topology's own journal: another's is that topology's business (its next
        # apply, destroy or `netdecl rollback`), and damage in it must not block this one
        recovered = _recover(h, state_root, [desired.name], events)
        for other in pending(state_root):
            if other != desired.name:
                notice(f"netdecl: an interrupted apply of {other!r} left its journal; "
                       f"`netdecl rollback --name {other}` rolls it back")
        result = _apply_locked(h, desired, state_root, saved, confirm_timeout, gate, events,
                               adopt, others)
        return dataclasses.replace(result, recovered=tuple(recovered))


def destroy(topology: str, state_root: Path, *, lock_timeout: float = LOCK_TIMEOUT,
            events: EngineEvents | None = None, host: Host | None = None,
            managers: Managers | None = None) -> EngineResult:
    """Remove everything ``topology`` owns and restore the root sysctls it changed (and the
    marks that kept the other network managers off its links)."""
    return apply(Topology(name=topology), state_root, lock_timeout=lock_timeout,
                 events=events, host=host, managers=managers)


def rollback(state_root: Path, topology: str | None = None, *, lock_timeout: float = LOCK_TIMEOUT,
             events: EngineEvents | None = None, host: Host | None = None) -> list[str]:
    """Roll back the interrupted apply of ``topology`` (None: of every topology that left a
    journal, each on its own: a damaged journal is reported and does not stop the others);
    returns the names rolled back."""
    events = events or Events()
    with HostLock(state_root, lock_timeout):
        names = pending(state_root)
        if topology is not None:
            names = [topology] if topology in names else []
        if not names:
            return []
        with _using(host) as h:
            return _recover(h, state_root, names, events)


def salvage(state_root: Path, topology: str, *, lock_timeout: float = LOCK_TIMEOUT,
            events: EngineEvents | None = None, host: Host | None = None) -> list[str] | None:
    """Undo what can still be proven of the interrupted apply of ``topology`` whose journal
    is damaged (`netdecl rollback --salvage`): the identities and claims in its readable
    lines, objects under the secret temporary names they hold, the header's snapshot where it
    is readable. ``events.planned`` is shown the rollback's plan before anything is done (it
    may raise to stop there). Returns what it kept, one line each (None: no journal); the
    damaged file is set aside (NAME.jsonl.salvaged) once the rollback restored what it could
    prove, and kept (exit 4) otherwise."""
    events = events or Events()
    notice = events.notice or _ignore
    with HostLock(state_root, lock_timeout), _using(host) as h:
        store = RecordStore(state_root)
        found = Journal.salvage(state_root, topology, store.load(topology))
        if found is None:
            return None
        journal, lost = found
        kept = [f"{part} could not be read: whatever it recorded was made or changed is kept"
                for part in lost]
        if journal.header_lost:
            # no snapshot: what the topology owned before stays as it is now (its state from
            # before that apply is unknown), and only what the readable lines prove is undone
            now = observe_for(h, Topology(name=topology), journal.record_before)
            journal.snapshot = snapshot_owned(now, journal.record_before)
            kept.append("the state from before that apply (the header) is unknown: what it "
                        "changed on objects the topology owned before is kept as it is now")
        if (torn := journal.torn_note()) is not None:
            notice(torn)
        current = journal.claimed()
        merged = rollback_record(current, journal.record_before)
        preview = make_plan(journal.snapshot, observe_for(h, journal.snapshot, merged), merged)
        if events.planned is not None:
            events.planned(preview)  # the plan first: it may stop here, nothing done
        journal.discard_torn_tail()
        journal.release_reserve()
        applier = Applier(store, h, rollback_progress=events.rollback_progress)
        try:
            applier.rollback_to(journal.snapshot, journal.record_before, current=current,
                                journal=journal)
        except RollbackFailed as exc:  # the journal is still damaged: salvage is what retries
            again = f"`netdecl rollback --salvage --name {topology}` tries again"
            raise RollbackFailed(str(exc).replace("`netdecl rollback` tries again", again)
                                 ) from None
        kept += _left_unproven(h, journal)
        aside = journal.set_aside()
        confirmation.clear(state_root, topology)
        notice(f"netdecl: salvaged {topology!r}; the damaged journal is kept as {aside}")
        return kept


def _left_unproven(host: Host, journal: Journal) -> list[str]:
    """What the readable lines say that apply was making, still there after the rollback and
    not in the snapshot: nothing proves it is that apply's (its identity is lost), so it is
    kept; and links that carry the topology's mark but no proven identity."""
    topology = journal.snapshot.name
    mentioned = journal.mentioned()
    names = sorted({ROOT, *(key[1] for key in mentioned)} & {ROOT, *host.named_namespaces()})
    host.refresh()
    seen = observe(host, topology, Scope(namespaces=names, sysctls={}, nat=False, rules=False,
                                         fdb=False))
    kept = []
    for key, obj in sorted(seen.objects.items(), key=lambda item: repr(item[0])):
        if key in journal.snapshot.objects:
            continue
        marked = isinstance(obj, Link) and obj.owner == topology
        if key in mentioned or marked:
            kept.append(f"{obj.describe()}: nothing readable proves that apply made it")
    return kept


def _apply_locked(host: Host, desired: Topology, state_root: Path, saved: SavedPlan | None,
                  confirm_timeout: float | None, gate: Callable[[], None] | None,
                  events: EngineEvents, adopt: bool = False,
                  managers: Managers | None = None) -> EngineResult:
    store = RecordStore(state_root)
    record = store.load(desired.name)
    _check_nft_if_needed(desired, record)
    desired = on_host(desired)
    _check_kernel_modules(host, desired)
    todo, observed, brought_up_to_date = _plan_against(host, desired, record, adopt, managers)
    if saved is not None:
        todo.fingerprint_of = lambda: planfile.fingerprint(observed)
        planfile.check_fresh(saved, todo)
    if brought_up_to_date:
        store.save(record)  # claims dropped, identities written: true whatever happens next
    if todo.conflicts:
        raise PlanConflicts(todo)
    notice = events.notice or _ignore
    if not todo.actions:
        settle_marks(managers, desired, notice)
        return ApplyResult(topology=desired.name, plan=todo)
    if events.planned is not None:
        events.planned(todo)
    if todo.adoptions():
        # what is adopted is in the snapshot, so that a failed apply puts it back as it was
        # instead of deleting it as something this apply made; and as it is now, unmarked,
        # with its alias and its route protocol, which the rollback puts back too
        adoption = Adoption.of(desired, observed, record)
        owned = snapshot_owned(adoption.observed, adoption.record)
        snapshot = Topology(name=owned.name)
        snapshot.extend(observed.objects.get(key, obj) for key, obj in owned.objects.items())
    else:
        snapshot = snapshot_owned(observed, record)
    waiter = None
    if confirm_timeout is not None:
        waiter = confirmation.Waiter(state_root, desired.name, confirm_timeout, notice)

    def hold(checkpoint: Callable[[], None]) -> None:
        if gate is not None:
            gate()  # first: confirmation is asked only of a change that passed it
        if waiter is not None:
            waiter(checkpoint)

    with marks_around_apply(managers, desired, observed, record, notice):
        executed = Applier(store, host, progress=events.progress,
                           rollback_progress=events.rollback_progress).apply(
            desired, todo, snapshot, hold=hold if gate or waiter else None, record=record,
            observed=observed)
    if waiter is not None:
        confirmation.clear(state_root, desired.name)  # journal gone: now `confirm` may return
        notice("Confirmed: keeping the changes.")
    return ApplyResult(topology=desired.name, plan=todo, executed=tuple(executed),
                       confirmed=waiter is not None)


def _recover(host: Host, state_root: Path, names: list[str],
             events: EngineEvents) -> list[str]:
    """Finish what the crashed applies of ``names`` left: roll each back to its journal's
    snapshot. Each journal is checked whole first (DamagedStateFile: nothing done for that
    topology); one that cannot be used does not stop the others, and the worst failure is
    raised at the end (a rollback that could not restore: exit 4)."""
    store = RecordStore(state_root)
    done: list[str] = []
    failures: list[NetdeclError] = []
    for name in names:
        try:
            journal = Journal.load(state_root, name)
            if journal is None:
                continue
            if (torn := journal.torn_note()) is not None and events.notice is not None:
                events.notice(torn)
            journal.discard_torn_tail()  # the rollback's own lines must not follow half a line
            journal.release_reserve()  # the room a killed apply kept for this rollback
            if events.recovering is not None:
                events.recovering(PendingApply(name, journal.steps_done(), journal.total))
            applier = Applier(store, host, rollback_progress=events.rollback_progress)
            applier.rollback_to(journal.snapshot, journal.record_before,
                                current=journal.claimed(), journal=journal)
        except NetdeclError as exc:
            failures.append(exc)
            continue
        journal.finish()
        confirmation.clear(state_root, name)  # markers of an apply that died waiting
        if events.recovered is not None:
            events.recovered(name)
        done.append(name)
    if len(failures) == 1:
        raise failures[0]
    if failures:  # one line each, with the exit status of the worst (4 before 1)
        combined = NetdeclError("\n".join(str(exc) for exc in failures))
        combined.status = max(exc.status for exc in failures)
        raise combined
    return done


def _check_nft_if_needed(desired: Topology, record: OwnershipRecord) -> None:
    if not (desired.of_type(NatTable) or record.nat_namespaces):
        return
    from netdecl.backends.nftables import find_nft  # the backend's own lookup, sbin included

    if find_nft() is None:
        raise EnvironmentProblem(
            "this topology has NAT rules but the nft command is missing: install the "
            "nftables package (apt-get install nftables)")


def _check_kernel_modules(host: Host, desired: Topology) -> None:
    """Refuse, before anything changes, a topology with links of a kind this kernel cannot
    make: one line per kind, naming its module and its links (a create would fail with
    EOPNOTSUPP halfway through the apply, and be rolled back)."""
    wanted: dict[str, list[str]] = {}
    for link in desired.of_type(Link):
        wanted.setdefault(link.kind, []).append(qualify(link.namespace, link.name))
    lines = []
    for name in host.missing_kinds(sorted(wanted)):
        kind = link_kind(name)
        module = kind.module if kind is not None else name
        links = wanted[name]
        shown = ", ".join(links[:3]) + (f" and {len(links) - 3} more" if len(links) > 3 else "")
        lines.append(f"kind {name} ({shown}) needs kernel module {module}, which this kernel "
                     f"does not have: load it (modprobe {module}) or use a kernel built with it")
    if lines:
        raise EnvironmentProblem("\n".join(lines))


# -- confirm, show -------------------------------------------------------------------------------

def confirm(state_root: Path, topology: str | None = None) -> str:
    """Confirm the apply waiting under --confirm-timeout (no lock: that apply holds it)."""
    statedir.secure(state_root, create=False)
    return confirmation.confirm(state_root, topology)


def show(namespaces: list[str] | None = None, host: Host | None = None,
         state_root: Path | None = None) -> Topology:
    """Live state of the given namespaces (default: root and every named one), everything in
    them, netdecl's or not; with ``state_root``, also the NAT rules of netdecl's tables and
    the sysctls topologies manage (their records say where)."""
    with _using(host) as h:
        wanted = [ROOT if ns in ("", "root") else ns
                  for ns in (namespaces or [ROOT, *h.named_namespaces()])]
        existing = set(h.named_namespaces())
        for ns in wanted:
            if ns != ROOT and ns not in existing:
                raise NetdeclError(f"namespace {ns} does not exist (see `ip netns list`)")
        records = []
        if state_root is not None:
            store = RecordStore(state_root)
            records = [store.load(name) for name in store.all_topologies()]
        return observe_all(h, wanted, records)


class _using:
    """The given host (left open: its owner closes it), or a fresh kernel host closed after."""

    def __init__(self, host: Host | None):
        self.host = host
        self.owned = host is None

    def __enter__(self) -> Host:
        if self.host is None:
            self.host = _kernel_host()
        return self.host

    def __exit__(self, *exc: object) -> None:
        if self.owned and self.host is not None:
            self.host.close()
            self.host = None
