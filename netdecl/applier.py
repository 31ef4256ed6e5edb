"""Apply a plan: journal, execute, verify; on any failure reconcile back to the snapshot.

Rollback is not a list of per-action inverses. Before the first action we snapshot everything
the topology owns (in the same model the loader produces) and write it to a journal. Rolling
back is then one more reconcile, toward that snapshot, with the same planner and executor. The
one mechanism serves a kernel error, Ctrl-C/SIGTERM, `netdecl rollback` after a crash, and an
unconfirmed --confirm-timeout.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field

from .backends.netlink import Kernel, KernelError
from .backends.sysctl import SysctlError
from .errors import ActionFailed, NetdeclError, RollbackFailed
from .executor import execute
from .journal import Journal
from .model import Address, Link, Namespace, NatTable, Sysctl, Topology
from .observer import observe, scope_for
from .planner import Plan, make_plan
from .planner.plan import Action
from .state import OwnershipRecord, RecordStore

FAILPOINT_ENV = "NETDECL_FAIL_AT"


class Interrupted(Exception):
    """SIGTERM (or SIGINT) arrived during an apply."""


class VerificationFailed(NetdeclError):
    pass


class ApplyFailed(NetdeclError):
    """An apply failed and was rolled back completely (exit 1)."""


@dataclass
class ApplyResult:
    executed: list[Action] = field(default_factory=list)


Progress = Callable[[int, int, Action], None]


def observe_for(kernel: Kernel, desired: Topology, record: OwnershipRecord) -> Topology:
    return observe(kernel, desired.name, scope_for(desired, record))


def snapshot_owned(observed: Topology, record: OwnershipRecord) -> Topology:
    """What the topology owns right now, as a desired-state Topology (for rollback)."""
    name = observed.name
    snap = Topology(name=name)
    owned_links = {o.key for o in observed.of_type(Link) if o.owner == name}
    for o in observed.objects.values():
        if isinstance(o, Namespace):
            keep = o.namespace in record.namespaces
        elif isinstance(o, Link):
            keep = o.key in owned_links
        elif isinstance(o, Address):
            keep = ("link", o.namespace, o.link) in owned_links
        elif isinstance(o, (Sysctl, NatTable)):
            keep = True  # only managed sysctls and netdecl's own table are observed
        else:
            keep = record.owns(o.key)
        if keep:
            snap.add(o)
    return snap


class Applier:
    def __init__(self, store: RecordStore, progress: Progress | None = None):
        self.store = store
        self.progress = progress

    # -- the main path -------------------------------------------------------------------------
    def apply(self, desired: Topology, plan: Plan, kernel: Kernel,
              snapshot: Topology) -> ApplyResult:
        """Execute ``plan``; on failure roll back to ``snapshot`` and raise."""
        record = self.store.load(desired.name)
        journal = Journal.begin(self.store.root, desired.name, snapshot, record)
        result = ApplyResult()
        fail_at = _failpoint()
        previous = _trap_sigterm()
        try:
            for number, action in enumerate(plan.actions, start=1):
                if self.progress:
                    self.progress(number, len(plan.actions), action)
                if fail_at == number:
                    raise ActionFailed(_label(action),
                                       f"injected failure ({FAILPOINT_ENV}={fail_at})")
                try:
                    execute(action, kernel, desired.name, record,
                            lambda: self.store.save(record))
                except (KernelError, SysctlError, OSError) as exc:
                    raise ActionFailed(_label(action), str(exc)) from None
                except Exception as exc:  # nft errors and the like: still a failed action
                    if type(exc).__name__ in ("NftError", "NftUnavailable"):
                        raise ActionFailed(_label(action), str(exc)) from None
                    raise
                journal.step(number, action)
                result.executed.append(action)
            self.store.save(record)
            self.verify(desired, record)
        except (ActionFailed, VerificationFailed, Interrupted, KeyboardInterrupt) as exc:
            _restore_sigterm(previous)
            kernel.close()
            self.rollback_to(snapshot, journal.record_before, cause=exc)
            journal.finish()
            done = len(result.executed)
            raise ApplyFailed(
                f"apply failed: {exc}\nrolled back: the {done} action(s) done before the "
                f"failure were undone; the host is as it was before this apply") from None
        _restore_sigterm(previous)
        journal.finish()
        return result

    def verify(self, desired: Topology, record: OwnershipRecord) -> None:
        """Re-read the kernel with fresh sockets: the plan toward ``desired`` must be empty."""
        with Kernel() as fresh:
            observed = observe_for(fresh, desired, record)
        remaining = make_plan(desired, observed, record)
        if remaining.actions or remaining.conflicts:
            lines = [f"  {a.op} {a.describe()} {_changes(a)}" for a in remaining.actions]
            lines += [f"  conflict: {c.message}" for c in remaining.conflicts]
            raise VerificationFailed(
                "verification failed: after apply the host still differs from the topology:\n"
                + "\n".join(lines))

    # -- rollback ------------------------------------------------------------------------------
    def rollback_to(self, snapshot: Topology, record_before: OwnershipRecord,
                    cause: BaseException | None = None) -> Plan:
        """Reconcile back to ``snapshot``; raise RollbackFailed listing what could not be."""
        record = self.store.load(snapshot.name)
        # everything either record knows about is in scope (and owned) while rolling back
        merged = record.copy()
        merged.namespaces |= record_before.namespaces
        merged.objects |= record_before.objects
        merged.nat_namespaces |= record_before.nat_namespaces
        for key, value in record_before.sysctl_originals.items():
            merged.sysctl_originals.setdefault(key, value)
        problems: list[str] = []
        with Kernel() as kernel:
            observed = observe_for(kernel, snapshot, merged)
            plan = make_plan(snapshot, observed, merged)
            for action in plan.actions:
                try:
                    execute(action, kernel, snapshot.name, merged, lambda: None)
                except Exception as exc:  # keep going: restore as much as possible
                    problems.append(f"{_label(action)}: {exc}")
        self.store.save(record_before)
        with Kernel() as kernel:
            observed = observe_for(kernel, snapshot, merged)
            left = make_plan(snapshot, observed, merged)
        if left.actions:
            problems += [f"not restored: {a.op} {a.describe()} {_changes(a)}"
                         for a in left.actions]
        if problems:
            reason = f" (after: {cause})" if cause else ""
            raise RollbackFailed("rollback could not restore everything" + reason + ":\n  "
                                 + "\n  ".join(problems))
        return plan


def _label(action: Action) -> str:
    return f"{action.op} {action.describe()}"


def _changes(action: Action) -> str:
    if not action.changes:
        return ""
    return "(" + ", ".join(f"{k}: {v[0]!r} -> {v[1]!r}" for k, v in action.changes.items()) + ")"


def _failpoint() -> int | None:
    value = os.environ.get(FAILPOINT_ENV)
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _trap_sigterm():
    def handler(signum, frame):
        raise Interrupted(f"interrupted by signal {signum}")

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (tests calling in-process)
        return None


def _restore_sigterm(previous) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)
