"""kind: ifb: an intermediate functional block, where what a link receives is redirected so
that it can be shaped on the ifb's egress (Linux shapes only what leaves a device). netdecl
makes one per link with ``shaping: {ingress: ...}``, the way the CNI bandwidth plugin does;
it may also be declared by hand. No settings of its own.
"""

from __future__ import annotations

from typing import ClassVar

from netdecl.links.base import LinkKind

NAME = "ifb"


def ifb_for(namespace: str, link: str) -> str:
    """The name of the ifb that shapes what ``link`` receives: fixed by the link's identity
    in the file (15 bytes, IFNAMSIZ), so plans find it again."""
    import hashlib  # here: its import (OpenSSL) costs ~10 ms that only shaped files need

    return "ifb" + hashlib.sha256(f"{namespace}/{link}".encode()).hexdigest()[:12]


class Ifb(LinkKind):
    name: ClassVar[str] = NAME
    # what reaches it was redirected to it on this host; it leads nowhere else
    host_local: ClassVar[bool] = True
    module: ClassVar[str | None] = "ifb"


KIND = Ifb()
