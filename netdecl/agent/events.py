"""Kernel change notifications: one subscribed netlink socket per namespace in scope.

A netlink socket keeps the namespace it was opened in, so each one is opened from a thread
that has entered its namespace (backends/namespaces.py) and then read from the agent's own
thread with poll. rtnetlink reports links, addresses, routes, rules and neighbours; nfnetlink
reports nftables changes (so a flushed NAT table is seen at once, not at the next resync).
Sysctls have no notifications: the periodic resync catches those.

A socket also keeps its namespace alive, with every link in it: when a namespace is deleted
its sockets must be closed at once (``close_namespace``), or a veth whose end lives there would
outlive the deletion.
"""

from __future__ import annotations

import errno
import functools
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from netdecl.backends import namespaces
from netdecl.nlconst import (
    NETLINK_ADD_MEMBERSHIP,
    NETLINK_NETFILTER,
    NFNLGRP_NFTABLES,
    NLMSGHDR,
    RTM_DELADDR,
    RTM_DELLINK,
    RTM_DELNEIGH,
    RTM_DELQDISC,
    RTM_DELROUTE,
    RTM_DELRULE,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWNEIGH,
    RTM_NEWQDISC,
    RTM_NEWROUTE,
    RTM_NEWRULE,
    RTNLGRP_IPV4_IFADDR,
    RTNLGRP_IPV4_ROUTE,
    RTNLGRP_IPV4_RULE,
    RTNLGRP_IPV6_IFADDR,
    RTNLGRP_IPV6_ROUTE,
    RTNLGRP_IPV6_RULE,
    RTNLGRP_LINK,
    RTNLGRP_NEIGH,
    RTNLGRP_TC,
    SO_RCVBUFFORCE,
    SOL_NETLINK,
)

RECEIVE_BUFFER = 4 << 20  # a burst (a whole namespace going away) must not overrun it

ROUTE_GROUPS = (RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR, RTNLGRP_IPV4_ROUTE,
                RTNLGRP_IPV6_ROUTE, RTNLGRP_IPV4_RULE, RTNLGRP_IPV6_RULE,
                RTNLGRP_TC)  # a qdisc replaced or deleted by hand is drift too

RTM_NAMES = {RTM_NEWLINK: "RTM_NEWLINK", RTM_DELLINK: "RTM_DELLINK",
             RTM_NEWADDR: "RTM_NEWADDR", RTM_DELADDR: "RTM_DELADDR",
             RTM_NEWROUTE: "RTM_NEWROUTE", RTM_DELROUTE: "RTM_DELROUTE",
             RTM_NEWNEIGH: "RTM_NEWNEIGH", RTM_DELNEIGH: "RTM_DELNEIGH",
             RTM_NEWRULE: "RTM_NEWRULE", RTM_DELRULE: "RTM_DELRULE",
             RTM_NEWQDISC: "RTM_NEWQDISC", RTM_DELQDISC: "RTM_DELQDISC"}

ROUTE, NFTABLES = "rtnetlink", "nftables"


@dataclass(frozen=True)
class Subscription:
    namespace: str
    family: str  # ROUTE or NFTABLES


@dataclass
class Change:
    """What one read of a socket found: the first message's name, and how many there were."""

    namespace: str
    what: str
    count: int


def _subscribe(family: str, neighbours: bool) -> socket.socket:
    """A non-blocking netlink socket subscribed to the groups of ``family``, in the calling
    thread's namespace."""
    proto = socket.NETLINK_ROUTE if family == ROUTE else NETLINK_NETFILTER
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, proto)
    try:
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        sock.bind((0, 0))
        groups = ROUTE_GROUPS + ((RTNLGRP_NEIGH,) if neighbours else ())
        for group in (groups if family == ROUTE else (NFNLGRP_NFTABLES,)):
            sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class KernelWatch:
    """The subscribed sockets, keyed by (namespace, family)."""

    def __init__(self) -> None:
        self.sockets: dict[Subscription, socket.socket] = {}
        self.neighbours: dict[str, bool] = {}

    def sync(self, wanted: dict[str, set[str]], neighbours: set[str]) -> tuple[list[str],
                                                                               list[str]]:
        """Watch exactly ``wanted`` (namespace -> families; neighbour events only where
        ``neighbours`` names the namespace). Returns (namespaces newly watched, problems)."""
        want = {Subscription(ns, fam) for ns, fams in wanted.items() for fam in fams}
        for sub in list(self.sockets):
            changed = sub.family == ROUTE and self.neighbours.get(sub.namespace) != (
                sub.namespace in neighbours)
            if sub not in want or changed:
                self.sockets.pop(sub).close()
        todo = sorted(want - set(self.sockets), key=lambda s: (s.namespace, s.family))
        problems: list[str] = []
        by_ns: dict[str, list[str]] = {}
        for sub in todo:
            by_ns.setdefault(sub.namespace, []).append(sub.family)

        def open_all(ns: str) -> dict[str, socket.socket | str]:
            out: dict[str, socket.socket | str] = {}
            for fam in by_ns[ns]:
                try:
                    out[fam] = _subscribe(fam, ns in neighbours)
                except OSError as exc:
                    out[fam] = f"{fam} events in {ns or 'root'}: {exc.strerror or exc}"
            return out

        opened: dict[str, dict[str, socket.socket | str]] = {}
        if by_ns:
            try:
                opened = namespaces.run_in_each(sorted(by_ns), open_all)
            except OSError:
                # a namespace vanished between listing and entering: one at a time instead
                for ns in by_ns:
                    try:
                        opened[ns] = namespaces.run_in(ns, functools.partial(open_all, ns))
                    except OSError as exc:
                        problems.append(f"cannot watch {ns or 'root'}: {exc.strerror or exc}")
        for ns, socks in opened.items():
            for fam, sock in socks.items():
                if isinstance(sock, str):
                    problems.append(sock)
                else:
                    self.sockets[Subscription(ns, fam)] = sock
            self.neighbours[ns] = ns in neighbours
        return sorted(opened), problems

    def close_namespace(self, ns: str) -> bool:
        """Close every socket in ``ns`` (it is being deleted); True if there were any."""
        found = [sub for sub in self.sockets if sub.namespace == ns]
        for sub in found:
            self.sockets.pop(sub).close()
        self.neighbours.pop(ns, None)
        return bool(found)

    def close(self) -> None:
        for sock in self.sockets.values():
            sock.close()
        self.sockets.clear()

    def namespaces(self) -> set[str]:
        return {sub.namespace for sub in self.sockets}

    def read(self, sub: Subscription) -> Change | None:
        """Everything queued on one socket. None when it held nothing that matters."""
        sock = self.sockets.get(sub)
        if sock is None:
            return None
        first, count = "", 0
        while True:
            try:
                data = sock.recv(1 << 20)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # overrun: events were lost, assume a change
                    first, count = first or "overrun (events lost)", count + 1
                    continue
                raise
            if not data:
                break
            for msg_type in _message_types(data):
                if sub.family == ROUTE and msg_type not in RTM_NAMES:
                    continue
                count += 1
                first = first or (RTM_NAMES.get(msg_type, "")
                                  if sub.family == ROUTE else "nftables change")
        return Change(sub.namespace, first, count) if count else None


def _message_types(data: bytes) -> Iterable[int]:
    offset = 0
    while offset + NLMSGHDR.size <= len(data):
        length, msg_type, _flags, _seq, _pid = NLMSGHDR.unpack_from(data, offset)
        if length < NLMSGHDR.size:
            return
        yield msg_type
        offset += (length + 3) & ~3
