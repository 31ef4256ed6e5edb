"""The other network managers of this host: which links NetworkManager and systemd-networkd
manage, and netdecl's marks that keep them off the links netdecl makes.

Read from what each keeps under /run, by ifindex (no process spawned, no D-Bus call per plan):
NetworkManager's /run/NetworkManager/devices/IFINDEX (`managed=true` while it manages the
device) and networkd's /run/systemd/netif/links/IFINDEX (`ADMIN_STATE=` configuring,
configured, failed or linger while a .network file applies to the link). Both files are
internal state; they are read defensively: a file that does not parse manages nothing. A
manager counts only while its process runs in this process's network namespace: files a
stopped manager left behind, or a manager of another namespace (a sandbox, a test's private
network) say nothing about the links here.

The marks are files of netdecl's own, one per topology and manager, under /run (gone at reboot,
as the links are): a NetworkManager drop-in with `unmanaged-devices+=` (appended to the list,
so the administrator's own setting stands) and a networkd `.network` that matches the links
first with `Unmanaged=yes`. Their own configuration files are never written. Marks are
written only in the host's network namespace (PID 1's): elsewhere the names mean other links.
After a change the manager is told to reload (NetworkManager: SIGHUP; networkd: `networkctl
reload`).
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

from netdecl.backends.host import TEMP_LINK_GLOB

NETWORK_MANAGER = "NetworkManager"
NETWORKD = "systemd-networkd"
# /proc/PID/comm: the kernel keeps 15 characters of the name
COMMS = {"NetworkManager": NETWORK_MANAGER, "systemd-network": NETWORKD}
NETWORKD_MANAGING = {"configuring", "configured", "failed", "linger"}


@dataclass(frozen=True)
class Paths:
    """Where each fact lives (tests give a fake tree)."""

    proc: Path = Path("/proc")
    nm_devices: Path = Path("/run/NetworkManager/devices")
    nm_conf: Path = Path("/run/NetworkManager/conf.d")
    networkd_links: Path = Path("/run/systemd/netif/links")
    networkd_conf: Path = Path("/run/systemd/network")

    def mark_files(self, topology: str) -> dict[str, Path]:
        # 00-: networkd applies the first .network (in name order) that matches a link
        return {NETWORK_MANAGER: self.nm_conf / f"90-netdecl-{topology}.conf",
                NETWORKD: self.networkd_conf / f"00-netdecl-{topology}.network"}


Runner = Callable[[list[str]], None]
Kill = Callable[[int, int], None]


def _run(argv: list[str]) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


@dataclass
class Managers:
    paths: Paths = field(default_factory=Paths)
    run: Runner = _run  # networkctl
    kill: Kill = os.kill  # NetworkManager's SIGHUP
    _running: dict[str, int] | None = None

    # -- reading -------------------------------------------------------------------------------
    def running(self) -> dict[str, int]:
        """The managers running in this network namespace: name -> PID."""
        if self._running is None:
            self._running = {}
            try:
                entries = os.listdir(self.paths.proc)
            except OSError:
                entries = []
            for entry in entries:
                if not entry.isdigit():
                    continue
                try:
                    comm = (self.paths.proc / entry / "comm").read_text().strip()
                except OSError:
                    continue
                name = COMMS.get(comm)
                if name and _same_netns(self.paths.proc / "self", self.paths.proc / entry):
                    self._running[name] = int(entry)
        return self._running

    def managed(self) -> dict[int, str]:
        """ifindex -> the manager that manages that link (in this network namespace)."""
        found: dict[int, str] = {}
        running = self.running()
        if NETWORKD in running:
            for ifindex, fields in _state_files(self.paths.networkd_links):
                if fields.get("ADMIN_STATE") in NETWORKD_MANAGING:
                    found[ifindex] = NETWORKD
        if NETWORK_MANAGER in running:
            for ifindex, fields in _state_files(self.paths.nm_devices):
                # NetworkManager also "manages" a link it only watches (connected
                # externally: one networkd or a person configured), and its file does not
                # tell the two apart: networkd's claim, when it has one, is the real one
                if fields.get("managed") == "true":
                    found.setdefault(ifindex, NETWORK_MANAGER)
        return found

    # -- marking -------------------------------------------------------------------------------
    def host_network(self) -> bool:
        """Is this process in the host's network namespace (PID 1's)?"""
        return _same_netns(self.paths.proc / "self", self.paths.proc / "1")

    def marked(self, topology: str) -> dict[str, str]:
        """The marks written for ``topology``: manager -> the file's text."""
        found = {}
        for manager, path in self.paths.mark_files(topology).items():
            try:
                found[manager] = path.read_text()
            except OSError:
                continue
        return found

    def mark(self, topology: str, names: Collection[str], *, creating: bool = False
             ) -> list[str]:
        """Make ``topology``'s marks say exactly ``names`` (none: remove them), and have the
        running managers whose mark changed reload. ``creating``: an apply is about to make
        links, which are born under temporary names (TEMP_LINK_GLOB) and renamed: the marks
        cover those too while it runs. Problems, as sentences (a manager that would not
        reload: the mark applies at its next start)."""
        if not self.host_network():
            return []  # elsewhere, the names are other links (and the files not ours to touch)
        wanted = marks_for(topology, sorted(names), creating=creating) if names else {}
        return self.restore(topology, wanted)

    def restore(self, topology: str, texts: dict[str, str]) -> list[str]:
        """Put ``topology``'s marks back to ``texts`` (manager -> text; missing: no file)."""
        problems = []
        for manager, path in self.paths.mark_files(topology).items():
            text = texts.get(manager)
            try:
                current: str | None = path.read_text()
            except OSError:
                current = None
            if current == text:
                continue
            try:
                if text is None:
                    path.unlink(missing_ok=True)
                else:
                    _make_dir(path.parent)
                    temporary = path.with_name(f".{path.name}.tmp")
                    temporary.write_text(text)
                    # readable by networkd, which runs as systemd-network (and whatever the
                    # umask: the units set 0077)
                    temporary.chmod(0o644)
                    temporary.replace(path)
            except OSError as exc:
                problems.append(f"could not write {path}: {exc.strerror or exc}")
                continue
            problem = self._reload(manager)
            if problem:
                problems.append(problem)
        return problems

    def _reload(self, manager: str) -> str | None:
        pid = self.running().get(manager)
        if pid is None:
            return None  # not running: it reads the mark when it starts
        try:
            if manager == NETWORK_MANAGER:
                self.kill(pid, signal.SIGHUP)  # NetworkManager re-reads its conf.d on SIGHUP
            else:
                self.run(["networkctl", "reload"])
        except (OSError, subprocess.SubprocessError) as exc:
            return f"{manager} did not reload ({exc}): it applies netdecl's marks when it restarts"
        return None


def _make_dir(directory: Path) -> None:
    """``directory`` and its missing parents, 0755 (theirs to read) whatever the umask."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for made in reversed(missing):
        made.mkdir(exist_ok=True)
        made.chmod(0o755)


def marks_for(topology: str, names: list[str], *, creating: bool = False) -> dict[str, str]:
    """The text of each manager's mark that keeps it off ``names`` (and, ``creating``, off
    the temporary names links are born under)."""
    header = (f"# Written by netdecl for topology {topology}: these links are netdecl's.\n"
              f"# Removed by `netdecl destroy`; do not edit (netdecl rewrites it).\n")
    # "=": the name literally, not a glob
    nm = [f"interface-name:={name}" for name in names]
    networkd = list(names)
    if creating:
        nm.append(f"interface-name:{TEMP_LINK_GLOB}")  # no "=": a glob (NM takes * and ?)
        networkd.append(TEMP_LINK_GLOB)  # networkd's Name= takes shell globs
    return {NETWORK_MANAGER: f"{header}[keyfile]\nunmanaged-devices+={';'.join(nm)}\n",
            NETWORKD: f"{header}[Match]\nName={' '.join(networkd)}\n\n[Link]\nUnmanaged=yes\n"}


def _same_netns(one: Path, other: Path) -> bool:
    """Do these /proc/PID entries share a network namespace? By the namespace's identity when
    both can be read. A unit without CAP_SYS_PTRACE (netdecl's) may not read another process's
    /proc/PID/ns/net, but may its /proc/PID/net/dev: the same links, the same namespace (two
    namespaces with identical link names are not the case this serves: the host's)."""
    try:
        a, b = os.stat(one / "ns" / "net"), os.stat(other / "ns" / "net")
    except OSError:
        mine, theirs = _link_names(one), _link_names(other)
        return mine is not None and mine == theirs
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _link_names(proc_entry: Path) -> frozenset[str] | None:
    try:
        lines = (proc_entry / "net" / "dev").read_text().splitlines()[2:]  # 2 header lines
    except OSError:
        return None
    return frozenset(line.split(":", 1)[0].strip() for line in lines if ":" in line)


def _state_files(directory: Path) -> list[tuple[int, dict[str, str]]]:
    """(ifindex, KEY=VALUE fields) of each file named by an ifindex; sections and comments
    skipped."""
    found = []
    try:
        entries = os.listdir(directory)
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            text = (directory / entry).read_text(errors="replace")
        except OSError:
            continue
        fields = {}
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep and not line.startswith(("#", "[")):
                fields[key.strip()] = value.strip()
        found.append((int(entry), fields))
    return found
