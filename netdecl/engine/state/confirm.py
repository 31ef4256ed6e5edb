"""Timed confirmation (`apply --confirm-timeout SECS`, `netdecl confirm`).

A verified apply that waits for confirmation writes <state>/confirm/<topology>.pending holding
its PID, keeps its journal (so a crash while waiting is rolled back like any other), and polls.
`netdecl confirm` claims the marker by renaming it to .confirmed; an apply whose time ran out
claims it by unlinking it. A rename/unlink of one file is atomic, so exactly one side wins a
race at the deadline: a confirm that came too late says so instead of pretending it worked.
`confirm` takes no lock: the waiting apply holds it.
"""

from __future__ import annotations

import os
import select
import sys
import time
from collections.abc import Callable
from pathlib import Path

from netdecl.engine.state.statedir import (
    confirm_dir,
    confirmed_path,
    pending_path,
    read_state_file,
    write_atomically,
)
from netdecl.errors import NetdeclError, NotConfirmed

POLL = 0.05


class Waiter:
    """The apply side: announce, wait, and decide (confirmed or not) exactly once."""

    def __init__(self, state_root: Path, topology: str, timeout: float,
                 say: Callable[[str], None]):
        self.state_root = state_root
        self.topology = topology
        self.timeout = timeout
        self.say = say

    def __call__(self, checkpoint: Callable[[], None]) -> None:
        """Return when confirmed; raise NotConfirmed when the time runs out."""
        pending = pending_path(self.state_root, self.topology)
        confirmed = confirmed_path(self.state_root, self.topology)
        confirmed.unlink(missing_ok=True)
        # written whole or not at all: `confirm` reads the PID from it at any moment
        write_atomically(pending, f"{os.getpid()}\n")
        tty = _stdin_tty()
        how = "press Enter here or run" if tty else "run"
        self.say(f"Applied and verified. Waiting {self.timeout:g}s for confirmation: {how} "
                 f"`netdecl confirm --name {self.topology}`; otherwise this apply is rolled "
                 f"back.")
        deadline = time.monotonic() + self.timeout
        # .confirmed stays until the caller has finished the journal (clear()), so that
        # `confirm` returns only once the changes are kept for good
        while True:
            try:
                checkpoint()
            except BaseException:
                if self._claim(pending) or not confirmed.exists():  # we decide: not confirmed
                    raise
                return  # confirmed in the same instant: keep it
            if confirmed.exists():
                return
            left = deadline - time.monotonic()
            if left <= 0:
                # Only an explicit confirmation confirms: a .pending marker that vanished
                # without a .confirmed one (removed by hand, by a cleaner) is no consent
                if self._claim(pending) or not confirmed.exists():
                    raise NotConfirmed(
                        f"not confirmed within {self.timeout:g}s (--confirm-timeout)")
                return  # `confirm` renamed it just before the deadline: it counts
            if tty and _enter_pressed(min(left, POLL)) and self._claim_by_enter(pending):
                return
            if not tty:
                time.sleep(min(left, POLL))

    @staticmethod
    def _claim(pending: Path) -> bool:
        """Take the pending marker away so a later `confirm` fails. False: confirm won."""
        try:
            pending.unlink()
            return True
        except FileNotFoundError:
            return False

    def _claim_by_enter(self, pending: Path) -> bool:
        """Enter confirms when it takes the marker, or when `confirm` already had."""
        return self._claim(pending) or confirmed_path(self.state_root, self.topology).exists()


def _stdin_tty() -> bool:
    try:
        return sys.stdin is not None and os.isatty(sys.stdin.fileno())
    except (ValueError, OSError):
        return False


def _enter_pressed(wait: float) -> bool:
    ready, _, _ = select.select([sys.stdin], [], [], wait)
    if not ready:
        return False
    line = sys.stdin.readline()
    return line != "" and line.strip() == ""


def waiting(state_root: Path) -> dict[str, int | None]:
    """Topologies whose apply is waiting for confirmation -> the waiting PID."""
    out: dict[str, int | None] = {}
    for path in sorted(confirm_dir(state_root).glob("*.pending")):
        if path.name.startswith("."):
            continue  # a temp file of write_atomically
        try:
            out[path.name[: -len(".pending")]] = int(read_state_file(path).decode().strip())
        except (OSError, ValueError, NetdeclError):
            out[path.name[: -len(".pending")]] = None
    return out


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def confirm(state_root: Path, name: str | None, wait: float = 10.0) -> str:
    """Confirm the waiting apply of ``name`` (or the only one waiting); returns its name once
    that apply has kept its changes. Raises NetdeclError when there is nothing to confirm."""
    candidates = waiting(state_root)
    if name is None:
        if not candidates:
            raise NetdeclError("nothing to confirm: no apply is waiting for confirmation")
        if len(candidates) > 1:
            raise NetdeclError("several applies are waiting for confirmation ("
                               + ", ".join(sorted(candidates)) + "); pick one with --name")
        name = next(iter(candidates))
    elif name not in candidates:
        raise NetdeclError(f"nothing to confirm: no apply of {name!r} is waiting for "
                           f"confirmation (it may have timed out and rolled back)")
    pid = candidates[name]
    if not _alive(pid):
        raise NetdeclError(
            f"the apply of {name!r} that waited for confirmation (pid {pid}) is gone; it did "
            f"not finish, so its changes will be rolled back: run `netdecl rollback`")
    pending = pending_path(state_root, name)
    confirmed = confirmed_path(state_root, name)
    try:
        os.rename(pending, confirmed)
    except FileNotFoundError:
        raise NetdeclError(f"too late: the apply of {name!r} timed out and is rolling "
                           f"back") from None
    # the apply removes .confirmed once it has kept the changes (journal gone)
    deadline = time.monotonic() + wait
    while confirmed.exists() and _alive(pid) and time.monotonic() < deadline:
        time.sleep(POLL)
    if confirmed.exists():
        if not _alive(pid):
            raise NetdeclError(f"confirmed, but the apply of {name!r} (pid {pid}) died before "
                               f"keeping its changes; `netdecl rollback` will undo them")
        raise NetdeclError(f"confirmed, but the apply of {name!r} (pid {pid}) has not "
                           f"acknowledged it within {wait:g}s")
    return name


def clear(state_root: Path, topology: str) -> None:
    """Remove the markers: after a confirmed apply finished its journal, or ones left by an
    apply that died while waiting (its journal is then rolled back)."""
    for path in (pending_path(state_root, topology), confirmed_path(state_root, topology)):
        path.unlink(missing_ok=True)
