"""Persistent sandboxes: `netdecl --sandbox NAME <command>` runs against a private network.

A sandbox is a network namespace plus a mount namespace, kept alive by bind-mounting their
namespace files under SANDBOX_DIR/NAME (no process needs to stay around). Inside the mount
namespace /run/netns, /run/netdecl and /var/lib/netdecl are the sandbox's own tmpfs, so named
namespaces, netdecl state and locks created there never mix with the host's. Entering moves the
*current process* into both namespaces; everything netdecl then does (netlink, nft, `ip netns`)
happens inside, exactly as it would on a real host.

Removing a sandbox unmounts the two files. Once no process is left inside, the kernel frees the
mount namespace, which drops its /run/netns mounts, which frees every namespace, link, route
and nft table created in the sandbox: there is nothing to undo one by one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import socket
import struct
import threading

from netdecl.backends.namespaces import (
    CLONE_NEWNET,
    CLONE_NEWNS,
    MS_BIND,
    MS_PRIVATE,
    MS_REC,
    mount,
    setns,
    umount,
    unshare,
)
from netdecl.errors import EnvironmentProblem, NetdeclError

SANDBOX_DIR = "/run/netdecl/sandboxes"

# Mount points that get a fresh tmpfs inside every sandbox. /run/netdecl hides SANDBOX_DIR
# itself, so a sandbox neither sees nor (through copied mounts) keeps alive other sandboxes.
PRIVATE_DIRS = ("/run/netns", "/run/netdecl", "/var/lib/netdecl")

_NAME_RE = re.compile(r"[a-z0-9-]{1,32}")


def _check_name(name: str) -> None:
    # The name becomes a path component under SANDBOX_DIR: nothing that could escape it.
    if not _NAME_RE.fullmatch(name):
        raise NetdeclError(f"invalid sandbox name {name!r}: use 1-32 of a-z, 0-9 and '-'")


def _require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise EnvironmentProblem(f"{what} needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN); "
                                 "run netdecl with sudo")


def _dir(name: str) -> str:
    return os.path.join(SANDBOX_DIR, name)


def _is_ns_file(path: str) -> bool:
    """True if `path` is a bind mount of a namespace file (it lives on nsfs, like our own)."""
    try:
        return os.stat(path).st_dev == os.stat("/proc/self/ns/net").st_dev
    except OSError:
        return False


def exists(name: str) -> bool:
    _check_name(name)
    return _is_ns_file(os.path.join(_dir(name), "net")) and \
        _is_ns_file(os.path.join(_dir(name), "mnt"))


def list_sandboxes() -> list[str]:
    try:
        entries = os.listdir(SANDBOX_DIR)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(e for e in entries if _NAME_RE.fullmatch(e) and exists(e))


def _mount_points() -> set[str]:
    points = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            # Field 5 is the mount point, with space, tab, newline and backslash octal-escaped.
            point = line.split()[4]
            points.add(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), point))
    return points


def _ensure_sandbox_dir() -> None:
    """Make SANDBOX_DIR a private bind mount of itself.

    A mount namespace file may only be bind-mounted where the mount can't propagate: if the
    directory were part of a shared peer group, the kernel would have to copy the mount into
    peer (possibly older) mount namespaces, which could create a namespace reference loop, so
    mount() fails with EINVAL. A private mount point of our own avoids that, whatever the
    propagation of / on this machine (systemd makes it shared).
    """
    os.makedirs(SANDBOX_DIR, mode=0o755, exist_ok=True)
    if os.path.realpath(SANDBOX_DIR) not in _mount_points():
        mount(SANDBOX_DIR, SANDBOX_DIR, None, MS_BIND)
    mount(None, SANDBOX_DIR, None, MS_REC | MS_PRIVATE)


def _detach_all(path: str) -> None:
    """Lazily unmount everything at and below `path` in the current mount namespace (a copy,
    in the sandbox child): copied /run/netns bind mounts would otherwise pin the host's named
    namespaces for the sandbox's whole life."""
    with contextlib.suppress(OSError):
        for entry in os.listdir(path):
            with contextlib.suppress(OSError):
                umount(os.path.join(path, entry))
    for _ in range(64):  # mounts can be stacked; stop at the first "not a mount point"
        try:
            umount(path)
        except OSError:
            return


def _lo_up() -> None:
    """Bring lo up (SIOCGIFFLAGS / SIOCSIFFLAGS): a fresh namespace has it down, unlike a host."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifr = fcntl.ioctl(s, 0x8913, struct.pack("16sH22x", b"lo", 0))
        flags = struct.unpack("16sH22x", ifr)[1]
        fcntl.ioctl(s, 0x8914, struct.pack("16sH22x", b"lo", flags | 1))


def _child_setup() -> None:
    """In the forked child: become the sandbox."""
    unshare(CLONE_NEWNET | CLONE_NEWNS)
    # Private: nothing we mount here reaches the host, and host mounts stop arriving.
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    for path in PRIVATE_DIRS:
        os.makedirs(path, mode=0o755, exist_ok=True)
        _detach_all(path)
        mount("tmpfs", path, "tmpfs", 0)
        # a fresh tmpfs is 1777, which netdecl refuses for its state dir (anyone could plant)
        os.chmod(path, 0o755)
    # sysfs shows the network namespace of whoever mounted it: remount so /sys/class/net
    # shows the sandbox's links (`ip netns exec` does the same).
    mount("sysfs", "/sys", "sysfs", 0)
    _lo_up()


def create(name: str) -> None:
    """Create sandbox NAME. Raises EnvironmentProblem if it already exists."""
    _check_name(name)
    _require_root("creating a sandbox")
    _ensure_sandbox_dir()
    path = _dir(name)
    if exists(name):
        raise EnvironmentProblem(f"sandbox {name} already exists "
                                 f"(remove it with: netdecl sandbox rm {name})")
    _cleanup(path)  # leftovers of a create that was interrupted
    os.mkdir(path, 0o755)
    try:
        _populate(path)
    except BaseException:
        _cleanup(path)
        raise


def _populate(path: str) -> None:
    """Make the namespaces and bind-mount them to PATH/net and PATH/mnt.

    The kernel only lets us bind-mount a mount namespace that is "newer" than our own (its
    check against reference loops, mnt_ns_loop(), compares namespace ids). Since Linux 6.18
    those ids come from per-CPU batches, so a brand-new namespace can get a *smaller* id than
    an old one and the bind fails with EINVAL - whenever the caller is not in the initial
    mount namespace (a container, our test harness). Ids are still increasing per CPU, so we
    retry with the child pinned to each CPU in turn: some CPU hands out ids above ours.
    """
    try:
        cpus: list[int | None] = [None, *sorted(os.sched_getaffinity(0))]
    except OSError:
        cpus = [None]
    for attempt, cpu in enumerate(cpus * 2):
        try:
            _populate_once(path, cpu)
            return
        except _MountLoopRefused:
            if attempt == 2 * len(cpus) - 1:
                raise EnvironmentProblem(
                    "cannot create sandbox: the kernel refuses to bind-mount its mount "
                    "namespace (EINVAL), on every CPU") from None


class _MountLoopRefused(Exception):
    """Binding the mount namespace file failed with EINVAL; see _populate."""


def _populate_once(path: str, cpu: int | None) -> None:
    # Two pipes: the child says "ready" (or why not) on one, then waits for EOF on the other,
    # so its namespaces exist while we bind-mount them and it can exit right after.
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: only os-level calls from here, and never return into the caller
        status = 1
        try:
            os.close(ready_r)
            os.close(go_w)
            if cpu is not None:
                os.sched_setaffinity(0, {cpu})  # migrates now, before unshare allocates ids
            _child_setup()
            os.write(ready_w, b"ok")
            os.read(go_r, 1)
            status = 0
        except BaseException as exc:  # report anything, including a failed import or mount
            with contextlib.suppress(OSError):
                os.write(ready_w, f"{exc}".encode()[:4000] or b"failed")
        finally:
            os._exit(status)
    os.close(ready_w)
    os.close(go_r)
    try:
        msg = os.read(ready_r, 4096)
        if msg != b"ok":
            raise EnvironmentProblem(f"cannot create sandbox namespaces: "
                                     f"{msg.decode(errors='replace') or 'setup process died'}")
        for kind in ("net", "mnt"):
            target = os.path.join(path, kind)
            os.close(os.open(target, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444))
            try:
                mount(f"/proc/{pid}/ns/{kind}", target, None, MS_BIND)
            except OSError as exc:
                if kind == "mnt" and exc.errno == errno.EINVAL:
                    _cleanup_files(path)
                    raise _MountLoopRefused() from None
                raise
    finally:
        os.close(go_w)  # lets the child exit; the bind mounts keep its namespaces
        os.close(ready_r)
        os.waitpid(pid, 0)


def _cleanup_files(path: str) -> None:
    for kind in ("net", "mnt"):
        target = os.path.join(path, kind)
        try:
            umount(target)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOENT):
                raise
        with contextlib.suppress(FileNotFoundError):
            os.unlink(target)


def _cleanup(path: str) -> None:
    """Unmount and delete a sandbox directory; missing pieces are fine."""
    _cleanup_files(path)
    with contextlib.suppress(FileNotFoundError):
        os.rmdir(path)


def remove(name: str) -> None:
    """Tear sandbox NAME down. Its namespaces vanish once no process is left inside them."""
    _check_name(name)
    _require_root("removing a sandbox")
    path = _dir(name)
    if not os.path.isdir(path):
        raise EnvironmentProblem(f"no sandbox named {name}")
    _cleanup(path)
    if not list_sandboxes():
        # the last one is gone: take our private bind mount of the directory away too, so a
        # host where sandboxes were only tried carries no trace of them
        with contextlib.suppress(OSError):
            umount(SANDBOX_DIR)


def enter(name: str, create_if_missing: bool = True) -> None:
    """Move the current process into sandbox NAME (mount namespace, then network namespace).

    Must run while the process is single-threaded: the kernel refuses to switch the mount
    namespace of a process whose threads share its filesystem context.
    """
    _check_name(name)
    _require_root("using a sandbox")
    if not exists(name):
        if not create_if_missing:
            raise EnvironmentProblem(f"no sandbox named {name}")
        try:
            create(name)
        except EnvironmentProblem:
            if not exists(name):  # not just another netdecl creating it at the same moment
                raise
    if threading.active_count() > 1:
        raise EnvironmentProblem("internal error: sandbox.enter() called after threads were "
                                 "started; it must run first")
    # Open both files before switching: inside the sandbox's mount namespace SANDBOX_DIR is an
    # empty tmpfs, so the net file could not be found by path any more.
    mnt_fd = os.open(os.path.join(_dir(name), "mnt"), os.O_RDONLY | os.O_CLOEXEC)
    net_fd = os.open(os.path.join(_dir(name), "net"), os.O_RDONLY | os.O_CLOEXEC)
    cwd_fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = None
    try:
        try:
            setns(mnt_fd, CLONE_NEWNS)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise EnvironmentProblem(
                    f"cannot enter sandbox {name}: the process is multi-threaded") from None
            raise
        setns(net_fd, CLONE_NEWNET)
        # setns(CLONE_NEWNS) moved us to the namespace's root directory; go back to where we
        # were so relative topology paths still work. The sandbox's mount tree is a copy of
        # the host's, so the same path normally exists; if not, keep the old directory itself.
        try:
            if cwd is None:
                raise OSError
            os.chdir(cwd)
        except OSError:
            os.fchdir(cwd_fd)
    finally:
        for fd in (mnt_fd, net_fd, cwd_fd):
            os.close(fd)
