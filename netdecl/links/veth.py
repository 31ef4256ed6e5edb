"""kind: veth: a pair of links, each end in its own namespace, made and deleted together.

The entry is one end and its ``peer:`` the other; each end's spec names the other. Which two
ends pair up is fixed when they are made: a new peer means a new pair.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from netdecl.links.base import (
    FLAG_SCHEMA,
    VLANS_SCHEMA,
    End,
    ExportView,
    KernelLink,
    KernelRequest,
    LinkKind,
    Path,
)
from netdecl.links.base import entry_namespace as _namespace
from netdecl.model import Link, LinkSpec
from netdecl.nlattr import attr, attr_str, attr_u32
from netdecl.nlconst import IFINFOMSG, IFLA_IFNAME, IFLA_NET_NS_FD

NAME = "veth"

VETH_INFO_PEER = 1  # linux/veth.h: the other end, an ifinfomsg and its attributes


@dataclass(frozen=True)
class VethSpec(LinkSpec):
    RECREATE: ClassVar[dict[str, str]] = {"peer": "peer changed"}

    peer: tuple[str, str] | None = None  # (namespace, name) of the other end

    def flat(self) -> dict[str, Any]:
        return {"peer": self.peer}

    def flat_json(self) -> dict[str, Any]:
        return {"peer": list(self.peer) if self.peer else None}

    def pair(self) -> tuple[str, str] | None:
        return self.peer


class Veth(LinkKind):
    name: ClassVar[str] = NAME
    module: ClassVar[str | None] = "veth"
    settings_key: ClassVar[str | None] = "peer"
    settings_required: ClassVar[bool] = True
    settings_hint: ClassVar[str] = "a veth needs its other end: peer: {name: ..., namespace: ...}"
    settings_schema: ClassVar[dict[str, Any]] = {"$ref": "#/$defs/peer"}
    schema_defs: ClassVar[dict[str, Any]] = {"peer": {
        "type": "object",
        "additionalProperties": False,
        "required": ["name"],
        "description": "The other end of a veth pair, typically inside a namespace.",
        "properties": {
            "name": {"$ref": "#/$defs/ifname"},
            "namespace": {"$ref": "#/$defs/namespace", "description": "Namespace the link lives "
                          "in; omitted means the root (host) namespace."},
            "addresses": {"type": "array", "items": {"$ref": "#/$defs/interface_address"},
                          "description": "IP addresses with prefix length, e.g. 172.17.0.1/16 "
                          "or fd00::1/64."},
            "mtu": {"type": "integer", "minimum": 68, "maximum": 65535},
            "mac": {"$ref": "#/$defs/mac"},
            "up": {"type": "boolean", "default": True},
            "master": {"$ref": "#/$defs/ifname",
                       "description": "A bridge in the same namespace this link is a port of."},
            "hairpin": {"type": "boolean", "description": "Bridge-port hairpin mode (frames may "
                        "leave by the port they came in): needed for NAT hairpin. Only with "
                        "master."},
            # traffic control is every link's, this end's own (netdecl/tc/)
            "netem": {"$ref": "#/$defs/netem"},
            "shaping": {"$ref": "#/$defs/shaping"},
            "qdisc": {"$ref": "#/$defs/root_qdisc"},
            "route_table": {"type": "integer", "minimum": 1, "maximum": 4294967295,
                            "description": "Source-based routing (the CNI sbr plugin's): "
                            "as on a link."},
            **FLAG_SCHEMA,
            "vlans": VLANS_SCHEMA,
        },
    }}
    host_local: ClassVar[bool] = True
    layer2: ClassVar[bool] = True
    paired: ClassVar[bool] = True

    def ends(self, entry: Mapping[str, Any], namespace: str, path: Path) -> list[End]:
        ends = super().ends(entry, namespace, path)
        peer = entry.get("peer")
        if isinstance(peer, dict) and isinstance(peer.get("name"), str):
            ends.append(End(_namespace(peer), peer["name"], (*path, "peer"), peer))
        return ends

    def specs(self, ends: Sequence[End]) -> list[LinkSpec | None]:
        this, other = ends
        return [VethSpec(peer=(other.namespace, other.name)),
                VethSpec(peer=(this.namespace, this.name))]

    def exportable(self, link: Link, view: ExportView) -> bool:
        """Both ends shown, and the other end a veth too."""
        peer = link.peer
        return peer is not None and peer in view.links and view.links[peer].kind == NAME

    def export(self, link: Link, view: ExportView) -> dict[str, Any]:
        assert link.peer is not None
        peer = view.links[link.peer]
        view.written(link.peer)
        doc: dict[str, Any] = {"name": peer.name}
        if peer.namespace:
            doc["namespace"] = peer.namespace
        doc.update(view.common(peer, NAME))
        return {"peer": doc}

    def spec_from_record(self, data: Mapping[str, Any]) -> LinkSpec | None:
        peer = data.get("peer")
        if peer is None:
            return VethSpec()
        if not isinstance(peer, (list, tuple)) or len(peer) != 2:
            raise ValueError(f"veth peer {peer!r} is not (namespace, name)")
        return VethSpec(peer=(peer[0], peer[1]))

    def create_data(self, link: Link, request: KernelRequest) -> bytes:
        return peer_data(request.temp_names[1], request.peer_netns_fd)

    def parse(self, link: KernelLink) -> LinkSpec | None:
        return VethSpec(peer=link.target())


def peer_data(name: str, netns_fd: int | None) -> bytes:
    """IFLA_INFO_DATA that makes the other end ``name``, in the namespace of ``netns_fd`` (None:
    this one). Also for veths made by hand (benchmarks, captures)."""
    import socket  # (here: validate, which imports every link kind, needs none of it)

    other = IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attr_str(IFLA_IFNAME, name)
    if netns_fd is not None:
        other += attr_u32(IFLA_NET_NS_FD, netns_fd)
    return attr(VETH_INFO_PEER, other)


KIND = Veth()
