"""kind: external: a link the host owns (its NIC), named so that others can use it.

netdecl never creates or deletes it; routes, NAT, VXLANs and bridge ports may name it, and
only the attributes the file declares on it (addresses beside its own, mtu, up, master) are
managed, their values from before netdecl put back on destroy. It is its own object type,
model.ExternalLink, and `show` writes every link it cannot write as another kind as one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from netdecl.links.base import End, ExportView, LinkKind
from netdecl.model import ExternalLink, Link, NetObject

NAME = "external"


class External(LinkKind):
    name: ClassVar[str] = NAME
    made: ClassVar[bool] = False
    refuses_because: ClassVar[str] = ("netdecl manages only the addresses, mtu, up, master, "
                                      "promisc and allmulti declared on a link the host owns")
    refuses: ClassVar[tuple[str, ...]] = ("mac", "hairpin", "vlans")
    described: ClassVar[str] = (
        "external names an interface the host owns (its NIC): never created or deleted, and "
        "only the addresses (added beside its own), mtu, up and master declared on it are "
        "managed.")

    def build(self, ends: Sequence[End]) -> list[NetObject]:
        """Only what the file says about it is managed (no default up)."""
        entry = ends[0].entry
        mtu = entry.get("mtu")
        return [ExternalLink(namespace=ends[0].namespace, name=ends[0].name, up=entry.get("up"),
                             mtu=int(mtu) if mtu is not None else None,
                             master=entry.get("master"), promisc=entry.get("promisc"),
                             allmulti=entry.get("allmulti"))]

    def exportable(self, link: Link, view: ExportView) -> bool:
        return True

    def export(self, link: Link, view: ExportView) -> dict[str, Any]:
        return {}


KIND = External()
