"""kind: dummy: a link that leads nowhere, for addresses the host answers on whatever NIC the
traffic comes in by (service addresses, a loopback-style address of its own, like kube-proxy's
kube-ipvs0).

It has no settings of its own: everything about it (addresses, mtu, mac, up) is common.
"""

from __future__ import annotations

from typing import ClassVar

from netdecl.links.base import LinkKind

NAME = "dummy"


class Dummy(LinkKind):
    name: ClassVar[str] = NAME
    module: ClassVar[str | None] = "dummy"
    # frames sent through it are dropped: nothing outside the host hears its segment
    host_local: ClassVar[bool] = True


KIND = Dummy()
