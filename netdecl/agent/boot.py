"""`netdecl boot DIR`: apply every topology in a directory once, early in boot (the
netdecl-boot.service unit, contrib/systemd/), each file on its own.

A command of its own rather than `apply DIR`: apply is one topology, one plan, one exit code
(and takes a saved plan, --json, --confirm-timeout, which mean nothing for twenty files). At
boot each file must stand alone: one that does not validate, waits in vain for its NIC or fails
to apply (and is rolled back) is reported, with its FILE:LINE:COL, and the next file is
applied all the same. The exit status is the worst of them, so the unit fails loudly while
the host keeps every topology that could be applied.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from netdecl import api
from netdecl.agent.runner import expand
from netdecl.errors import InvalidTopology, NetdeclError
from netdecl.exitcodes import ExitStatus

Say = Callable[[str], None]
DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|min)?")
UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, None: 1.0}


def parse_duration(text: str) -> float:
    """Seconds in "30s", "2m", "500ms" or "30" (systemd's spelling, the few units a wait
    needs); ValueError for anything else."""
    match = DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a duration: write 30s, 2m, 500ms or seconds")
    return float(match.group(1)) * UNIT_SECONDS[match.group(2)]


def boot(directory: str, state_dir: str | None, *, wait_for_links: float,
         lock_timeout: float | None, say: Say) -> int:
    """Apply the topologies in ``directory`` (its *.yaml/*.yml files, in name order); the
    worst exit status among them. ``say`` gets one line per file (the journal)."""
    if not Path(directory).is_dir():
        raise NetdeclError(f"boot: {directory} is not a directory")
    files, _ = expand([directory])
    if not files:
        say(f"{directory}: no *.yaml topology files; nothing to apply")
        return ExitStatus.OK
    statuses = []
    names: dict[str, Path] = {}
    for path in files:
        statuses.append(_one(path, names, state_dir, wait_for_links, lock_timeout, say))
    good = statuses.count(ExitStatus.OK)
    say(f"boot: {good} of {len(files)} topology files in {directory} applied"
        + ("" if good == len(files) else "; the others are named above"))
    return int(max(statuses))


def _one(path: Path, names: dict[str, Path], state_dir: str | None, wait: float,
         lock_timeout: float | None, say: Say) -> ExitStatus:
    try:
        topology = api.load(path)
    except InvalidTopology as exc:
        for diagnostic in exc.diagnostics:
            say(str(diagnostic))
        say(f"{path}: skipped (invalid); the other files are applied")
        return ExitStatus.INVALID_TOPOLOGY
    other = names.setdefault(topology.name, path)
    if other != path:
        say(f"{path}:1:1: topology {topology.name!r} is already declared by {other}; skipped")
        return ExitStatus.INVALID_TOPOLOGY
    try:
        api.wait_for_links(topology, wait)
        result = api.apply(topology, state_dir=state_dir, lock_timeout=lock_timeout,
                           events=api.Events(notice=lambda text: say(f"{path}: {text}")))
    except api.PlanConflicts as exc:
        for conflict in exc.plan.conflicts:
            say(f"{path}: conflict: {conflict.message}")
        say(f"{path}: not applied (conflicts); nothing of it was changed")
        return ExitStatus.FAILURE
    except NetdeclError as exc:
        say(f"{path}: not applied: {exc}")
        return exc.status
    added, changed, destroyed = result.counts()
    say(f"{path}: topology {topology.name} "
        + (f"applied: {added} added, {changed} changed, {destroyed} destroyed"
           if result.plan.has_changes else "already matches the host"))
    return ExitStatus.OK
