"""kind: tap and kind: tun: persistent devices a program (a VM's hypervisor, a VPN) attaches
to and reads frames (tap) or IP packets (tun) from, as `ip tuntap add` makes them; a VM's tap
is typically a port of a bridge.

Both are made through /dev/net/tun (``made_through``; backends/tundev.py), and the kernel
reports both as its kind "tun", telling them apart by IFLA_TUN_TYPE: ``reported_as`` names
the kind from that. Settings (``tap: {...}`` or ``tun: {...}``): ``owner`` and ``group`` (uid
and gid allowed to attach; left out: only CAP_NET_ADMIN), ``multi_queue``, ``vnet_hdr``. Made
without packet information (IFF_NO_PI), as `ip tuntap` does by default. The kernel fixes all
of them when the device is made: a change makes a new device.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from netdecl.links.base import End, ExportView, KernelLink, LinkKind
from netdecl.model import Link, LinkSpec
from netdecl.nlattr import as_u32

TAP, TUN = "tap", "tun"

# linux/if_link.h, IFLA_INFO_DATA of a tun (reported only: it cannot be made over netlink)
IFLA_TUN_OWNER, IFLA_TUN_GROUP, IFLA_TUN_TYPE, IFLA_TUN_PI = 1, 2, 3, 4
IFLA_TUN_VNET_HDR, IFLA_TUN_PERSIST, IFLA_TUN_MULTI_QUEUE = 5, 6, 7
# linux/if_tun.h: TUNSETIFF flags
IFF_TUN, IFF_TAP, IFF_MULTI_QUEUE, IFF_NO_PI, IFF_VNET_HDR = 0x1, 0x2, 0x100, 0x1000, 0x4000
_TYPES = {TUN: IFF_TUN, TAP: IFF_TAP}
ID_MAX = 0xFFFFFFFE  # (uid_t)-1 means "none"


@dataclass(frozen=True)
class TunSpec(LinkSpec):
    RECREATE: ClassVar[dict[str, str]] = {
        "tuntap": "the kernel fixes a tap's or tun's owner, group, queues and header when it "
                  "is made"}

    owner: int | None = None
    group: int | None = None
    multi_queue: bool = False
    vnet_hdr: bool = False
    pi: bool = False  # packet information: never made by netdecl; read back to see it

    def flat(self) -> dict[str, Any]:
        # one setting, compared whole: a left-out owner is "none", not "whatever" (and the
        # names would collide with a link's own owner in records)
        return {"tuntap": self.fields()}

    def fields(self) -> dict[str, Any]:
        return {"owner": self.owner, "group": self.group, "multi_queue": self.multi_queue,
                "vnet_hdr": self.vnet_hdr, "pi": self.pi}


def _flag(data: Mapping[int, bytes], attr_type: int) -> bool:
    raw = data.get(attr_type)
    return bool(raw[0]) if raw else False


def _schema(name: str, what: str) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "description": f"{name} settings (kind {name} only): who may attach to it and read "
                       f"its {what}, and how.",
        "properties": {
            "owner": {"type": "integer", "minimum": 0, "maximum": ID_MAX,
                      "description": "The uid allowed to attach (left out: only a process "
                                     "with CAP_NET_ADMIN)."},
            "group": {"type": "integer", "minimum": 0, "maximum": ID_MAX,
                      "description": "The gid allowed to attach."},
            "multi_queue": {"type": "boolean", "default": False},
            "vnet_hdr": {"type": "boolean", "default": False,
                         "description": "A virtio-net header on each frame (what vhost-net "
                                        "and QEMU's virtio use)."},
        },
    }


class _TunTap(LinkKind):
    module: ClassVar[str | None] = "tun"
    made_through: ClassVar[str | None] = "/dev/net/tun"
    host_local: ClassVar[bool] = False  # a program outside the kernel reads it

    def specs(self, ends: Sequence[End]) -> list[LinkSpec | None]:
        settings = ends[0].entry.get(self.name) or {}
        return [TunSpec(owner=settings.get("owner"), group=settings.get("group"),
                        multi_queue=bool(settings.get("multi_queue", False)),
                        vnet_hdr=bool(settings.get("vnet_hdr", False)))]

    def export(self, link: Link, view: ExportView) -> dict[str, Any]:
        spec = link.spec
        assert isinstance(spec, TunSpec)
        settings = {k: v for k, v in spec.fields().items() if v is not None and v is not False
                    and k != "pi"}
        return {self.name: settings} if settings else {}

    def exportable(self, link: Link, view: ExportView) -> bool:
        """Not one with packet information: a file cannot ask for it."""
        return isinstance(link.spec, TunSpec) and not link.spec.pi

    def spec_from_record(self, data: Mapping[str, Any]) -> LinkSpec | None:
        found = data.get("tuntap")
        if not isinstance(found, dict):
            return None
        return TunSpec(owner=found.get("owner"), group=found.get("group"),
                       multi_queue=bool(found.get("multi_queue")),
                       vnet_hdr=bool(found.get("vnet_hdr")), pi=bool(found.get("pi")))

    def device_settings(self, link: Link) -> tuple[int, int | None, int | None]:
        spec = link.spec if isinstance(link.spec, TunSpec) else TunSpec()
        flags = _TYPES[self.name] | IFF_NO_PI
        flags |= IFF_MULTI_QUEUE if spec.multi_queue else 0
        flags |= IFF_VNET_HDR if spec.vnet_hdr else 0
        return flags, spec.owner, spec.group

    def reported_as(self, link: KernelLink) -> str:
        raw = link.info_data.get(IFLA_TUN_TYPE)
        return TAP if raw and raw[0] == IFF_TAP else TUN

    def parse(self, link: KernelLink) -> LinkSpec | None:
        data = link.info_data
        return TunSpec(owner=as_u32(data.get(IFLA_TUN_OWNER)),
                       group=as_u32(data.get(IFLA_TUN_GROUP)),
                       multi_queue=_flag(data, IFLA_TUN_MULTI_QUEUE),
                       vnet_hdr=_flag(data, IFLA_TUN_VNET_HDR), pi=_flag(data, IFLA_TUN_PI))

    def label(self, link: Link) -> str:
        spec = link.spec
        extra = [k for k in ("multi_queue", "vnet_hdr") if getattr(spec, k, False)]
        return " ".join([self.name, *extra])


class Tap(_TunTap):
    name: ClassVar[str] = TAP
    settings_key: ClassVar[str | None] = TAP
    settings_schema: ClassVar[dict[str, Any]] = _schema(TAP, "frames")


class Tun(_TunTap):
    name: ClassVar[str] = TUN
    settings_key: ClassVar[str | None] = TUN
    settings_schema: ClassVar[dict[str, Any]] = _schema(TUN, "IP packets")


TAP_KIND = Tap()
TUN_KIND = Tun()
