"""Named network namespaces without forking a process per call.

`ip netns add` and pyroute2's netns helpers fork; at hundreds of namespaces that dominates the run.
Network namespaces are per *thread*, so we do the same work `ip netns` does from a short-lived
thread: unshare(CLONE_NEWNET) (or setns into an existing namespace) in the thread, then either
bind-mount its namespace file to /run/netns/NAME or open a socket there. A socket keeps the
namespace it was created in for its whole life, so the main thread can use it afterwards.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import threading
from collections.abc import Callable
from typing import TypeVar

from netdecl.backends.host import ALTERNATIVES, BEING_REMOVED, BY_SECRET_NAME
from netdecl.model import ROOT

NETNS_RUN_DIR = "/run/netns"
# testing aid: SIGKILL netdecl right after it unmounts namespace NAME, before it unlinks the file
KILL_AFTER_UMOUNT_ENV = "NETDECL_TEST_KILL_AFTER_UMOUNT"

CLONE_NEWNET = 0x40000000
CLONE_NEWNS = 0x00020000
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SHARED = 1 << 20
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_void_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]

T = TypeVar("T")


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source: str | None, target: str, fstype: str | None, flags: int) -> None:
    _check(_libc.mount(source.encode() if source else None, target.encode(),
                       fstype.encode() if fstype else None, flags, None), f"mount {target}")


def umount(target: str) -> None:
    _check(_libc.umount2(target.encode(), MNT_DETACH), f"umount {target}")


def setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(fd, nstype), "setns")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def netns_path(name: str) -> str:
    """The file that names a namespace; the root namespace is our own (PID 1's may differ
    inside a sandbox, so we use the process's own)."""
    if name == ROOT:
        return f"/proc/{os.getpid()}/ns/net"
    return os.path.join(NETNS_RUN_DIR, name)


def list_named() -> list[str]:
    """Names of namespaces visible to `ip netns list` that really hold a namespace (a bind
    mount of an nsfs file, so its device differs from the directory's)."""
    try:
        entries = os.listdir(NETNS_RUN_DIR)
        dir_dev = os.stat(NETNS_RUN_DIR).st_dev
    except FileNotFoundError:
        return []
    names = []
    for entry in entries:
        try:
            if os.stat(os.path.join(NETNS_RUN_DIR, entry)).st_dev != dir_dev:
                names.append(entry)
        except OSError:
            continue
    return sorted(names)


def exists(name: str) -> bool:
    """One stat, not a listing of /run/netns: this is asked once per namespace per run."""
    if name == ROOT:
        return True
    if not name or "/" in name or name in (".", ".."):
        return False
    try:
        return os.stat(netns_path(name)).st_dev != os.stat(NETNS_RUN_DIR).st_dev
    except OSError:
        return False


def in_thread(fn: Callable[[], T], name: str = "netdecl-ns") -> T:
    """Run fn in a new thread (namespace switches there leave the caller's thread alone) and
    return its result or raise its exception here.

    The wait is not cut short by a signal: if one arrives (SIGTERM, Ctrl-C), its exception is
    raised only after the thread has finished, so an interrupted caller never rolls back while
    a namespace is still being mounted or a request is still in flight."""
    box: dict[str, object] = {}

    def body() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=body, name=name)
    thread.start()
    interrupted: BaseException | None = None
    while thread.is_alive():
        try:
            thread.join()
        except BaseException as exc:  # noqa: BLE001 - deferred, see above
            interrupted = interrupted or exc
    if interrupted is not None:
        raise interrupted
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["result"]  # type: ignore[return-value]


def _enter(name: str) -> None:
    path = netns_path(name)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(fd, CLONE_NEWNET)
    except PermissionError as exc:  # not root: name the namespace refused, for the message
        raise PermissionError(exc.errno, f"setns: {exc.strerror}", path) from None
    finally:
        os.close(fd)


def run_in(name: str, fn: Callable[[], T]) -> T:
    """Run fn in a thread that has entered namespace ``name``; returns its result or raises."""
    if name == ROOT:
        return fn()

    def body() -> T:
        _enter(name)
        return fn()

    return in_thread(body, f"netns-{name}")


def run_in_each(names: list[str], fn: Callable[[str], T]) -> dict[str, T]:
    """fn(name) inside each namespace (the root included), from one thread that setns()es from
    one to the next: a thread per namespace costs more than the work when there are hundreds."""
    root = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net",
                   os.O_RDONLY | os.O_CLOEXEC)

    def body() -> dict[str, T]:
        results: dict[str, T] = {}
        moved = False  # the thread starts in the caller's namespace, the root
        for name in names:
            if name != ROOT:
                _enter(name)
                moved = True
            elif moved:  # setns needs CAP_SYS_ADMIN even back into one's own namespace:
                setns(root, CLONE_NEWNET)  # only when needed, so a non-root plan works
            results[name] = fn(name)
        return results

    try:
        return in_thread(body, "netns-each")
    finally:
        os.close(root)


def _ensure_run_dir() -> None:
    """Make /run/netns a shared mount point, as `ip netns add` does, so namespace mounts made
    here propagate to other mount namespaces that share it (and vice versa)."""
    os.makedirs(NETNS_RUN_DIR, mode=0o755, exist_ok=True)
    try:
        mount("", NETNS_RUN_DIR, "none", MS_SHARED | MS_REC)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # EINVAL: not a mount point yet
            raise
        mount(NETNS_RUN_DIR, NETNS_RUN_DIR, "none", MS_BIND | MS_REC)
        mount("", NETNS_RUN_DIR, "none", MS_SHARED | MS_REC)


def _ident(prefix: str, st: os.stat_result) -> str:
    return f"{prefix}:{st.st_dev}:{st.st_ino}"


def identity(name: str) -> str | None:
    """What the kernel says the namespace named ``name`` is: the device and inode of its nsfs
    file (``nsfs:DEV:INO``); None when there is no namespace by that name."""
    try:
        st = os.stat(netns_path(name))
        if name != ROOT and st.st_dev == os.stat(NETNS_RUN_DIR).st_dev:
            return None  # a plain file, not a namespace mount
    except OSError:
        return None
    return _ident("nsfs", st)


def placeholder_identity(path: str) -> str | None:
    """``file:DEV:INO`` of a plain file (a mount point not mounted on yet), else None."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return _ident("file", st) if os.path.isfile(path) and not os.path.islink(path) and \
        st.st_dev == os.stat(NETNS_RUN_DIR).st_dev else None


Report = Callable[[str], None]


def create(name: str, placeholder: str, report: Report) -> str:
    """Create /run/netns/NAME holding a fresh network namespace (like `ip netns add`), and
    return its identity.

    Every step is provable after a crash: the mount point is made under the secret name
    ``placeholder`` (only the caller knows it), its identity is reported, then it is linked to
    NAME (link(2) never replaces a file someone else put there); the namespace's identity is
    reported before it is mounted there. ``report`` gets ``file:...`` and then
    ``file:...|nsfs:...`` (either may be at NAME until the mount is done)."""
    _ensure_run_dir()
    path = netns_path(name)
    temp = os.path.join(NETNS_RUN_DIR, placeholder)
    fd = os.open(temp, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0)
    try:
        file_ident = _ident("file", os.fstat(fd))
    finally:
        os.close(fd)
    try:
        report(file_ident)
        os.link(temp, path)  # EEXIST when the name is taken: then nothing of theirs is touched
    finally:
        os.unlink(temp)

    def body() -> str:
        unshare(CLONE_NEWNET)
        own = f"/proc/self/task/{threading.get_native_id()}/ns/net"
        ns_ident = _ident("nsfs", os.stat(own))
        report(f"{file_ident}{ALTERNATIVES}{ns_ident}")
        mount(own, path, "none", MS_BIND)
        return ns_ident

    try:
        return in_thread(body)
    except BaseException:
        if placeholder_identity(path) == file_ident:
            os.unlink(path)
        raise


def delete(name: str, ident: str | None) -> None:
    """Remove /run/netns/NAME (like `ip netns del`), only if it is the namespace ``ident``:
    a plain file, or another namespace someone mounted there since, is left alone. The
    namespace itself goes away when the last socket or process in it is gone, so callers
    close their sockets first."""
    path = netns_path(name)
    now = identity(name)
    if now is None:
        return  # gone (or a plain file: not a namespace, not ours to remove)
    if ident is not None and now != ident:
        raise OSError(errno.EEXIST, f"namespace {name} is not the one observed ({now}, "
                                    f"expected {ident}): someone made it again; left alone")
    umount(path)
    if os.environ.get(KILL_AFTER_UMOUNT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)  # the worst moment: unmounted, still named
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def remove_placeholder(name: str, proven: str) -> bool:
    """Remove the plain file /run/netns/NAME if ``proven`` (identities, see host.py) proves
    netdecl made it, or BEING_REMOVED says netdecl's own removal left it (an empty file: a
    mount point whose namespace was unmounted, never someone's data); returns whether it
    did."""
    path = os.path.join(NETNS_RUN_DIR, name)
    if "/" in name or name in ("", ".", ".."):
        return False
    now = placeholder_identity(path)
    if now is None:
        return False  # absent, a mount, or not a plain file: never removed here
    alternatives = proven.split(ALTERNATIVES)
    if now not in alternatives and not (BY_SECRET_NAME in alternatives
                                        and name.startswith(".nd")) \
            and not (BEING_REMOVED in alternatives and os.lstat(path).st_size == 0):
        return False
    os.unlink(path)
    return True


def leftover(name: str) -> bool:
    """Whether /run/netns/NAME is a plain file, holding no namespace (a mount point left)."""
    return "/" not in name and name not in ("", ".", "..") and \
        placeholder_identity(os.path.join(NETNS_RUN_DIR, name)) is not None
