"""A small synchronous rtnetlink codec for the hot paths: dumps and the common writes.

Why not pyroute2 for these: measured at 500 namespaces, pyroute2 0.9 spends ~2-3 ms per request
in its asyncio core and decodes every attribute of every message (statistics included) in pure
Python; a `plan` with nothing to do took 9 s, almost all of it there. Links, addresses and routes
are read here with one blocking request per dump, statistics filtered out in the kernel, and
only the attributes netdecl models are decoded. pyroute2 stays for everything rare (VXLAN
creation, FDB, neighbours, rules, route lookups), behind netlink.py like before.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Container, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from netdecl.nlattr import (  # noqa: F401  (re-exported: netlink.py reads attributes as rtnl.*)
    ATTR,
    align,
    as_ip,
    as_mac,
    as_str,
    as_u32,
    attr,
    attr_str,
    attr_u32,
    each_attr,
    ip_bytes,
    nested,
    parse_attrs,
)
from netdecl.nlconst import (
    BRIDGE_FLAGS_SELF,
    BRIDGE_VLAN_INFO_PVID,
    BRIDGE_VLAN_INFO_UNTAGGED,
    IFA_ADDRESS,
    IFA_BROADCAST,
    IFA_FLAGS,
    IFA_LOCAL,
    IFF_ALLMULTI,
    IFF_LOOPBACK,
    IFF_PROMISC,
    IFF_UP,
    IFINFOMSG,
    IFLA_ADDRESS,
    IFLA_AF_SPEC,
    IFLA_BRIDGE_FLAGS,
    IFLA_BRIDGE_VLAN_INFO,
    IFLA_EXT_MASK,
    IFLA_IFALIAS,
    IFLA_IFNAME,
    IFLA_INFO_DATA,
    IFLA_INFO_KIND,
    IFLA_INFO_SLAVE_DATA,
    IFLA_LINKINFO,
    IFLA_MASTER,
    IFLA_MTU,
    IFLA_NET_NS_FD,
    NETNSA_FD,
    NETNSA_NSID,
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_DUMP_INTR,
    NLM_F_ECHO,
    NLM_F_EXCL,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    NLMSGHDR,
    RT_SCOPE_LINK,
    RT_TABLE_COMPAT,
    RTA_DST,
    RTA_GATEWAY,
    RTA_OIF,
    RTA_PREFSRC,
    RTA_PRIORITY,
    RTA_TABLE,
    RTEXT_FILTER_BRVLAN,
    RTEXT_FILTER_SKIP_STATS,
    RTM_DELADDR,
    RTM_DELLINK,
    RTM_DELROUTE,
    RTM_GETADDR,
    RTM_GETLINK,
    RTM_GETNSID,
    RTM_GETROUTE,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWROUTE,
    RTM_SETLINK,
    RTNLGRP_LINK,
    SO_RCVBUFFORCE,
)

DUMP_ATTEMPTS = 5
RECV_SIZE = 1 << 20  # what one recv() of an answer takes at most
# One receive buffer per thread, shared by its sockets: a fresh 1 MiB bytes per recv() is an
# mmap, an mremap and a munmap per kernel answer (three system calls more per action of an
# apply), and a buffer per socket is 1 MiB per namespace (a no-op plan of star-1000 peaked
# at 1 GB). Safe to share: each answer is copied out before the next recv.
_RECEIVING = threading.local()


def _receive_buffer() -> bytearray:
    buffer: bytearray | None = getattr(_RECEIVING, "buffer", None)
    if buffer is None:
        buffer = _RECEIVING.buffer = bytearray(RECV_SIZE)
    return buffer


# room for the notifications of a whole kernel cleanup batch (a thousand veths at ~2 KiB each)
EVENT_BUFFER = 8 << 20

_IFADDR = struct.Struct("=BBBBi")
_VLAN_INFO = struct.Struct("=HH")  # struct bridge_vlan_info: flags, vid
_RTMSG = struct.Struct("=BBBBBBBBI")
_S32 = struct.Struct("=i")


class RtnlError(OSError):
    """The kernel answered a request with an error (errno)."""


@dataclass
class LinkMsg:
    index: int
    flags: int
    attrs: dict[int, bytes]
    kind: str | None = None
    info_data: dict[int, bytes] = field(default_factory=dict)
    slave_data: dict[int, bytes] | None = None


@dataclass
class AddrMsg:
    family: int
    prefixlen: int
    index: int
    address: str
    flags: int = 0  # IFA_FLAGS (all 32 bits), else the header's 8


@dataclass
class RouteMsg:
    family: int
    dst_len: int
    table: int
    proto: int
    type: int
    flags: int
    attrs: dict[int, bytes]
    scope: int = 0


class RtnlSocket:
    """One blocking NETLINK_ROUTE socket (made in its namespace by the caller)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def _send(self, msg_type: int, flags: int, body: bytes) -> int:
        self.seq += 1
        header = NLMSGHDR.pack(NLMSGHDR.size + len(body), msg_type, flags, self.seq, 0)
        self.sock.send(header + body)
        return self.seq

    def _replies(self, seq: int) -> Iterator[tuple[int, int, bytes]]:
        """(type, flags, payload) of each reply to ``seq`` until DONE/ACK; raise on error."""
        while True:
            buffer = _receive_buffer()
            received = self.sock.recv_into(buffer)
            data = bytes(memoryview(buffer)[:received])
            offset = 0
            while offset + NLMSGHDR.size <= len(data):
                length, msg_type, flags, msg_seq, _pid = NLMSGHDR.unpack_from(data, offset)
                if length < NLMSGHDR.size or offset + length > len(data):
                    # a length that would never move on, or a message the datagram cut short:
                    # nothing after it can be trusted to be where the header says
                    raise RtnlError(errno.EBADMSG, f"malformed netlink reply: a message of "
                                    f"{length} bytes at {offset} of a {len(data)}-byte datagram")
                payload = data[offset + NLMSGHDR.size: offset + length]
                offset += align(length)
                if msg_seq != seq:
                    continue  # a late answer to an abandoned request
                if msg_type == NLMSG_DONE:
                    return
                if msg_type == NLMSG_ERROR:
                    code = -_S32.unpack_from(payload)[0]
                    if code:
                        raise RtnlError(code, os.strerror(code))
                    return
                yield msg_type, flags, payload

    def dump(self, msg_type: int, body: bytes) -> list[bytes]:
        """All objects of a kind. A dump the kernel marks as interrupted (the table changed
        while it was being read) may be inconsistent, so it is read again."""
        for _ in range(DUMP_ATTEMPTS):
            seq = self._send(msg_type, NLM_F_REQUEST | NLM_F_DUMP, body)
            replies = list(self._replies(seq))
            if not any(flags & NLM_F_DUMP_INTR for _, flags, _ in replies):
                break
        return [payload for _, _, payload in replies]

    def call(self, msg_type: int, flags: int, body: bytes) -> list[bytes]:
        """A request that changes something; waits for the kernel's answer."""
        seq = self._send(msg_type, NLM_F_REQUEST | NLM_F_ACK | flags, body)
        return [payload for _, _, payload in self._replies(seq)]

    # -- reads ---------------------------------------------------------------------------------
    def links(self) -> list[LinkMsg]:
        """Every link; a loopback device (IFF_LOOPBACK) with its name only, as netdecl reads
        nothing else of it (every namespace has one: a thousand left unparsed at N=1000)."""
        body = IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attr_u32(
            IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)
        return [_loopback_msg(p) if IFINFOMSG.unpack_from(p)[3] & IFF_LOOPBACK else _link_msg(p)
                for p in self.dump(RTM_GETLINK, body)]

    def link_by_name(self, name: str) -> LinkMsg | None:
        return self._get_link(0, attr_str(IFLA_IFNAME, name))

    def link_by_index(self, index: int) -> LinkMsg | None:
        return self._get_link(index)

    def _get_link(self, index: int, extra: bytes = b"") -> LinkMsg | None:
        """One RTM_GETLINK (not a dump); None when there is no such link."""
        body = IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0) + extra + attr_u32(
            IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)
        try:
            replies = self.call(RTM_GETLINK, 0, body)
        except RtnlError as exc:
            if exc.errno == errno.ENODEV:
                return None
            raise
        return _link_msg(replies[0]) if replies else None

    def addresses(self, skip_links: Container[int] = (),
                  skip_link_local: bool = False) -> list[AddrMsg]:
        """Every address, but those on the links ``skip_links`` and (``skip_link_local``)
        IPv6 link-local ones, left before their attributes are parsed."""
        out = []
        for p in self.dump(RTM_GETADDR, _IFADDR.pack(socket.AF_UNSPEC, 0, 0, 0, 0)):
            family, prefixlen, flags, scope, index = _IFADDR.unpack_from(p)
            if index in skip_links or (skip_link_local and family == socket.AF_INET6
                                       and scope == RT_SCOPE_LINK):
                continue
            attrs = parse_attrs(p, _IFADDR.size)
            address = as_ip(attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS))
            if address is not None:
                out.append(AddrMsg(family, prefixlen, index, address,
                                   as_u32(attrs.get(IFA_FLAGS)) or flags))
        return out

    def routes(self, types: Container[int] | None = None, skip_table: int | None = None,
               skip_protocols: Container[int] = ()) -> list[RouteMsg]:
        """Every route (both families), or only those of ``types``, not in table
        ``skip_table`` and not of ``skip_protocols``: those are left before their attributes
        are parsed (in a container's namespace, most of its dozen routes)."""
        out = []
        body = _RTMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0, 0, 0, 0, 0)
        for p in self.dump(RTM_GETROUTE, body):
            family, dst_len, _s, _t, table, proto, scope, rtype, flags = _RTMSG.unpack_from(p)
            if (types is not None and rtype not in types) or table == skip_table \
                    or proto in skip_protocols:
                continue  # (a table above 255 says RT_TABLE_COMPAT here, never skip_table)
            attrs = parse_attrs(p, _RTMSG.size)
            out.append(RouteMsg(family, dst_len, as_u32(attrs.get(RTA_TABLE)) or table,
                                proto, rtype, flags, attrs, scope))
        return out

    def bridge_vlans(self) -> dict[int, tuple[tuple[int, bool, bool], ...]]:
        """ifindex -> the VLANs the bridge keeps for it, (id, pvid, untagged) sorted: for each
        bridge port, and each bridge's own (an AF_BRIDGE dump, as `bridge vlan` reads)."""
        body = IFINFOMSG.pack(socket.AF_BRIDGE, 0, 0, 0, 0) + attr_u32(
            IFLA_EXT_MASK, RTEXT_FILTER_BRVLAN)
        out: dict[int, tuple[tuple[int, bool, bool], ...]] = {}
        for p in self.dump(RTM_GETLINK, body):
            index = IFINFOMSG.unpack_from(p)[2]
            spec = parse_attrs(p, IFINFOMSG.size).get(IFLA_AF_SPEC)
            if spec is None:
                continue
            found = {}
            for kind, payload in each_attr(spec):  # (repeated: parse_attrs keeps one)
                if kind == IFLA_BRIDGE_VLAN_INFO and len(payload) >= 4:
                    flags, vid = _VLAN_INFO.unpack_from(payload)
                    found[vid] = (vid, bool(flags & BRIDGE_VLAN_INFO_PVID),
                                  bool(flags & BRIDGE_VLAN_INFO_UNTAGGED))
            out[index] = tuple(found[vid] for vid in sorted(found))
        return out

    def set_bridge_vlans(self, index: int, vlans: Iterable[tuple[int, bool, bool]],
                         remove: Iterable[int], own: bool) -> None:
        """Add (or set the flags of) ``vlans`` on the port at ``index`` (``own``: the bridge
        itself), then remove the ids ``remove``."""
        head = attr(IFLA_BRIDGE_FLAGS, struct.pack("=H", BRIDGE_FLAGS_SELF)) if own else b""
        added = b"".join(attr(IFLA_BRIDGE_VLAN_INFO, _VLAN_INFO.pack(
            (BRIDGE_VLAN_INFO_PVID if pvid else 0) | (BRIDGE_VLAN_INFO_UNTAGGED if untagged
                                                      else 0), vid))
            for vid, pvid, untagged in vlans)
        removed = b"".join(attr(IFLA_BRIDGE_VLAN_INFO, _VLAN_INFO.pack(0, vid)) for vid in remove)
        for msg_type, infos in ((RTM_SETLINK, added), (RTM_DELLINK, removed)):
            if infos:
                body = IFINFOMSG.pack(socket.AF_BRIDGE, 0, index, 0, 0) + nested(
                    IFLA_AF_SPEC, head + infos)
                self.call(msg_type, 0, body)

    def nsid_of(self, fd: int) -> int | None:
        """The id this namespace gives the namespace behind ``fd`` (RTM_GETNSID)."""
        body = struct.pack("=B3x", socket.AF_UNSPEC) + attr_u32(NETNSA_FD, fd)
        try:
            replies = self.call(RTM_GETNSID, 0, body)
        except RtnlError:
            return None
        for p in replies:
            nsid = parse_attrs(p, 4).get(NETNSA_NSID)
            if nsid is not None:
                value = _S32.unpack_from(nsid)[0]
                return value if value >= 0 else None
        return None

    # -- writes --------------------------------------------------------------------------------
    def new_link(self, name: str, kind: str, info_data: bytes = b"",
                 attrs: bytes = b"") -> LinkMsg | None:
        """Create a link; returns the kernel's own description of the link it made (NLM_F_ECHO,
        honoured for links since Linux 6.3), or None from a kernel that only acknowledges:
        the caller then looks the link up by its name. ``attrs``: top-level attributes besides
        the name and IFLA_LINKINFO (IFLA_LINK: the parent of a VLAN or a macvlan)."""
        info = attr_str(IFLA_INFO_KIND, kind)
        if info_data:
            info += nested(IFLA_INFO_DATA, info_data)
        body = IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attr_str(IFLA_IFNAME, name) + \
            attrs + nested(IFLA_LINKINFO, info)
        for payload in self.call(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO, body):
            msg = _link_msg(payload)
            if as_str(msg.attrs.get(IFLA_IFNAME)) == name:
                return msg
        return None

    def set_link_data(self, index: int, kind: str, info_data: bytes) -> None:
        """Change the settings of a link's kind in place (IFLA_INFO_DATA, as its kind module
        writes them: netdecl/links/)."""
        info = attr_str(IFLA_INFO_KIND, kind) + nested(IFLA_INFO_DATA, info_data)
        body = IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0) + nested(IFLA_LINKINFO, info)
        self.call(RTM_NEWLINK, 0, body)

    def set_link(self, index: int, *, up: bool | None = None, mtu: int | None = None,
                 mac: str | None = None, master: int | None = None,
                 alias: str | None = None, name: str | None = None,
                 promisc: bool | None = None, allmulti: bool | None = None) -> None:
        """One RTM_NEWLINK for all of it, applied by the kernel in its own order (do_setlink):
        the flags after the name, MTU, MAC and alias, but before the master (a bond refuses a
        member brought up in the same request); a rename to a name that is taken fails the
        request (EEXIST) before the alias and the flags. An empty ``alias`` removes the link's
        alias."""
        flags = change = 0
        for flag, value in ((IFF_UP, up), (IFF_PROMISC, promisc), (IFF_ALLMULTI, allmulti)):
            if value is not None:  # (do_setlink sets exactly the flags in ifi_change)
                flags, change = flags | (flag if value else 0), change | flag
        body = IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, flags, change)
        if name is not None:
            body += attr_str(IFLA_IFNAME, name)
        if mtu is not None:
            body += attr_u32(IFLA_MTU, mtu)
        if mac is not None:
            body += attr(IFLA_ADDRESS, bytes.fromhex(mac.replace(":", "")))
        if master is not None:
            body += attr_u32(IFLA_MASTER, master)
        if alias:
            body += attr_str(IFLA_IFALIAS, alias)
        elif alias is not None:
            # an empty payload, as `ip link set ... alias ""` sends: the kernel frees the
            # alias (a lone NUL would leave an empty one behind, visible in sysfs)
            body += attr(IFLA_IFALIAS, b"")
        self.call(RTM_NEWLINK, 0, body)

    def move_link(self, index: int, netns_fd: int, name: str) -> None:
        """Move a link into the namespace of ``netns_fd``, named ``name`` there (one request:
        do_setlink moves it under the new name, so it never stands there under its old one)."""
        body = IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0) + attr_str(IFLA_IFNAME, name) \
            + attr_u32(IFLA_NET_NS_FD, netns_fd)
        self.call(RTM_NEWLINK, 0, body)

    def del_link(self, index: int) -> None:
        self.call(RTM_DELLINK, 0, IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0))

    def _addr_body(self, index: int, address: str, prefixlen: int, flags: int) -> bytes:
        family, raw = ip_bytes(address)
        body = _IFADDR.pack(family, prefixlen, flags & 0xFF, 0, index)
        body += attr(IFA_LOCAL, raw) + attr(IFA_ADDRESS, raw)
        if flags:
            body += attr_u32(IFA_FLAGS, flags)
        return body

    def add_address(self, index: int, address: str, prefixlen: int, flags: int = 0) -> None:
        body = self._addr_body(index, address, prefixlen, flags)
        net = ipaddress.ip_network(f"{address}/{prefixlen}", strict=False)
        if net.version == 4 and prefixlen <= 30:
            # the subnet's broadcast address, as `ip addr add ... brd +`, the CNI plugins,
            # Docker and systemd-networkd give it (a /31 or /32 has none)
            body += attr(IFA_BROADCAST, net.broadcast_address.packed)
        self.call(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body)

    def del_address(self, index: int, address: str, prefixlen: int) -> None:
        self.call(RTM_DELADDR, 0, self._addr_body(index, address, prefixlen, 0))

    def _route_body(self, *, family: int, dst: str, dst_len: int, table: int, metric: int,
                    proto: int, rtype: int = 1, gateway: str | None = None,
                    oif: int | None = None, prefsrc: str | None = None,
                    flags: int = 0, scope: int = 0) -> bytes:
        body = _RTMSG.pack(family, dst_len, 0, 0, table if table < 256 else RT_TABLE_COMPAT, proto,
                           scope, rtype, flags)
        if dst_len:
            body += attr(RTA_DST, ip_bytes(dst)[1])
        body += attr_u32(RTA_TABLE, table) + attr_u32(RTA_PRIORITY, metric)
        if gateway:
            body += attr(RTA_GATEWAY, ip_bytes(gateway)[1])
        if oif:
            body += attr_u32(RTA_OIF, oif)
        if prefsrc:
            body += attr(RTA_PREFSRC, ip_bytes(prefsrc)[1])
        return body

    def replace_route(self, **route: Any) -> None:
        self.call(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, self._route_body(**route))

    def del_route(self, **route: Any) -> None:
        self.call(RTM_DELROUTE, 0, self._route_body(**route))


class LinkEvents:
    """A NETLINK_ROUTE socket (made in its namespace by the caller) subscribed to link
    notifications (RTNLGRP_LINK), to wait for links to disappear without polling.

    Subscribe first, then check whether the link still exists, then read: a link deleted
    before the check is absent, one deleted after it is announced by an RTM_DELLINK (also sent
    when a link leaves for another namespace: gone from here all the same)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, EVENT_BUFFER)
        except OSError:  # without CAP_NET_ADMIN: the default size; an overflow is handled
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, EVENT_BUFFER)
        self.sock.bind((0, 1 << (RTNLGRP_LINK - 1)))
        self.gone: set[tuple[int, str]] = set()  # (index, name) of every deletion announced

    def close(self) -> None:
        self.sock.close()

    def wait_gone(self, index: int, name: str, exists: Callable[[int], bool],
                  stall: float) -> bool:
        """Block until link ``index`` (named ``name``) is deleted; True when it is gone. False
        when no link of this namespace went away for ``stall`` seconds while it was still
        there (the kernel is not tearing it down: the caller deletes it itself). ``exists``
        asks the kernel (a request on another socket), after this socket subscribed; it is
        skipped when a notification already announced the deletion (a thousand veths going
        in one kernel batch are announced together)."""
        self._read(block=False)
        if (index, name) in self.gone or not exists(index):
            return True
        deadline = time.monotonic() + stall
        while (index, name) not in self.gone:
            timeout = deadline - time.monotonic()
            if timeout <= 0 or not select.select([self.sock], [], [], timeout)[0]:
                return not exists(index)
            try:
                if self._read(block=True):
                    deadline = time.monotonic() + stall  # the kernel is making progress
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                # notifications were lost while the buffer was full: ask again
                if not exists(index):
                    return True
        return True

    def _read(self, block: bool) -> bool:
        """Note the deletions announced so far (one read when ``block``, else all that are
        waiting); whether there were any."""
        found = False
        while True:
            try:
                data = self.sock.recv(1 << 20, 0 if block else socket.MSG_DONTWAIT)
            except BlockingIOError:
                return found
            except OSError as exc:
                if exc.errno != errno.ENOBUFS or block:
                    raise
                continue  # lost some: exists() answers for those
            offset = 0
            while offset + NLMSGHDR.size <= len(data):
                length, msg_type, _flags, _seq, _pid = NLMSGHDR.unpack_from(data, offset)
                if msg_type == RTM_DELLINK and length >= NLMSGHDR.size + IFINFOMSG.size \
                        and data[offset + NLMSGHDR.size] != socket.AF_BRIDGE:
                    # (an AF_BRIDGE RTM_DELLINK says a port left its bridge: the link lives)
                    payload = data[offset + NLMSGHDR.size: offset + length]
                    msg = _link_msg(payload)
                    self.gone.add((msg.index, as_str(msg.attrs.get(IFLA_IFNAME)) or ""))
                    found = True
                offset += align(max(length, NLMSGHDR.size))
            if block:
                return found


def _loopback_msg(payload: bytes) -> LinkMsg:
    """A loopback device's message with only its name (IFLA_IFNAME comes first)."""
    _family, _type, index, flags, _change = IFINFOMSG.unpack_from(payload)
    offset = IFINFOMSG.size
    while offset + 4 <= len(payload):
        size, kind = ATTR.unpack_from(payload, offset)
        if size < 4:
            break
        if kind == IFLA_IFNAME:
            return LinkMsg(index=index, flags=flags,
                           attrs={IFLA_IFNAME: payload[offset + 4: offset + size]})
        offset += (size + 3) & ~3
    return LinkMsg(index=index, flags=flags, attrs={})


def _link_msg(payload: bytes) -> LinkMsg:
    _family, _type, index, flags, _change = IFINFOMSG.unpack_from(payload)
    attrs = parse_attrs(payload, IFINFOMSG.size)
    msg = LinkMsg(index=index, flags=flags, attrs=attrs)
    info = attrs.get(IFLA_LINKINFO)
    if info is not None:
        parts = parse_attrs(info)
        msg.kind = as_str(parts.get(IFLA_INFO_KIND))
        if IFLA_INFO_DATA in parts:
            msg.info_data = parse_attrs(parts[IFLA_INFO_DATA])
        if IFLA_INFO_SLAVE_DATA in parts:
            msg.slave_data = parse_attrs(parts[IFLA_INFO_SLAVE_DATA])
    return msg
