"""Netlink attributes as bytes, both ways: pure functions, no sockets.

The rtnetlink codec (backends/rtnl.py) frames messages with these, and each link kind
(netdecl/links/) writes and reads its own IFLA_INFO_DATA with them; they sit at the bottom of
the layers so that a link kind can own its netlink attributes without importing a backend.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from netdecl.nlconst import NLA_F_NESTED

ATTR = struct.Struct("=HH")
U32 = struct.Struct("=I")


def align(n: int) -> int:
    return (n + 3) & ~3


def attr(kind: int, payload: bytes) -> bytes:
    size = ATTR.size + len(payload)
    return ATTR.pack(size, kind) + payload + b"\0" * (align(size) - size)


def attr_u32(kind: int, value: int) -> bytes:
    return attr(kind, U32.pack(value))


def attr_str(kind: int, value: str) -> bytes:
    return attr(kind, value.encode() + b"\0")


def nested(kind: int, *parts: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, b"".join(parts))


def parse_attrs(buf: bytes, offset: int = 0, end: int | None = None) -> dict[int, bytes]:
    """Attribute type -> raw payload (the last one wins; netdecl reads no repeated ones).
    Written for speed: a no-op plan at 1000 namespaces parses 16 000 messages."""
    out: dict[int, bytes] = {}
    end = len(buf) if end is None else end
    unpack = ATTR.unpack_from
    while offset + 4 <= end:  # 4: the attribute header, ATTR.size
        size, kind = unpack(buf, offset)
        if size < 4:
            break
        out[kind & 0x7FFF & ~NLA_F_NESTED] = buf[offset + 4: offset + size]
        offset += (size + 3) & ~3  # align
    return out


def each_attr(buf: bytes) -> Iterator[tuple[int, bytes]]:
    """Every attribute of ``buf`` in order, repeated ones included (a list the kernel sends
    as one attribute per item: a bridge port's VLANs, a macvlan's source MACs)."""
    offset = 0
    while offset + 4 <= len(buf):
        size, kind = ATTR.unpack_from(buf, offset)
        if size < 4:
            return
        yield kind & 0x7FFF & ~NLA_F_NESTED, buf[offset + 4: offset + size]
        offset += (size + 3) & ~3


def as_str(raw: bytes | None) -> str | None:
    return raw.split(b"\0", 1)[0].decode(errors="replace") if raw is not None else None


def as_u32(raw: bytes | None) -> int | None:
    return U32.unpack_from(raw)[0] if raw is not None and len(raw) >= 4 else None


# socket is imported where it is used: the link kinds import this module, and so every
# `netdecl validate`, which would pay ~5 ms for socket (and selectors under it) and use none.

def as_ip(raw: bytes | None) -> str | None:
    import socket

    if raw is None:
        return None
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw)
    if len(raw) == 16:
        return socket.inet_ntop(socket.AF_INET6, raw)
    return None


def as_mac(raw: bytes | None) -> str | None:
    return ":".join(f"{b:02x}" for b in raw) if raw else None


def ip_bytes(address: str) -> tuple[int, bytes]:
    import socket

    if ":" in address:
        return socket.AF_INET6, socket.inet_pton(socket.AF_INET6, address)
    return socket.AF_INET, socket.inet_pton(socket.AF_INET, address)
