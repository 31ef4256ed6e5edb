"""What the point-to-point tunnel kinds share (iptunnel.py: ipip, sit, ip6tnl; gre.py: gre,
gretap; geneve.py): their settings, their file checks, and the kernel's fallback devices.

A tunnel sends what it is given to ``remote`` (from ``local``), wrapped in an outer header,
over the underlay device ``dev`` when one is named. Without ``remote`` it takes packets from
any peer (and, ``external``, is a collect-metadata device: the route or eBPF says where each
packet goes). ``ttl`` 0 or absent: the inner packet's (inherit); ``tos`` likewise;
``pmtudisc`` (default on): the outer header says Don't Fragment, so path MTU discovery works.

Fallback devices: when a tunnel module loads, the kernel makes one device per namespace that
takes what no configured tunnel claims (tunl0 for ipip, which Calico configures; gre0, sit0,
ip6tnl0...). They are the kernel's: netdecl never makes, owns or deletes one (a file
declares one as ``kind: external`` to configure it), and a namespace holding them is still
netdecl's to delete.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from netdecl.links.base import End, FileCheck, LinkRef
from netdecl.links.external import NAME as EXTERNAL
from netdecl.model import Link, LinkSpec

# name -> kind of the devices the kernel makes itself in every namespace when the module of
# that kind loads (net/ipv4/ipip.c, ip_gre.c, ip_vti.c; net/ipv6/sit.c, ip6_tunnel.c,
# ip6_gre.c, ip6_vti.c)
FALLBACK_DEVICES: dict[str, str] = {
    "tunl0": "ipip", "gre0": "gre", "gretap0": "gretap", "erspan0": "erspan",
    "ip_vti0": "vti", "sit0": "sit", "ip6tnl0": "ip6tnl", "ip6gre0": "ip6gre",
    "ip6_vti0": "vti6",
}


def kernels_own(name: str, kind: str) -> bool:
    """Whether a link of this name and kind is a fallback device the kernel made."""
    return FALLBACK_DEVICES.get(name) == kind


@dataclass(frozen=True)
class TunnelSpec(LinkSpec):
    """A tunnel's settings (None: not said, the kernel's default). Which of them need a new
    device is each kind's RECREATE."""

    RECREATE: ClassVar[dict[str, str]] = {"external": "collect-metadata mode changed"}

    local: str | None = None
    remote: str | None = None
    ttl: int | None = None
    tos: int | None = None
    key: int | None = None  # gre, gretap: the same key both ways
    dev: str | None = None  # the underlay, in the tunnel's namespace
    pmtudisc: bool | None = None
    external: bool = False  # collect metadata

    def flat(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def uses(self) -> tuple[str, ...]:
        return (self.dev,) if self.dev else ()


FIELDS = tuple(f.name for f in dataclasses.fields(TunnelSpec))


def tunnel_schema(*, key: bool = False, tos: bool = True, pmtudisc: bool = True,
                  family: str = "an IPv4") -> dict[str, Any]:
    """The JSON schema of one tunnel kind's settings."""
    props: dict[str, Any] = {
        "local": {"$ref": "#/$defs/ip", "description": f"The outer source: {family} address "
                  "of this host."},
        "remote": {"$ref": "#/$defs/ip", "description": "The outer destination: the far end. "
                   "Left out: packets from any peer are taken."},
        "ttl": {"type": "integer", "minimum": 0, "maximum": 255,
                "description": "The outer TTL (hop limit); 0 or left out: the inner packet's."},
        "dev": {"$ref": "#/$defs/ifname", "description": "The underlay link the outer "
                "packets leave by (declare the host's NIC as kind: external)."},
        "external": {"type": "boolean", "default": False,
                     "description": "A collect-metadata device: routes (encap) or eBPF say "
                                    "where each packet goes; no local or remote then."},
    }
    if tos:
        props["tos"] = {"type": "integer", "minimum": 0, "maximum": 255,
                        "description": "The outer TOS; 0 or left out: the inner packet's."}
    if pmtudisc:
        props["pmtudisc"] = {"type": "boolean", "default": True,
                             "description": "Path MTU discovery (Don't Fragment on the outer "
                                            "header)."}
    if key:
        props["key"] = {"type": "integer", "minimum": 0, "maximum": 4294967295,
                        "description": "The GRE key, the same both ways: tunnels between "
                                       "the same two hosts differ by it."}
    return {"type": "object", "additionalProperties": False, "properties": props}


def tunnel_spec(settings: Mapping[str, Any] | None) -> TunnelSpec:
    """The spec of a valid file entry's settings."""
    s = settings or {}
    return TunnelSpec(local=_ip(s.get("local")), remote=_ip(s.get("remote")),
                      ttl=s.get("ttl"), tos=s.get("tos"), key=s.get("key"), dev=s.get("dev"),
                      pmtudisc=s.get("pmtudisc"), external=bool(s.get("external", False)))


def spec_from_flat(data: Mapping[str, Any]) -> TunnelSpec | None:
    """A recorded tunnel's spec (Link.to_dict wrote its flat settings)."""
    if "external" not in data:
        return None
    values: dict[str, Any] = {name: data.get(name) for name in FIELDS if name in data}
    values["external"] = values.get("external") is True
    for name in ("local", "remote"):
        values[name] = _ip(values.get(name))  # (a record is checked, never trusted)
    for name in ("ttl", "tos", "key"):
        if values.get(name) is not None and not isinstance(values[name], int):
            raise TypeError(f"tunnel {name} {values[name]!r} is not a number")
    return TunnelSpec(**values)


def export_settings(spec: TunnelSpec, link: Link, links: Mapping[tuple[str, str], Link]
                    ) -> dict[str, Any]:
    """The file's settings for an observed tunnel: what differs from the kernel's defaults."""
    out = {k: v for k, v in dataclasses.asdict(spec).items()
           if v is not None and v is not False and not (k in ("ttl", "tos") and v == 0)}
    if spec.pmtudisc:  # on is the default
        out.pop("pmtudisc", None)
    if spec.pmtudisc is False:
        out["pmtudisc"] = False
    if out.get("dev") and (link.namespace, out["dev"]) not in links:
        out.pop("dev")
    return out


def _ip(text: Any) -> str | None:
    return str(ipaddress.ip_address(text)) if isinstance(text, str) else None


def check_tunnels(ctx: FileCheck, ends: Sequence[End], settings_key: str, overhead: int,
                  families: tuple[int, ...] = (4,), *, needs_remote: bool = False) -> None:
    """A tunnel kind's checks: addresses of its outer family, no local or remote on a
    collect-metadata device, an underlay that exists, an overlay MTU that fits it, and no
    two tunnels the kernel could not tell apart (same kind, ends, key and underlay)."""
    seen: dict[tuple[Any, ...], str] = {}
    for end in ends:
        if FALLBACK_DEVICES.get(end.name) is not None:
            ctx.error((*end.path, "name"),
                      f"{ctx.quoted(end.name)} is the fallback device the kernel makes when "
                      "the tunnel module loads: netdecl never makes or deletes it; declare "
                      "it kind: external to configure it")
            continue
        settings = end.entry.get(settings_key)
        if not isinstance(settings, dict):
            settings = {}
        path = (*end.path, settings_key)
        for key in ("local", "remote"):
            text = settings.get(key)
            if not isinstance(text, str):
                continue
            version = ctx.ip_version((*path, key), text)
            if version is not None and version not in families:
                ctx.error((*path, key), f"{key} {text} is IPv{version}, but the outer header "
                                        f"of {end.entry.get('kind')} is IPv{families[0]}")
            if settings.get("external") is True:
                ctx.error((*path, key), f"a collect-metadata tunnel (external: true) has no "
                                        f"{key}: routes or eBPF give it per packet")
        if needs_remote and not isinstance(settings.get("remote"), str) and \
                settings.get("external") is not True:
            ctx.error(path if settings_key in end.entry else end.path,
                      f"a {end.entry.get('kind')} tunnel needs a remote (or external: true)")
        underlay = None
        if isinstance(settings.get("dev"), str):
            if settings["dev"] == end.name:
                ctx.error((*path, "dev"), f"tunnel {ctx.quoted(end.name)} cannot ride on "
                                          "itself")
            else:
                underlay = ctx.link_ref((*path, "dev"), end.namespace, settings["dev"])
        keyed = isinstance(settings.get("key"), int)
        check_mtu(ctx, end, underlay, overhead + (KEY_BYTES if keyed else 0))
        ident = (end.namespace, end.entry.get("kind"), settings.get("local"),
                 settings.get("remote"), settings.get("key"), settings.get("dev"),
                 settings.get("id"), settings.get("external"))
        other = seen.setdefault(ident, end.name)
        if other != end.name:
            ctx.error(end.path, f"tunnel {ctx.quoted(end.name)} has the same ends as "
                                f"{ctx.quoted(other)}: the kernel could not tell them apart "
                                "(give one another local, remote or key)")


KEY_BYTES = 4  # a GRE header with a key is this much longer
DEFAULT_MTU = 1500  # an Ethernet underlay's, when the file does not say


def check_mtu(ctx: FileCheck, end: End, underlay: LinkRef | None, overhead: int) -> None:
    """The overlay's packets, wrapped, must fit the underlay's MTU (else they are fragmented
    or dropped): checked where the file says both, or the overlay's and an underlay it makes
    (whose MTU is then the kernel's 1500)."""
    mtu = end.entry.get("mtu")
    if underlay is None or not isinstance(mtu, int) or isinstance(mtu, bool):
        return
    most = underlay.spec.get("mtu")
    if not isinstance(most, int) or isinstance(most, bool):
        if underlay.kind == EXTERNAL:
            return  # the host's NIC: its MTU is the live kernel's
        most = DEFAULT_MTU
    if mtu + overhead > most:
        ctx.error((*end.path, "mtu"), f"mtu {mtu} and the {overhead} bytes of "
                                      f"{end.entry.get('kind')} headers do not fit the {most} of "
                                      f"the underlay {ctx.quoted(underlay.name)}: at most "
                                      f"{most - overhead}")
