"""sd_notify, by hand: tell systemd the agent is ready, alive (watchdog) and stopping.

The protocol is one datagram of `KEY=VALUE` lines sent to the AF_UNIX socket named in
$NOTIFY_SOCKET (a path, or an abstract name written with a leading `@`); systemd sets it for
`Type=notify` services and, with `WatchdogSec=`, sets $WATCHDOG_USEC (and $WATCHDOG_PID, the
process meant) too. Written here rather than taken from a package: the protocol is these few
lines, `sdnotify` on PyPI has had no release since 2017, and `systemd-python` (python3-systemd)
is a C extension built against libsystemd, a build dependency for one sendto.

Without $NOTIFY_SOCKET (run by hand, under another supervisor) every call does nothing.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


class Notifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        # "@name" is Linux's abstract namespace: a leading NUL byte on the wire
        self.address = "\0" + raw[1:] if raw.startswith("@") else raw
        self.watchdog_interval: float | None = None
        usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            # ping at half the timeout, as sd_watchdog_enabled(3) advises
            self.watchdog_interval = int(usec) / 2e6

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, **fields: str) -> bool:
        """One notification (READY="1", STATUS="..."); False if not sent (no socket, or
        systemd is gone: the agent must not fail for that)."""
        if not self.address or not fields:
            return False
        message = "\n".join(f"{key}={value}" for key, value in fields.items())
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.sendto(message.encode(), self.address)
        except OSError:
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send(READY="1", STATUS=status)

    def status(self, status: str) -> bool:
        return self.send(STATUS=status)

    def watchdog(self) -> bool:
        return self.watchdog_interval is not None and self.send(WATCHDOG="1")

    def stopping(self) -> bool:
        return self.send(STOPPING="1")
