"""The hand-written rtnetlink codec (netdecl/backends/rtnl.py), offline: no root, no kernel.

tests/data/rtnl/*.hex are exchanges with a real kernel, captured once by
tests/data/rtnl/capture.py (its docstring says how and what): the requests the codec sent and
the datagrams the kernel answered. Here a stand-in socket replays them: it checks that every
request the codec sends is byte for byte the captured one, and answers with the kernel's
captured datagrams, whose decoding is then asserted field by field.

What the requests must be is not taken from the codec: each is also built here by hand from
the kernel's structures (include/uapi/linux/netlink.h, rtnetlink.h, if_link.h, if_addr.h,
net_namespace.h), written out below with their numbers, and the kernel's own answer in the
capture confirms it took them (an acknowledgement echoes the request's header, a refusal the
whole request; a create echoes the link it made).

Malformed input (an attribute or a message whose length is wrong, a truncated structure) is
fed in too: the codec must stop, with a clear error where it cannot go on, never loop.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

from netdecl.backends import rtnl
from netdecl.links import veth

DATA = Path(__file__).resolve().parent / "data" / "rtnl"

# -- the kernel's structures and numbers, written out (not imported from the codec) --------------

NLMSGHDR = struct.Struct("=IHHII")  # length (header included), type, flags, sequence, port id
IFINFOMSG = struct.Struct("=BxHiII")  # family, (pad), device type, ifindex, flags, change mask
IFADDRMSG = struct.Struct("=BBBBI")  # family, prefix length, flags, scope, ifindex
RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst len, src len, tos, table, protocol, scope,
#                                      type, flags
RTATTR = struct.Struct("=HH")  # length (header included, padding not), type
U32 = struct.Struct("=I")

NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWNSID, RTM_GETNSID = 88, 90
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK, NLM_F_ECHO, NLM_F_DUMP_INTR = 0x1, 0x2, 0x4, 0x8, 0x10
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE, NLM_F_DUMP = 0x100, 0x200, 0x400, 0x300
NLM_F_CAPPED = 0x100  # on an acknowledgement: the request's header only, not its body
NLA_F_NESTED = 0x8000
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_STATS, IFLA_MASTER = 1, 3, 4, 5, 7, 10
IFLA_LINKINFO, IFLA_IFALIAS, IFLA_STATS64, IFLA_NET_NS_FD, IFLA_EXT_MASK = 18, 20, 23, 28, 29
IFLA_AF_SPEC, IFLA_LINK_NETNSID = 26, 37
IFLA_INET6_CONF, IFLA_INET6_STATS, IFLA_INET6_ICMP6STATS = 2, 3, 6
IFLA_INFO_KIND, IFLA_INFO_DATA, IFLA_INFO_SLAVE_KIND, IFLA_INFO_SLAVE_DATA = 1, 2, 4, 5
IFLA_BR_STP_STATE, IFLA_BRPORT_MODE = 5, 4
IFLA_VXLAN_ID, IFLA_VXLAN_LINK, IFLA_VXLAN_LOCAL, IFLA_VXLAN_LEARNING = 1, 3, 4, 7
IFLA_VXLAN_PORT = 15
VETH_INFO_PEER = 1
RTEXT_FILTER_SKIP_STATS = 1 << 3
IFF_UP, IFF_LOOPBACK = 0x1, 0x8
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST, IFA_FLAGS, IFA_F_NODAD = 1, 2, 4, 8, 0x02
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC, RTA_TABLE = 1, 4, 5, 6, 7, 15
RT_TABLE_COMPAT, RT_TABLE_LOCAL = 252, 255
RTN_UNICAST, RTN_BLACKHOLE, RT_SCOPE_NOWHERE, RTPROT_KERNEL = 1, 6, 255, 2
NETNSA_NSID, NETNSA_FD = 1, 3
AF_BRIDGE = 7


def rta(kind: int, payload: bytes = b"") -> bytes:
    """An attribute: its length counts the 4-byte header and the payload, not the NULs that
    pad it to a multiple of 4."""
    length = RTATTR.size + len(payload)
    return RTATTR.pack(length, kind) + payload + b"\0" * (-length % 4)


def rta_u32(kind: int, value: int) -> bytes:
    return rta(kind, U32.pack(value))


def rta_str(kind: int, text: str) -> bytes:
    return rta(kind, text.encode() + b"\0")


def request(msg_type: int, flags: int, body: bytes, seq: int = 1) -> bytes:
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), msg_type, flags, seq, 0) + body


# -- replaying a capture -------------------------------------------------------------------------

@dataclass
class Exchange:
    """One capture: what was sent (>) and received (<), in order, and its facts (@)."""

    steps: list[tuple[str, bytes]]
    facts: dict[str, int]

    @property
    def sent(self) -> list[bytes]:
        return [data for way, data in self.steps if way == ">"]

    @property
    def received(self) -> list[bytes]:
        return [data for way, data in self.steps if way == "<"]


def load(name: str) -> Exchange:
    steps, facts = [], {}
    for line in (DATA / f"{name}.hex").read_text().splitlines():
        if line.startswith(("> ", "< ")):
            steps.append((line[0], bytes.fromhex(line[2:])))
        elif line.startswith("@ "):
            key, _, value = line[2:].partition("=")
            facts[key] = int(value)
    return Exchange(steps, facts)


class Replay:
    """Stands in for a NETLINK_ROUTE socket: every send must be the captured request, every
    receive gets the kernel's next captured datagram."""

    def __init__(self, steps: list[tuple[str, bytes]]) -> None:
        self.steps = deque(steps)

    def bind(self, address: tuple[int, int]) -> None:
        pass

    def setsockopt(self, *args: object) -> None:
        pass

    def close(self) -> None:
        pass

    def send(self, data: bytes) -> int:
        assert self.steps and self.steps[0][0] == ">", \
            f"the codec sent a request the capture does not have: {data.hex()}"
        want = self.steps.popleft()[1]
        assert data.hex() == want.hex(), "the codec's request differs from the captured one"
        return len(data)

    def recv(self, size: int, flags: int = 0) -> bytes:
        if not self.steps or self.steps[0][0] != "<":
            if flags & socket.MSG_DONTWAIT:
                raise BlockingIOError(errno.EAGAIN, "nothing more was captured")
            raise AssertionError("the codec waits for an answer the kernel never sent")
        return self.steps.popleft()[1]

    def recv_into(self, buffer: bytearray, flags: int = 0) -> int:
        data = self.recv(len(buffer), flags)
        assert len(data) <= len(buffer), "a captured datagram larger than the codec's buffer"
        buffer[:len(data)] = data
        return len(data)

    def finished(self) -> bool:
        return not self.steps


def as_socket(stand_in: object) -> socket.socket:
    """What the codec is given in place of a socket (it calls only bind, setsockopt, send,
    recv and close)."""
    return cast(socket.socket, stand_in)


def replayed(name: str) -> tuple[rtnl.RtnlSocket, Replay, Exchange]:
    exchange = load(name)
    replay = Replay(exchange.steps)
    return rtnl.RtnlSocket(as_socket(replay)), replay, exchange


def messages(datagram: bytes) -> list[tuple[int, int, int, bytes]]:
    """(type, flags, seq, payload) of each message of a datagram, by the header layout."""
    out, offset = [], 0
    while offset < len(datagram):
        length, msg_type, flags, seq, _ = NLMSGHDR.unpack_from(datagram, offset)
        out.append((msg_type, flags, seq, datagram[offset + NLMSGHDR.size: offset + length]))
        offset += (length + 3) & ~3
    return out


def acknowledged(exchange: Exchange, number: int = 0) -> None:
    """The kernel acknowledged request ``number`` (error 0), echoing its header: it took
    these bytes as the request they are."""
    sent = exchange.sent[number]
    seq = NLMSGHDR.unpack_from(sent)[3]
    acks = [(flags, payload) for datagram in exchange.received
            for msg_type, flags, ack_seq, payload in messages(datagram)
            if msg_type == NLMSG_ERROR and ack_seq == seq]
    assert len(acks) == 1
    flags, payload = acks[0]
    assert struct.unpack_from("=i", payload)[0] == 0
    assert flags & NLM_F_CAPPED and payload[4:4 + NLMSGHDR.size] == sent[:NLMSGHDR.size]


def name_of(msg: rtnl.LinkMsg) -> str | None:
    return rtnl.as_str(msg.attrs.get(IFLA_IFNAME))


# -- attributes ----------------------------------------------------------------------------------

def test_an_attribute_counts_its_header_and_is_padded_to_four_bytes() -> None:
    assert rtnl.attr(3, b"abc") == b"\x07\x00\x03\x00abc\x00"  # length 7, one NUL of padding
    assert rtnl.attr(3, b"abcd") == b"\x08\x00\x03\x00abcd"  # no padding needed
    assert rtnl.attr(20, b"") == b"\x04\x00\x14\x00"  # empty: the header alone
    assert rtnl.attr_str(3, "br0") == b"\x08\x00\x03\x00br0\x00"  # the NUL is counted
    assert rtnl.attr_u32(4, 1400) == b"\x08\x00\x04\x00" + U32.pack(1400)
    inner = rtnl.attr_str(IFLA_INFO_KIND, "veth")
    assert rtnl.nested(IFLA_LINKINFO, inner) == \
        RTATTR.pack(4 + len(inner), IFLA_LINKINFO | NLA_F_NESTED) + inner
    for kind, payload in ((1, b""), (2, b"x"), (3, b"xy"), (4, b"xyz"), (5, b"wxyz")):
        assert rtnl.attr(kind, payload) == rta(kind, payload)


def test_attributes_parse_back_nested_flag_and_padding_removed() -> None:
    buf = (rta_str(IFLA_IFNAME, "v0") + rta_u32(IFLA_MTU, 1500)
           + rta(IFLA_LINKINFO | NLA_F_NESTED, rta_str(IFLA_INFO_KIND, "veth")) + rta(99))
    attrs = rtnl.parse_attrs(buf)
    assert attrs == {IFLA_IFNAME: b"v0\0", IFLA_MTU: U32.pack(1500),
                     IFLA_LINKINFO: rta_str(IFLA_INFO_KIND, "veth"), 99: b""}
    assert rtnl.as_str(attrs[IFLA_IFNAME]) == "v0" and rtnl.as_u32(attrs[IFLA_MTU]) == 1500
    # from an offset, up to an end
    assert rtnl.parse_attrs(b"\xff" * 6 + buf, 6, 6 + 8) == {IFLA_IFNAME: b"v0\0"}


def test_values_are_read_as_the_kernel_writes_them() -> None:
    assert rtnl.as_ip(bytes([10, 0, 0, 1])) == "10.0.0.1"
    assert rtnl.as_ip(bytes.fromhex("fd000000000000000000000000000001")) == "fd00::1"
    assert rtnl.as_mac(bytes.fromhex("02000000ca01")) == "02:00:00:00:ca:01"
    assert rtnl.as_str(b"netdecl:cap\0\0\0") == "netdecl:cap"
    assert rtnl.ip_bytes("fd05::1") == \
        (socket.AF_INET6, bytes.fromhex("fd050000000000000000000000000001"))
    # what is not there, or not what it should be, is None
    assert (rtnl.as_ip(None), rtnl.as_u32(None), rtnl.as_str(None), rtnl.as_mac(None)) == \
        (None, None, None, None)


# -- requests: built by hand, sent by the codec, taken by the kernel ----------------------------

def test_a_link_dump_asks_for_every_link_without_ipv6_statistics() -> None:
    sock, replay, exchange = replayed("links_root")
    want = request(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP,
                   IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
                   + rta_u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS))
    assert exchange.sent == [want]
    links = sock.links()
    assert replay.finished()
    # the kernel honoured the mask: no link came with its IPv6 counters. (RTEXT_FILTER_SKIP_STATS
    # leaves out only those, about half of a link's message; IFLA_STATS and IFLA_STATS64 come
    # all the same)
    for m in links[1:]:
        ipv6 = rtnl.parse_attrs(rtnl.parse_attrs(m.attrs[IFLA_AF_SPEC])[socket.AF_INET6])
        assert IFLA_INET6_CONF in ipv6
        assert IFLA_INET6_STATS not in ipv6 and IFLA_INET6_ICMP6STATS not in ipv6
        assert IFLA_STATS in m.attrs and IFLA_STATS64 in m.attrs


def test_address_and_route_dumps_and_a_namespace_id_are_asked_as_the_kernel_expects() -> None:
    assert load("addresses_root").sent == [request(
        RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0))]
    assert load("routes_root").sent == [request(
        RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, RTMSG.pack(socket.AF_UNSPEC, *[0] * 8))]
    nsid = load("nsid_of")
    # struct rtgenmsg: the family, padded to four bytes
    assert nsid.sent == [request(RTM_GETNSID, NLM_F_REQUEST | NLM_F_ACK,
                                 struct.pack("=B3x", socket.AF_UNSPEC)
                                 + rta_u32(NETNSA_FD, nsid.facts["fd"]))]
    acknowledged(nsid)


def test_a_link_is_created_with_its_kind_nested_and_echoed() -> None:
    sock, replay, exchange = replayed("new_link")
    info = rta_str(IFLA_INFO_KIND, "bridge") + rta(
        IFLA_INFO_DATA | NLA_F_NESTED, rta_u32(IFLA_BR_STP_STATE, 1))
    want = request(RTM_NEWLINK,
                   NLM_F_REQUEST | NLM_F_ACK | NLM_F_ECHO | NLM_F_CREATE | NLM_F_EXCL,
                   IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + rta_str(IFLA_IFNAME, "cap0")
                   + rta(IFLA_LINKINFO | NLA_F_NESTED, info))
    assert exchange.sent == [want] and len(want) == 72
    made = sock.new_link("cap0", "bridge", rtnl.attr_u32(IFLA_BR_STP_STATE, 1))
    assert replay.finished()
    acknowledged(exchange)
    # the kernel's own description of what it made: what was asked
    assert made is not None and name_of(made) == "cap0" and made.kind == "bridge"
    assert rtnl.as_u32(made.info_data.get(IFLA_BR_STP_STATE)) == 1
    assert made.index > 0 and not made.flags & IFF_UP


def test_a_veth_pair_is_created_with_its_peer_in_another_namespace() -> None:
    sock, replay, exchange = replayed("new_veth")
    fd = exchange.facts["fd"]
    # the peer: an ifinfomsg of its own, then its attributes, inside VETH_INFO_PEER
    peer = IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + rta_str(IFLA_IFNAME, "cap2") + \
        rta_u32(IFLA_NET_NS_FD, fd)
    info = rta_str(IFLA_INFO_KIND, "veth") + rta(
        IFLA_INFO_DATA | NLA_F_NESTED, rta(VETH_INFO_PEER, peer))
    want = request(RTM_NEWLINK,
                   NLM_F_REQUEST | NLM_F_ACK | NLM_F_ECHO | NLM_F_CREATE | NLM_F_EXCL,
                   IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + rta_str(IFLA_IFNAME, "cap1")
                   + rta(IFLA_LINKINFO | NLA_F_NESTED, info))
    assert exchange.sent == [want]
    # the veth kind's request (netdecl/links/veth.py) is the one the capture sent
    made = sock.new_link("cap1", "veth", veth.peer_data("cap2", fd))
    assert replay.finished()
    acknowledged(exchange)
    assert made is not None and name_of(made) == "cap1" and made.kind == "veth"
    # the peer's ifindex (in its own namespace) and that it lives in another one
    assert rtnl.as_u32(made.attrs.get(IFLA_LINK)) == 3  # peer has lo and eth0 before it
    assert IFLA_LINK_NETNSID in made.attrs


def test_one_request_sets_every_attribute_of_a_link() -> None:
    exchange = load("set_link")
    index, master = exchange.facts["index"], exchange.facts["master"]
    want = request(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK,
                   IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, IFF_UP, IFF_UP)
                   + rta_str(IFLA_IFNAME, "cap1r") + rta_u32(IFLA_MTU, 1400)
                   + rta(IFLA_ADDRESS, bytes.fromhex("02000000ca01"))
                   + rta_u32(IFLA_MASTER, master) + rta_str(IFLA_IFALIAS, "netdecl:cap"))
    assert exchange.sent == [want]
    replay = Replay(exchange.steps)
    rtnl.RtnlSocket(as_socket(replay)).set_link(
        index, up=True, mtu=1400, mac="02:00:00:00:ca:01", master=master,
        alias="netdecl:cap", name="cap1r")
    assert replay.finished()
    acknowledged(exchange)


def test_an_alias_is_removed_by_an_empty_one_and_a_link_raised_by_its_flags() -> None:
    no_alias = load("set_link_no_alias")
    # an empty IFLA_IFALIAS, no NUL: the kernel frees the alias (see set_link)
    assert no_alias.sent == [request(
        RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK,
        IFINFOMSG.pack(socket.AF_UNSPEC, 0, no_alias.facts["index"], 0, 0) + rta(IFLA_IFALIAS))]
    up = load("set_link_up")
    assert up.sent == [request(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, IFINFOMSG.pack(
        socket.AF_UNSPEC, 0, up.facts["index"], IFF_UP, IFF_UP))]
    for name, call in (("set_link_no_alias", lambda s, i: s.set_link(i, alias="")),
                       ("set_link_up", lambda s, i: s.set_link(i, up=True))):
        sock, replay, exchange = replayed(name)
        call(sock, exchange.facts["index"])
        assert replay.finished()
        acknowledged(exchange)


def test_addresses_are_added_with_local_and_address_and_ipv6_flags() -> None:
    v4, v6 = load("add_address"), load("add_address_v6")
    index = v4.facts["index"]
    four = bytes([10, 5, 0, 1])
    # an IPv4 address with its subnet's broadcast address, as `ip addr add ... brd +` and the
    # CNI plugins give it
    assert v4.sent == [request(
        RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        IFADDRMSG.pack(socket.AF_INET, 24, 0, 0, index) + rta(IFA_LOCAL, four)
        + rta(IFA_ADDRESS, four) + rta(IFA_BROADCAST, bytes([10, 5, 0, 255])))]
    six = socket.inet_pton(socket.AF_INET6, "fd05::1")
    # the flags both in the header (8 bits) and as IFA_FLAGS (32 bits)
    assert v6.sent == [request(
        RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        IFADDRMSG.pack(socket.AF_INET6, 64, IFA_F_NODAD, 0, index) + rta(IFA_LOCAL, six)
        + rta(IFA_ADDRESS, six) + rta_u32(IFA_FLAGS, IFA_F_NODAD))]
    for name, args in (("add_address", ("10.5.0.1", 24)),
                       ("add_address_v6", ("fd05::1", 64, IFA_F_NODAD))):
        sock, replay, exchange = replayed(name)
        sock.add_address(index, *args)
        assert replay.finished()
        acknowledged(exchange)
    sock, replay, exchange = replayed("del_address")
    assert exchange.sent[0] == request(
        RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK,
        IFADDRMSG.pack(socket.AF_INET, 24, 0, 0, index) + rta(IFA_LOCAL, four)
        + rta(IFA_ADDRESS, four))
    sock.del_address(index, "10.5.0.1", 24)
    assert replay.finished()
    acknowledged(exchange)


ROUTE = {"family": socket.AF_INET, "dst": "10.6.0.0", "dst_len": 16, "table": 1000,
         "metric": 5, "proto": 211}


def test_a_route_in_a_table_above_255_names_it_by_attribute() -> None:
    sock, replay, exchange = replayed("replace_route")
    index = exchange.facts["index"]
    # rtm_table holds 8 bits: RT_TABLE_COMPAT there, the table itself in RTA_TABLE
    want = request(RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_REPLACE | NLM_F_CREATE,
                   RTMSG.pack(socket.AF_INET, 16, 0, 0, RT_TABLE_COMPAT, 211, 0, RTN_UNICAST, 0)
                   + rta(RTA_DST, bytes([10, 6, 0, 0])) + rta_u32(RTA_TABLE, 1000)
                   + rta_u32(RTA_PRIORITY, 5) + rta(RTA_GATEWAY, bytes([10, 5, 0, 9]))
                   + rta_u32(RTA_OIF, index) + rta(RTA_PREFSRC, bytes([10, 5, 0, 1])))
    assert exchange.sent == [want]
    sock.replace_route(**ROUTE, gateway="10.5.0.9", oif=index, prefsrc="10.5.0.1")
    assert replay.finished()
    acknowledged(exchange)
    # deleted by its key: any type (0), any scope (RT_SCOPE_NOWHERE)
    sock, replay, exchange = replayed("del_route")
    assert exchange.sent == [request(
        RTM_DELROUTE, NLM_F_REQUEST | NLM_F_ACK,
        RTMSG.pack(socket.AF_INET, 16, 0, 0, RT_TABLE_COMPAT, 211, RT_SCOPE_NOWHERE, 0, 0)
        + rta(RTA_DST, bytes([10, 6, 0, 0])) + rta_u32(RTA_TABLE, 1000)
        + rta_u32(RTA_PRIORITY, 5))]
    sock.del_route(**ROUTE, rtype=0, scope=RT_SCOPE_NOWHERE)
    assert replay.finished()
    acknowledged(exchange)


def test_a_link_is_deleted_by_its_index() -> None:
    exchange = load("del_link")
    index = exchange.facts["index"]
    # (the capture first takes it out of its bridge: master 0)
    assert exchange.sent == [
        request(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK,
                IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0) + rta_u32(IFLA_MASTER, 0)),
        request(RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK,
                IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0), seq=2)]
    replay = Replay(exchange.steps)
    sock = rtnl.RtnlSocket(as_socket(replay))
    sock.set_link(index, master=0)
    sock.del_link(index)
    assert replay.finished()
    acknowledged(exchange, 0)
    acknowledged(exchange, 1)


# -- replies: what the kernel said, decoded -----------------------------------------------------

def by_name(links: list[rtnl.LinkMsg]) -> dict[str | None, rtnl.LinkMsg]:
    return {name_of(m): m for m in links}


def test_a_link_dump_decodes_bridge_veth_port_and_vxlan() -> None:
    sock, _, _ = replayed("links_root")
    links = by_name(sock.links())
    assert list(links) == ["lo", "br0", "v0", "vx0"]
    lo, br0, v0, vx0 = links.values()
    # the loopback device: its name only, nothing else parsed
    assert lo.attrs.keys() == {IFLA_IFNAME} and lo.flags & IFF_LOOPBACK and lo.kind is None
    assert br0.kind == "bridge" and br0.flags & IFF_UP
    assert rtnl.as_u32(br0.info_data.get(IFLA_BR_STP_STATE)) == 1
    assert rtnl.as_str(br0.attrs.get(IFLA_IFALIAS)) == "netdecl:cap"
    assert rtnl.as_u32(br0.attrs.get(IFLA_MTU)) == 1500 and br0.slave_data is None
    mac = rtnl.as_mac(br0.attrs.get(IFLA_ADDRESS))
    assert mac is not None and len(mac) == 17
    # a veth that is a bridge port: its master, its hairpin mode, its peer elsewhere
    assert v0.kind == "veth" and rtnl.as_u32(v0.attrs.get(IFLA_MASTER)) == br0.index
    assert v0.slave_data is not None and v0.slave_data[IFLA_BRPORT_MODE] == b"\x01"
    assert rtnl.as_u32(v0.attrs.get(IFLA_LINK)) == 2  # eth0, in namespace peer
    nsid = struct.unpack("=i", v0.attrs[IFLA_LINK_NETNSID])[0]
    assert nsid == nsid_of_peer()  # the id nsid_of gives namespace peer, asked separately
    # a VXLAN: its id, local address, device, port (network order) and learning
    assert vx0.kind == "vxlan" and vx0.slave_data is None
    data = vx0.info_data
    assert rtnl.as_u32(data[IFLA_VXLAN_ID]) == 42
    assert rtnl.as_ip(data[IFLA_VXLAN_LOCAL]) == "10.0.0.1"
    assert rtnl.as_u32(data[IFLA_VXLAN_LINK]) == br0.index
    assert data[IFLA_VXLAN_PORT] == (4790).to_bytes(2, "big")
    assert data[IFLA_VXLAN_LEARNING] == b"\x00"


def nsid_of_peer() -> int | None:
    sock, replay, _ = replayed("nsid_of")
    nsid = sock.nsid_of(load("nsid_of").facts["fd"])
    assert replay.finished()
    return nsid


def test_a_namespace_id_and_the_peer_across_namespaces_decode() -> None:
    assert nsid_of_peer() == 0  # the first id the root gave out
    sock, _, _ = replayed("links_peer")
    links = by_name(sock.links())
    assert list(links) == ["lo", "eth0"]
    eth0 = links["eth0"]
    sock, _, _ = replayed("links_root")
    v0 = by_name(sock.links())["v0"]
    # each end names the other by its ifindex in the other's namespace
    assert eth0.kind == "veth" and rtnl.as_u32(eth0.attrs.get(IFLA_LINK)) == v0.index
    assert rtnl.as_u32(v0.attrs.get(IFLA_LINK)) == eth0.index
    assert IFLA_LINK_NETNSID in eth0.attrs and eth0.slave_data is None


def test_one_link_is_read_by_name_and_a_missing_one_is_none() -> None:
    sock, replay, exchange = replayed("link_by_name")
    assert exchange.sent == [request(
        RTM_GETLINK, NLM_F_REQUEST | NLM_F_ACK, IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        + rta_str(IFLA_IFNAME, "br0") + rta_u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS))]
    msg = sock.link_by_name("br0")
    assert replay.finished() and msg is not None and name_of(msg) == "br0"
    assert msg.kind == "bridge" and msg.index == 2
    sock, replay, exchange = replayed("link_by_name_missing")
    assert sock.link_by_name("nope") is None and replay.finished()
    # a refusal echoes the whole request after its error code
    (reply,) = exchange.received
    ((msg_type, _, _, payload),) = messages(reply)
    assert msg_type == NLMSG_ERROR and struct.unpack_from("=i", payload)[0] == -errno.ENODEV
    assert payload[4:4 + len(exchange.sent[0])] == exchange.sent[0]


def test_an_address_dump_decodes_and_skips_what_it_is_told_to() -> None:
    def read(**how: Any) -> set[tuple[int, int, int, str]]:
        sock, replay, _ = replayed("addresses_root")
        found = {(a.family, a.prefixlen, a.index, a.address)
                 for a in sock.addresses(**how)}
        assert replay.finished()
        return found

    everything = read()
    mine = {(socket.AF_INET, 24, 2, "10.0.0.1"), (socket.AF_INET6, 64, 2, "fd00::1")}
    loopback = {(socket.AF_INET, 8, 1, "127.0.0.1"), (socket.AF_INET6, 128, 1, "::1")}
    assert mine | loopback <= everything
    link_local = everything - mine - loopback
    # the rest: the kernel's own IPv6 link-local addresses
    assert link_local and all(a[0] == socket.AF_INET6 and a[1] == 64 and
                              a[3].startswith("fe80:") for a in link_local)
    assert read(skip_links=[1], skip_link_local=True) == mine


def test_a_route_dump_decodes_both_families_and_filters_before_parsing() -> None:
    def read(**how: Any) -> list[rtnl.RouteMsg]:
        sock, replay, _ = replayed("routes_root")
        found = sock.routes(**how)
        assert replay.finished()
        return found

    def shown(route: rtnl.RouteMsg) -> tuple[object, ...]:
        return (route.family, rtnl.as_ip(route.attrs.get(RTA_DST)), route.dst_len,
                route.table, route.proto, route.type,
                rtnl.as_ip(route.attrs.get(RTA_GATEWAY)),
                rtnl.as_u32(route.attrs.get(RTA_PRIORITY)))

    ours = [shown(r) for r in read(types={RTN_UNICAST, RTN_BLACKHOLE}, skip_table=RT_TABLE_LOCAL,
                                   skip_protocols={RTPROT_KERNEL})]
    assert sorted(ours, key=repr) == sorted([
        (socket.AF_INET, "10.9.0.0", 16, 100, 211, RTN_UNICAST, "10.0.0.9", 7),
        (socket.AF_INET, "192.0.2.0", 24, 254, 211, RTN_BLACKHOLE, None, None),
        (socket.AF_INET6, "fd01::", 64, 254, 211, RTN_UNICAST, None, 1024),
    ], key=repr)
    everything = read()
    # the rest is the kernel's: connected and local routes, IPv6 multicast
    assert all(r.proto == RTPROT_KERNEL or r.table == RT_TABLE_LOCAL
               for r in everything if shown(r) not in ours)
    assert {r.table for r in everything} == {100, 254, RT_TABLE_LOCAL}


def test_a_refused_request_raises_with_the_kernels_errno() -> None:
    for name, call, code in (
            ("add_address_exists", lambda s: s.add_address(5, "10.5.0.1", 24), errno.EEXIST),
            ("del_route_missing", lambda s: s.del_route(**ROUTE, rtype=0,
                                                        scope=RT_SCOPE_NOWHERE), errno.ESRCH)):
        sock, replay, _ = replayed(name)
        with pytest.raises(rtnl.RtnlError) as refused:
            call(sock)
        assert refused.value.errno == code and replay.finished()


def test_an_interrupted_dump_is_read_again() -> None:
    """NLM_F_DUMP_INTR: the table changed while it was dumped. (Synthetic: the captured
    replies, flagged, then the same again under the next sequence number.)"""
    exchange = load("links_root")

    def flagged(datagram: bytes, seq: int, extra: int) -> bytes:
        out = b""
        for msg_type, flags, _, payload in messages(datagram):
            length = NLMSGHDR.size + len(payload)
            out += NLMSGHDR.pack(length, msg_type, flags | extra, seq, 0) + payload
            out += b"\0" * (-length % 4)
        return out

    def attempt(seq: int, extra: int) -> list[tuple[str, bytes]]:
        sent = request(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP,
                       exchange.sent[0][NLMSGHDR.size:], seq=seq)
        return [(">", sent)] + [("<", flagged(d, seq, extra)) for d in exchange.received]

    replay = Replay(attempt(1, NLM_F_DUMP_INTR) + attempt(2, 0))
    assert [name_of(m) for m in rtnl.RtnlSocket(as_socket(replay)).links()] == \
        ["lo", "br0", "v0", "vx0"]
    assert replay.finished()
    # interrupted every time: after DUMP_ATTEMPTS, the last answer is taken as it is
    steps = [step for seq in range(1, rtnl.DUMP_ATTEMPTS + 1)
             for step in attempt(seq, NLM_F_DUMP_INTR)]
    replay = Replay(steps)
    assert len(rtnl.RtnlSocket(as_socket(replay)).links()) == 4
    assert replay.finished()


def test_answers_to_other_requests_and_notifications_are_passed_over() -> None:
    exchange = load("link_by_name")
    notification = load("link_events").received[0]  # (sequence 0)
    stale = NLMSGHDR.pack(20, NLMSG_DONE, NLM_F_MULTI, 7, 0) + b"\0" * 4  # another request's
    replay = Replay(exchange.steps[:1] + [("<", notification), ("<", stale)]
                    + exchange.steps[1:])
    msg = rtnl.RtnlSocket(as_socket(replay)).link_by_name("br0")
    assert msg is not None and name_of(msg) == "br0" and replay.finished()


# -- link notifications --------------------------------------------------------------------------

def test_a_deletion_is_noted_but_a_port_leaving_its_bridge_is_not() -> None:
    exchange = load("link_events")
    index = exchange.facts["index"]
    kinds = [(msg_type, payload[0]) for datagram in exchange.received
             for msg_type, _, _, payload in messages(datagram)]
    assert (RTM_DELLINK, AF_BRIDGE) in kinds and kinds[-1] == (RTM_DELLINK, socket.AF_UNSPEC)
    # everything but the last: the link left its bridge (an AF_BRIDGE RTM_DELLINK), lives on
    events = rtnl.LinkEvents(as_socket(Replay(exchange.steps[:-1])))
    assert events._read(block=False) is False and events.gone == set()
    events = rtnl.LinkEvents(as_socket(Replay(exchange.steps)))
    asked: list[int] = []

    def exists(link: int) -> bool:
        asked.append(link)
        return True

    assert events.wait_gone(index, "cap1r", exists, stall=0.01)
    assert events.gone == {(index, "cap1r")} and asked == []  # known gone: nobody asked


# -- malformed input -----------------------------------------------------------------------------

def test_an_attribute_shorter_than_its_header_ends_the_parse() -> None:
    good = rta_str(IFLA_IFNAME, "v0")
    for bad_length in (0, 1, 3):
        buf = good + RTATTR.pack(bad_length, IFLA_MTU) + rta_u32(IFLA_MASTER, 2)
        assert rtnl.parse_attrs(buf) == {IFLA_IFNAME: b"v0\0"}  # and no further: no loop
    # a header cut short is no attribute at all
    assert rtnl.parse_attrs(good + b"\x08\x00") == {IFLA_IFNAME: b"v0\0"}


def test_an_attribute_longer_than_what_is_left_is_cut_and_read_as_missing() -> None:
    buf = rta_str(IFLA_IFNAME, "v0") + RTATTR.pack(200, IFLA_MTU) + b"\x05\x00"
    attrs = rtnl.parse_attrs(buf)
    assert attrs == {IFLA_IFNAME: b"v0\0", IFLA_MTU: b"\x05\x00"}
    # values too short for their type read as absent, never as garbage
    assert rtnl.as_u32(attrs[IFLA_MTU]) is None
    assert rtnl.as_ip(b"\x0a\x00\x00") is None and rtnl.as_ip(b"\x00" * 5) is None


def test_a_link_message_shorter_than_its_header_is_a_clear_error() -> None:
    ((_, _, _, payload), *_) = messages(load("links_root").received[1])
    with pytest.raises(struct.error):
        rtnl._link_msg(payload[:IFINFOMSG.size - 1])
    # a header with nothing after it is a link without attributes
    assert rtnl._link_msg(payload[:IFINFOMSG.size]).attrs == {}
    assert rtnl._loopback_msg(payload[:IFINFOMSG.size]).attrs == {}


def test_a_notification_with_a_zero_length_is_passed_over() -> None:
    broken = NLMSGHDR.pack(0, RTM_DELLINK, 0, 0, 0) + b"\0" * 16
    events = rtnl.LinkEvents(as_socket(Replay([("<", broken)])))
    assert events._read(block=False) is False and events.gone == set()


class Watched(bytes):
    """A datagram that counts how often the codec slices it: a parser that makes no progress
    slices it without end, and is stopped here instead of hanging the test run."""

    limit = 1000

    def __getitem__(self, key: Any) -> Any:
        type(self).limit -= 1
        if type(self).limit < 0:
            raise RuntimeError("the codec keeps reading one datagram: it makes no progress")
        return super().__getitem__(key)


def test_a_reply_with_a_zero_length_is_an_error_not_a_loop() -> None:
    Watched.limit = 1000
    sent = load("link_by_name").sent[0]
    replay = Replay([(">", sent), ("<", Watched(NLMSGHDR.pack(0, RTM_NEWLINK, 0, 1, 0)
                                                + b"\0" * 16))])
    with pytest.raises((rtnl.RtnlError, ValueError)):
        rtnl.RtnlSocket(as_socket(replay)).link_by_name("br0")


def test_a_reply_cut_short_is_an_error() -> None:
    exchange = load("link_by_name")
    sent, reply, ack = exchange.sent[0], exchange.received[0], exchange.received[1]
    replay = Replay([(">", sent), ("<", reply[:len(reply) // 2]), ("<", ack)])
    with pytest.raises((rtnl.RtnlError, ValueError, struct.error)):
        rtnl.RtnlSocket(as_socket(replay)).link_by_name("br0")
