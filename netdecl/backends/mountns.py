"""Will the namespaces this process names under /run/netns outlive it?

A named namespace is a bind mount on /run/netns/NAME. `ip netns exec HOST netdecl apply`
runs netdecl in a mount namespace of ip's own (unshare, then every mount made a slave), which
dies with the command: the namespaces netdecl creates there vanish with it, and what is left
on the host is an empty /run/netns/NAME file. The test harness and `netdecl --sandbox` also
run in mount namespaces of their own, but those are kept alive (by a holder process, by a
bind-mounted namespace file) and have /run/netns as a tmpfs of their own: mounts there last.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from netdecl.backends.namespaces import NETNS_RUN_DIR

HINT = "use `nsenter --net=/run/netns/HOST netdecl ...` instead of `ip netns exec HOST`"


@dataclass(frozen=True)
class MountEntry:
    point: str
    fstype: str
    tags: tuple[str, ...]  # optional fields: shared:N, master:N, propagate_from:N, unbindable

    @property
    def shared(self) -> bool:
        return any(t.startswith("shared:") for t in self.tags)

    @property
    def slave(self) -> bool:
        return any(t.startswith("master:") for t in self.tags)


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[MountEntry]:
    """/proc/PID/mountinfo: ID PARENT MAJ:MIN ROOT POINT OPTIONS [TAGS...] - FSTYPE SOURCE ..."""
    entries = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields or len(fields) < 7:
            continue
        dash = fields.index("-", 6)
        entries.append(MountEntry(point=_unescape(fields[4]), tags=tuple(fields[6:dash]),
                                  fstype=fields[dash + 1] if dash + 1 < len(fields) else ""))
    return entries


def mount_of(entries: list[MountEntry], path: str) -> MountEntry | None:
    """The mount ``path`` is on: the last-mounted entry with the longest matching point."""
    best: MountEntry | None = None
    for entry in entries:
        point = entry.point
        if point == "/" or path == point or path.startswith(point + "/"):
            if best is None or len(point) >= len(best.point):  # stacked: the later one
                best = entry
    return best


def lasting_problem(entries: list[MountEntry], same_as_init: bool | None,
                    run_dir: str = NETNS_RUN_DIR) -> str | None:
    """Why namespace mounts made under ``run_dir`` would die with this process, or None.

    ``same_as_init``: whether this process shares PID 1's mount namespace (None: unknown)."""
    if same_as_init:
        return None  # the host's own mount namespace: lasts as long as the machine
    entry = mount_of(entries, run_dir)
    if entry is None:
        return None
    if entry.shared and not entry.slave:
        return None  # propagates to its peers, which outlive us
    if entry.point == run_dir and entry.fstype == "tmpfs" and not entry.slave:
        return None  # a /run/netns of this mount namespace's own (harness, --sandbox)
    return (f"this process runs in a private mount namespace (as `ip netns exec` makes), so "
            f"the namespaces it creates under {run_dir} would vanish when it exits; {HINT}")


def _same_mount_namespace_as_init() -> bool | None:
    try:
        mine, init = os.stat("/proc/self/ns/mnt"), os.stat("/proc/1/ns/mnt")
    except OSError:
        return None  # PID 1's is not ours to read (a container, hidepid): ask mountinfo alone
    return (mine.st_dev, mine.st_ino) == (init.st_dev, init.st_ino)


def namespaces_would_vanish() -> str | None:
    """The problem, in one line, if named namespaces made by this process would not outlive
    it; None when they last."""
    try:
        with open("/proc/self/mountinfo") as fh:
            entries = parse_mountinfo(fh.read())
    except OSError:
        return None
    return lasting_problem(entries, _same_mount_namespace_as_init())


__all__ = ["MountEntry", "lasting_problem", "mount_of", "namespaces_would_vanish",
           "parse_mountinfo"]
