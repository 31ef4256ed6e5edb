"""kind: macvlan: a link with a MAC address of its own on a parent link (``link:`` in the
file), as Docker's and the CNI's macvlan networks make them.

The mode says what the macvlans of one parent may say to each other: ``bridge`` (directly),
``private`` (nothing), ``vepa`` (only through the switch outside, which must send frames back),
``passthru`` (one macvlan takes the parent over), ``source`` (it receives the frames whose
source MAC is one of its ``macs``, beside whatever else the parent gets: how a macvtap
follows a VM's traffic). A new mode or parent makes a new device; a source macvlan's MAC list
changes in place (IFLA_MACVLAN_MACADDR_MODE set).
"""

from __future__ import annotations

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
from netdecl.nlattr import as_mac, as_u32, attr, attr_u32, each_attr, nested

NAME = "macvlan"

# linux/if_link.h, IFLA_INFO_DATA of a macvlan
IFLA_MACVLAN_MODE, IFLA_MACVLAN_MACADDR_MODE, IFLA_MACVLAN_MACADDR = 1, 3, 4
IFLA_MACVLAN_MACADDR_DATA = 5
MACVLAN_MACADDR_SET = 3  # replace the source list with the one given
# the file's mode -> the kernel's (enum macvlan_mode)
MODES = {"private": 1, "vepa": 2, "bridge": 4, "passthru": 8, "source": 16}
SOURCE = "source"
DEFAULT_MODE = "bridge"
_BY_NUMBER = {number: name for name, number in MODES.items()}


@dataclass(frozen=True)
class MacvlanSpec(LinkSpec):
    RECREATE: ClassVar[dict[str, str]] = {"link": "parent link changed",
                                          "macvlan": "macvlan mode changed"}

    mode: str = DEFAULT_MODE
    link: str | None = None  # the parent; None: gone
    link_netns: str | None = None  # the parent's namespace when not the link's own
    macs: tuple[str, ...] | None = None  # source mode's MACs, sorted; None in other modes

    def flat(self) -> dict[str, Any]:
        return {"link": parent_value(self.link, self.link_netns), "macvlan": {"mode": self.mode},
                "macs": self.macs}

    def flat_json(self) -> dict[str, Any]:
        """Records keep the MAC list only in source mode (older records read the same)."""
        flat = self.flat()
        if self.macs is None:
            del flat["macs"]
        else:
            flat["macs"] = list(self.macs)
        return flat

    def uses(self) -> tuple[str, ...]:
        return (self.link,) if self.link and self.link_netns is None else ()

    def uses_elsewhere(self) -> tuple[tuple[str, str], ...]:
        return parent_elsewhere(self.link, self.link_netns)


class Macvlan(LinkKind):
    name: ClassVar[str] = NAME
    module: ClassVar[str | None] = "macvlan"
    settings_key: ClassVar[str | None] = "macvlan"
    settings_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "description": "macvlan settings (kind macvlan only); the parent is the entry's link:.",
        "properties": {
            "mode": {"enum": list(MODES), "default": DEFAULT_MODE,
                     "description": "What the macvlans of one parent may say to each other: "
                                    "bridge (directly), private (nothing), vepa (through the "
                                    "switch outside), passthru (one macvlan owns the parent), "
                                    "source (it receives the frames from its macs)."},
            "macs": {"type": "array", "items": {"$ref": "#/$defs/mac"}, "uniqueItems": True,
                     "description": "source mode only: the source MACs whose frames it "
                                    "receives (changed in place)."},
        },
    }
    parented: ClassVar[bool] = True
    on_parent_segment: ClassVar[bool] = True
    layer2: ClassVar[bool] = True

    def specs(self, ends: Sequence[End]) -> list[LinkSpec | None]:
        entry = ends[0].entry
        parent, netns = file_parent(ends[0].namespace, entry[PARENT_KEY])
        settings = entry.get("macvlan") or {}
        mode = settings.get("mode", DEFAULT_MODE)
        macs = tuple(sorted(m.lower() for m in settings.get("macs", []))) if mode == SOURCE \
            else None
        return [MacvlanSpec(mode=mode, link=parent, link_netns=netns, macs=macs)]

    def check(self, ctx: FileCheck, ends: Sequence[End]) -> None:
        for end in ends:
            settings = end.entry.get("macvlan")
            if isinstance(settings, dict) and "macs" in settings and \
                    settings.get("mode", DEFAULT_MODE) != SOURCE:
                ctx.error((*end.path, "macvlan", "macs"),
                          f"macs are the source list of a macvlan in mode source, not "
                          f"{settings.get('mode', DEFAULT_MODE)}")
            parent = check_parent(ctx, end)
            if parent is not None and isinstance(parent.spec.get("master"), str):
                # the bridge holds the port's frames (its rx handler): the kernel refuses
                ctx.error((*end.path, PARENT_KEY),
                          f"{ctx.quoted(parent.name)} is a port of bridge "
                          f"{ctx.quoted(parent.spec['master'])}: a macvlan cannot be made on "
                          "a bridge port (make it on the bridge)")

    def exportable(self, link: Link, view: ExportView) -> bool:
        """Its parent shown too."""
        spec = link.spec
        return isinstance(spec, MacvlanSpec) and spec.mode in MODES \
            and parent_shown(link, spec.link, spec.link_netns, view)

    def export(self, link: Link, view: ExportView) -> dict[str, Any]:
        spec = link.spec
        assert isinstance(spec, MacvlanSpec)
        settings: dict[str, Any] = {"mode": spec.mode}
        if spec.macs:
            settings["macs"] = list(spec.macs)
        return {PARENT_KEY: parent_export(spec.link, spec.link_netns), "macvlan": settings}

    def spec_from_record(self, data: Mapping[str, Any]) -> LinkSpec | None:
        macvlan = data.get("macvlan")
        if macvlan is None:
            return None
        parent, netns = parent_from_record(data.get("link"))
        macs = data.get("macs")
        return MacvlanSpec(mode=macvlan["mode"], link=parent, link_netns=netns,
                           macs=tuple(macs) if macs is not None else None)

    def create_data(self, link: Link, request: KernelRequest) -> bytes:
        spec = link.spec
        assert isinstance(spec, MacvlanSpec)
        return attr_u32(IFLA_MACVLAN_MODE, MODES[spec.mode]) + self._sources(spec)

    def change_data(self, link: Link, changed: set[str]) -> bytes | None:
        spec = link.spec
        if "macs" not in changed or not isinstance(spec, MacvlanSpec) or spec.mode != SOURCE:
            return None
        return self._sources(spec) or None

    @staticmethod
    def _sources(spec: MacvlanSpec) -> bytes:
        """The source list, replacing whatever the macvlan had (source mode only)."""
        if spec.mode != SOURCE or spec.macs is None:
            return b""
        data = b"".join(attr(IFLA_MACVLAN_MACADDR, bytes.fromhex(mac.replace(":", "")))
                        for mac in spec.macs)
        return attr_u32(IFLA_MACVLAN_MACADDR_MODE, MACVLAN_MACADDR_SET) + \
            nested(IFLA_MACVLAN_MACADDR_DATA, data)

    def create_attrs(self, link: Link, request: KernelRequest) -> bytes:
        spec = link.spec
        assert isinstance(spec, MacvlanSpec)
        return parent_attr(spec.link, request)

    def parse(self, link: KernelLink) -> LinkSpec | None:
        parent, netns = kernel_parent(link)
        number = as_u32(link.info_data.get(IFLA_MACVLAN_MODE))
        # a mode netdecl does not write (source) reads as its number: never equal to a file's
        mode = _BY_NUMBER.get(number, str(number)) if number is not None else DEFAULT_MODE
        macs = None
        if mode == SOURCE:
            found = link.info_data.get(IFLA_MACVLAN_MACADDR_DATA) or b""
            macs = tuple(sorted(mac for kind, raw in each_attr(found)
                                if kind == IFLA_MACVLAN_MACADDR and (mac := as_mac(raw))))
        return MacvlanSpec(mode=mode, link=parent, link_netns=netns, macs=macs)

    def reaches_sibling(self, link: Link, other: Link) -> bool:
        """Bridge mode: macvlans of one parent talk directly; in the other modes the frame
        leaves through the parent (vepa: for the switch outside to send back)."""
        return all(isinstance(lk.spec, MacvlanSpec) and lk.spec.mode == "bridge"
                   for lk in (link, other))

    def label(self, link: Link) -> str:
        spec = link.spec
        if not isinstance(spec, MacvlanSpec):
            return NAME
        return f"macvlan {spec.mode} on {parent_label(spec.link, spec.link_netns)}"


KIND = Macvlan()
