"""Link kinds: one module each, owning everything about its kind (see base.py for what that
is). The layers above look a kind up here by name and never spell a kind's name themselves.

Adding a kind: a module beside these with a ``LinkKind`` subclass (and a ``LinkSpec`` for its
settings), and one line in ``LINK_KINDS``; tests/test_kinds.py checks that it has every piece.
"""

from __future__ import annotations

from netdecl.links import (
    bond,
    bridge,
    dummy,
    external,
    geneve,
    gre,
    hostdevice,
    ifb,
    iptunnel,
    ipvlan,
    macvlan,
    tuntap,
    veth,
    vlan,
    vrf,
    vxlan,
)
from netdecl.links.base import LinkKind
from netdecl.links.tunnel import kernels_own

LINK_KINDS: dict[str, LinkKind] = {k.name: k for k in (
    bridge.KIND,
    veth.KIND,
    vxlan.KIND,
    dummy.KIND,
    vlan.KIND,
    macvlan.KIND,
    ifb.KIND,
    vrf.KIND,
    iptunnel.IPIP,
    iptunnel.SIT,
    iptunnel.IP6TNL,
    gre.GRE,
    gre.GRETAP,
    geneve.KIND,
    ipvlan.KIND,
    bond.KIND,
    tuntap.TAP_KIND,
    tuntap.TUN_KIND,
    hostdevice.KIND,
    external.KIND,
)}
"""name (the file's ``kind:``, the kernel's IFLA_INFO_KIND) -> kind, in the schema's order."""

EXTERNAL = external.NAME


def link_kind(name: object) -> LinkKind | None:
    """The kind called ``name``; None for one netdecl does not know (a NIC, a tunnel...), or
    for what is no name at all (the checks read the file before the schema's verdict)."""
    return LINK_KINDS.get(name) if isinstance(name, str) else None


__all__ = ["EXTERNAL", "LINK_KINDS", "LinkKind", "kernels_own", "link_kind"]
