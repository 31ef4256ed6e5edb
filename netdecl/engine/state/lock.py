"""One apply/destroy/rollback at a time per host: an flock on <state dir>/lock.

The lock file is 0600 in a 0700 state dir (statedir.secure): a local user who could open it could
`flock -s` it and block every apply, destroy and rollback, crash recovery included. When the
lock is busy, the holder is named from /proc/locks (the process that holds it now, whoever it
is), not from a PID written into the file, which a dead or foreign holder leaves stale.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path

from netdecl.engine.state import statedir
from netdecl.errors import EnvironmentProblem

PROC_LOCKS = "/proc/locks"


class HostLock:
    def __init__(self, state_root: Path, timeout: float):
        self.root = state_root
        self.path = statedir.lock_path(state_root)
        self.timeout = timeout
        self.fd: int | None = None

    def __enter__(self) -> HostLock:
        statedir.secure(self.root)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                     statedir.FILE_MODE)
        try:
            os.fchmod(fd, statedir.FILE_MODE)  # a lock file made 0644 by an older netdecl
            self._wait(fd)
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def _wait(self, fd: int) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if time.monotonic() >= deadline:
                holders = lock_holders(os.fstat(fd))
                who = ", ".join(f"process {pid}" for pid in holders) or "another process"
                commands = "; ".join(c for pid in holders if (c := _command(pid)))
                raise EnvironmentProblem(
                    f"another netdecl apply/destroy/rollback is running: {who} holds the lock "
                    f"{self.path} ({commands + '; ' if commands else ''}waited "
                    f"{self.timeout:g}s; see --lock-timeout)")
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def holder(state_root: Path) -> int | None:
    """Who holds the lock right now: its PID, 0 when that cannot be read, None when nobody
    does. Only looks (a shared lock taken and dropped at once), never waits."""
    try:
        fd = os.open(statedir.lock_path(state_root), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:  # no lock file yet (nothing ever ran), or not ours to read
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            holders = lock_holders(os.fstat(fd))  # who holds it now, not the file's PID
            return holders[0] if holders else 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def lock_holders(info: os.stat_result, locks_text: str | None = None) -> list[int]:
    """PIDs that hold a lock on the file ``info`` describes, from /proc/locks: lines like
    ``1: FLOCK  ADVISORY  WRITE 1234 00:1f:5678 0 EOF`` (device major:minor in hex, inode in
    decimal); waiting requests (``->``) are not holders."""
    if locks_text is None:
        try:
            with open(PROC_LOCKS) as fh:
                locks_text = fh.read()
        except OSError:
            return []
    wanted = (os.major(info.st_dev), os.minor(info.st_dev), info.st_ino)
    pids: list[int] = []
    for line in locks_text.splitlines():
        fields = line.split()
        if len(fields) < 6 or fields[1] == "->":
            continue
        try:
            pid = int(fields[4])
            major, minor, inode = fields[5].split(":")
            where = (int(major, 16), int(minor, 16), int(inode))
        except ValueError:
            continue
        if where == wanted and pid > 0 and pid not in pids:
            pids.append(pid)
    return pids


def _command(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as fh:
            return f"process {pid} is {fh.read().strip()}"
    except OSError:
        return ""
