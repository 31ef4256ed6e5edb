"""Taps and tuns: made through /dev/net/tun (TUNSETIFF), not RTM_NEWLINK, whose kind for them
refuses every create ("tun/tap creation via rtnetlink is not supported").

The device is made in the network namespace of the thread that opens /dev/net/tun (the file
remembers it), so the open runs inside the link's namespace. TUNSETPERSIST keeps the device
after the file is closed, as `ip tuntap add` does; from then on it is a link like any other
(renamed, configured and deleted over rtnetlink). What it is made with (tap or tun, multi
queue, vnet header, owner, group) is its kind's (links/tuntap.py).
"""

from __future__ import annotations

import fcntl
import os
import struct

from netdecl.backends import namespaces

DEVICE = "/dev/net/tun"
# linux/if_tun.h ioctls: _IOW('T', 202/203/204/206, int)
TUNSETIFF, TUNSETPERSIST, TUNSETOWNER, TUNSETGROUP = 0x400454CA, 0x400454CB, 0x400454CC, 0x400454CE
_IFREQ = struct.Struct("=16sH22x")  # struct ifreq: the name, ifr_flags, the rest of the union


def create(namespace: str, name: str, flags: int, owner: int | None, group: int | None) -> None:
    """Make the persistent tap or tun ``name`` (IFF_* ``flags``) in ``namespace``."""

    def make() -> None:
        fd = os.open(DEVICE, os.O_RDWR | os.O_CLOEXEC)
        try:
            fcntl.ioctl(fd, TUNSETIFF, _IFREQ.pack(name.encode(), flags))
            if owner is not None:
                fcntl.ioctl(fd, TUNSETOWNER, owner)
            if group is not None:
                fcntl.ioctl(fd, TUNSETGROUP, group)
            fcntl.ioctl(fd, TUNSETPERSIST, 1)
        finally:
            os.close(fd)

    namespaces.run_in(namespace, make)
