"""Wait, a bounded time, for links someone else makes (the host's NICs) to appear by name.

At boot udev may rename a NIC (eth0 -> enp1s0) after netdecl starts; a topology that declares
it `kind: external` would otherwise be planned against a host that lacks it. The wait is
driven by the kernel's own link notifications (RTNLGRP_LINK), not by polling: the socket is
subscribed before the names are checked, so a link that appears in between is not missed.
Only the calling process's network namespace (where a host's NICs live).
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Collection

from netdecl.nlconst import RTNLGRP_LINK


def _exists(name: str) -> bool:
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True


def wait_for_links(names: Collection[str], timeout: float) -> list[str]:
    """Wait up to ``timeout`` seconds until every link in ``names`` exists; the names still
    missing then (sorted; empty: all there)."""
    missing = sorted(n for n in names if not _exists(n))
    if not missing or timeout <= 0:
        return missing
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                       socket.NETLINK_ROUTE) as sock:
        sock.bind((0, 1 << (RTNLGRP_LINK - 1)))
        sock.setblocking(False)
        while True:
            missing = [n for n in missing if not _exists(n)]
            left = deadline - time.monotonic()
            if not missing or left <= 0:
                return missing
            if select.select([sock], [], [], left)[0]:
                _drain(sock)


def _drain(sock: socket.socket) -> None:
    """Discard the queued notifications: they only say "look again". An overrun queue
    (ENOBUFS) says the same."""
    while True:
        try:
            sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
