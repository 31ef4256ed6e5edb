"""kind: host-device: a NIC of the root namespace moved into a namespace under the entry's own
name while the topology exists, as the CNI host-device plugin does (``device:`` names it in
the root).

It is never made nor deleted: "making" it moves it in and renames it (one RTM_NEWLINK with
IFLA_NET_NS_FD and the new name, under netdecl's temporary name first, like any link born);
"deleting" it, on destroy and rollback, moves it back with its original name, MTU, alias,
addresses and state, which the plan took from the root before the move (``Original``) and the
record keeps (OwnershipRecord.device_originals). The kernel drops a link's addresses when it
changes namespace, so they are given back, not kept.

The kernel reports the moved NIC as whatever it is (a NIC: no kind; a veth end in tests): the
plan knows it as a host-device from the record, by its identity.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from netdecl.links.base import End, ExportView, FileCheck, LinkKind
from netdecl.model import ROOT, Link, LinkSpec

NAME = "host-device"
DEVICE_KEY = "device"


@dataclass(frozen=True)
class Original:
    """The NIC as it was in the root before netdecl moved it: what destroy gives back."""

    device: str
    mtu: int | None = None
    up: bool = False
    alias: str | None = None
    addresses: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"kind": NAME, "device": self.device, "mtu": self.mtu, "up": self.up,
                "alias": self.alias, "addresses": list(self.addresses)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Original:
        return cls(device=data["device"], mtu=data.get("mtu"), up=bool(data.get("up")),
                   alias=data.get("alias"), addresses=tuple(data.get("addresses") or ()))


@dataclass(frozen=True)
class HostDeviceSpec(LinkSpec):
    RECREATE: ClassVar[dict[str, str]] = {DEVICE_KEY: "another device"}

    device: str = ""
    # not compared (flat): known from the root before the move, kept by the record
    original: Original | None = None

    def flat(self) -> dict[str, Any]:
        return {DEVICE_KEY: self.device}

    def given_back(self) -> dict[str, Any] | None:
        return self.original.to_json() if self.original is not None else None

    def flat_json(self) -> dict[str, Any]:
        flat: dict[str, Any] = {DEVICE_KEY: self.device}
        if self.original is not None:
            flat["original"] = self.original.to_json()
        return flat


class HostDevice(LinkKind):
    name: ClassVar[str] = NAME
    settings_key: ClassVar[str | None] = DEVICE_KEY
    settings_required: ClassVar[bool] = True
    settings_hint: ClassVar[str] = "a host-device names the root's NIC it moves: device: eth1"
    settings_schema: ClassVar[dict[str, Any]] = {
        "$ref": "#/$defs/ifname",
        "description": "host-device only: the NIC (in the root namespace) moved into this "
                       "link's namespace under this link's name while the topology exists; "
                       "destroy moves it back with its name, MTU, addresses and state.",
    }
    takes: ClassVar[bool] = True
    refuses: ClassVar[tuple[str, ...]] = ("mac",)
    refuses_because: ClassVar[str] = "the NIC keeps its own MAC"

    def specs(self, ends: Sequence[End]) -> list[LinkSpec | None]:
        return [HostDeviceSpec(device=ends[0].entry[DEVICE_KEY])]

    def moves(self, entry: Mapping[str, Any]) -> tuple[str, str] | None:
        device = entry.get(DEVICE_KEY)
        return (ROOT, device) if isinstance(device, str) else None

    def check(self, ctx: FileCheck, ends: Sequence[End]) -> None:
        seen: dict[str, str] = {}
        for end in ends:
            device = end.entry.get(DEVICE_KEY)
            if not isinstance(device, str):
                continue
            if end.namespace == ROOT:
                ctx.error((*end.path, "name"), f"host-device {ctx.quoted(end.name)} is in the "
                          "root namespace: it moves a NIC into a namespace, give it one")
            other = seen.setdefault(device, end.name)
            if other != end.name:
                ctx.error((*end.path, DEVICE_KEY), f"{ctx.quoted(device)} is moved already by "
                          f"host-device {ctx.quoted(other)}")
            elif ctx.declared(ROOT, device) is not None:
                ctx.error((*end.path, DEVICE_KEY), f"{ctx.quoted(device)} is declared in the "
                          "root too, where it is not while the topology exists")

    def taken(self, link: Link) -> tuple[str, str] | None:
        spec = link.spec
        return (ROOT, spec.device) if isinstance(spec, HostDeviceSpec) else None

    def before_taken(self, link: Link, found: Link, addresses: Sequence[str]) -> Link:
        spec = link.spec
        assert isinstance(spec, HostDeviceSpec)
        original = Original(device=spec.device, mtu=found.mtu, up=bool(found.up),
                            alias=found.alias, addresses=tuple(sorted(addresses)))
        return dataclasses.replace(link, spec=dataclasses.replace(spec, original=original))

    def as_kept(self, link: Link, kept: Mapping[str, Any]) -> Link:
        original = Original.from_json(kept)
        return dataclasses.replace(link, kind=NAME, spec=HostDeviceSpec(
            device=original.device, original=original))

    def exportable(self, link: Link, view: ExportView) -> bool:
        return False  # the kernel does not say a link was moved: show writes it as it is

    def spec_from_record(self, data: Mapping[str, Any]) -> LinkSpec | None:
        original = data.get("original")
        return HostDeviceSpec(device=data.get(DEVICE_KEY) or "",
                              original=Original.from_json(original) if original else None)

    def label(self, link: Link) -> str:
        spec = link.spec
        return f"host-device {spec.device}" if isinstance(spec, HostDeviceSpec) else NAME


KIND = HostDevice()


def original_of(link: Link) -> Original | None:
    """What a host-device link gives back, if ``link`` is one that knows."""
    spec = link.spec
    return spec.original if isinstance(spec, HostDeviceSpec) else None
