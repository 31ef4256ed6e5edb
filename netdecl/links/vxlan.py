"""kind: vxlan: an Ethernet segment carried over UDP between hosts (a VTEP).

The kernel changes none of a VXLAN's parameters in place: any change makes a new device.
``remotes`` are not the device's own: each becomes an all-zero-MAC FDB entry (head-end
replication: unknown and broadcast frames are flooded to every remote VTEP).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from netdecl.links.base import (
    End,
    ExportView,
    FileCheck,
    KernelLink,
    KernelRequest,
    LinkKind,
    Path,
)
from netdecl.links.tunnel import check_mtu
from netdecl.model import FdbEntry, Link, LinkSpec, NetObject, Topology
from netdecl.nlattr import as_ip, as_u32, attr, attr_u32, ip_bytes

NAME = "vxlan"

OVERHEAD = {4: 50, 6: 70}  # outer IP, UDP, VXLAN and the inner Ethernet header
PORT = 4789
"""The IANA-assigned VXLAN UDP port, used when none is given. Linux's own default (8472)
predates the assignment, so netdecl always passes the port explicitly."""

ZERO_MAC = "00:00:00:00:00:00"  # an FDB entry for every destination: flooding

IFLA_VXLAN_ID, IFLA_VXLAN_LINK, IFLA_VXLAN_LOCAL = 1, 3, 4
IFLA_VXLAN_LEARNING, IFLA_VXLAN_PORT, IFLA_VXLAN_LOCAL6 = 7, 15, 17
_BE16 = struct.Struct("!H")


@dataclass(frozen=True)
class Vxlan(LinkSpec):
    """VXLAN device parameters; changing any of them needs a new device (the kernel refuses)."""

    RECREATE: ClassVar[dict[str, str]] = {"vxlan": "vxlan parameters changed"}

    id: int = 0
    local: str | None = None
    dev: str | None = None
    port: int = PORT
    learning: bool = True

    def flat(self) -> dict[str, Any]:
        return {"vxlan": self}

    def flat_json(self) -> dict[str, Any]:
        return {"vxlan": dataclasses.asdict(self)}

    def uses(self) -> tuple[str, ...]:
        return (self.dev,) if self.dev else ()


def port_of(entry: Mapping[str, Any]) -> Any:
    """A vxlan's ``port``, the IANA port when omitted (the value is the schema's to check)."""
    return entry.get("port", PORT)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class VxlanKind(LinkKind):
    name: ClassVar[str] = NAME
    module: ClassVar[str | None] = "vxlan"
    settings_key: ClassVar[str | None] = "vxlan"
    settings_required: ClassVar[bool] = True
    settings_hint: ClassVar[str] = "a vxlan link needs at least vxlan: {id: ...}"
    settings_schema: ClassVar[dict[str, Any]] = {"$ref": "#/$defs/vxlan"}
    schema_defs: ClassVar[dict[str, Any]] = {"vxlan": {
        "type": "object",
        "additionalProperties": False,
        "required": ["id"],
        "properties": {
            "id": {"type": "integer", "minimum": 1, "maximum": 16777215},
            "local": {"$ref": "#/$defs/ip"},
            "dev": {"$ref": "#/$defs/ifname", "description": "Underlay device, usually the "
                    "host's NIC (declare it as kind: external to check it exists and route over "
                    "it)."},
            "port": {"$ref": "#/$defs/port", "default": PORT},
            "remotes": {"type": "array", "items": {"$ref": "#/$defs/ip"},
                        "description": "Peers to flood to: each becomes an all-zero-MAC fdb "
                        "entry."},
            "learning": {"type": "boolean", "default": True},
        },
    }}
    layer2: ClassVar[bool] = True
    reads_fdb: ClassVar[bool] = True

    def specs(self, ends: Sequence[End]) -> list[LinkSpec | None]:
        vx = ends[0].entry["vxlan"]
        local = vx.get("local")
        return [Vxlan(id=int(vx["id"]), local=_normal_ip(local) if local else None,
                      dev=vx.get("dev"), port=int(port_of(vx)),
                      learning=vx.get("learning", True))]

    def derived(self, link: NetObject, entry: Mapping[str, Any],
                path: Path) -> Iterator[tuple[NetObject, Path]]:
        assert isinstance(link, Link)
        for j, remote in enumerate(entry["vxlan"].get("remotes") or []):
            yield (FdbEntry(link.namespace, link.name, ZERO_MAC, dst=_normal_ip(remote)),
                   (*path, "vxlan", "remotes", j))

    def check(self, ctx: FileCheck, ends: Sequence[End]) -> None:
        seen: dict[tuple[str, int, Any], str] = {}
        for end in ends:
            vx = end.entry.get("vxlan")
            if not isinstance(vx, dict):
                continue
            path = (*end.path, "vxlan")
            families: set[int] = set()
            if isinstance(vx.get("local"), str):
                version = ctx.ip_version((*path, "local"), vx["local"])
                if version is not None:
                    families.add(version)
            if isinstance(vx.get("dev"), str) and ctx.ifname((*path, "dev"), vx["dev"]):
                # (a missing underlay is a plan-time problem where it is the host's NIC)
                underlay = ctx.declared(end.namespace, vx["dev"])
                check_mtu(ctx, end, underlay, OVERHEAD[6 if 6 in families else 4])
            remotes = vx.get("remotes")
            for i, remote in enumerate(remotes if isinstance(remotes, list) else []):
                if not isinstance(remote, str):
                    continue
                version = ctx.ip_version((*path, "remotes", i), remote)
                if version is not None and families and version not in families:
                    ctx.error((*path, "remotes", i),
                              f"remote {remote} is IPv{version} but local is not")
            vni, port = vx.get("id"), port_of(vx)
            if isinstance(vni, int) and _is_int(vni) and _is_int(port):
                other = seen.setdefault((end.namespace, vni, port), end.name)
                if other != end.name:
                    ctx.error((*path, "id"), f"vxlan id {vni} is already used by "
                                             f"{ctx.quoted(other)} on the same port in this "
                                             "namespace")

    def export(self, link: Link, view: ExportView) -> dict[str, Any]:
        if not isinstance(link.spec, Vxlan):
            return {}
        vx = {k: v for k, v in dataclasses.asdict(link.spec).items() if v is not None}
        if vx.get("dev") and (link.namespace, vx["dev"]) not in view.links:
            vx.pop("dev")
        if remotes := view.fdb_remotes(link):
            vx["remotes"] = remotes
        return {"vxlan": vx}

    def spec_from_record(self, data: Mapping[str, Any]) -> LinkSpec | None:
        vx = data.get("vxlan")
        return Vxlan(**vx) if vx is not None else None

    def create_data(self, link: Link, request: KernelRequest) -> bytes:
        vx = link.spec
        assert isinstance(vx, Vxlan)
        data = attr_u32(IFLA_VXLAN_ID, vx.id) + attr(IFLA_VXLAN_PORT, _BE16.pack(vx.port)) + \
            attr(IFLA_VXLAN_LEARNING, bytes([1 if vx.learning else 0]))
        if vx.local:
            family, raw = ip_bytes(vx.local)
            data += attr(IFLA_VXLAN_LOCAL6 if len(raw) == 16 else IFLA_VXLAN_LOCAL, raw)
        if vx.dev:
            data += attr_u32(IFLA_VXLAN_LINK, request.index_of(vx.dev))
        return data

    def parse(self, link: KernelLink) -> LinkSpec | None:
        data = link.info_data
        dev_index = as_u32(data.get(IFLA_VXLAN_LINK))
        port = data.get(IFLA_VXLAN_PORT)
        learning = data.get(IFLA_VXLAN_LEARNING)
        return Vxlan(
            id=as_u32(data.get(IFLA_VXLAN_ID)) or 0,
            local=as_ip(data.get(IFLA_VXLAN_LOCAL)) or as_ip(data.get(IFLA_VXLAN_LOCAL6)),
            dev=link.name_of(dev_index) if dev_index else None,
            port=_BE16.unpack_from(port)[0] if port else PORT,
            learning=bool(learning and learning[0]),
        )

    def label(self, link: Link) -> str:
        vx = link.spec
        if not isinstance(vx, Vxlan):
            return NAME
        return f"vxlan id {vx.id}" + (f" local {vx.local}" if vx.local else "")

    def tunnels(self, key: tuple[str, str], link: Link, links: Mapping[tuple[str, str], Link],
                topology: Topology) -> list[tuple[tuple[str, str], str]]:
        """The VXLANs of the same id whose local address this one floods to."""
        if not isinstance(link.spec, Vxlan):
            return []
        remotes = {e.dst for e in topology.of_type(FdbEntry)
                   if (e.namespace, e.link) == key and e.dst}
        return [(other_key, f"vxlan {link.spec.id}") for other_key, other in links.items()
                if other_key != key and isinstance(other.spec, Vxlan)
                and other.spec.id == link.spec.id and other.spec.local in remotes]

    def far_ends(self, key: tuple[str, str], link: Link,
                 links: Mapping[tuple[str, str], Link]) -> list[tuple[str, str]]:
        """Every VXLAN of the same id: `explain` does not check that the remotes agree."""
        vni = link.spec.id if isinstance(link.spec, Vxlan) else None
        return [other_key for other_key, other in links.items()
                if other_key != key and isinstance(other.spec, Vxlan) and other.spec.id == vni]

    def crossing(self, link: Link) -> str:
        vni = link.spec.id if isinstance(link.spec, Vxlan) else "?"
        return f"VXLAN tunnel (id {vni})"


def _normal_ip(text: str) -> str:
    """An address as ipaddress prints it (the file's spelling is the checks' business)."""
    return str(ipaddress.ip_address(text))


KIND = VxlanKind()
