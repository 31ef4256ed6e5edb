"""Whether this kernel can make links of a kind, asked before plan and apply change anything.

How, and why this way: the kernel is asked itself, with an RTM_NEWLINK that names the kind and
cannot succeed. rtnetlink looks the kind up first; when no loaded module registered it, it
asks for ``rtnl-link-KIND`` (the same autoload a real create would trigger: a module that can
be loaded is loaded now) and answers EOPNOTSUPP ("Unknown device type") only when there still
is none. When the kind is there, the request goes on and fails on what the probe sends on
purpose: zero transmit and receive queues, which rtnl_create_link (and alloc_netdev_mqs before
it, since Linux 3.x) refuses with EINVAL before any device is registered, so nothing is ever
made, in any namespace.

The files one might read instead each miss a case: /sys/module/NAME lists a built-in module
only when it has parameters (on a 6.18 kernel with veth and macvlan built in, neither is
there); /proc/modules does not exist on a kernel without module support; modules.builtin lives
under /lib/modules, which a container or a minimal VM may not have; and a module that is not
loaded yet may still load on first use. A throwaway namespace to create a real link in would
need CAP_SYS_ADMIN and a thread to enter it, for no better answer.

Kinds made through a character device instead (a tap: /dev/net/tun, whose rtnetlink kind
refuses every create) are probed by opening that device, which loads its module the same way
(misc_open asks for char-major-10-200) and makes nothing until a TUNSETIFF.

An answer the probe cannot trust (EPERM: no CAP_NET_ADMIN; a device node it may not open)
counts as present: the check exists to turn a certain failure into a clear message, never to
refuse what might work.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable, Iterable

from netdecl.backends.rtnl import RtnlError, RtnlSocket
from netdecl.links.base import LinkKind
from netdecl.nlattr import attr_str, attr_u32, nested
from netdecl.nlconst import (
    IFINFOMSG,
    IFLA_INFO_KIND,
    IFLA_LINKINFO,
    IFLA_NUM_RX_QUEUES,
    IFLA_NUM_TX_QUEUES,
    NLM_F_CREATE,
    NLM_F_EXCL,
    RTM_NEWLINK,
)

# what the kernel answers for a kind it has no module for (an unknown IFLA_INFO_KIND)
NO_SUCH_KIND = errno.EOPNOTSUPP
# what opening a device node answers when no driver is behind it
NO_SUCH_DEVICE = (errno.ENOENT, errno.ENODEV, errno.ENXIO)


def rtnl_has_kind(sock: RtnlSocket, kind: str) -> bool:
    """Whether rtnetlink knows ``kind`` (after loading its module, if it can): see above."""
    body = (IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
            + attr_u32(IFLA_NUM_TX_QUEUES, 0) + attr_u32(IFLA_NUM_RX_QUEUES, 0)
            + nested(IFLA_LINKINFO, attr_str(IFLA_INFO_KIND, kind)))
    try:
        sock.call(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body)
    except RtnlError as exc:
        return exc.errno != NO_SUCH_KIND
    return True  # (no kernel accepts zero queues: see above)


def device_present(path: str) -> bool:
    """Whether the character device at ``path`` has a driver (after loading it, if it can)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return exc.errno not in NO_SUCH_DEVICE
    os.close(fd)
    return True


def missing_modules(kinds: Iterable[LinkKind],
                    root_rtnl: Callable[[], RtnlSocket]) -> list[LinkKind]:
    """The kinds among ``kinds`` this kernel cannot make; ``root_rtnl`` gives the socket to ask
    with (opened only when a kind needs asking)."""
    missing = []
    for kind in kinds:
        if kind.module is None or not kind.made:
            continue
        present = (device_present(kind.made_through) if kind.made_through is not None
                   else rtnl_has_kind(root_rtnl(), kind.name))
        if not present:
            missing.append(kind)
    return missing
