"""kind: vlan: an 802.1Q (or 802.1ad) VLAN on a parent link, ``link:`` in the file.

The kernel cannot move a VLAN to another id, protocol or parent: any of those changes makes a
new device. Frames it sends leave its parent tagged with its id; frames arriving on the parent
with that tag come out of it.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from netdecl.links.base import (
    PARENT_KEY,
    End,
    ExportView,
    FileCheck,
    KernelLink,
    KernelRequest,
    LinkKind,
    check_parent,
    file_parent,
    kernel_parent,
    parent_attr,
    parent_elsewhere,
    parent_export,
    parent_from_record,
    parent_label,
    parent_shown,
    parent_value,
)
from netdecl.model import Link, LinkSpec
from netdecl.nlattr import attr

NAME = "vlan"

IFLA_VLAN_ID, IFLA_VLAN_PROTOCOL = 1, 5  # linux/if_link.h, IFLA_INFO_DATA of a vlan
_U16 = struct.Struct("=H")  # the id: host order
_BE16 = struct.Struct("!H")  # the protocol: an ethertype, network order

# the file's protocol -> its ethertype (linux/if_ether.h ETH_P_8021Q, ETH_P_8021AD)
PROTOCOLS = {"802.1Q": 0x8100, "802.1ad": 0x88A8}
DEFAULT_PROTOCOL = "802.1Q"
_BY_ETHERTYPE = {number: name for name, number in PROTOCOLS.items()}


@dataclass(frozen=True)
class VlanSpec(LinkSpec):
    RECREATE: ClassVar[dict[str, str]] = {"link": "parent link changed",
                                          "vlan": "vlan id or protocol changed"}

    id: int = 0
    protocol: str = DEFAULT_PROTOCOL
    link: str | None = None  # the parent; None: gone
    link_netns: str | None = None  # the parent's namespace when not the link's own

    def flat(self) -> dict[str, Any]:
        return {"link": parent_value(self.link, self.link_netns),
                "vlan": {"id": self.id, "protocol": self.protocol}}

    def uses(self) -> tuple[str, ...]:
        return (self.link,) if self.link and self.link_netns is None else ()

    def uses_elsewhere(self) -> tuple[tuple[str, str], ...]:
        return parent_elsewhere(self.link, self.link_netns)


class Vlan(LinkKind):
    name: ClassVar[str] = NAME
    module: ClassVar[str | None] = "8021q"
    settings_key: ClassVar[str | None] = "vlan"
    settings_required: ClassVar[bool] = True
    settings_hint: ClassVar[str] = "a vlan link needs its id: vlan: {id: ...}"
    settings_schema: ClassVar[dict[str, Any]] = {"$ref": "#/$defs/vlan"}
    schema_defs: ClassVar[dict[str, Any]] = {"vlan": {
        "type": "object",
        "additionalProperties": False,
        "required": ["id"],
        "description": "VLAN settings (kind vlan only); the parent is the entry's link:.",
        "properties": {
            "id": {"type": "integer", "minimum": 1, "maximum": 4094},
            "protocol": {"enum": list(PROTOCOLS), "default": DEFAULT_PROTOCOL,
                         "description": "The tag: 802.1Q, or 802.1ad (QinQ's outer tag)."},
        },
    }}
    parented: ClassVar[bool] = True

    def specs(self, ends: Sequence[End]) -> list[LinkSpec | None]:
        entry = ends[0].entry
        parent, netns = file_parent(ends[0].namespace, entry[PARENT_KEY])
        vlan = entry["vlan"]
        return [VlanSpec(id=int(vlan["id"]), protocol=vlan.get("protocol", DEFAULT_PROTOCOL),
                         link=parent, link_netns=netns)]

    def check(self, ctx: FileCheck, ends: Sequence[End]) -> None:
        # the kernel refuses a second VLAN of one id and protocol on one parent (EEXIST)
        seen: dict[tuple[str, str, str, int], str] = {}
        for end in ends:
            parent = check_parent(ctx, end)
            vlan = end.entry.get("vlan")
            if parent is None or not isinstance(vlan, dict):
                continue
            vid, protocol = vlan.get("id"), vlan.get("protocol", DEFAULT_PROTOCOL)
            if not isinstance(vid, int) or isinstance(vid, bool) or not isinstance(protocol,
                                                                                   str):
                continue  # the schema says what is wrong
            other = seen.setdefault((parent.namespace, parent.name, protocol, vid), end.name)
            if other != end.name:
                ctx.error((*end.path, "vlan", "id"),
                          f"vlan id {vid} is already used by {ctx.quoted(other)} on "
                          f"{ctx.quoted(parent.name)}")

    def exportable(self, link: Link, view: ExportView) -> bool:
        """Its parent shown too."""
        spec = link.spec
        return isinstance(spec, VlanSpec) and parent_shown(link, spec.link, spec.link_netns, view)

    def export(self, link: Link, view: ExportView) -> dict[str, Any]:
        spec = link.spec
        assert isinstance(spec, VlanSpec)
        vlan: dict[str, Any] = {"id": spec.id}
        if spec.protocol != DEFAULT_PROTOCOL:
            vlan["protocol"] = spec.protocol
        return {PARENT_KEY: parent_export(spec.link, spec.link_netns), "vlan": vlan}

    def spec_from_record(self, data: Mapping[str, Any]) -> LinkSpec | None:
        vlan = data.get("vlan")
        if vlan is None:
            return None
        parent, netns = parent_from_record(data.get("link"))
        return VlanSpec(id=int(vlan["id"]), protocol=vlan["protocol"], link=parent,
                        link_netns=netns)

    def create_data(self, link: Link, request: KernelRequest) -> bytes:
        spec = link.spec
        assert isinstance(spec, VlanSpec)
        return attr(IFLA_VLAN_ID, _U16.pack(spec.id)) + \
            attr(IFLA_VLAN_PROTOCOL, _BE16.pack(PROTOCOLS[spec.protocol]))

    def create_attrs(self, link: Link, request: KernelRequest) -> bytes:
        spec = link.spec
        assert isinstance(spec, VlanSpec)
        return parent_attr(spec.link, request)

    def parse(self, link: KernelLink) -> LinkSpec | None:
        parent, netns = kernel_parent(link)
        data = link.info_data
        vid, ethertype = data.get(IFLA_VLAN_ID), data.get(IFLA_VLAN_PROTOCOL)
        protocol = (_BY_ETHERTYPE.get(_BE16.unpack_from(ethertype)[0], "unknown") if ethertype
                    else DEFAULT_PROTOCOL)
        return VlanSpec(id=_U16.unpack_from(vid)[0] if vid else 0, protocol=protocol,
                        link=parent, link_netns=netns)

    def label(self, link: Link) -> str:
        spec = link.spec
        if not isinstance(spec, VlanSpec):
            return NAME
        tag = "" if spec.protocol == DEFAULT_PROTOCOL else f" {spec.protocol}"
        return f"vlan {spec.id}{tag} on {parent_label(spec.link, spec.link_netns)}"


KIND = Vlan()
