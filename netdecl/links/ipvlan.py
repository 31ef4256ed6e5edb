"""kind: ipvlan: a link sharing its parent's MAC (``link:`` in the file), told apart from its
siblings by IP address rather than by MAC, as Docker's and the CNI's ipvlan networks make them:
for a parent whose switch port accepts one MAC only (a cloud NIC, port security).

``mode``: l2 (the ipvlans switch frames among themselves and answer ARP), l3 (the parent
routes: no broadcast, no ARP, each ipvlan reached through its addresses), l3s (l3 with the
host's netfilter seeing the traffic). ``flag``: bridge (siblings talk directly), private
(they do not), vepa (only through the switch outside). Both belong to the parent, not to one
ipvlan: the kernel keeps them on the parent's ipvlan port, so the last ipvlan made or changed
sets them for all its siblings, and validate refuses ipvlans of one parent that disagree. The
kernel changes them in place (ipvlan_nl_changelink); a new parent makes a new device.
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

NAME = "ipvlan"

IFLA_IPVLAN_MODE, IFLA_IPVLAN_FLAGS = 1, 2  # linux/if_link.h, IFLA_INFO_DATA of an ipvlan
_U16 = struct.Struct("=H")
MODES = {"l2": 0, "l3": 1, "l3s": 2}  # enum ipvlan_mode
FLAGS = {"bridge": 0, "private": 1, "vepa": 2}  # IPVLAN_F_PRIVATE, IPVLAN_F_VEPA
DEFAULT_MODE, DEFAULT_FLAG = "l3", "bridge"  # what `ip link add ... type ipvlan` makes


def _word(table: dict[str, int], raw: bytes | None, default: str) -> str:
    """The file's word for a number the kernel reports (an unknown one reads as its number:
    never equal to a file's)."""
    if not raw:
        return default
    number = _U16.unpack_from(raw)[0]
    return next((w for w, n in table.items() if n == number), str(number))


@dataclass(frozen=True)
class IpvlanSpec(LinkSpec):
    RECREATE: ClassVar[dict[str, str]] = {"link": "parent link changed"}

    mode: str = DEFAULT_MODE
    flag: str = DEFAULT_FLAG
    link: str | None = None  # the parent; None: gone
    link_netns: str | None = None  # the parent's namespace when not the link's own

    def flat(self) -> dict[str, Any]:
        return {"link": parent_value(self.link, self.link_netns),
                "ipvlan": {"mode": self.mode, "flag": self.flag}}

    def uses(self) -> tuple[str, ...]:
        return (self.link,) if self.link and self.link_netns is None else ()

    def uses_elsewhere(self) -> tuple[tuple[str, str], ...]:
        return parent_elsewhere(self.link, self.link_netns)


class Ipvlan(LinkKind):
    name: ClassVar[str] = NAME
    module: ClassVar[str | None] = "ipvlan"
    settings_key: ClassVar[str | None] = "ipvlan"
    settings_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "description": "ipvlan settings (kind ipvlan only); the parent is the entry's link:.",
        "properties": {
            "mode": {"enum": list(MODES), "default": DEFAULT_MODE,
                     "description": "l2: switched among the parent's ipvlans, with ARP; l3: "
                                    "routed by the parent, no broadcast; l3s: l3 seen by the "
                                    "host's netfilter."},
            "flag": {"enum": list(FLAGS), "default": DEFAULT_FLAG,
                     "description": "bridge: siblings talk directly; private: they do not; "
                                    "vepa: only through the switch outside."},
        },
    }
    parented: ClassVar[bool] = True
    on_parent_segment: ClassVar[bool] = True
    layer2: ClassVar[bool] = True

    def specs(self, ends: Sequence[End]) -> list[LinkSpec | None]:
        entry = ends[0].entry
        parent, netns = file_parent(ends[0].namespace, entry[PARENT_KEY])
        settings = entry.get("ipvlan") or {}
        return [IpvlanSpec(mode=settings.get("mode", DEFAULT_MODE),
                           flag=settings.get("flag", DEFAULT_FLAG), link=parent, link_netns=netns)]

    def check(self, ctx: FileCheck, ends: Sequence[End]) -> None:
        # (namespace, parent) -> the first ipvlan's name and (mode, flag)
        first: dict[tuple[str, str], tuple[str, tuple[Any, Any]]] = {}
        for end in ends:
            parent = check_parent(ctx, end)
            settings = end.entry.get("ipvlan") or {}
            if parent is not None and isinstance(settings, dict):
                these = (settings.get("mode", DEFAULT_MODE), settings.get("flag", DEFAULT_FLAG))
                name, theirs = first.setdefault((parent.namespace, parent.name), (end.name, these))
                if theirs != these:
                    ctx.error((*end.path, "ipvlan"),
                              f"ipvlan {ctx.quoted(end.name)} is mode {these[0]}, flag "
                              f"{these[1]}, but {ctx.quoted(name)} on the same parent is mode "
                              f"{theirs[0]}, flag {theirs[1]}: the kernel keeps one mode and "
                              "flag per parent")
            if parent is not None and isinstance(parent.spec.get("master"), str):
                # the bridge (or bond) holds the port's frames (its rx handler): refused
                ctx.error((*end.path, PARENT_KEY),
                          f"{ctx.quoted(parent.name)} is a port of "
                          f"{ctx.quoted(parent.spec['master'])}: an ipvlan cannot be made on "
                          "it (make it on its master)")
            if end.entry.get("mac") is not None:
                ctx.error((*end.path, "mac"), "an ipvlan has its parent's MAC: it takes no "
                                              "mac of its own")

    def exportable(self, link: Link, view: ExportView) -> bool:
        """Its parent shown too."""
        spec = link.spec
        return isinstance(spec, IpvlanSpec) and spec.mode in MODES and spec.flag in FLAGS \
            and parent_shown(link, spec.link, spec.link_netns, view)

    def export(self, link: Link, view: ExportView) -> dict[str, Any]:
        spec = link.spec
        assert isinstance(spec, IpvlanSpec)
        return {PARENT_KEY: parent_export(spec.link, spec.link_netns),
                "ipvlan": {"mode": spec.mode, "flag": spec.flag}}

    def spec_from_record(self, data: Mapping[str, Any]) -> LinkSpec | None:
        ipvlan = data.get("ipvlan")
        if ipvlan is None:
            return None
        parent, netns = parent_from_record(data.get("link"))
        return IpvlanSpec(mode=ipvlan["mode"], flag=ipvlan["flag"], link=parent, link_netns=netns)

    def create_data(self, link: Link, request: KernelRequest) -> bytes:
        return self._data(link)

    def change_data(self, link: Link, changed: set[str]) -> bytes | None:
        return self._data(link) if "ipvlan" in changed else None

    def _data(self, link: Link) -> bytes:
        spec = link.spec
        assert isinstance(spec, IpvlanSpec)
        return attr(IFLA_IPVLAN_MODE, _U16.pack(MODES[spec.mode])) + \
            attr(IFLA_IPVLAN_FLAGS, _U16.pack(FLAGS[spec.flag]))

    def create_attrs(self, link: Link, request: KernelRequest) -> bytes:
        spec = link.spec
        assert isinstance(spec, IpvlanSpec)
        return parent_attr(spec.link, request)

    def parse(self, link: KernelLink) -> LinkSpec | None:
        parent, netns = kernel_parent(link)
        data = link.info_data
        return IpvlanSpec(mode=_word(MODES, data.get(IFLA_IPVLAN_MODE), DEFAULT_MODE),
                          flag=_word(FLAGS, data.get(IFLA_IPVLAN_FLAGS), DEFAULT_FLAG),
                          link=parent, link_netns=netns)

    def reaches_sibling(self, link: Link, other: Link) -> bool:
        """bridge flag: ipvlans of one parent talk directly (in l3 too: the parent routes
        between them); private and vepa: not without the switch outside."""
        return all(isinstance(lk.spec, IpvlanSpec) and lk.spec.flag == "bridge"
                   for lk in (link, other))

    def label(self, link: Link) -> str:
        spec = link.spec
        if not isinstance(spec, IpvlanSpec):
            return NAME
        flag = "" if spec.flag == DEFAULT_FLAG else f" {spec.flag}"
        return f"ipvlan {spec.mode}{flag} on {parent_label(spec.link, spec.link_netns)}"


KIND = Ipvlan()
