"""kind: vrf: a routing domain (an L3 master device) with a routing table of its own.

Links join a VRF with ``master:``; what they receive is then routed in the VRF's table, and
sockets bound to the VRF (or to one of its ports) route there too. Routes and rules may name
the VRF instead of its table number (``table: tenant-a``): the file resolves the name to the
number (format.py), and a number that is a VRF's table must be written as its name, so one
table never means two things.

The kernel itself adds, with the first VRF of a namespace, the policy rule that sends lookups
to the l3mdev's table (``1000: from all lookup [l3mdev-table]``): that rule is the kernel's,
never read as netdecl's nor shown (backends/netlink.read_rules skips it). A VRF's table is
fixed when it is made (the kernel refuses another one in place): a new table makes a new VRF,
and its ports join it again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from netdecl.links.base import End, ExportView, FileCheck, KernelLink, KernelRequest, LinkKind
from netdecl.model import Link, LinkSpec
from netdecl.nlattr import as_u32, attr_u32

NAME = "vrf"

IFLA_VRF_TABLE = 1  # linux/if_link.h, IFLA_INFO_DATA of a vrf
# tables a VRF may not take: unspec (0), and the kernel's default (253), main (254) and
# local (255) tables, which every namespace's rules already send lookups to
RESERVED_TABLES = (0, 253, 254, 255)


@dataclass(frozen=True)
class VrfSpec(LinkSpec):
    RECREATE: ClassVar[dict[str, str]] = {"vrf": "vrf table changed"}

    table: int = 0

    def flat(self) -> dict[str, Any]:
        return {"vrf": {"table": self.table}}


def vrf_table(entry: Mapping[str, Any]) -> int | None:
    """The table a (possibly invalid) vrf entry declares, if it is a usable number."""
    settings = entry.get("vrf")
    table = settings.get("table") if isinstance(settings, dict) else None
    if isinstance(table, int) and not isinstance(table, bool):
        return table
    return None


class Vrf(LinkKind):
    name: ClassVar[str] = NAME
    module: ClassVar[str | None] = "vrf"  # the kernel module that makes it
    settings_key: ClassVar[str | None] = "vrf"
    settings_required: ClassVar[bool] = True
    settings_hint: ClassVar[str] = "a vrf link needs its routing table: vrf: {table: ...}"
    settings_schema: ClassVar[dict[str, Any]] = {"$ref": "#/$defs/vrf"}
    schema_defs: ClassVar[dict[str, Any]] = {"vrf": {
        "type": "object",
        "additionalProperties": False,
        "required": ["table"],
        "description": "VRF settings (kind vrf only): the routing table of its ports. Links "
                       "join it with master:; routes and rules may say table: <the VRF's "
                       "name>.",
        "properties": {
            "table": {"type": "integer", "minimum": 1, "maximum": 4294967295,
                      "description": "Its routing table: not 253, 254 or 255 (the kernel's "
                                     "default, main and local tables), and no other VRF's."},
        },
    }}
    l3_master: ClassVar[bool] = True

    def specs(self, ends: Sequence[End]) -> list[LinkSpec | None]:
        return [VrfSpec(table=int(ends[0].entry["vrf"]["table"]))]

    def routing_table(self, entry: Mapping[str, Any]) -> int | None:
        return vrf_table(entry)

    def check(self, ctx: FileCheck, ends: Sequence[End]) -> None:
        seen: dict[tuple[str, int], str] = {}
        for end in ends:
            table = vrf_table(end.entry)
            if table is None:
                continue  # the schema says what is wrong
            path = (*end.path, "vrf", "table")
            if table in RESERVED_TABLES:
                ctx.error(path, f"table {table} is one of the kernel's own (253 default, 254 "
                                "main, 255 local): give the VRF a table of its own")
                continue
            other = seen.setdefault((end.namespace, table), end.name)
            if other != end.name:
                ctx.error(path, f"table {table} is already the table of VRF "
                                f"{ctx.quoted(other)} in this namespace: each VRF needs its "
                                "own")

    def export(self, link: Link, view: ExportView) -> dict[str, Any]:
        spec = link.spec
        return {"vrf": {"table": spec.table}} if isinstance(spec, VrfSpec) else {}

    def exportable(self, link: Link, view: ExportView) -> bool:
        return isinstance(link.spec, VrfSpec) and link.spec.table not in RESERVED_TABLES

    def spec_from_record(self, data: Mapping[str, Any]) -> LinkSpec | None:
        vrf = data.get("vrf")
        return VrfSpec(table=int(vrf["table"])) if vrf is not None else None

    def create_data(self, link: Link, request: KernelRequest) -> bytes:
        spec = link.spec
        assert isinstance(spec, VrfSpec)
        return attr_u32(IFLA_VRF_TABLE, spec.table)

    def parse(self, link: KernelLink) -> LinkSpec | None:
        return VrfSpec(table=as_u32(link.info_data.get(IFLA_VRF_TABLE)) or 0)

    def label(self, link: Link) -> str:
        spec = link.spec
        return f"vrf table {spec.table}" if isinstance(spec, VrfSpec) else NAME


KIND = Vrf()
