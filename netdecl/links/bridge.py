"""kind: bridge: a software switch whose ports are the links naming it as ``master``.

In place: spanning tree on or off, and the bridge's VLAN settings (``bridge: {stp,
vlan_filtering, default_pvid, vlan_protocol}``): with ``vlan_filtering`` the bridge forwards a
frame only between ports of its VLAN, an untagged frame taking its port's PVID (a new port's:
``default_pvid``). Nothing needs a new device.

The VLAN settings read back as None at the kernel's defaults (filtering off, PVID 1, 802.1Q):
every bridge reads as it did before they existed (records, journals, saved plans), and a
file's ``false``, ``1`` or ``802.1Q`` matches that (BridgeSpec.DEFAULTS).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from netdecl.links.base import End, ExportView, KernelLink, LinkKind
from netdecl.model import Link, LinkSpec
from netdecl.nlattr import as_u32, attr, attr_u32

NAME = "bridge"

# linux/if_link.h, IFLA_INFO_DATA of a bridge
IFLA_BR_STP_STATE, IFLA_BR_VLAN_FILTERING, IFLA_BR_VLAN_PROTOCOL = 5, 7, 8
IFLA_BR_VLAN_DEFAULT_PVID = 39
_U16 = struct.Struct("=H")
_BE16 = struct.Struct("!H")  # an ethertype
PROTOCOLS = {"802.1Q": 0x8100, "802.1ad": 0x88A8}
VLAN_SETTINGS = ("vlan_filtering", "default_pvid", "vlan_protocol")


@dataclass(frozen=True)
class BridgeSpec(LinkSpec):
    DEFAULTS: ClassVar[dict[str, Any]] = {"vlan_filtering": False, "default_pvid": 1,
                                          "vlan_protocol": "802.1Q"}

    stp: bool | None = None  # spanning tree; None in a file: the kernel's (off)
    # None in a file: as the kernel has it; read back: None at the kernel's default
    vlan_filtering: bool | None = None
    default_pvid: int | None = None
    vlan_protocol: str | None = None

    def flat(self) -> dict[str, Any]:
        return {"stp": self.stp, "vlan_filtering": self.vlan_filtering,
                "default_pvid": self.default_pvid, "vlan_protocol": self.vlan_protocol}

    def flat_json(self) -> dict[str, Any]:
        """Records keep the VLAN settings only when said (older records read the same)."""
        return {k: v for k, v in self.flat().items() if k == "stp" or v is not None}


def _spec(stp: bool | None, **vlan: Any) -> BridgeSpec | None:
    """A bridge with nothing said of its settings has no spec (so every spelling of "nothing
    said" compares equal)."""
    if stp is None and all(v is None for v in vlan.values()):
        return None
    return BridgeSpec(stp=stp, **vlan)


class Bridge(LinkKind):
    name: ClassVar[str] = NAME
    module: ClassVar[str | None] = "bridge"
    settings_key: ClassVar[str | None] = "bridge"
    settings_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "stp": {"type": "boolean"},
            "vlan_filtering": {"type": "boolean",
                               "description": "Forward a frame only between ports of its VLAN "
                                              "(a VLAN-aware bridge)."},
            "default_pvid": {"type": "integer", "minimum": 1, "maximum": 4094,
                             "description": "The VLAN a new port takes untagged frames into "
                                            "(the kernel's default: 1)."},
            "vlan_protocol": {"enum": list(PROTOCOLS),
                              "description": "The tag the bridge filters on (default 802.1Q)."},
        },
        "description": "Bridge options (kind bridge only).",
    }
    ports: ClassVar[bool] = True
    host_local: ClassVar[bool] = True
    layer2: ClassVar[bool] = True

    def specs(self, ends: Sequence[End]) -> list[LinkSpec | None]:
        settings = ends[0].entry.get("bridge") or {}
        return [_spec(settings.get("stp"), **{k: settings.get(k) for k in VLAN_SETTINGS})]

    def export(self, link: Link, view: ExportView) -> dict[str, Any]:
        spec = link.spec
        if not isinstance(spec, BridgeSpec):
            return {}
        out = {k: v for k, v in spec.flat().items() if v is not None}
        return {"bridge": out} if out else {}

    def spec_from_record(self, data: Mapping[str, Any]) -> LinkSpec | None:
        return _spec(data.get("stp"), **{k: data.get(k) for k in VLAN_SETTINGS})

    def create_data(self, link: Link, request: Any) -> bytes:
        spec = link.spec if isinstance(link.spec, BridgeSpec) else BridgeSpec()
        out = attr_u32(IFLA_BR_STP_STATE, 1 if spec.stp else 0)
        return out + self._vlan_data(spec, set(VLAN_SETTINGS))

    def change_data(self, link: Link, changed: set[str]) -> bytes | None:
        spec = link.spec if isinstance(link.spec, BridgeSpec) else None
        if spec is None:
            return None
        out = b""
        if "stp" in changed and spec.stp is not None:
            out += attr_u32(IFLA_BR_STP_STATE, 1 if spec.stp else 0)
        out += self._vlan_data(spec, changed)
        return out or None

    @staticmethod
    def _vlan_data(spec: BridgeSpec, wanted: set[str]) -> bytes:
        out = b""
        # the protocol and PVID first: the kernel applies them in the order given
        if "vlan_protocol" in wanted and spec.vlan_protocol is not None:
            out += attr(IFLA_BR_VLAN_PROTOCOL, _BE16.pack(PROTOCOLS[spec.vlan_protocol]))
        if "default_pvid" in wanted and spec.default_pvid is not None:
            out += attr(IFLA_BR_VLAN_DEFAULT_PVID, _U16.pack(spec.default_pvid))
        if "vlan_filtering" in wanted and spec.vlan_filtering is not None:
            out += attr(IFLA_BR_VLAN_FILTERING, bytes([1 if spec.vlan_filtering else 0]))
        return out

    def parse(self, link: KernelLink) -> LinkSpec | None:
        data = link.info_data
        stp = as_u32(data.get(IFLA_BR_STP_STATE))
        filtering = data.get(IFLA_BR_VLAN_FILTERING)
        pvid = data.get(IFLA_BR_VLAN_DEFAULT_PVID)
        protocol = data.get(IFLA_BR_VLAN_PROTOCOL)
        pvid_number = _U16.unpack_from(pvid)[0] if pvid else 1
        ethertype = _BE16.unpack_from(protocol)[0] if protocol else PROTOCOLS["802.1Q"]
        return _spec(bool(stp) if stp is not None else None,
                     vlan_filtering=True if filtering and filtering[0] else None,
                     default_pvid=pvid_number if pvid_number != 1 else None,
                     vlan_protocol=(next((w for w, n in PROTOCOLS.items() if n == ethertype),
                                         hex(ethertype))
                                    if ethertype != PROTOCOLS["802.1Q"] else None))

    def label(self, link: Link) -> str:
        spec = link.spec
        return "bridge vlan-aware" if isinstance(spec, BridgeSpec) and spec.vlan_filtering \
            else NAME


KIND = Bridge()
