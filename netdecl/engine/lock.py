"""One apply/destroy/rollback at a time per host: an flock on <state dir>/lock holding our PID."""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path

from netdecl.engine.statedir import lock_path
from netdecl.errors import EnvironmentProblem


class HostLock:
    def __init__(self, state_root: Path, timeout: float):
        self.path = lock_path(state_root)
        self.timeout = timeout
        self.fd: int | None = None

    def __enter__(self) -> HostLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
            if time.monotonic() >= deadline:
                holder = _read_pid(fd)
                os.close(fd)
                who = f"process {holder}" if holder else "another process"
                raise EnvironmentProblem(
                    f"another netdecl apply/destroy/rollback is running: {who} holds the lock "
                    f"{self.path} (waited {self.timeout:g}s; see --lock-timeout)")
            time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

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
        fd = os.open(lock_path(state_root), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:  # no lock file yet (nothing ever ran), or not ours to read
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            return _read_pid(fd) or 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or 0) or None
    except (ValueError, OSError):
        return None
