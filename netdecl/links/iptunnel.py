"""kind: ipip, sit and ip6tnl: IP in IP tunnels (IPv4 in IPv4, as Calico's and flannel's IPIP
modes carry pods; IPv6 in IPv4; IPv4 or IPv6 in IPv6), one kind each, sharing IFLA_IPTUN_*.

In place (the kernel's changelink, which is handed every setting again): local, remote, ttl,
tos, pmtudisc and the underlay. A new collect-metadata mode needs a new device. The settings
and their checks are tunnel.py's; the fallback device each module brings (tunl0, sit0,
ip6tnl0) is the kernel's, never netdecl's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from netdecl.links.base import End, ExportView, FileCheck, KernelLink, KernelRequest, LinkKind
from netdecl.links.tunnel import (
    TunnelSpec,
    check_tunnels,
    export_settings,
    kernels_own,
    spec_from_flat,
    tunnel_schema,
    tunnel_spec,
)
from netdecl.model import Link, LinkSpec, Topology
from netdecl.nlattr import as_ip, as_u32, attr, attr_u32, ip_bytes

# linux/if_tunnel.h, IFLA_INFO_DATA of ipip, sit and ip6tnl: setting -> IFLA_IPTUN_*
IPTUN_ATTRS = {"dev": 1, "local": 2, "remote": 3, "ttl": 4, "tos": 5, "pmtudisc": 10,
               "external": 19}


def _u8(raw: bytes | None) -> int | None:
    return raw[0] if raw else None


class IpTunnel(LinkKind):
    """One IP-in-IP kind; subclasses say which outer family it has and which settings."""

    module: ClassVar[str | None] = None
    outer: ClassVar[int] = 4  # the outer header's IP version
    overhead: ClassVar[int] = 20  # bytes the outer headers add
    has_tos: ClassVar[bool] = True  # ip6tnl: a flow label and traffic class instead
    attrs: ClassVar[dict[str, int]] = IPTUN_ATTRS  # setting -> its attribute type

    def specs(self, ends: Sequence[End]) -> list[LinkSpec | None]:
        return [tunnel_spec(ends[0].entry.get(self.name))]

    def check(self, ctx: FileCheck, ends: Sequence[End]) -> None:
        check_tunnels(ctx, ends, self.name, self.overhead, (self.outer,))

    def exportable(self, link: Link, view: ExportView) -> bool:
        return isinstance(link.spec, TunnelSpec) and not kernels_own(link.name, self.name)

    def export(self, link: Link, view: ExportView) -> dict[str, Any]:
        spec = link.spec
        if not isinstance(spec, TunnelSpec):
            return {}
        settings = export_settings(spec, link, view.links)
        return {self.name: settings} if settings else {}

    def spec_from_record(self, data: Mapping[str, Any]) -> LinkSpec | None:
        return spec_from_flat(data)

    def create_data(self, link: Link, request: KernelRequest) -> bytes:
        spec = link.spec
        assert isinstance(spec, TunnelSpec)
        a = self.attrs
        data = b""
        if spec.dev:
            data += attr_u32(a["dev"], request.index_of(spec.dev))
        for name, address in (("local", spec.local), ("remote", spec.remote)):
            if address:
                data += attr(a[name], ip_bytes(address)[1])
        if spec.ttl is not None:
            data += attr(a["ttl"], bytes([spec.ttl]))
        if spec.tos is not None and self.has_tos:
            data += attr(a["tos"], bytes([spec.tos]))
        if spec.pmtudisc is not None and self.has_tos:
            data += attr(a["pmtudisc"], bytes([1 if spec.pmtudisc else 0]))
        if spec.external:
            data += attr(a["external"], b"")
        return data + self.extra_data(spec)

    def extra_data(self, spec: TunnelSpec) -> bytes:
        """Attributes of the kind's own beyond the common ones (a GRE key)."""
        return b""

    def change_request(self, link: Link, changed: set[str],
                       request: KernelRequest) -> bytes | None:
        """The kernel's changelink reads every setting afresh (one left out is reset: the
        underlay unbound): all of them, as when it was made."""
        if not changed & set(link.settings()):
            return None
        return self.create_data(link, request)

    def parse(self, link: KernelLink) -> LinkSpec | None:
        data, a = link.info_data, self.attrs
        dev_index = as_u32(data.get(a["dev"]))
        pmtudisc = _u8(data.get(a["pmtudisc"]))
        return TunnelSpec(
            local=_address(data.get(a["local"])),
            remote=_address(data.get(a["remote"])),
            ttl=_u8(data.get(a["ttl"])),
            tos=_u8(data.get(a["tos"])) if self.has_tos else None,
            key=self.parse_key(data),
            dev=link.name_of(dev_index) if dev_index else None,
            pmtudisc=bool(pmtudisc) if pmtudisc is not None and self.has_tos else None,
            external=a["external"] in data,
        )

    def parse_key(self, data: Mapping[int, bytes]) -> int | None:
        """The kind's key, if it has one (GRE)."""
        return None

    def underlay(self, link: Link) -> tuple[str | None, tuple[str, ...]]:
        spec = link.spec
        if not isinstance(spec, TunnelSpec):
            return None, ()
        return spec.dev, (spec.remote,) if spec.remote else ()

    def far_ends(self, key: tuple[str, str], link: Link,
                 links: Mapping[tuple[str, str], Link]) -> list[tuple[str, str]]:
        """The tunnels of the same kind whose ends mirror this one's (its remote their local,
        their remote its local or any) and whose key is the same: where packets arrive."""
        return [other_key for other_key, other in links.items()
                if other_key != key and other.kind == link.kind and _mirrors(link, other)]

    def tunnels(self, key: tuple[str, str], link: Link, links: Mapping[tuple[str, str], Link],
                topology: Topology) -> list[tuple[tuple[str, str], str]]:
        spec = link.spec
        what = self.name + (f" key {spec.key}" if isinstance(spec, TunnelSpec) and
                            spec.key is not None else "")
        return [(other_key, what) for other_key in self.far_ends(key, link, links)]

    def crossing(self, link: Link) -> str:
        spec = link.spec
        key = f" (key {spec.key})" if isinstance(spec, TunnelSpec) and spec.key is not None \
            else ""
        return f"{self.name} tunnel{key}"

    def label(self, link: Link) -> str:
        spec = link.spec
        if not isinstance(spec, TunnelSpec):
            return self.name
        ends = f" {spec.local or 'any'} -> {spec.remote or 'any'}"
        return self.name + (" external" if spec.external else ends)


def _mirrors(link: Link, other: Link) -> bool:
    a, b = link.spec, other.spec
    if not isinstance(a, TunnelSpec) or not isinstance(b, TunnelSpec) or a.key != b.key:
        return False
    return a.remote is not None and a.remote == b.local and b.remote in (None, a.local)


def _address(raw: bytes | None) -> str | None:
    """An end the kernel reports; the any-address (no end said) is None."""
    text = as_ip(raw)
    return None if text in (None, "0.0.0.0", "::") else text


class Ipip(IpTunnel):
    name: ClassVar[str] = "ipip"
    module: ClassVar[str | None] = "ipip"
    settings_key: ClassVar[str | None] = "ipip"
    settings_schema: ClassVar[dict[str, Any]] = tunnel_schema()


class Sit(IpTunnel):
    name: ClassVar[str] = "sit"
    module: ClassVar[str | None] = "sit"
    settings_key: ClassVar[str | None] = "sit"
    settings_schema: ClassVar[dict[str, Any]] = tunnel_schema()


class Ip6tnl(IpTunnel):
    name: ClassVar[str] = "ip6tnl"
    module: ClassVar[str | None] = "ip6_tunnel"
    settings_key: ClassVar[str | None] = "ip6tnl"
    settings_schema: ClassVar[dict[str, Any]] = tunnel_schema(tos=False, pmtudisc=False,
                                                               family="an IPv6")
    outer: ClassVar[int] = 6
    overhead: ClassVar[int] = 48  # the IPv6 header and the encapsulation-limit option
    has_tos: ClassVar[bool] = False


IPIP, SIT, IP6TNL = Ipip(), Sit(), Ip6tnl()
