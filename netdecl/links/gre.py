"""kind: gre and gretap: GRE tunnels, of IP packets (gre) or of Ethernet frames (gretap, which
a bridge may take as a port), with an optional key telling tunnels between the same two hosts
apart. IFLA_GRE_*; otherwise as iptunnel.py (in place: everything but collect-metadata).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any, ClassVar

from netdecl.links.iptunnel import IpTunnel
from netdecl.links.tunnel import TunnelSpec, tunnel_schema
from netdecl.nlattr import attr

# linux/if_tunnel.h, IFLA_INFO_DATA of gre and gretap: setting -> IFLA_GRE_*
GRE_ATTRS = {"dev": 1, "local": 6, "remote": 7, "ttl": 8, "tos": 9, "pmtudisc": 10,
             "external": 18}
IFLA_GRE_IFLAGS, IFLA_GRE_OFLAGS, IFLA_GRE_IKEY, IFLA_GRE_OKEY = 2, 3, 4, 5
GRE_KEY = 0x2000  # the K bit of the GRE header's flags (network order on the wire)
_BE16, _BE32 = struct.Struct("!H"), struct.Struct("!I")
KEY_BYTES = 4


class Gre(IpTunnel):
    name: ClassVar[str] = "gre"
    module: ClassVar[str | None] = "ip_gre"
    settings_key: ClassVar[str | None] = "gre"
    settings_schema: ClassVar[dict[str, Any]] = tunnel_schema(key=True)
    attrs: ClassVar[dict[str, int]] = GRE_ATTRS
    overhead: ClassVar[int] = 24  # IPv4 and GRE headers (a key: 4 more, see check)

    def extra_data(self, spec: TunnelSpec) -> bytes:
        if spec.key is None:
            return b""
        flags, key = _BE16.pack(GRE_KEY), _BE32.pack(spec.key)
        return attr(IFLA_GRE_IFLAGS, flags) + attr(IFLA_GRE_OFLAGS, flags) + \
            attr(IFLA_GRE_IKEY, key) + attr(IFLA_GRE_OKEY, key)

    def parse_key(self, data: Mapping[int, bytes]) -> int | None:
        flags = data.get(IFLA_GRE_IFLAGS)
        key = data.get(IFLA_GRE_IKEY)
        if not flags or not key or not _BE16.unpack_from(flags)[0] & GRE_KEY:
            return None
        return int(_BE32.unpack_from(key)[0])


class Gretap(Gre):
    name: ClassVar[str] = "gretap"
    settings_key: ClassVar[str | None] = "gretap"
    settings_schema: ClassVar[dict[str, Any]] = tunnel_schema(key=True)
    overhead: ClassVar[int] = 38  # and the inner Ethernet header
    layer2: ClassVar[bool] = True


GRE, GRETAP = Gre(), Gretap()
