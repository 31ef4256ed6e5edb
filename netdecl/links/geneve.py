"""kind: geneve: an Ethernet segment carried over UDP to one remote (or, external, to whatever
each route's or eBPF's metadata says), as OVN and Cilium use it.

The kernel has no local address or underlay device for Geneve, and netdecl changes none of its
parameters in place: any change makes a new device, as for VXLAN.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from netdecl.links.base import End, ExportView, FileCheck, KernelLink, KernelRequest, LinkKind
from netdecl.links.tunnel import check_tunnels
from netdecl.model import Link, LinkSpec, Topology
from netdecl.nlattr import as_ip, as_u32, attr, attr_u32

NAME = "geneve"
PORT = 6081  # IANA's Geneve port, the kernel's default too

# linux/if_link.h, IFLA_INFO_DATA of a geneve
IFLA_GENEVE_ID, IFLA_GENEVE_REMOTE, IFLA_GENEVE_TTL, IFLA_GENEVE_TOS = 1, 2, 3, 4
IFLA_GENEVE_PORT, IFLA_GENEVE_COLLECT_METADATA, IFLA_GENEVE_REMOTE6 = 5, 6, 7
_BE16 = struct.Struct("!H")
OVERHEAD = {4: 50, 6: 70}  # outer IP, UDP, Geneve and the inner Ethernet header


@dataclass(frozen=True)
class GeneveSpec(LinkSpec):
    RECREATE: ClassVar[dict[str, str]] = {"geneve": "geneve parameters changed"}

    id: int = 0
    remote: str | None = None
    ttl: int | None = None
    tos: int | None = None
    port: int = PORT
    external: bool = False

    def flat(self) -> dict[str, Any]:
        return {"geneve": self}

    def flat_json(self) -> dict[str, Any]:
        return {"geneve": dataclasses.asdict(self)}


class Geneve(LinkKind):
    name: ClassVar[str] = NAME
    module: ClassVar[str | None] = "geneve"
    settings_key: ClassVar[str | None] = "geneve"
    settings_required: ClassVar[bool] = True
    settings_hint: ClassVar[str] = "a geneve link needs at least geneve: {id: ...}"
    settings_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["id"],
        "description": "Geneve settings (kind geneve only).",
        "properties": {
            "id": {"type": "integer", "minimum": 0, "maximum": 16777215,
                   "description": "The virtual network identifier (VNI)."},
            "remote": {"$ref": "#/$defs/ip", "description": "The far end."},
            "ttl": {"type": "integer", "minimum": 0, "maximum": 255},
            "tos": {"type": "integer", "minimum": 0, "maximum": 255},
            "port": {"$ref": "#/$defs/port", "default": PORT},
            "external": {"type": "boolean", "default": False,
                         "description": "A collect-metadata device (no id or remote used)."},
        },
    }
    layer2: ClassVar[bool] = True

    def specs(self, ends: Sequence[End]) -> list[LinkSpec | None]:
        g = ends[0].entry["geneve"]
        remote, external = g.get("remote"), bool(g.get("external"))
        # as the kernel reports it: 0 for a ttl or tos not set, no id or remote on a
        # collect-metadata device
        return [GeneveSpec(id=0 if external else int(g["id"]),
                           remote=str(ipaddress.ip_address(remote))
                           if remote and not external else None,
                           ttl=g.get("ttl") or None, tos=g.get("tos") or None,
                           port=int(g.get("port", PORT)), external=external)]

    def check(self, ctx: FileCheck, ends: Sequence[End]) -> None:
        for family in (4, 6):
            mine = [end for end in ends if _family(end) == family]
            if mine:
                check_tunnels(ctx, mine, NAME, OVERHEAD[family], (4, 6), needs_remote=True)

    def export(self, link: Link, view: ExportView) -> dict[str, Any]:
        spec = link.spec
        if not isinstance(spec, GeneveSpec):
            return {}
        out = {k: v for k, v in dataclasses.asdict(spec).items()
               if v is not None and v is not False and not (k == "port" and v == PORT)}
        return {"geneve": out}

    def spec_from_record(self, data: Mapping[str, Any]) -> LinkSpec | None:
        g = data.get("geneve")
        return GeneveSpec(**g) if g is not None else None

    def create_data(self, link: Link, request: KernelRequest) -> bytes:
        spec = link.spec
        assert isinstance(spec, GeneveSpec)
        data = attr(IFLA_GENEVE_PORT, _BE16.pack(spec.port))
        if spec.external:
            return data + attr(IFLA_GENEVE_COLLECT_METADATA, b"")
        data += attr_u32(IFLA_GENEVE_ID, spec.id)
        if spec.remote:
            raw = ipaddress.ip_address(spec.remote).packed
            data += attr(IFLA_GENEVE_REMOTE6 if len(raw) == 16 else IFLA_GENEVE_REMOTE, raw)
        if spec.ttl is not None:
            data += attr(IFLA_GENEVE_TTL, bytes([spec.ttl]))
        if spec.tos is not None:
            data += attr(IFLA_GENEVE_TOS, bytes([spec.tos]))
        return data

    def parse(self, link: KernelLink) -> LinkSpec | None:
        data = link.info_data
        port, ttl, tos = (data.get(IFLA_GENEVE_PORT), data.get(IFLA_GENEVE_TTL),
                          data.get(IFLA_GENEVE_TOS))
        external = IFLA_GENEVE_COLLECT_METADATA in data
        return GeneveSpec(
            id=0 if external else as_u32(data.get(IFLA_GENEVE_ID)) or 0,
            remote=as_ip(data.get(IFLA_GENEVE_REMOTE)) or as_ip(data.get(IFLA_GENEVE_REMOTE6)),
            ttl=ttl[0] or None if ttl else None, tos=tos[0] or None if tos else None,
            port=_BE16.unpack_from(port)[0] if port else PORT, external=external)

    def far_ends(self, key: tuple[str, str], link: Link,
                 links: Mapping[tuple[str, str], Link]) -> list[tuple[str, str]]:
        """Every Geneve of the same id and port (explain does not check the remotes agree)."""
        spec = link.spec
        return [other_key for other_key, other in links.items()
                if other_key != key and isinstance(spec, GeneveSpec) and not spec.external
                and isinstance(other.spec, GeneveSpec)
                and (other.spec.id, other.spec.port) == (spec.id, spec.port)]

    def tunnels(self, key: tuple[str, str], link: Link, links: Mapping[tuple[str, str], Link],
                topology: Topology) -> list[tuple[tuple[str, str], str]]:
        spec = link.spec
        return [(other, f"geneve {spec.id}") for other in self.far_ends(key, link, links)
                if isinstance(spec, GeneveSpec)]

    def crossing(self, link: Link) -> str:
        spec = link.spec
        return f"Geneve tunnel (id {spec.id})" if isinstance(spec, GeneveSpec) else NAME

    def label(self, link: Link) -> str:
        spec = link.spec
        if not isinstance(spec, GeneveSpec):
            return NAME
        return "geneve external" if spec.external else \
            f"geneve id {spec.id} -> {spec.remote or '?'}"


def _family(end: End) -> int:
    g = end.entry.get("geneve")
    remote = g.get("remote") if isinstance(g, dict) else None
    return 6 if isinstance(remote, str) and ":" in remote else 4


KIND = Geneve()
