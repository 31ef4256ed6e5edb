"""kind: macvlan: a link with a MAC address of its own on a parent link (``link:`` in the
file), as Docker's and the CNI's macvlan networks make them.

The mode says what the macvlans of one parent may say to each other: ``bridge`` (directly),
``private`` (nothing), ``vepa`` (only through the switch outside, which must send frames back),
``passthru`` (one macvlan takes the parent over). A new mode or parent makes a new device.
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
    parent_attr,
    parent_name,
)
from netdecl.model import Link, LinkSpec
from netdecl.nlattr import as_u32, attr_u32

NAME = "macvlan"

IFLA_MACVLAN_MODE = 1  # linux/if_link.h, IFLA_INFO_DATA of a macvlan
# the file's mode -> the kernel's (enum macvlan_mode); source mode (a MAC list) is not yet
MODES = {"private": 1, "vepa": 2, "bridge": 4, "passthru": 8}
DEFAULT_MODE = "bridge"
_BY_NUMBER = {number: name for name, number in MODES.items()}


@dataclass(frozen=True)
class MacvlanSpec(LinkSpec):
    RECREATE: ClassVar[dict[str, str]] = {"link": "parent link changed",
                                          "macvlan": "macvlan mode changed"}

    mode: str = DEFAULT_MODE
    link: str | None = None  # the parent, in the macvlan's namespace; None: elsewhere or gone

    def flat(self) -> dict[str, Any]:
        return {"link": self.link, "macvlan": {"mode": self.mode}}

    def uses(self) -> tuple[str, ...]:
        return (self.link,) if self.link else ()


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
                                    "switch outside), passthru (one macvlan owns the parent)."},
        },
    }
    parented: ClassVar[bool] = True
    on_parent_segment: ClassVar[bool] = True
    layer2: ClassVar[bool] = True

    def specs(self, ends: Sequence[End]) -> list[LinkSpec | None]:
        entry = ends[0].entry
        mode = (entry.get("macvlan") or {}).get("mode", DEFAULT_MODE)
        return [MacvlanSpec(mode=mode, link=entry[PARENT_KEY])]

    def check(self, ctx: FileCheck, ends: Sequence[End]) -> None:
        for end in ends:
            parent = check_parent(ctx, end)
            if parent is not None and isinstance(parent.spec.get("master"), str):
                # the bridge holds the port's frames (its rx handler): the kernel refuses
                ctx.error((*end.path, PARENT_KEY),
                          f"{ctx.quoted(parent.name)} is a port of bridge "
                          f"{ctx.quoted(parent.spec['master'])}: a macvlan cannot be made on "
                          "a bridge port (make it on the bridge)")

    def exportable(self, link: Link, view: ExportView) -> bool:
        """Its parent shown in the same namespace (a file names no other yet)."""
        spec = link.spec
        return isinstance(spec, MacvlanSpec) and spec.link is not None \
            and spec.mode in MODES and (link.namespace, spec.link) in view.links

    def export(self, link: Link, view: ExportView) -> dict[str, Any]:
        spec = link.spec
        assert isinstance(spec, MacvlanSpec)
        return {PARENT_KEY: spec.link, "macvlan": {"mode": spec.mode}}

    def spec_from_record(self, data: Mapping[str, Any]) -> LinkSpec | None:
        macvlan = data.get("macvlan")
        if macvlan is None:
            return None
        return MacvlanSpec(mode=macvlan["mode"], link=data.get("link"))

    def create_data(self, link: Link, request: KernelRequest) -> bytes:
        spec = link.spec
        assert isinstance(spec, MacvlanSpec)
        return attr_u32(IFLA_MACVLAN_MODE, MODES[spec.mode])

    def create_attrs(self, link: Link, request: KernelRequest) -> bytes:
        spec = link.spec
        assert isinstance(spec, MacvlanSpec)
        return parent_attr(spec.link, request)

    def parse(self, link: KernelLink) -> LinkSpec | None:
        number = as_u32(link.info_data.get(IFLA_MACVLAN_MODE))
        # a mode netdecl does not write (source) reads as its number: never equal to a file's
        mode = _BY_NUMBER.get(number, str(number)) if number is not None else DEFAULT_MODE
        return MacvlanSpec(mode=mode, link=parent_name(link))

    def reaches_sibling(self, link: Link, other: Link) -> bool:
        """Bridge mode: macvlans of one parent talk directly; in the other modes the frame
        leaves through the parent (vepa: for the switch outside to send back)."""
        return all(isinstance(lk.spec, MacvlanSpec) and lk.spec.mode == "bridge"
                   for lk in (link, other))

    def label(self, link: Link) -> str:
        spec = link.spec
        if not isinstance(spec, MacvlanSpec):
            return NAME
        return f"macvlan {spec.mode} on {spec.link or '?'}"


KIND = Macvlan()
