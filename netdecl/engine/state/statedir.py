"""The state directory: where every file netdecl keeps lives, and the one way to write one.

    <state dir>/lock                          HostLock: one apply/destroy/rollback at a time
    <state dir>/topologies/<name>.json        the ownership record of a topology
    <state dir>/journal/<name>.jsonl          the journal of an apply in progress (or crashed)
    <state dir>/journal/.<name>.jsonl.reserve the room its rollback may need (reserve.py)
    <state dir>/journal/<name>.jsonl.salvaged a damaged journal, after `rollback --salvage`
    <state dir>/confirm/<name>.pending        an apply waiting for `netdecl confirm` (its PID)
    <state dir>/confirm/<name>.confirmed      ... and confirmed, until that apply has finished

What is in it decides what root deletes and writes, so nobody but its owner may turn it
(``secure``): the directory is 0700 and its files 0600 whatever the umask, and the directory and
every parent of it must be owned by root (or the user running netdecl) and writable by nobody
else, as ssh's StrictModes demands of ~/.ssh. A parent that others may write is accepted only
with the sticky bit (like /tmp): there, only an entry's owner can rename or remove it. Temp files
get random names and are opened O_CREAT|O_EXCL|O_NOFOLLOW, so a planted name or symlink is never
written through; files are read O_NOFOLLOW, regular files only, size-bounded.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any

from netdecl.errors import EnvironmentProblem

DEFAULT_STATE_DIR = "/var/lib/netdecl"
STATE_DIR_ENV = "NETDECL_STATE_DIR"
DIR_MODE = 0o700
FILE_MODE = 0o600
# parents netdecl has to create on the way to a --state-dir, as `mkdir -p` under umask 022
PARENT_MODE = 0o755
TEMP_SUFFIX = ".tmp"
# far above any real record or journal (a cold apply of 500 namespaces writes ~2 MB)
MAX_STATE_FILE = 256 * 1024 * 1024


def state_dir(override: str | None = None) -> Path:
    """--state-dir, else $NETDECL_STATE_DIR, else /var/lib/netdecl."""
    return Path(override or os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR)


def lock_path(root: Path) -> Path:
    return root / "lock"


def records_dir(root: Path) -> Path:
    return root / "topologies"


def record_path(root: Path, topology: str) -> Path:
    return records_dir(root) / f"{topology}.json"


def journal_dir(root: Path) -> Path:
    return root / "journal"


def journal_path(root: Path, topology: str) -> Path:
    return journal_dir(root) / f"{topology}.jsonl"


def confirm_dir(root: Path) -> Path:
    return root / "confirm"


def pending_path(root: Path, topology: str) -> Path:
    return confirm_dir(root) / f"{topology}.pending"


def confirmed_path(root: Path, topology: str) -> Path:
    return confirm_dir(root) / f"{topology}.confirmed"


# -- who may turn the state dir ---------------------------------------------------------------

class UnsafeStateDir(EnvironmentProblem):
    """The state dir, or a parent of it, can be changed by someone other than its owner."""


def _trusted_owner(uid: int) -> bool:
    return uid in (0, os.geteuid())


def _refuse(path: str, why: str, fix: str) -> UnsafeStateDir:
    return UnsafeStateDir(f"unsafe state dir: {path} {why}, so another user could change what "
                          f"netdecl deletes and writes as root; {fix}")


def _check_component(path: str, info: os.stat_result, is_state_dir: bool) -> None:
    if not _trusted_owner(info.st_uid):
        raise _refuse(path, f"is owned by uid {info.st_uid}",
                      f"fix: chown root {path} (or choose another --state-dir)")
    if stat.S_ISLNK(info.st_mode):
        return  # a symlink's own mode means nothing; what it points to is checked too
    writable = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if writable and (is_state_dir or not info.st_mode & stat.S_ISVTX):
        mode = stat.S_IMODE(info.st_mode)
        raise _refuse(path, f"is writable by group or others (mode {mode:04o})",
                      f"fix: chmod go-w {path} (or choose another --state-dir)")


def _check_path(path: str, state: str) -> None:
    """Every component of ``path`` that exists: as written (lstat: a symlink must be owned by
    root or us) and as resolved (the directories it leads to)."""
    parts = Path(path).parts
    for i in range(1, len(parts) + 1):
        component = os.path.join(*parts[:i])
        try:
            info = os.lstat(component)
        except FileNotFoundError:
            return
        _check_component(component, info, component == state)
        if stat.S_ISLNK(info.st_mode):
            real = os.path.realpath(component)
            _check_path(real, real if component == state else "")


def secure(root: Path, *, create: bool = True) -> Path:
    """Refuse a state dir someone else could turn (UnsafeStateDir, one line naming the path
    and the fix); with ``create``, make it (0700) and its subdirectories, and tighten an
    existing one of ours to 0700. Returns ``root``."""
    state = os.path.abspath(root)
    _check_path(state, state)
    if not create:
        return root
    missing = []
    walk = Path(state)
    while not os.path.lexists(walk):
        missing.append(walk)
        walk = walk.parent
    for directory in reversed(missing):
        _mkdir(directory, DIR_MODE if str(directory) == state else PARENT_MODE)
    _check_path(state, state)  # what we made, or what someone raced us with
    info = os.stat(state)
    if stat.S_IMODE(info.st_mode) != DIR_MODE and info.st_uid == os.geteuid():
        os.chmod(state, DIR_MODE)
    for sub in (records_dir(root), journal_dir(root), confirm_dir(root)):
        _mkdir(sub, DIR_MODE)
    return root


def _mkdir(path: Path, mode: int) -> None:
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        info = os.lstat(path)
        if not stat.S_ISDIR(info.st_mode):
            raise _refuse(str(path), "is not a directory", "fix: remove it") from None
        _check_component(str(path), info, True)
        return
    os.chmod(path, mode)  # whatever the umask took away or let through


# -- reading and writing files ------------------------------------------------------------------

class UnreadableStateFile(EnvironmentProblem):
    """A state file that is not a regular file of ours (a FIFO, a symlink, too big)."""


def open_regular(path: Path | str, limit: int) -> bytes:
    """The bytes of the regular file ``path`` (never following a symlink at its last component,
    never blocking on a FIFO), at most ``limit`` of them. FileNotFoundError if it is absent;
    UnreadableStateFile if it is not a regular file or is too big."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableStateFile(f"{path} is not a regular file; move it away")
        if info.st_size > limit:
            raise UnreadableStateFile(f"{path} is {info.st_size} bytes; the limit is {limit}")
        chunks = []
        size = 0
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise UnreadableStateFile(f"{path} is over {limit} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_state_file(path: Path) -> bytes:
    """A file of the state dir (see open_regular); a symlink there is refused, not followed."""
    try:
        return open_regular(path, MAX_STATE_FILE)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnreadableStateFile(f"{path} is a symlink, not a netdecl file; move it "
                                      f"away") from None
        raise


def temp_pattern(path: Path) -> str:
    """The glob of write_atomically's temp files for ``path``."""
    return f".{path.name}.*{TEMP_SUFFIX}"


def remove_stale_temps(path: Path) -> None:
    """Remove the temp files a write of ``path`` killed (SIGKILL) before its rename left."""
    for stale in path.parent.glob(temp_pattern(path)):
        stale.unlink(missing_ok=True)


def create_exclusive(path: Path, mode: int = FILE_MODE) -> int:
    """A new file at ``path`` (O_EXCL: never an existing one; O_NOFOLLOW: never through a
    symlink), with exactly ``mode`` whatever the umask. Returns its fd."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 mode)
    os.fchmod(fd, mode)
    return fd


def write_all(fd: int, data: bytes) -> None:
    """One write(2) for ``data`` whenever the kernel takes it whole (a regular file does): a
    process killed around it leaves the line complete or absent, never torn."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_atomically(path: Path, text: str, mode: int = FILE_MODE) -> None:
    """Replace ``path`` with ``text`` whole or not at all, durably: a new temp file with a random
    name, fsync, rename, fsync of the directory (so the rename itself survives a power loss)."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}{TEMP_SUFFIX}")
        try:
            fd = create_exclusive(tmp, mode)
            break
        except FileExistsError:
            continue  # someone's file has that name: draw another
    try:
        write_all(fd, text.encode())
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_json_atomically(path: Path, data: Any) -> None:
    write_atomically(path, json.dumps(data, indent=1, sort_keys=True))
