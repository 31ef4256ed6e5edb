"""Changes of the topology files (and of /run/netns): inotify through ctypes, else polling.

The directories are watched, not the files: editors and `git checkout` replace a file by
writing another and renaming it over the first, which a watch on the old inode would miss.
Where inotify cannot be had (no libc symbol, a file system without it, the per-user watch
limit reached), the agent polls each path's (inode, size, mtime) instead.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from collections.abc import Iterable
from pathlib import Path

IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE = 0x2, 0x4, 0x8
IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x40, 0x80, 0x100, 0x200
IN_DELETE_SELF, IN_MOVE_SELF, IN_Q_OVERFLOW = 0x400, 0x800, 0x4000
IN_NONBLOCK, IN_CLOEXEC = 0o4000, 0o2000000
WATCH_MASK = (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_ATTRIB
              | IN_DELETE_SELF | IN_MOVE_SELF)
_EVENT = struct.Struct("=iIII")

POLL_INTERVAL = 1.0  # seconds between stat() rounds without inotify


class _Inotify:
    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._add = libc.inotify_add_watch
        self._add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        self.fd = fd
        self.dirs: dict[int, Path] = {}

    def watch(self, directory: Path) -> None:
        wd = self._add(self.fd, os.fsencode(directory), WATCH_MASK)
        if wd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(directory))
        self.dirs[wd] = directory

    def read(self) -> list[Path]:
        """Paths named by the queued events (a directory itself after an overflow)."""
        out: list[Path] = []
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return out
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise
            offset = 0
            while offset + _EVENT.size <= len(data):
                wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
                raw = data[offset + _EVENT.size: offset + _EVENT.size + length]
                offset += _EVENT.size + length
                directory = self.dirs.get(wd)
                if mask & IN_Q_OVERFLOW:
                    out.extend(self.dirs.values())
                elif directory is not None:
                    name = raw.split(b"\0", 1)[0]
                    out.append(directory / os.fsdecode(name) if name else directory)

    def close(self) -> None:
        os.close(self.fd)


class FileWatch:
    """Reports which of the watched paths changed. ``fileno`` is None when polling."""

    def __init__(self, paths: Iterable[Path], directories: Iterable[Path] = ()):
        self.paths = {p.absolute() for p in paths}
        self.directories = {d.absolute() for d in directories}
        self.problem: str | None = None
        self._inotify: _Inotify | None = None
        self._stats: dict[Path, tuple[int, int, int] | None] = {}
        try:
            self._inotify = _Inotify()
            for directory in sorted({p.parent for p in self.paths} | self.directories):
                if directory.is_dir():
                    self._inotify.watch(directory)
        except (OSError, AttributeError) as exc:  # AttributeError: no inotify in this libc
            if self._inotify is not None:
                self._inotify.close()
            self._inotify = None
            self.problem = f"inotify unavailable ({exc}): polling the files every " \
                           f"{POLL_INTERVAL:g}s instead"
        self._stats = {p: _stat(p) for p in self._polled()}

    def add(self, path: Path) -> None:
        """Watch one more file (a file a topology includes)."""
        path = path.absolute()
        if path in self.paths:
            return
        self.paths.add(path)
        if self._inotify is not None and path.parent.is_dir():
            self._inotify.watch(path.parent)  # (inotify ignores a directory watched twice)
        self._stats[path] = _stat(path)

    @property
    def fileno(self) -> int | None:
        return self._inotify.fd if self._inotify is not None else None

    @property
    def polling(self) -> bool:
        return self._inotify is None

    def changed(self) -> set[Path]:
        """Watched paths (files, or watched directories) that changed since the last call."""
        if self._inotify is not None:
            found = set()
            for path in self._inotify.read():
                path = path.absolute()
                if path in self.paths or path in self.directories:
                    found.add(path)
                elif path.parent in self.directories:
                    found.add(path.parent)
            return found
        found = set()
        for path in self._polled():
            now = _stat(path)
            if now != self._stats.get(path):
                self._stats[path] = now
                found.add(path)
        return found

    def _polled(self) -> set[Path]:
        return self.paths | self.directories

    def close(self) -> None:
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None


def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    if path.is_dir():  # a directory's mtime moves when an entry is added or removed
        return (st.st_ino, 0, st.st_mtime_ns)
    return (st.st_ino, st.st_size, st.st_mtime_ns)
