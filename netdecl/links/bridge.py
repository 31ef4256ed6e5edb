"""kind: bridge: a software switch whose ports are the links naming it as ``master``.

In place: spanning tree on or off (``bridge: {stp: ...}``). Nothing needs a new device.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from netdecl.links.base import End, ExportView, KernelLink, LinkKind
from netdecl.model import Link, LinkSpec
from netdecl.nlattr import as_u32, attr_u32

NAME = "bridge"

IFLA_BR_STP_STATE = 5


@dataclass(frozen=True)
class BridgeSpec(LinkSpec):
    stp: bool | None = None  # spanning tree; None in a file: the kernel's (off)

    def flat(self) -> dict[str, Any]:
        return {"stp": self.stp}


def _spec(stp: bool | None) -> BridgeSpec | None:
    """A bridge with nothing said of its settings has no spec (so every spelling of "nothing
    said" compares equal)."""
    return BridgeSpec(stp=stp) if stp is not None else None


class Bridge(LinkKind):
    name: ClassVar[str] = NAME
    module: ClassVar[str | None] = "bridge"
    settings_key: ClassVar[str | None] = "bridge"
    settings_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {"stp": {"type": "boolean"}},
        "description": "Bridge options (kind bridge only).",
    }
    ports: ClassVar[bool] = True
    host_local: ClassVar[bool] = True
    layer2: ClassVar[bool] = True

    def specs(self, ends: Sequence[End]) -> list[LinkSpec | None]:
        return [_spec((ends[0].entry.get("bridge") or {}).get("stp"))]

    def export(self, link: Link, view: ExportView) -> dict[str, Any]:
        stp = link.spec.stp if isinstance(link.spec, BridgeSpec) else None
        return {"bridge": {"stp": stp}} if stp is not None else {}

    def spec_from_record(self, data: Mapping[str, Any]) -> LinkSpec | None:
        return _spec(data.get("stp"))

    def create_data(self, link: Link, request: Any) -> bytes:
        stp = link.spec.stp if isinstance(link.spec, BridgeSpec) else None
        return attr_u32(IFLA_BR_STP_STATE, 1 if stp else 0)

    def change_data(self, link: Link, changed: set[str]) -> bytes | None:
        stp = link.spec.stp if isinstance(link.spec, BridgeSpec) else None
        if "stp" not in changed or stp is None:
            return None
        return attr_u32(IFLA_BR_STP_STATE, 1 if stp else 0)

    def parse(self, link: KernelLink) -> LinkSpec | None:
        stp = as_u32(link.info_data.get(IFLA_BR_STP_STATE))
        return _spec(bool(stp) if stp is not None else None)


KIND = Bridge()
