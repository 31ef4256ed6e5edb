"""The agent's loop: keep the host matching the topology files, from events, not polling.

One thread, one poll over: a netlink socket per namespace in scope (events.py), the files and
/run/netns (files.py), and a self-pipe for signals. A change marks the topologies it concerns;
after a short quiet time (debounce) each marked topology is reconciled through the service's
normal apply: the same host lock (taken only for the apply, never while idle), journal,
verification and rollback as `netdecl apply`, called the same way (netdecl.api). A full resync
every --resync seconds catches
what sends no events (sysctls, a change while a socket was being opened).

Signals: SIGTERM and SIGINT stop the agent (exit 0), leaving the host as it is: stopping
destroys nothing. A signal that arrives during an apply is the apply's own business (see
engine/applier.py): it finishes the current action, rolls that apply back to the state before
it, and then the agent stops. For a repair, that is the drifted state it started from, which
the next start repairs. SIGHUP re-reads the files and forgets every back-off.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import selectors
import signal
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netdecl import api
from netdecl.agent.backoff import Backoff, hold_back
from netdecl.agent.events import NFTABLES, ROUTE, Change, KernelWatch, Subscription
from netdecl.agent.files import POLL_INTERVAL, FileWatch
from netdecl.agent.log import AgentLog
from netdecl.agent.metrics import AgentMetrics
from netdecl.agent.notify import Notifier
from netdecl.backends import namespaces
from netdecl.engine.state.statedir import lock_path
from netdecl.errors import (
    ApplyFailed,
    Diagnostic,
    EnvironmentProblem,
    InvalidTopology,
    NetdeclError,
    RollbackFailed,
    VerificationFailed,
)
from netdecl.exitcodes import ExitStatus
from netdecl.model import ROOT, Topology
from netdecl.topology.loader import read_file

DEBOUNCE = 0.05  # quiet time after the last event before re-planning (a change is a burst)
DEBOUNCE_MAX = 0.2  # ...but never later than this after the first event of the burst
LOCK_WAIT = 0.5  # how long one apply waits for the host lock; the loop retries after that
LOCK_RETRY = 0.2
FAILURE_RETRY_MAX = 30.0
TOPOLOGY_SUFFIXES = (".yaml", ".yml")
# a repair line names its actions (a removed link or address is worth seeing) up to this many;
# a deleted namespace can bring hundreds, listed whole on a debug line
REPAIRS_LISTED = 10

# Why a topology is due for a reconcile. Repairs after drift count against the object's
# back-off; applying an edited file does not (that change is wanted).
START, FILE, DRIFT, RESYNC, RELEASED = "start", "file", "drift", "resync", "backoff-ended"
INTENDED = (START, FILE)


@dataclass
class Source:
    """One topology file and what the agent knows of it."""

    path: Path
    desired: Topology | None = None  # the last version that loaded
    digest: str = ""
    pending: str | None = None  # why a reconcile is due (None: nothing to do)
    what: str = ""  # the first change seen since the last reconcile, for the log
    first_change: float = 0.0
    last_change: float = 0.0
    retry_at: float = 0.0
    failures: int = 0
    # the last version applied and verified: while a newer one fails (a conflict) and waits
    # out its back-off, drift of this one is still repaired (see _repair_last_applied)
    applied: Topology | None = None
    drifted: bool = False  # the kernel changed in its scope since the last reconcile
    repair_after: float = 0.0  # a repair of ``applied`` failed: not again before this
    # a rollback could not restore everything: its journal is kept, and the exit status says so
    broken: bool = False
    invalid: bool = False  # its current content was refused (the last good version stays)
    scope: set[str] = field(default_factory=set)  # namespaces its plan reads
    included: tuple[Path, ...] = ()  # the files a templated topology includes

    @property
    def name(self) -> str:
        return self.desired.name if self.desired is not None else str(self.path)


def _digest(data: bytes, included: Iterable[Path]) -> str:
    """Of a file and the files it includes (one missing now: that, too, is a change)."""
    digest = hashlib.sha256(data)
    for path in included:
        try:
            digest.update(read_file(str(path)))
        except InvalidTopology:
            digest.update(b"\0missing")
    return digest.hexdigest()


def expand(paths: Iterable[str]) -> tuple[list[Path], list[Path]]:
    """(topology files, directories given): a directory stands for its *.yaml/*.yml files."""
    files: list[Path] = []
    directories: list[Path] = []
    for text in paths:
        path = Path(text).absolute()
        if path.is_dir():
            directories.append(path)
            files += sorted(p for p in path.iterdir()
                            if p.suffix in TOPOLOGY_SUFFIXES and p.is_file())
        else:
            files.append(path)
    return list(dict.fromkeys(files)), directories


class Agent:
    def __init__(self, paths: list[str], state_root: Path, *, resync: float = 60.0,
                 log: AgentLog | None = None, metrics: AgentMetrics | None = None,
                 variables: dict[str, Any] | None = None,
                 notifier: Notifier | None = None):
        self.paths = paths
        self.variables = variables or {}  # --var: for templates, every file takes them
        self.state_root = state_root
        self.resync = resync
        self.log = log or AgentLog()
        self.metrics = metrics or AgentMetrics()
        # systemd (Type=notify): READY=1 once every file had its first reconcile, WATCHDOG=1
        self.notifier = notifier or Notifier()
        self.first_reconcile: set[Path] | None = None  # the files still waiting for theirs
        self.next_ping = 0.0
        self.backoff = Backoff()
        self.kernel = KernelWatch()
        self.sources: dict[Path, Source] = {}
        self.included: dict[Path, set[Path]] = {}  # an included file -> the files including it
        self.directories: list[Path] = []
        self.selector = selectors.DefaultSelector()
        self.files: FileWatch | None = None
        self.stopping = False
        self.reload_requested = False
        self.held_before: set[Any] = set()
        self.lock_waiting: set[Path] = set()
        self.watch_problems: set[str] = set()
        self.refused_at_start: list[tuple[Source, InvalidTopology]] = []
        self._wakeup: tuple[socket.socket, socket.socket] | None = None
        self._previous_handlers: dict[int, Any] = {}

    # -- start and stop ----------------------------------------------------------------------
    def load(self) -> None:
        """Load every file; raises InvalidTopology (the named files' problems) or NetdeclError.

        A file found in a directory that is invalid at start is refused the way a bad edit
        is (logged, counted in netdecl_invalid_files, watched until it is mended) and the
        others go on: one bad file dropped into /etc/netdecl must not stop the agent for
        every topology, nor make its unit restart it forever. A file named on the command
        line is the user's typo to see at once: exit 3, nothing changed."""
        files, self.directories = expand(self.paths)
        if not files:
            raise NetdeclError("no topology files: the directories given hold no *.yaml")
        named = {Path(text).absolute() for text in self.paths} - set(self.directories)
        problems = []
        refused: list[tuple[Source, InvalidTopology]] = []
        for path in files:
            source = Source(path)
            try:
                self._read(source)
            except InvalidTopology as exc:
                if path in named:
                    problems += exc.diagnostics
                else:
                    refused.append((source, exc))
            self.sources[path] = source
        if problems:
            raise InvalidTopology(problems)
        self.refused_at_start = refused  # logged by run(), after the "started" line
        names: dict[str, Path] = {}
        for source in self.sources.values():
            other = names.setdefault(source.name, source.path)
            if other != source.path:
                raise NetdeclError(f"{other} and {source.path} both declare topology "
                                   f"{source.name!r}: each topology needs its own name")

    def run(self, metrics_listen: str | None = None) -> int:
        """Apply, then keep the host matching until SIGTERM/SIGINT. Returns the exit status."""
        self._install_signals()
        try:
            # /ready waits for every topology's first successful reconcile
            self.metrics.not_ready = {s.name for s in self.sources.values()}
            if metrics_listen:
                self.metrics.serve(metrics_listen)
            self.files = FileWatch([s.path for s in self.sources.values()] + list(self.included),
                                   [*self.directories, Path(namespaces.NETNS_RUN_DIR)])
            if self.files.problem:
                self.log("watching", self.files.problem, level="warning")
            if self.files.fileno is not None:
                self.selector.register(self.files.fileno, selectors.EVENT_READ, "files")
            now = time.monotonic()
            for source in self.sources.values():
                self._mark(source, START, "start", now - DEBOUNCE_MAX)
            self.first_reconcile = set(self.sources)
            self.metrics.up.set(1)
            self.metrics.managed_objects.set(self._managed_objects())
            self.log("started", f"agent for {', '.join(s.name for s in self.sources.values())}"
                     f" (resync every {self.resync:g}s)",
                     topologies=[s.name for s in self.sources.values()], pid=os.getpid())
            for source, exc in self.refused_at_start:
                self._refuse_edit(source, exc, "file")
            status = self._loop()
        finally:
            self.metrics.up.set(0)
            self.notifier.stopping()
            self._unregister_kernel()
            self.kernel.close()
            if self.files is not None:
                self.files.close()
            self.metrics.close()
            self._restore_signals()
        return status

    def _install_signals(self) -> None:
        reader, writer = socket.socketpair()
        reader.setblocking(False)
        writer.setblocking(False)
        self._wakeup = (reader, writer)
        signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            # the handler does nothing: the wakeup fd carries the signal's number to the loop,
            # which also sees signals that arrived while an apply's own handlers were in place
            self._previous_handlers[signum] = signal.signal(signum, _note_signal)
        self.selector.register(reader, selectors.EVENT_READ, "signals")

    def _restore_signals(self) -> None:
        signal.set_wakeup_fd(-1)
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        if self._wakeup is not None:
            for sock in self._wakeup:
                sock.close()
            self._wakeup = None

    # -- the loop ----------------------------------------------------------------------------
    def _loop(self) -> int:
        next_resync = time.monotonic() + self.resync
        self._sync_watches()
        while True:
            now = time.monotonic()
            for key, _ in self.selector.select(self._timeout(now, next_resync)):
                self._dispatch(key.data)
            self._read_signals()
            if self.stopping:
                break
            now = time.monotonic()
            if self.reload_requested:
                self._reload_all(now)
            if self.files is not None and self.files.polling:
                self._files_changed(self.files.changed(), now)
            if now >= next_resync:
                next_resync = now + self.resync
                for source in self.sources.values():
                    self._mark(source, RESYNC, "periodic resync", now)
            self._mark_released(now)
            for source in list(self.sources.values()):
                if self._due(source, time.monotonic()):
                    self._reconcile(source)
                    self._read_signals()
                    if self.stopping:
                        break
            if self.stopping:
                break
            self._update_gauges()
            self._notify(time.monotonic())
        broken = [s.name for s in self.sources.values() if s.broken]
        self.log("stopped", "the host is left as it is (nothing destroyed)"
                 + (f"; a rollback of {', '.join(broken)} could not restore everything: "
                    f"`netdecl rollback` finishes it" if broken else ""))
        return int(ExitStatus.ROLLBACK_FAILED if broken else ExitStatus.OK)

    def _timeout(self, now: float, next_resync: float) -> float:
        wake = [next_resync]
        for source in self.sources.values():
            if source.pending is not None:
                wake.append(max(source.retry_at, min(source.last_change + DEBOUNCE,
                                                     source.first_change + DEBOUNCE_MAX)))
        release = self.backoff.next_release(now)
        if release is not None:
            wake.append(release)
        if self.files is not None and self.files.polling:
            wake.append(now + POLL_INTERVAL)
        if self.notifier.watchdog_interval is not None:
            wake.append(self.next_ping)
        return max(0.0, min(wake) - now)

    def _due(self, source: Source, now: float) -> bool:
        if source.pending is None:
            return False
        if now < source.retry_at and not _repairs_last_applied(source, now):
            return False
        return now >= min(source.last_change + DEBOUNCE, source.first_change + DEBOUNCE_MAX)

    def _mark(self, source: Source, reason: str, what: str, now: float) -> None:
        source.drifted = source.drifted or reason == DRIFT
        if source.pending is None:
            source.pending, source.what, source.first_change = reason, what, now
        elif reason in INTENDED and source.pending not in INTENDED:
            source.pending = reason  # an edited file wins: that apply is wanted, not a repair
        source.last_change = now

    def _dispatch(self, data: Any) -> None:
        now = time.monotonic()
        if data == "signals":
            return  # read right after the poll, see _read_signals
        if data == "files":
            assert self.files is not None
            self._files_changed(self.files.changed(), now)
            return
        change = self.kernel.read(data)
        if change is not None:
            self._kernel_changed(change, now)

    def _read_signals(self) -> None:
        if self._wakeup is None:
            return
        while True:
            try:
                data = self._wakeup[0].recv(64)
            except BlockingIOError:
                return
            if not data:
                return
            for signum in data:
                if signum in (signal.SIGTERM, signal.SIGINT):
                    if not self.stopping:
                        self.log("stopping", f"got {signal.Signals(signum).name}")
                    self.stopping = True
                elif signum == signal.SIGHUP:
                    self.reload_requested = True

    # -- what changed ------------------------------------------------------------------------
    def _kernel_changed(self, change: Change, now: float) -> None:
        where = change.namespace or "root"
        for source in self.sources.values():
            if change.namespace in source.scope:
                self._mark(source, DRIFT, f"{change.what} in {where}", now)

    def _files_changed(self, paths: set[Path], now: float) -> None:
        if not paths:
            return
        netns_dir = Path(namespaces.NETNS_RUN_DIR).absolute()
        if netns_dir in paths:
            self._namespaces_changed(now)
        if any(p in self.directories for p in paths):
            self._rescan_directories(now)
        for path in paths:
            source = self.sources.get(path)
            if source is not None:
                if _new_version(source):
                    # a new version is a new attempt: the back-off of the old one's failures
                    # is not its to wait out (the fix of a conflict applies in a second)
                    source.failures, source.retry_at = 0, 0.0
                self._mark(source, FILE, f"{path} changed", now)
            for root in self.included.get(path, ()):
                if root in self.sources:
                    self._mark(self.sources[root], FILE, f"{path} (included) changed", now)

    def _namespaces_changed(self, now: float) -> None:
        """/run/netns changed: a namespace deleted must lose its sockets at once (they would
        keep it, and every veth end in it, alive); one created in scope must be watched."""
        existing = set(namespaces.list_named())
        vanished = {ns for ns in self.kernel.namespaces() if ns != ROOT and ns not in existing}
        if vanished:
            self._unregister_kernel()
            for ns in vanished:
                self.kernel.close_namespace(ns)
            self._register_kernel()
        watched = self.kernel.namespaces()
        for source in self.sources.values():
            gone = source.scope & vanished
            appeared = {ns for ns in source.scope & existing if ns not in watched}
            if gone or appeared:
                what = (f"namespace {sorted(gone)[0]} deleted" if gone
                        else f"namespace {sorted(appeared)[0]} appeared")
                self._mark(source, DRIFT, what, now)

    def _rescan_directories(self, now: float) -> None:
        files, _ = expand(str(d) for d in self.directories)
        in_dirs = {p for p in self.sources if p.parent in self.directories}
        for path in set(files) - set(self.sources):
            source = self.sources[path] = Source(path)
            self._mark(source, FILE, f"{path} added", now)
            if self.files is not None:
                self.files.paths.add(path)
        for path in in_dirs - set(files):
            source = self.sources.pop(path)
            self.log("unmanaged", f"{path} was removed: topology {source.name} is no longer "
                     f"watched; what it made stays (netdecl destroy removes it)",
                     level="warning", topology=source.name, file=str(path))

    def _mark_released(self, now: float) -> None:
        held = self.backoff.held(now)
        released = self.held_before - held
        self.held_before = held
        for topology in {name for name, _ in released}:
            for source in self.sources.values():
                if source.name == topology:
                    self._mark(source, RELEASED, "a back-off ended", now)

    def _reload_all(self, now: float) -> None:
        self.reload_requested = False
        self.backoff.forget()
        self.log("reload", "SIGHUP: re-reading the files; back-offs forgotten")
        if self.directories:
            self._rescan_directories(now)
        for source in self.sources.values():
            self._mark(source, FILE, "SIGHUP", now)

    # -- one topology ------------------------------------------------------------------------
    def _read(self, source: Source) -> bool:
        """(Re)load the file; True if its content changed. Raises InvalidTopology."""
        data = read_file(str(source.path))
        digest = _digest(data, source.included)
        if digest == source.digest and source.desired is not None:
            source.invalid = False  # back to the last good version
            return False
        topology = api.load(text=data, name=str(source.path), variables=self.variables)
        # a template's includes: their text is part of what the file says, and is watched
        source.included = tuple(Path(f).absolute() for f in topology.sources
                                if Path(f).absolute() != source.path)
        digest = _digest(data, source.included)
        for included in source.included:
            self.included.setdefault(included, set()).add(source.path)
            if self.files is not None:
                self.files.add(included)
        clash = [s.path for s in self.sources.values()
                 if s is not source and s.desired is not None and s.name == topology.name]
        if clash:
            raise InvalidTopology([_whole_file(source.path, f"topology {topology.name!r} is "
                                                            f"already declared by {clash[0]}")])
        if source.desired is not None and topology.name != source.desired.name:
            self.log("renamed", f"{source.path} now declares {topology.name!r}: "
                     f"{source.desired.name!r} is no longer watched; what it made stays",
                     level="warning", file=str(source.path), topology=topology.name)
        source.desired, source.digest, source.invalid = topology, digest, False
        for warning in topology.warnings:
            self.log("warning", warning, level="warning", file=str(source.path))
        return True

    def _reconcile(self, source: Source) -> None:
        """Bring one topology's host state back to its file. Never raises for a failure of
        the apply: that is logged, counted and retried."""
        if time.monotonic() < source.retry_at:
            self._repair_last_applied(source)  # the failed version's retry stays pending
            return
        reason, what, first = source.pending, source.what, source.first_change
        source.pending, source.drifted = None, False
        if self.first_reconcile is not None:
            self.first_reconcile.discard(source.path)
        if reason is None:
            return  # nothing pending (the loop reconciles only sources with a reason)
        if reason == FILE:
            try:
                self._read(source)
            except InvalidTopology as exc:
                self._refuse_edit(source, exc)
                if source.desired is None:
                    return
                reason = DRIFT  # keep the last good version applied all the same
        if source.desired is None:
            return
        desired = source.desired
        try:
            target = self._held_back(desired)
            if target is None:
                return
            started = time.monotonic()
            planned: list[api.Plan] = []
            try:
                result = api.apply(target, state_dir=self.state_root, lock_timeout=LOCK_WAIT,
                                   events=self._events(planned.append))
            finally:
                self.metrics.apply_duration.observe(time.monotonic() - started)
        except api.PlanConflicts as exc:
            lines = [c.message for c in exc.plan.conflicts]
            self._failed(source, reason, "conflict", "refused: the plan has conflicts "
                                "(declared objects netdecl does not own); nothing was changed: "
                                + "; ".join(lines), conflicts=lines)
        except RollbackFailed as exc:
            source.broken = True
            self._failed(source, reason, "rollback_failed", str(exc))
        except ApplyFailed as exc:
            if reason not in INTENDED and isinstance(exc.__context__, VerificationFailed):
                # what it repaired was undone again before it could verify: that is a repeat
                # too, and counts toward the objects' back-off
                for action in planned[0].actions if planned else ():
                    self._count_repair(desired.name, action, time.monotonic())
            self._failed(source, reason, "failed", str(exc))
        except EnvironmentProblem as exc:
            if _lock_busy(self.state_root):
                self._wait_for_lock(source, reason, what, first, str(exc))
            else:
                self._failed(source, reason, "error", str(exc))
        except (NetdeclError, OSError) as exc:
            self._failed(source, reason, "error", str(exc))
        else:
            source.applied = desired
            self._succeeded(source, reason, what, first, result)

    def _held_back(self, desired: Topology) -> Topology | None:
        """``desired`` with the objects whose repair backs off left as they are (hold_back);
        None when they are all there is to do."""
        now = time.monotonic()
        held = {key for name, key in self.backoff.held(now) if name == desired.name}
        if not held:
            return desired
        plan = api.plan(desired, state_dir=self.state_root)
        wanted = [a for a in plan.actions if a.key not in held]
        if not wanted and not plan.conflicts:
            if plan.actions:
                self._log_held(desired.name, plan.actions, now)
            return None
        return hold_back(desired, plan, held)

    def _repair_last_applied(self, source: Source) -> None:
        """A newer version of the file failed (a conflict with a foreign object) and waits out
        its back-off: meanwhile the last version applied is what is on the host, and drift of
        it is repaired as usual (object back-offs included)."""
        source.drifted = False
        applied = source.applied
        if applied is None:
            return
        started = time.monotonic()
        try:
            target = self._held_back(applied)
            if target is None:
                return
            result = api.apply(target, state_dir=self.state_root, lock_timeout=LOCK_WAIT,
                               events=self._events(lambda _: None))
        except (NetdeclError, OSError) as exc:
            # not again before the new version's retry: a failed apply's rollback makes
            # events of its own, which must not start the next attempt at once
            source.repair_after = source.retry_at
            self.log("failed", f"{applied.name}: repairing the last applied version (while "
                     f"the new one waits to be retried) failed: {exc}", level="error",
                     topology=applied.name)
            return
        if result.executed:
            lines = [a.text() for a in result.executed]
            self.metrics.drift_repairs.inc(len(lines))
            shown, more = _listed(lines)
            self.log("repaired", f"{applied.name}: repaired {len(lines)} object(s) of the last "
                     f"applied version (the new one waits to be retried): {shown}",
                     topology=applied.name, reason=DRIFT, actions=lines[:REPAIRS_LISTED],
                     more=more, kinds=_kinds(result.executed),
                     ms=round((time.monotonic() - started) * 1000))
            self._log_all_actions(applied.name, lines, more)
            for action in result.executed:  # a fight over them backs off as usual
                self._count_repair(applied.name, action, time.monotonic())
        self._sync_watches()

    def _succeeded(self, source: Source, reason: str, what: str, first: float,
                   result: api.ApplyResult[api.Plan, api.Action]) -> None:
        name = source.name
        source.failures, source.retry_at, source.broken = 0, 0.0, False
        self.lock_waiting.discard(source.path)
        self.metrics.last_apply.set(time.time())
        for recovered in result.recovered:
            self.log("recovered", f"an interrupted apply of {recovered!r} was rolled back "
                     f"first (its journal was left)", level="warning", topology=recovered)
        executed = result.executed
        if self.metrics.not_ready is not None:
            # a file refused at start waited under its path: it had no topology name yet
            self.metrics.not_ready.difference_update({name, str(source.path)})
        self.metrics.applies.labels(result="changed" if executed else "unchanged").inc()
        if executed:
            done = time.monotonic()
            lines = [a.text() for a in executed]
            latency_ms = round((done - first) * 1000)
            if reason in INTENDED:
                # counts: a cold apply of a 1000-namespace star is thousands of actions, and
                # one line listing them all (~70 KB) drowns a journal; the list is a debug line
                add, change, destroy = result.counts()
                counts = {"add": add, "change": change, "destroy": destroy,
                          "adopt": result.plan.adoptions()}
                kinds = _kinds(executed)
                self.log("applied", f"{name}: applied {len(executed)} change(s) "
                         f"({reason}: {what}): {add} added, {change} changed, {destroy} "
                         f"destroyed ("
                         + ", ".join(f"{kind} {n}" for kind, n in kinds.items()) + ")",
                         topology=name, reason=reason, counts=counts, kinds=kinds,
                         ms=latency_ms)
                self.log("applied-actions", f"{name}: " + "; ".join(lines), level="debug",
                         topology=name, actions=lines)
            else:
                self.metrics.drift_repairs.inc(len(executed))
                shown, more = _listed(lines)
                self.log("repaired", f"{name}: repaired {len(executed)} object(s) "
                         f"{latency_ms} ms after {what}: {shown}", topology=name,
                         reason=reason, trigger=what, actions=lines[:REPAIRS_LISTED],
                         more=more, kinds=_kinds(executed), ms=latency_ms)
                self._log_all_actions(name, lines, more)
                for action in executed:
                    self._count_repair(name, action, done)
        self._sync_watches()

    def _log_all_actions(self, topology: str, lines: list[str], more: int) -> None:
        """Every action of a long repair, on a debug line (the info line lists the first)."""
        if more:
            self.log("repaired-actions", f"{topology}: " + "; ".join(lines), level="debug",
                     topology=topology, actions=lines)

    def _count_repair(self, topology: str, action: api.Action, now: float) -> None:
        delay = self.backoff.repaired((topology, action.key), now)
        if delay:
            self.log("backoff", f"{topology}: {action.object} drifted again soon after "
                     f"its last repair (another program changes it too?); its next repair "
                     f"waits {delay:g}s", level="warning", topology=topology,
                     object=action.object, delay=delay)

    def _log_held(self, topology: str, actions: Iterable[api.Action], now: float) -> None:
        release = self.backoff.next_release(now) or now
        objects = [a.object for a in actions]
        self.log("held", f"{topology}: drift of {', '.join(objects)} "
                 f"left for now (backing off, {release - now:.1f}s to go)", topology=topology,
                 objects=objects)

    def _failed(self, source: Source, reason: str, result: str, message: str,
                **fields: Any) -> None:
        source.failures += 1
        delay = min(2.0 ** (source.failures - 1), FAILURE_RETRY_MAX, self.resync)
        source.retry_at = time.monotonic() + delay
        self._mark(source, reason, f"retry after a failure ({result})", time.monotonic())
        self.lock_waiting.discard(source.path)
        self.metrics.applies.labels(result=result).inc()
        self.metrics.up.set(0)
        self.log(result.replace("_", "-"), f"{source.name}: {message} (retrying in {delay:g}s)",
                 level="error", topology=source.name, retry_in=delay, **fields)
        self._sync_watches()  # the rollback may have changed what exists

    def _wait_for_lock(self, source: Source, reason: str, what: str, first: float,
                       message: str) -> None:
        if source.path not in self.lock_waiting:
            self.log("waiting", f"{source.name}: {message}; retrying", topology=source.name)
            self.lock_waiting.add(source.path)
        self._mark(source, reason, what, first)
        source.retry_at = time.monotonic() + LOCK_RETRY

    def _refuse_edit(self, source: Source, exc: InvalidTopology, what: str = "edit") -> None:
        self.metrics.applies.labels(result="invalid").inc()
        source.invalid = True
        self.metrics.invalid_files.set(sum(s.invalid for s in self.sources.values()))
        errors = [str(d) for d in exc.diagnostics]
        kept = (f"keeping the last good version of {source.name}" if source.desired
                else "nothing to keep: it never loaded")
        self.log("invalid", f"{source.path}: {what} refused, {kept}:\n  " + "\n  ".join(errors),
                 level="error", file=str(source.path), errors=errors)

    def _events(self, planned: Callable[[api.Plan], None]) -> api.Events[api.Plan, api.Action]:
        return api.Events(
            planned=planned,
            # a long apply (a cold start of a thousand namespaces) must not starve the watchdog
            progress=lambda *_: self._watchdog(time.monotonic()),
            notice=lambda text: self.log("notice", text),
            recovering=lambda pending: self.log(
                "recovering", f"an earlier apply of {pending.topology!r} did not finish "
                f"(it stopped {pending.how_far()}); rolling it back first", level="warning",
                topology=pending.topology))

    # -- systemd -----------------------------------------------------------------------------
    def _notify(self, now: float) -> None:
        if self.first_reconcile is not None and not self.first_reconcile:
            self.first_reconcile = None
            failing = [s.name for s in self.sources.values() if s.failures]
            status = (f"first reconcile done; failing, retried: {', '.join(failing)}"
                      if failing else "first reconcile done; watching for drift")
            # ready even when one failed: the agent runs and retries, and a unit ordered after
            # it must not wait forever for a file someone has to fix first
            self.notifier.ready(status)
        self._watchdog(now)

    def _watchdog(self, now: float) -> None:
        interval = self.notifier.watchdog_interval
        if interval is not None and now >= self.next_ping:
            self.notifier.watchdog()
            self.next_ping = now + interval

    # -- watches and gauges ------------------------------------------------------------------
    def _sync_watches(self) -> None:
        """Subscribe in exactly the namespaces the topologies' plans read (created by an
        apply: joined; deleted: left)."""
        existing = set(namespaces.list_named())
        wanted: dict[str, set[str]] = {}
        neighbours: set[str] = set()
        for source in self.sources.values():
            if source.desired is None:
                continue
            scope = api.scope(source.desired, state_dir=self.state_root)
            source.scope = set(scope.namespaces)
            live = [ns for ns in scope.namespaces if ns == ROOT or ns in existing]
            for ns in live:
                wanted.setdefault(ns, set()).add(ROUTE)
                if scope.fdb:
                    neighbours.add(ns)
            if scope.nat:
                nat = scope.nat_namespaces if scope.nat_namespaces is not None else set(live)
                for ns in nat & set(live):
                    wanted[ns].add(NFTABLES)
        self._unregister_kernel()
        try:
            opened, problems = self.kernel.sync(wanted, neighbours)
        finally:
            self._register_kernel()
        for problem in set(problems) - self.watch_problems:
            self.log("watching", f"{problem}; the periodic resync covers it", level="warning")
        self.watch_problems = set(problems)
        if opened:
            # a change between the namespace's creation and its subscription was not seen
            now = time.monotonic()
            for source in self.sources.values():
                if source.scope & set(opened):
                    self._mark(source, DRIFT, "new watches", now)

    def _unregister_kernel(self) -> None:
        for key in list(self.selector.get_map().values()):
            if isinstance(key.data, Subscription):
                self.selector.unregister(key.fileobj)

    def _register_kernel(self) -> None:
        for sub, sock in self.kernel.sockets.items():
            self.selector.register(sock, selectors.EVENT_READ, sub)

    def _managed_objects(self) -> int:
        return sum(len(s.desired.objects) for s in self.sources.values() if s.desired)

    def _update_gauges(self) -> None:
        now = time.monotonic()
        self.metrics.flapping_objects.set(len(self.backoff.flapping(now)))
        self.metrics.managed_objects.set(self._managed_objects())
        self.metrics.invalid_files.set(sum(s.invalid for s in self.sources.values()))
        if all(s.failures == 0 for s in self.sources.values()):
            self.metrics.up.set(1)


def _repairs_last_applied(source: Source, now: float) -> bool:
    """Whether drift is to be repaired now although a failed newer version waits out its
    back-off: the last applied version is not that newer one."""
    return (source.drifted and source.applied is not None
            and source.applied is not source.desired and now >= source.repair_after)


def _new_version(source: Source) -> bool:
    """Whether the file now holds something other than the version last loaded."""
    try:
        data = read_file(str(source.path))
    except (OSError, NetdeclError):
        return False
    return hashlib.sha256(data).hexdigest() != source.digest
def _listed(lines: list[str]) -> tuple[str, int]:
    """The first REPAIRS_LISTED actions as one text, and how many more there were."""
    more = max(0, len(lines) - REPAIRS_LISTED)
    shown = "; ".join(lines[:REPAIRS_LISTED])
    return (f"{shown}; and {more} more" if more else shown), more


def _kinds(actions: Iterable[api.Action]) -> dict[str, int]:
    """{object kind: how many actions}, in name order."""
    kinds: dict[str, int] = {}
    for action in actions:
        kinds[action.kind] = kinds.get(action.kind, 0) + 1
    return dict(sorted(kinds.items()))


def _note_signal(signum: int, frame: object) -> None:
    """See Agent._install_signals: the wakeup fd does the work."""


def _whole_file(path: Path, message: str) -> Diagnostic:
    return Diagnostic(str(path), 1, 1, message)


def _lock_busy(state_root: Path) -> bool:
    """Is another apply/destroy/rollback holding the host lock right now?"""
    try:
        fd = os.open(lock_path(state_root), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except OSError as exc:
        return exc.errno in (errno.EAGAIN, errno.EACCES)
    finally:
        os.close(fd)

