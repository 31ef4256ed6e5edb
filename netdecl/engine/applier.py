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
from collections.abc import Callable, Iterable
from typing import Any

from netdecl.backends.host import ALTERNATIVES, BEING_REMOVED, Host
from netdecl.engine.announcements import Announcements
from netdecl.engine.claims import Ticket
from netdecl.engine.executor import Made, execute, put_back
from netdecl.engine.linkup import LateUp
from netdecl.engine.observer import observe_again, observe_for
from netdecl.engine.ownership import identity_of, owns
from netdecl.engine.planner import Plan, adopt, make_plan
from netdecl.engine.planner.plan import Action
from netdecl.engine.state.journal import Journal
from netdecl.engine.state.record import CLAIM_PREFIX, OwnershipRecord, RecordStore
from netdecl.errors import (
    ActionFailed,
    ApplyFailed,
    NetdeclError,
    RollbackFailed,
    VerificationFailed,
)
from netdecl.model import NatTable, NetObject, Sysctl, Topology

FAILPOINT_ENV = "NETDECL_FAIL_AT"
# testing aid: the N-th action of a rollback fails, to prove what exit 4 reports
ROLLBACK_FAILPOINT_ENV = "NETDECL_FAIL_ROLLBACK_AT"
# testing aid: before the N-th action, wait until a line can be read from the FIFO named by
# NETDECL_TEST_PAUSE_FIFO; a test makes a race deterministic by acting while apply waits
PAUSE_ENV = "NETDECL_TEST_PAUSE_BEFORE"
PAUSE_FIFO_ENV = "NETDECL_TEST_PAUSE_FIFO"


class Interrupted(Exception):
    """SIGTERM (or SIGINT) arrived during an apply."""


Progress = Callable[[int, int, Action], None]
# Waits for confirmation after a verified apply; gets a checkpoint to call while waiting (it
# raises Interrupted on SIGTERM/Ctrl-C) and raises NotConfirmed to roll back.
Hold = Callable[[Callable[[], None]], None]


def snapshot_owned(observed: Topology, record: OwnershipRecord) -> Topology:
    """What the topology owns right now, as a desired-state Topology (for rollback)."""
    snap = Topology(name=observed.name)
    snap.extend(o for o in observed.objects.values() if owns(o, observed, record))
    return snap


class Applier:
    """Applies plans on one Host and rolls them back on it."""

    def __init__(self, store: RecordStore, host: Host, progress: Progress | None = None,
                 rollback_progress: Progress | None = None):
        self.store = store
        self.host = host
        self.progress = progress
        # a rollback can take as long as the apply it undoes: it reports its steps too
        self.rollback_progress = rollback_progress

    # -- the main path -------------------------------------------------------------------------
    def apply(self, desired: Topology, plan: Plan, snapshot: Topology,
              hold: Hold | None = None, record: OwnershipRecord | None = None,
              observed: Topology | None = None) -> list[Action]:
        """Execute ``plan``; on failure roll back to ``snapshot`` and raise.

        ``hold`` (for --confirm-timeout) runs after verification while the journal still
        exists; raising NotConfirmed from it rolls everything back like any other failure.
        ``record`` is the one the plan was made with (default: the stored one), ``observed``
        what the plan was made against: given, verification re-reads only the namespaces the
        actions changed. Returns the actions executed."""
        record = record if record is not None else self.store.load(desired.name)
        _share_sysctl_originals(record, desired)
        journal = Journal.begin(self.store.root, desired.name, snapshot, record,
                                total=len(plan.actions))
        executed: list[Action] = []
        announcements = Announcements.for_apply(desired, plan.actions)
        late_up = LateUp()  # veth ends made down, brought up after their run of links
        fail_at = _failpoint()
        pause_at = _failpoint(PAUSE_ENV)
        with _SignalTrap() as trap:
            try:
                for number, action in enumerate(plan.actions, start=1):
                    trap.checkpoint()
                    if late_up.pending and not late_up.defers(action):
                        self._bring_up(late_up, desired.name, trap)
                    if self.progress:
                        self.progress(number, len(plan.actions), action)
                    if pause_at == number:
                        _pause()
                    if fail_at == number:
                        raise ActionFailed(_label(action),
                                           f"injected failure ({FAILPOINT_ENV}={fail_at})")
                    ticket = Ticket()
                    journal.intend(number, action, ticket)
                    trap.in_action = True  # a second signal may cut only an action short
                    try:
                        _execute(action, self.host, desired.name, record, ticket, journal.made,
                                 announcements, late_up)
                    finally:
                        trap.in_action = False
                    journal.step(number, action)
                    executed.append(action)
                self._bring_up(late_up, desired.name, trap)
                self.store.save(record)
                trap.checkpoint()
                self.verify(desired, record, observed, executed)
                trap.checkpoint()  # a signal during verification: not "Verified"
                if hold is not None:
                    hold(trap.checkpoint)
            except BaseException as exc:  # noqa: BLE001 - whatever it was, undo first
                # (an error while re-reading for verification, a full disk for the record, a
                # bug: the host must not be left half-applied, so every exception rolls back)
                # First of all: no signal may stop the rollback half-way (rollback_to then
                # starts afresh: an interrupted request may have left a reply in flight)
                trap.disarm()
                journal.release_reserve()  # the room kept for this rollback (a full disk)
                # RollbackFailed (exit 4) keeps the journal: `netdecl rollback` tries again
                self.rollback_to(snapshot, journal.record_before, current=record, cause=exc,
                                 journal=journal)
                journal.finish()
                raise ApplyFailed(_failure_message(exc, len(executed))) from None
        journal.finish()
        return executed

    def _bring_up(self, late_up: LateUp, topology: str, trap: _SignalTrap) -> None:
        """Bring up the veth ends ``late_up`` holds (a failure is the failure of an action)."""

        def bring_up(down: NetObject, up: NetObject) -> None:
            try:
                self.host.modify(down, up, {"up": (False, True)}, topology)
            except (NetdeclError, OSError) as exc:
                raise ActionFailed(f"bring up {up.describe()}", str(exc)) from None

        trap.in_action = True  # as for an action: a second signal may cut it short
        try:
            late_up.release(bring_up)
        finally:
            trap.in_action = False

    def verify(self, desired: Topology, record: OwnershipRecord,
               before: Topology | None = None, executed: Iterable[Action] = ()) -> None:
        """Re-read the host, nothing cached: the plan toward ``desired`` must be empty. With
        ``before`` (what the plan was made against), only the namespaces the ``executed``
        actions changed are re-read."""
        if before is None:
            self.host.refresh()
            observed = observe_for(self.host, desired, record)
        else:
            observed = observe_again(self.host, desired, record, changed_namespaces(executed),
                                     before)
        remaining = make_plan(desired, observed, record)
        if remaining.actions or remaining.conflicts:
            lines = [f"  {a.op} {a.describe()} {_changes(a)}" for a in remaining.actions]
            lines += [f"  conflict: {c.message}" for c in remaining.conflicts]
            raise VerificationFailed(
                "verification failed: after apply the host still differs from the topology:\n"
                + "\n".join(lines))

    # -- rollback ------------------------------------------------------------------------------
    def rollback_to(self, snapshot: Topology, record_before: OwnershipRecord,
                    current: OwnershipRecord | None = None,
                    cause: BaseException | None = None,
                    journal: Journal | None = None) -> Plan:
        """Reconcile back to ``snapshot``; raise RollbackFailed listing what could not be.

        ``current`` is what the topology owns now (the apply's record, or after a crash the
        journal's claims): only objects whose identity it or ``record_before`` proves are
        changed or deleted. ``journal``: where the rollback's own claims and the identities
        of what it re-makes are written, so that a crash during the rollback is recovered
        too. Whatever stops the rollback itself (the host cannot be read, nft has vanished,
        the record cannot be written) is RollbackFailed too: exit 4, journal kept."""
        try:
            return self._rollback_to(snapshot, record_before, current, cause, journal)
        except RollbackFailed:
            raise
        except Exception as exc:  # noqa: BLE001 - the host may be anything now: say so, exit 4
            reason = f" (after: {cause})" if cause else ""
            what = str(exc) if isinstance(exc, NetdeclError) else f"{type(exc).__name__}: {exc}"
            raise RollbackFailed(f"rollback could not restore everything{reason}: the rollback "
                                 f"itself failed: {what}\nthe journal is kept: `netdecl "
                                 f"rollback` tries again") from None

    def _rollback_to(self, snapshot: Topology, record_before: OwnershipRecord,
                     current: OwnershipRecord | None, cause: BaseException | None,
                     journal: Journal | None) -> Plan:
        record = current if current is not None else self.store.load(snapshot.name)
        merged = rollback_record(record, record_before)
        from netdecl.backends.nftables import NftUnavailable  # (only a rollback needs it)

        problems: list[str] = []
        host = self.host
        host.reconnect()  # nothing learnt before (or half-read when interrupted) is trusted
        if journal is not None:
            # a removal killed between unmount and unlink left /run/netns/NAME as a plain
            # file: finished first, or making NAME again would trip over it (File exists)
            problems += host.remove_placeholders(
                {name: BEING_REMOVED for name in sorted(journal.removing())})
        try:
            observed = observe_for(host, snapshot, merged)
        except NftUnavailable as exc:
            # nft is gone (the apply may have failed for that): restore everything else now,
            # and leave the NAT tables, unread, to `netdecl rollback` once nft is back
            problems.append(f"NAT tables not checked nor restored: {exc}")
            snapshot, merged = _without_nat(snapshot), _without_nat_record(merged)
            observed = observe_for(host, snapshot, merged)
        plan = make_plan(snapshot, observed, merged)
        fail_at = _failpoint(ROLLBACK_FAILPOINT_ENV)
        for number, action in enumerate(plan.actions, start=1):
            if self.rollback_progress:
                self.rollback_progress(number, len(plan.actions), action)
            if fail_at == number:
                problems.append(f"{_label(action)}: injected failure "
                                f"({ROLLBACK_FAILPOINT_ENV}={fail_at})")
                continue
            ticket = Ticket()
            made: Made | None = None
            if journal is not None:
                journal.intend(number, action, ticket, undo=True)
                made = journal.made
            try:
                execute(action, host, snapshot.name, merged, ticket, made)
            except Exception as exc:  # keep going: restore as much as possible
                problems.append(f"{_label(action)}: {exc}")
        # a crash inside a namespace's creation leaves its placeholder file: removed when the
        # journal proves it netdecl's (a mount, or anyone else's file, is never removed here)
        problems += host.remove_placeholders(
            {key[1]: ident for key, ident in merged.identities.items()
             if key[0] == "namespace" and key[1] not in snapshot.namespaces()})
        host.reconnect()
        observed = observe_for(host, snapshot, merged)
        # Last, what adoption overwrote where the planner does not look (a link's ifalias, a
        # route's protocol) is put back on the very objects, those owned now. Only at the end:
        # a route given its old protocol back is no longer netdecl's to reconcile.
        overwritten = adopt.overwritten(snapshot, observed, merged)
        for item in overwritten:
            try:
                put_back(item, host)
            except Exception as exc:  # keep going: restore as much as possible
                problems.append(f"put back {item.describe()}: {exc}")
        if overwritten:
            host.reconnect()
            observed = observe_for(host, snapshot, merged)
        # what was made again is a new kernel object: the record keeps the identities of now
        self.store.save(_identified(record_before, observed, merged, snapshot))
        left = make_plan(snapshot, observed, merged)
        if left.actions:
            problems += [f"not restored: {a.op} {a.describe()} {_changes(a)}"
                         for a in left.actions]
        # An object exactly as the snapshot has it is restored, even if not netdecl's: one that
        # was adopted and is given back (its old alias or protocol again), or whose adoption
        # never ran. Anything else that is not ours at a snapshot name was not restored.
        problems += [f"not restored: {c.message}" for c in left.conflicts
                     if observed.get(c.key) != snapshot.get(c.key)]
        problems += [f"not restored: {item.describe()}"
                     for item in adopt.overwritten(snapshot, observed, merged)]
        if problems:
            reason = f" (after: {cause})" if cause else ""
            raise RollbackFailed("rollback could not restore everything" + reason + ":\n  "
                                 + "\n  ".join(problems)
                                 + "\nthe journal is kept: `netdecl rollback` tries again")
        return plan


def rollback_record(record: OwnershipRecord, record_before: OwnershipRecord) -> OwnershipRecord:
    """What a rollback may touch: everything either record knows about is in scope (and
    owned) while rolling back."""
    merged = record.copy()
    merged.namespaces |= record_before.namespaces
    merged.objects |= record_before.objects
    merged.nat_namespaces |= record_before.nat_namespaces
    for key, value in record_before.sysctl_originals.items():
        merged.sysctl_originals.setdefault(key, value)
    for key, original in record_before.device_originals.items():
        merged.device_originals.setdefault(key, original)
    for key, ident in record_before.identities.items():
        # an object may be as it was before the apply, or as the apply (or an earlier
        # rollback) made it: either identity is ours
        now = merged.identities.get(key)
        if now is None or ident.startswith(CLAIM_PREFIX):
            merged.identities.setdefault(key, ident)  # a claim's time is not an identity
        elif ident not in now.split(ALTERNATIVES):
            merged.identities[key] = f"{now}{ALTERNATIVES}{ident}"
    merged.legacy = merged.legacy or record_before.legacy
    return merged


def _without_nat(snapshot: Topology) -> Topology:
    """``snapshot`` without its NAT tables (a rollback that cannot run nft)."""
    out = Topology(name=snapshot.name)
    out.extend(o for o in snapshot.objects.values() if not isinstance(o, NatTable))
    return out


def _without_nat_record(record: OwnershipRecord) -> OwnershipRecord:
    """``record`` as if it owned no NAT table, so that none is read or planned for."""
    out = record.copy()
    out.nat_namespaces = set()
    return out


def _share_sysctl_originals(record: OwnershipRecord, desired: Topology) -> None:
    """A sysctl another topology manages too: take over its value from before netdecl (not
    the one that topology set), and hand ours over when we stop declaring it."""
    declared = {(o.namespace, o.name) for o in desired.of_type(Sysctl)}
    for key, original in record.shared_sysctls.items():
        if key in declared:
            record.sysctl_originals.setdefault(key, original)
        else:
            record.sysctl_originals.pop(key, None)


def changed_namespaces(actions: Iterable[Action]) -> set[str]:
    """Every namespace an action made, changed or deleted something in (both ends of a
    veth; a namespace itself counts as in itself)."""
    changed = set()
    for action in actions:
        changed.add(action.key[1])
        changed |= {obj.namespace for obj in (action.before, action.after, action.peer_before,
                                              action.peer_after) if obj is not None}
    return changed


def _execute(action: Action, host: Host, topology: str, record: OwnershipRecord,
             ticket: Ticket, made: Made, announcements: Announcements,
             late_up: LateUp | None = None) -> None:
    """One action; every way it can fail becomes ActionFailed naming it and the cause."""
    try:
        execute(action, host, topology, record, ticket, made, announcements, late_up)
    except (NetdeclError, OSError) as exc:  # kernel, nft, sysctl and file errors
        raise ActionFailed(_label(action), str(exc)) from None


def _failure_message(exc: BaseException, done: int) -> str:
    reason = str(exc)
    if isinstance(exc, KeyboardInterrupt):
        reason = "interrupted (Ctrl-C)"
    elif not isinstance(exc, (NetdeclError, Interrupted)):
        reason = f"{type(exc).__name__}: {exc}"  # unexpected: name it, it is likely a bug
    return (f"apply failed: {reason}\nrolled back: the {done} action(s) done before the "
            f"failure were undone; the host is as it was before this apply")


def _identified(record_before: OwnershipRecord, observed: Topology, merged: OwnershipRecord,
                snapshot: Topology) -> OwnershipRecord:
    """The record after a rollback: the one from before the apply, with the identities of the
    snapshot's objects as they are now (an object the rollback made again - a deleted link,
    namespace or table - is a new kernel object). Only of objects it owned: what an adopting
    apply took over is in the snapshot too, and goes back to being nobody's."""
    restored = record_before.copy()
    for key in snapshot.objects:
        now = observed.get(key)
        ident = identity_of(now) if now is not None else None
        if ident and now is not None and key in record_before.identities \
                and key in merged.identities and owns(now, observed, merged):
            restored.identities[key] = ident
    return restored


def _pause() -> None:
    """The test hook PAUSE_ENV: block until a line arrives on the FIFO (see README)."""
    path = os.environ.get(PAUSE_FIFO_ENV)
    if path:
        with open(path) as fifo:
            fifo.readline()


def _label(action: Action) -> str:
    return f"{action.op} {action.describe()}"


def _changes(action: Action) -> str:
    if not action.changes:
        return ""
    return "(" + ", ".join(f"{k}: {v[0]!r} -> {v[1]!r}" for k, v in action.changes.items()) + ")"


def _failpoint(env: str = FAILPOINT_ENV) -> int | None:
    value = os.environ.get(env)
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        return None


class _SignalTrap:
    """SIGTERM and SIGINT during an apply: noted, and acted on at the next action boundary
    (checkpoint), so an action is never cut in half in-process (a namespace half-mounted, a
    link created but not yet marked). A second signal while an action hangs raises at once;
    anywhere else (verification, the rollback, closing sockets) it changes nothing more: the
    first one already decided that the apply is rolled back."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.received: int | None = None
        self.armed = True  # a second signal may raise (to cut a hanging action short)
        self.in_action = False
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> _SignalTrap:
        for signum in self.SIGNALS:
            try:
                self.previous[signum] = signal.signal(signum, self._handler)
            except ValueError:  # not the main thread (tests calling in-process)
                pass
        return self

    def _handler(self, signum: int, frame: object) -> None:
        if self.received is None:
            self.received = signum
            return
        if self.armed and self.in_action:
            # Only inside an action (one that hangs must be cut short), and only once: so this
            # raise can never land in the rollback that follows, nor in the code leading to it
            self.armed = False
            raise Interrupted(f"interrupted by {signal.Signals(signum).name} (twice)")

    def checkpoint(self) -> None:
        if self.received is not None:
            raise Interrupted(f"interrupted by {signal.Signals(self.received).name}")

    def disarm(self) -> None:
        """From now on SIGTERM/SIGINT are ignored: the rollback must finish."""
        self.armed = False
        for signum in self.previous:
            signal.signal(signum, signal.SIG_IGN)

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
