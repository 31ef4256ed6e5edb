"""The kernel through netlink: the only module that imports pyroute2.

One `Kernel` holds one rtnetlink socket per namespace for the whole run (opened without forking,
see namespaces.py), reads each namespace with one dump per object type, and turns netlink
messages into model objects and model objects into netlink requests. It decides nothing.
"""

from __future__ import annotations

import dataclasses
import errno
import ipaddress
import os
import secrets
import socket
from collections.abc import Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from netdecl.backends import namespaces, rtnl, tundev
from netdecl.backends.announce import Announcer
from netdecl.backends.host import Birth, owner_mark, owner_of_alias, temp_link_name
from netdecl.backends.rtnl import LinkEvents, LinkMsg
from netdecl.errors import NetdeclError
from netdecl.links import link_kind
from netdecl.model import (
    DEVICE,
    LINK_FLAGS,
    ROOT,
    RTPROT_NETDECL,
    Address,
    FdbEntry,
    Link,
    Neighbor,
    Route,
    Rule,
)
from netdecl.nlattr import attr_u32
from netdecl.nlconst import (
    IFA_F_NODAD,
    IFA_F_NOPREFIXROUTE,
    IFF_ALLMULTI,
    IFF_PROMISC,
    IFF_UP,
    IFLA_ADDRESS,
    IFLA_BRPORT_MODE,
    IFLA_IFALIAS,
    IFLA_IFNAME,
    IFLA_LINK,
    IFLA_LINK_NETNSID,
    IFLA_MASTER,
    IFLA_MTU,
    IFLA_NET_NS_FD,
    NUD_PERMANENT,
    RT_SCOPE_HOST,
    RT_SCOPE_LINK,
    RT_SCOPE_NOWHERE,
    RT_SCOPE_SITE,
    RT_SCOPE_UNIVERSE,
    RT_TABLE_LOCAL,
    RTA_DST,
    RTA_GATEWAY,
    RTA_OIF,
    RTA_PREFSRC,
    RTA_PRIORITY,
    RTN_BLACKHOLE,
    RTN_BROADCAST,
    RTN_LOCAL,
    RTN_MULTICAST,
    RTN_PROHIBIT,
    RTN_UNICAST,
    RTN_UNREACHABLE,
    RTNH_F_ONLINK,
    RTPROT_KERNEL,
)

if TYPE_CHECKING:  # pyroute2 costs ~0.2 s to import: only FDB, rules and lookups need it
    from pyroute2 import IPRoute

ROUTE_TYPES = {RTN_UNICAST: "unicast", RTN_BLACKHOLE: "blackhole", RTN_UNREACHABLE: "unreachable",
               RTN_PROHIBIT: "prohibit"}
ROUTE_TYPE_CODES = {v: k for k, v in ROUTE_TYPES.items()}
ROUTE_SCOPES = {RT_SCOPE_UNIVERSE: "global", RT_SCOPE_SITE: "site", RT_SCOPE_LINK: "link",
                RT_SCOPE_HOST: "host"}
ROUTE_SCOPE_CODES = {v: k for k, v in ROUTE_SCOPES.items()}
# how long a link that the kernel should be tearing down may go without any link of its
# namespace going away before netdecl deletes it itself (a process holding the namespace)
LINK_GONE_STALL = 5.0


class KernelError(NetdeclError):
    """The kernel refused a request. ``errno`` is the netlink error code."""

    def __init__(self, code: int, what: str):
        self.errno = code
        super().__init__(f"{what}: {os.strerror(code)} (errno {code})")


def _netlink_socket(kind: int = socket.SOCK_RAW) -> socket.socket:
    return socket.socket(socket.AF_NETLINK, kind | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)


def link_ident(ns_ident: str, index: int) -> str:
    """The identity of link ``index`` in the namespace whose identity is ``ns_ident``."""
    return f"{ns_ident}/if{index}"


def _cidr(family: int, address: str, prefixlen: int) -> str:
    """ADDRESS/PREFIX as ipaddress writes it. inet_ntop already writes IPv4 that way, and
    IPv6 too (RFC 5952: lower case, the longest run of zeros compressed, the first of equal
    ones) except for an embedded IPv4 address, which ipaddress writes in hex; parsing
    thousands of addresses with ipaddress was a tenth of a no-op plan."""
    if family == socket.AF_INET or "." not in address:
        return f"{address}/{prefixlen}"
    return ipaddress.ip_interface(f"{address}/{prefixlen}").with_prefixlen


def _network(family: int, dst: str, dst_len: int) -> str:
    """A route's destination as ipaddress writes it (the kernel refuses IPv4 routes with host
    bits set and stores IPv6 destinations masked, so their text needs no masking; on the
    spelling of IPv6 see _cidr)."""
    if family == socket.AF_INET or "." not in dst:
        return f"{dst}/{dst_len}"
    return str(ipaddress.ip_network(f"{dst}/{dst_len}", strict=False))


def random_local_mac() -> str:
    """A random unicast, locally administered MAC, like the kernel's own eth_hw_addr_random."""
    octets = bytearray(secrets.token_bytes(6))
    octets[0] = (octets[0] & 0xFE) | 0x02
    return ":".join(f"{b:02x}" for b in octets)


def _echoed_indexes(echoed: LinkMsg | None, ends: int) -> list[int]:
    """The ifindexes of a link just made (and of its veth peer, in the peer's namespace, from
    IFLA_LINK), from the kernel's echo of the request; [] without an echo."""
    if echoed is None:
        return []
    if ends == 1:
        return [echoed.index]
    peer = rtnl.as_u32(echoed.attrs.get(IFLA_LINK))
    return [echoed.index, peer] if peer else []


class _Reported:
    """A link as a dump reported it, for its kind to read (links.base.KernelLink)."""

    def __init__(self, kernel: Kernel, ns: str, m: LinkMsg, name: str,
                 by_index: dict[int, str], all_namespaces: list[str], paired: bool):
        self.info_data = m.info_data
        self.namespace = ns
        self._args = (ns, m, name, by_index, all_namespaces, paired)
        self._kernel = kernel
        self._by_index = by_index

    def name_of(self, index: int) -> str | None:
        return self._by_index.get(index)

    def target(self) -> tuple[str, str] | None:
        return self._kernel._link_target(*self._args)


class _Request:
    """What a kind needs to build its create request (links.base.KernelRequest)."""

    def __init__(self, kernel: Kernel, ns: str, temp_names: list[str], peer_netns_fd: int | None):
        self.temp_names = temp_names
        self.peer_netns_fd = peer_netns_fd
        self._kernel = kernel
        self._ns = ns

    def index_of(self, name: str) -> int:
        return self._kernel.index_of(self._ns, name)


class Kernel:
    """Netlink access to the root namespace and any named namespaces.

    Per namespace: one blocking rtnl socket (rtnl.py) for dumps and the common writes, and a
    pyroute2 socket opened only when a rare operation needs it.
    """

    def __init__(self) -> None:
        self._raw: dict[str, rtnl.RtnlSocket] = {}
        self._sockets: dict[str, IPRoute] = {}  # opened on first use by a rare operation
        self._index_cache: dict[str, dict[str, int]] = {}
        self._nsid_maps: dict[str, dict[int, str]] = {}
        # (ns, candidate) pairs already asked for a netnsid, found or not: never ask twice
        self._nsid_probed: set[tuple[str, str]] = set()
        self._announcer = Announcer()
        self._events: dict[str, LinkEvents] = {}  # link notifications, per namespace
        # veth ends already resolved from the other side: (ns, index) -> (peer ns, peer name,
        # peer index). A pair is symmetric, so the root's end of a veth whose namespace end was
        # read first needs no netnsid look-up (one per namespace, a thousand at N=1000).
        self._peer_seen: dict[tuple[str, int], tuple[str, str, int]] = {}
        # a namespace's last link dump, made to name a peer; read_links takes it instead of
        # dumping again within the same observation (reset_caches drops it)
        self._link_dumps: dict[str, list[LinkMsg]] = {}
        # index -> name as of the last dump per namespace (trusted only where it agrees with
        # _index_cache, which writes keep current): a scan of every name per peer look-up was
        # quadratic in the root's links
        self._index_names: dict[str, dict[int, str]] = {}
        self._deleted_namespaces: set[str] = set()  # by this Kernel: the kernel is cleaning up
        # (namespace, ifindex) of a master -> whether its members must be down to join (a
        # bond); an ifindex is not given to another link while the namespace lives
        self._members_down_of: dict[tuple[str, int], bool] = {}

    # -- sockets -------------------------------------------------------------------------------
    def _new_socket(self, ns: str, kind: int = socket.SOCK_RAW) -> socket.socket:
        if ns != ROOT and not namespaces.exists(ns):
            raise KernelError(errno.ENOENT, f"namespace {ns} does not exist")
        return namespaces.run_in(ns, lambda: _netlink_socket(kind))

    def rtnl(self, ns: str) -> rtnl.RtnlSocket:
        sock = self._raw.get(ns)
        if sock is None:
            sock = rtnl.RtnlSocket(self._new_socket(ns))
            self._raw[ns] = sock
        return sock

    def ipr(self, ns: str) -> IPRoute:
        sock = self._sockets.get(ns)
        if sock is None:
            from pyroute2 import IPRoute

            # pyroute2's asyncio transport insists on a SOCK_DGRAM socket
            sock = IPRoute() if ns == ROOT else IPRoute(
                use_socket=self._new_socket(ns, socket.SOCK_DGRAM))
            self._sockets[ns] = sock
        return sock

    def open_sockets(self, names: list[str]) -> None:
        """Open the sockets of many namespaces at once (one thread for all of them)."""
        wanted = [ns for ns in names if ns != ROOT and ns not in self._raw
                  and namespaces.exists(ns)]
        if not wanted:
            return
        for ns, raw in namespaces.run_in_each(wanted, lambda _ns: _netlink_socket()).items():
            self._raw[ns] = rtnl.RtnlSocket(raw)

    def reset_caches(self, namespaces: Collection[str] | None = None) -> None:
        """Forget every name/index/netnsid learnt so far (the sockets stay): the next reads see
        the kernel as it is now, as a fresh Kernel would, without re-opening a socket per
        namespace. With ``namespaces``, only what was learnt about those (an apply's
        verification re-reads the namespaces it changed, and names a veth's peer in another one
        from what was read there a moment ago)."""
        if namespaces is not None:
            self._reset_caches_of(set(namespaces))
            return
        self._index_cache.clear()
        self._nsid_maps.clear()
        self._nsid_probed.clear()
        self._peer_seen.clear()
        self._link_dumps.clear()
        self._index_names.clear()

    def _reset_caches_of(self, changed: set[str]) -> None:
        for cache in (self._index_cache, self._nsid_maps, self._link_dumps, self._index_names):
            for ns in changed:
                cache.pop(ns, None)
        for known in self._nsid_maps.values():
            for nsid in [nsid for nsid, name in known.items() if name in changed]:
                del known[nsid]  # the namespace may have been made again: another netnsid
        self._nsid_probed = {pair for pair in self._nsid_probed
                             if pair[0] not in changed and pair[1] not in changed}
        # an end resolved from the other side is trusted only if that side did not change
        self._peer_seen = {key: seen for key, seen in self._peer_seen.items()
                           if seen[0] not in changed}

    def forget(self, ns: str) -> None:
        """Close the sockets of a namespace (they would keep a deleted namespace alive)."""
        raw = self._raw.pop(ns, None)
        if raw is not None:
            raw.close()
        sock = self._sockets.pop(ns, None)
        if sock is not None:
            sock.close()
        events = self._events.pop(ns, None)
        if events is not None:
            events.close()
        self._index_cache.pop(ns, None)
        self._nsid_maps.clear()
        self._nsid_probed.clear()
        self._announcer.forget(ns)
        self._peer_seen.clear()
        self._link_dumps.clear()
        self._index_names.clear()

    def close(self) -> None:
        self._announcer.close()  # first: all its sockets at once, not one namespace at a time
        for ns in list({*self._raw, *self._sockets, *self._events}):
            self.forget(ns)

    def __enter__(self) -> Kernel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, ns: str, what: str, method: str, *args: Any, **kwargs: Any) -> Any:
        from pyroute2.netlink.exceptions import NetlinkError

        try:
            return getattr(self.ipr(ns), method)(*args, **kwargs)
        except NetlinkError as exc:
            raise KernelError(exc.code, what) from None

    def _raw_call(self, ns: str, what: str, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return getattr(self.rtnl(ns), method)(*args, **kwargs)
        except rtnl.RtnlError as exc:
            raise KernelError(exc.errno or errno.EIO, what) from None

    # -- reading -------------------------------------------------------------------------------
    def index_of(self, ns: str, name: str) -> int:
        cache = self._index_cache.get(ns)
        if cache is None:
            cache = {rtnl.as_str(m.attrs.get(IFLA_IFNAME)) or "": m.index
                     for m in self.rtnl(ns).links()}
            self._index_cache[ns] = cache
        if name not in cache:
            # One RTM_GETLINK by name, not a re-dump of every link: after each link we create
            # a dump would make building N links cost O(N^2).
            msg = self.rtnl(ns).link_by_name(name)
            if msg is None:
                raise KernelError(errno.ENODEV, f"link {name} not found in {ns or 'root'}")
            cache[name] = msg.index
        return cache[name]

    def _nsid_to_name(self, ns: str, nsid: int, candidates: Iterable[str]) -> str | None:
        """Which namespace a peer netnsid (as seen from ``ns``) refers to."""
        known = self._nsid_maps.setdefault(ns, {})
        if nsid in known:
            return known[nsid]
        for cand in candidates:
            if cand == ns or (ns, cand) in self._nsid_probed:
                continue
            self._nsid_probed.add((ns, cand))
            fd = os.open(namespaces.netns_path(cand), os.O_RDONLY | os.O_CLOEXEC)
            try:
                found = self.rtnl(ns).nsid_of(fd)
            finally:
                os.close(fd)
            if found is not None:
                known[found] = cand
            if nsid in known:
                return known[nsid]
        return None

    def link_marked(self, ns: str, name: str, topology: str) -> bool:
        """Whether the link ``name`` carries ``topology``'s owner mark (a fresh dump)."""
        return any(rtnl.as_str(m.attrs.get(IFLA_IFNAME)) == name
                   and owner_of_alias(rtnl.as_str(m.attrs.get(IFLA_IFALIAS))) == topology
                   for m in self.rtnl(ns).links())

    def _dump_links(self, ns: str) -> list[LinkMsg]:
        """A fresh dump of ``ns``'s links, which also fills its name <-> index cache."""
        msgs = self.rtnl(ns).links()
        names = {m.index: rtnl.as_str(m.attrs.get(IFLA_IFNAME)) or "" for m in msgs}
        self._index_names[ns] = names
        self._index_cache[ns] = {name: idx for idx, name in names.items()}
        return msgs

    def drop_link_dumps(self) -> None:
        """Dumps kept for read_links are for one observation only."""
        self._link_dumps.clear()

    def read_links(self, ns: str, all_namespaces: list[str],
                   ns_ident: str | None = None) -> list[Link]:
        """The links of ``ns``; with ``ns_ident`` (the namespace's identity), each carries its
        own identity (link_ident)."""
        msgs = self._link_dumps.pop(ns, None)
        if msgs is None:
            msgs = self.rtnl(ns).links()
        by_index = {m.index: rtnl.as_str(m.attrs.get(IFLA_IFNAME)) or "" for m in msgs}
        self._index_names[ns] = by_index
        self._index_cache[ns] = {name: idx for idx, name in by_index.items()}
        return [link for m in msgs
                if (link := self._link_from(ns, m, by_index, all_namespaces, ns_ident))
                is not None]

    def _link_from(self, ns: str, m: LinkMsg, by_index: dict[int, str],
                   all_namespaces: list[str], ns_ident: str | None = None) -> Link | None:
        name = by_index[m.index]
        if name == "lo":
            return None
        attrs = m.attrs
        kind = link_kind(m.kind)
        spec = None
        kind_name = m.kind or DEVICE
        if kind is not None:
            reported = _Reported(self, ns, m, name, by_index, all_namespaces, kind.paired)
            spec = kind.parse(reported)
            kind_name = kind.reported_as(reported)
        master_idx = rtnl.as_u32(attrs.get(IFLA_MASTER))
        hairpin = m.slave_data.get(IFLA_BRPORT_MODE) if m.slave_data is not None else None
        alias = rtnl.as_str(attrs.get(IFLA_IFALIAS)) or None
        return Link(
            namespace=ns,
            name=name,
            kind=kind_name,
            up=bool(m.flags & IFF_UP),
            mtu=rtnl.as_u32(attrs.get(IFLA_MTU)),
            mac=rtnl.as_mac(attrs.get(IFLA_ADDRESS)),
            master=by_index.get(master_idx) if master_idx else None,
            hairpin=bool(hairpin[0]) if hairpin else (False if m.slave_data is not None
                                                      else None),
            spec=spec,
            owner=owner_of_alias(alias),
            alias=alias,
            ifindex=m.index,
            ident=link_ident(ns_ident, m.index) if ns_ident is not None else None,
            # as asked of the link (the kernel reports its gflags here, not the promiscuity a
            # bridge holds on its ports); off reads None (model.LINK_FLAGS)
            promisc=True if m.flags & IFF_PROMISC else None,
            allmulti=True if m.flags & IFF_ALLMULTI else None,
        )

    def _link_target(self, ns: str, m: LinkMsg, name: str, by_index: dict[int, str],
                     all_namespaces: list[str], paired: bool) -> tuple[str, str] | None:
        """(namespace, name) of the link IFLA_LINK points at, across namespaces (IFLA_LINK's
        index is in the namespace IFLA_LINK_NETNSID names)."""
        attrs = m.attrs
        target_idx = rtnl.as_u32(attrs.get(IFLA_LINK))
        raw_nsid = attrs.get(IFLA_LINK_NETNSID)
        seen = self._peer_seen.get((ns, m.index)) if paired else None
        if seen is not None and raw_nsid is not None and seen[2] == target_idx:
            return (seen[0], seen[1])  # resolved from the other end (see __init__)
        target_ns: str | None = ns
        if raw_nsid is not None:
            nsid = int.from_bytes(raw_nsid[:4], "little", signed=True)
            target_ns = self._nsid_to_name(ns, nsid, [ROOT, *all_namespaces])
        if target_ns is None or not target_idx:
            return None
        target_name = (by_index.get(target_idx) if target_ns == ns
                       else self._name_of_index(target_ns, target_idx))
        if not target_name:
            return None
        if paired and target_ns != ns:
            self._peer_seen[(target_ns, target_idx)] = (ns, name, m.index)
        return (target_ns, target_name)

    def _name_of_index(self, ns: str, index: int) -> str | None:
        cache = self._index_cache.get(ns)
        if cache is None:
            self._link_dumps[ns] = self._dump_links(ns)
            cache = self._index_cache[ns]
        known = self._index_names.get(ns, {}).get(index)
        if known is not None and cache.get(known) == index:
            return known
        for name, idx in cache.items():
            if idx == index:
                return name
        msg = self.rtnl(ns).link_by_index(index)  # created since the cache was filled
        found = rtnl.as_str(msg.attrs.get(IFLA_IFNAME)) if msg else None
        if found:
            cache[found] = index
        return found

    def _names(self, ns: str) -> dict[int, str]:
        return {idx: name for name, idx in self._index_cache.get(ns, {}).items()}

    def name_of(self, ns: str, index: int) -> str | None:
        """The name of the link at ``index`` in ``ns``; None: there is none."""
        return self._names(ns).get(index) or self._name_of_index(ns, index)

    def read_addresses(self, ns: str, link_local: bool = True) -> list[Address]:
        """Addresses on every link but loopback (IPv6 link-local ones only with
        ``link_local``): netdecl manages neither (engine/ownership.py), and every namespace
        has three of them, left unparsed."""
        names = self._names(ns)
        loopback = [idx for idx, name in names.items() if name == "lo"]
        out = []
        for m in self.rtnl(ns).addresses(skip_links=loopback,
                                         skip_link_local=not link_local):
            name = names.get(m.index) or self._name_of_index(ns, m.index)
            if name is None or name == "lo":
                continue
            out.append(Address(namespace=ns, link=name,
                               cidr=_cidr(m.family, m.address, m.prefixlen),
                               noprefixroute=bool(m.flags & IFA_F_NOPREFIXROUTE)))
        return out

    def read_routes(self, ns: str, kernel_made: bool = False) -> list[Route]:
        names = self._names(ns)
        out = []
        # One dump, both families. Left unparsed: the local table (local and broadcast
        # addresses) and other types (multicast, broadcast...), which the model cannot express,
        # and, unless ``kernel_made``, the routes the kernel derives from addresses (proto
        # kernel), which netdecl never manages (engine/ownership.py).
        for m in self.rtnl(ns).routes(types=ROUTE_TYPES, skip_table=RT_TABLE_LOCAL,
                                      skip_protocols=() if kernel_made else (RTPROT_KERNEL,)):
            if m.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            rtype = ROUTE_TYPES[m.type]
            dst = rtnl.as_ip(m.attrs.get(RTA_DST)) or (
                "0.0.0.0" if m.family == socket.AF_INET else "::")
            if m.family == socket.AF_INET6 and m.dst_len == 8 and dst.startswith("ff00"):
                continue
            oif = rtnl.as_u32(m.attrs.get(RTA_OIF))
            out.append(Route(
                namespace=ns,
                to=_network(m.family, dst, m.dst_len),
                table=m.table,
                metric=rtnl.as_u32(m.attrs.get(RTA_PRIORITY)) or 0,
                via=rtnl.as_ip(m.attrs.get(RTA_GATEWAY)),
                dev=(names.get(oif) or self._name_of_index(ns, oif)) if oif else None,
                src=rtnl.as_ip(m.attrs.get(RTA_PREFSRC)),
                type=rtype,
                onlink=bool(m.flags & RTNH_F_ONLINK),
                scope=ROUTE_SCOPES.get(m.scope, str(m.scope)),
                proto=m.proto,
            ))
        return out

    def read_fdb(self, ns: str, link_names: set[str]) -> list[FdbEntry]:
        """Static FDB entries (NUD_PERMANENT) on the given links."""
        names = self._names(ns)
        out = []
        for m in self.ipr(ns).fdb("dump"):
            name = names.get(m["ifindex"])
            if name not in link_names or not (m["state"] & NUD_PERMANENT):
                continue
            mac = (m.get("NDA_LLADDR") or "").lower()
            out.append(FdbEntry(namespace=ns, link=name, mac=mac, dst=m.get("NDA_DST")))
        return out

    def read_neighbors(self, ns: str, link_names: set[str]) -> list[Neighbor]:
        names = self._names(ns)
        out = []
        for family in (socket.AF_INET, socket.AF_INET6):
            for m in self.ipr(ns).neigh("dump", family=family):
                name = names.get(m["ifindex"])
                if name not in link_names or not (m["state"] & NUD_PERMANENT):
                    continue
                out.append(Neighbor(namespace=ns, link=name, address=m.get("NDA_DST"),
                                    mac=(m.get("NDA_LLADDR") or "").lower()))
        return out

    def read_rules(self, ns: str) -> list[Rule]:
        out = []
        for family, fam in ((socket.AF_INET, 4), (socket.AF_INET6, 6)):
            for m in self.ipr(ns).rule("dump", family=family):
                if m.get("FRA_L3MDEV"):
                    continue  # the kernel's own rule for VRFs (links/vrf.py): never ours
                prio = m.get("FRA_PRIORITY") or 0
                src = m.get("FRA_SRC")
                dst = m.get("FRA_DST")
                out.append(Rule(
                    namespace=ns, priority=prio, family=fam,
                    src=f"{src}/{m['src_len']}" if src else None,
                    dst=f"{dst}/{m['dst_len']}" if dst else None,
                    table=m.get("FRA_TABLE") or m["table"],
                    iif=m.get("FRA_IIFNAME"), oif=m.get("FRA_OIFNAME"),
                    proto=m.get("FRA_PROTOCOL"),
                ))
        return out

    # -- namespaces ----------------------------------------------------------------------------
    def create_namespace(self, name: str, placeholder: str,
                         report: namespaces.Report) -> str:
        """Make namespace ``name`` (see namespaces.create) and return its identity."""
        ident = namespaces.create(name, placeholder, report)
        report(ident)
        # lo is down in a new namespace; everything users run there expects it up
        self._raw_call(name, "bring lo up", "set_link", 1, up=True)
        return ident

    def delete_namespace(self, name: str, ident: str | None) -> None:
        """Unmount the namespace; the kernel then destroys it and every link in it (a veth's
        other end included) in its own batched cleanup, a moment later."""
        self.forget(name)
        # subscribed before the namespace goes: the root ends the kernel removes with it are
        # announced, none needs asking about (await_link_gone)
        self._link_events(ROOT)
        namespaces.delete(name, ident)
        self._deleted_namespaces.add(name)

    def deleted_namespace(self, name: str) -> bool:
        """Whether this Kernel deleted namespace ``name`` (the kernel may still be cleaning
        it up)."""
        return name in self._deleted_namespaces

    @staticmethod
    def namespace_identity(ns: str) -> str:
        return namespaces.identity(ns) or "gone"

    def link_identity(self, ns: str, index: int) -> str:
        """A link is its ifindex within its namespace (a namespace made again by someone else
        starts counting ifindexes afresh, so the index alone would not tell them apart)."""
        return link_ident(self.namespace_identity(ns), index)

    # -- links ---------------------------------------------------------------------------------
    def create_link(self, link: Link, topology: str, peer: Link | None, birth: Birth) -> None:
        """Create a link (for a veth: both ends), then give it every attribute it should have.

        The kernel ignores IFLA_IFALIAS in the request that creates a link (tested on 6.18 for
        bridge, veth - both ends - and vxlan), so a link cannot be born with netdecl's mark.
        Instead it is born under a temporary name derived from ``birth.secret`` (journaled
        before: a link by that name is provably netdecl's), its identity is reported, and only
        then does one request give it its real name, its mark and its attributes together. A
        link at a real name that lacks the mark was therefore never netdecl's; and when
        someone took the real name meanwhile, the rename fails (EEXIST) and theirs is left
        alone."""
        what = f"create {link.describe()}"
        ends = [end for end in (link, peer) if end is not None]
        temps = [temp_link_name(birth.secret, number) for number in range(len(ends))]
        echoed: LinkMsg | None = None  # the kernel's description of what it made
        kind = link_kind(link.kind)
        if kind is None or not kind.made:
            raise KernelError(errno.EOPNOTSUPP, f"{what}: kind {link.kind} is not supported")
        fd = None
        if peer is not None and peer.namespace != link.namespace:
            fd = os.open(namespaces.netns_path(peer.namespace), os.O_RDONLY | os.O_CLOEXEC)
        # made on a parent in another namespace (a macvlan on the host's NIC): made beside
        # the parent, where IFLA_LINK names it, and moved into its own namespace by the same
        # request (IFLA_NET_NS_FD), under its temporary name, as the CNI plugins do
        elsewhere = link.spec.uses_elsewhere() if link.spec is not None else ()
        made_in = elsewhere[0][0] if elsewhere else link.namespace
        own_fd = None
        if made_in != link.namespace:
            own_fd = os.open(namespaces.netns_path(link.namespace), os.O_RDONLY | os.O_CLOEXEC)
        try:
            request = _Request(self, made_in, temps, fd)
            if kind.made_through is not None:  # a tap or tun: through /dev/net/tun
                try:
                    tundev.create(link.namespace, temps[0], *kind.device_settings(link))
                except OSError as exc:
                    raise KernelError(exc.errno or errno.EIO, what) from None
            else:
                attrs = kind.create_attrs(link, request)
                if own_fd is not None:
                    attrs += attr_u32(IFLA_NET_NS_FD, own_fd)
                echoed = self._raw_call(made_in, what, "new_link", temps[0], link.kind,
                                        kind.create_data(link, request), attrs)
                if own_fd is not None:
                    # (an echo, if any, is of the parent's namespace's socket: look it up
                    # by its temporary name where it now is)
                    echoed = None
                    self._nsid_probed.clear()  # the kernel may have just given a netnsid
        finally:
            for opened in (fd, own_fd):
                if opened is not None:
                    os.close(opened)
        for end in ends:  # any cached index for these names is of an older link
            self._index_cache.get(end.namespace, {}).pop(end.name, None)
        if peer is not None and peer.namespace != link.namespace:
            self._nsid_probed.clear()  # the kernel may have just given the peer a netnsid
        # from the kernel's echo when it sent one: no look-up by name per end (two thousand
        # requests at N=1000)
        known = _echoed_indexes(echoed, len(ends))
        indexes = []
        for number, (end, temp) in enumerate(zip(ends, temps, strict=True)):
            index = known[number] if known else self.index_of(end.namespace, temp)
            indexes.append(index)
            birth.made(end.key, self.link_identity(end.namespace, index))
        if kind.ports and link.mac is None:
            # A bridge whose MAC was never set takes its lowest port's, so a port joining later
            # can change it, and every neighbour holding the bridge's address at the old MAC
            # loses it (until its entry is probed again: seconds). Set, it stays put, as Docker
            # and systemd-networkd do for theirs.
            ends[0] = dataclasses.replace(link, mac=random_local_mac())
        for end, temp, index in zip(ends, temps, indexes, strict=True):
            self.configure_link(end, topology, fresh=True, index=index)
            cache = self._index_cache.setdefault(end.namespace, {})
            cache.pop(temp, None)
            cache[end.name] = index

    def take_link(self, link: Link, source: tuple[str, str], topology: str,
                  birth: Birth) -> None:
        """Move the host's link ``source`` (namespace, name) into ``link``'s namespace and make
        it ``link`` there (a host-device): moved under the temporary name ``birth`` says, its
        identity reported, then named, marked and configured as a link just made is."""
        what = f"move {source[1]} from {source[0] or 'root'} into {link.describe()}"
        temp = temp_link_name(birth.secret, 0)
        index = self.index_of(*source)
        fd = os.open(namespaces.netns_path(link.namespace), os.O_RDONLY | os.O_CLOEXEC)
        try:
            self._raw_call(source[0], what, "move_link", index, fd, temp)
        finally:
            os.close(fd)
        self._index_cache.get(source[0], {}).pop(source[1], None)
        self._nsid_probed.clear()
        self._index_cache.get(link.namespace, {}).pop(link.name, None)
        index = self.index_of(link.namespace, temp)  # (the kernel may give it a new index)
        birth.made(link.key, self.link_identity(link.namespace, index))
        self.configure_link(link, topology, fresh=True, index=index)
        cache = self._index_cache.setdefault(link.namespace, {})
        cache.pop(temp, None)
        cache[link.name] = index

    def give_back(self, link: Link, back: Mapping[str, Any]) -> None:
        """Move a taken link (a host-device's NIC) back to the root under its name from before,
        with its MTU, alias, addresses and state from before (``back``: its
        LinkSpec.given_back). The kernel dropped its addresses when it left the root."""
        device = back["device"]
        what = f"give {link.describe()} back to the root as {device}"
        index = link.ifindex if link.ifindex is not None else self.index_of(link.namespace,
                                                                            link.name)
        fd = os.open(namespaces.netns_path(ROOT), os.O_RDONLY | os.O_CLOEXEC)
        try:
            self._raw_call(link.namespace, what, "move_link", index, fd, device)
        finally:
            os.close(fd)
        self._index_cache.get(link.namespace, {}).pop(link.name, None)
        self._index_cache.get(ROOT, {}).pop(device, None)
        self._nsid_probed.clear()
        root = self.index_of(ROOT, device)
        self._raw_call(ROOT, what, "set_link", root, mtu=back.get("mtu"),
                       alias=back.get("alias") or "")
        for cidr in back.get("addresses") or ():
            self.add_address(Address(namespace=ROOT, link=device, cidr=cidr), announce=False)
        if back.get("up"):
            self._raw_call(ROOT, what, "set_link", root, up=True)

    def configure_link(self, link: Link, topology: str, fresh: bool = False,
                       changes: Iterable[str] | None = None, index: int | None = None) -> None:
        """Set a link's attributes. ``changes`` limits which (None: all that are specified).
        ``fresh``: a link just made (at ``index``, under its temporary name) gets its real
        name and netdecl's mark in the same request."""
        ns = link.namespace
        idx = index if index is not None else self.index_of(ns, link.name)
        wanted = set(changes) if changes is not None else {
            "mtu", "mac", "master", "hairpin", "up", "vlans", *LINK_FLAGS, *link.settings()}
        what = f"configure {link.describe()}"
        # name, mtu, mac, master, alias and up go in one RTM_NEWLINK (do_setlink applies
        # them in its own order: the flags before the master, as a bond's refusal of a
        # member that is up showed in the lab)
        attrs: dict[str, Any] = {}
        if fresh:
            attrs["name"] = link.name
            attrs["alias"] = owner_mark(topology)
        if "mtu" in wanted and link.mtu is not None:
            attrs["mtu"] = link.mtu
        if "mac" in wanted and link.mac is not None:
            attrs["mac"] = link.mac
        if "master" in wanted and (link.master is not None or not fresh):
            attrs["master"] = self.index_of(ns, link.master) if link.master else 0
        for flag in LINK_FLAGS:
            if flag in wanted and getattr(link, flag) is not None:
                attrs[flag] = getattr(link, flag)
        kind = link_kind(link.kind)
        # settings of the kind's own, changed in place (a fresh link was made with them)
        kind_data = (kind.change_request(link, wanted, _Request(self, ns, [], None))
                     if kind is not None and not fresh else None)
        port_flags = ("hairpin" in wanted and link.hairpin is not None and link.master) or (
            kind_data is not None)
        if "up" in wanted and link.up is not None and not port_flags:
            attrs["up"] = link.up
        # joining or leaving a bond: down to join, the state from before back after leaving
        strict, restore_up = self._prepare_membership(ns, idx, link, what, fresh) \
            if "master" in attrs else (False, None)
        up = attrs.pop("up", None) if strict else None  # (do_setlink sets flags before master)
        if attrs:
            self._raw_call(ns, what, "set_link", idx, **attrs)
        if up is not None or restore_up is not None:
            self._raw_call(ns, what, "set_link", idx, up=up if up is not None else restore_up)
        if "vlans" in wanted and link.vlans is not None:
            # the complete set: what is wanted added (or its flags set) first, which moves the
            # pvid, then the rest removed (a new port starts with the bridge's default PVID)
            now = self.rtnl(ns).bridge_vlans().get(idx, ())
            wanted_ids = {vid for vid, _, _ in link.vlans}
            self._raw_call(ns, what, "set_bridge_vlans", idx,
                           [v for v in link.vlans if v not in now],
                           [vid for vid, _, _ in now if vid not in wanted_ids],
                           bool(kind is not None and kind.ports))
        if kind_data is not None:
            down_for = link.spec is not None and any(
                name in wanted for name in type(link.spec).DOWN_FOR)
            msg = self.rtnl(ns).link_by_index(idx) if down_for else None
            was_up = msg is not None and bool(msg.flags & IFF_UP)
            if was_up:  # (the kernel refuses such a change while the link is up)
                self._raw_call(ns, what, "set_link", idx, up=False)
            self._raw_call(ns, what, "set_link_data", idx, link.kind, kind_data)
            if was_up and not ("up" in wanted and link.up is False):
                self._raw_call(ns, what, "set_link", idx, up=True)
        if "hairpin" in wanted and link.hairpin is not None and link.master:
            self._call(ns, what, "brport", "set", index=idx, mode=1 if link.hairpin else 0)
        if "up" in wanted and link.up is not None and port_flags:
            self._raw_call(ns, what, "set_link", idx, up=link.up)

    def _prepare_membership(self, ns: str, idx: int, link: Link, what: str,
                            fresh: bool) -> tuple[bool, bool | None]:
        """Before a link at ``idx`` changes master: whether it leaves or joins a link of a
        kind whose members must be down (a bond: it refuses one that is up, opens it on
        joining and closes it on release), and then the state to give it back after a
        release (the state it has now; None when joining). A joining link is taken down
        first. A fresh link (born down, in no master) asks only about its new master."""
        new = self._members_down(ns, self.index_of(ns, link.master)) if link.master else False
        if fresh:
            return new, None
        msg = self.rtnl(ns).link_by_index(idx)
        if msg is None:
            return new, None
        old = rtnl.as_u32(msg.attrs.get(IFLA_MASTER))
        if not (new or (old and self._members_down(ns, old))):
            return False, None
        was_up = bool(msg.flags & IFF_UP)
        if was_up and link.master:
            self._raw_call(ns, what, "set_link", idx, up=False)
        return True, (was_up if not link.master else None)

    def _members_down(self, ns: str, index: int) -> bool:
        """Whether the link at ``index`` is of a kind whose members must be down to join
        (asked once per master: a thousand ports join one bridge)."""
        known = self._members_down_of.get((ns, index))
        if known is None:
            msg = self.rtnl(ns).link_by_index(index)
            kind = link_kind(msg.kind) if msg is not None else None
            known = self._members_down_of[(ns, index)] = kind is not None and kind.members_down
        return known

    def set_alias(self, link: Link, alias: str | None) -> None:
        """Set the ifalias of the observed ``link`` (None or empty: remove it), addressed by its
        ifindex (whatever took its name since is not touched)."""
        idx = link.ifindex if link.ifindex is not None else self.index_of(link.namespace,
                                                                          link.name)
        what = f"set the alias of {link.describe()}" if alias else \
            f"remove the alias of {link.describe()}"
        self._raw_call(link.namespace, what, "set_link", idx, alias=alias or "")

    def delete_link(self, ns: str, name: str, index: int | None = None) -> None:
        """Delete the link ``name``; with ``index`` (its ifindex when observed), that very
        link, by its ifindex: whatever took the name since is not touched."""
        try:
            idx = index if index is not None else self.index_of(ns, name)
        except KernelError:
            return  # already gone (e.g. the other end of a veth that was deleted)
        try:
            self._raw_call(ns, f"delete link {name}", "del_link", idx)
        except KernelError as exc:
            if exc.errno != errno.ENODEV:
                raise
        # forget this name only: a dump per deleted link would make teardown O(N^2)
        self._index_cache.get(ns, {}).pop(name, None)

    def _link_events(self, ns: str) -> LinkEvents:
        events = self._events.get(ns)
        if events is None:
            events = self._events[ns] = LinkEvents(self._new_socket(ns))
        return events

    def await_link_gone(self, ns: str, name: str, index: int | None = None,
                        stall: float = LINK_GONE_STALL) -> bool:
        """Wait, by link notifications rather than polling, until link ``name`` of ``ns`` (at
        ``index`` when observed) is gone: the kernel removes the surviving end of a veth whose
        peer's namespace was deleted. False when nothing left the namespace for ``stall``
        seconds while the link was still there: something keeps that namespace alive, the
        caller deletes the link."""
        events = self._link_events(ns)  # before looking the link up: no deletion is missed
        if index is None:
            try:
                index = self.index_of(ns, name)
            except KernelError:
                return True  # gone already

        def exists(idx: int) -> bool:
            try:
                msg = self.rtnl(ns).link_by_index(idx)
            except rtnl.RtnlError as exc:
                raise KernelError(exc.errno or errno.EIO, f"look up link {name}") from None
            return msg is not None and rtnl.as_str(msg.attrs.get(IFLA_IFNAME)) == name

        gone = events.wait_gone(index, name, exists, stall)
        if gone:
            self._index_cache.get(ns, {}).pop(name, None)
        return gone

    # -- addresses -----------------------------------------------------------------------------
    def add_address(self, addr: Address, announce: bool = True) -> None:
        iface = ipaddress.ip_interface(addr.cidr)
        # Duplicate address detection would leave an IPv6 address "tentative" (unusable) for a
        # second or two after apply; netdecl owns these links and their addresses.
        flags = IFA_F_NODAD if iface.version == 6 else 0
        if addr.noprefixroute:
            flags |= IFA_F_NOPREFIXROUTE
        index = self.index_of(addr.namespace, addr.link)
        try:
            self._raw_call(addr.namespace, f"add {addr.describe()}", "add_address",
                           index, str(iface.ip), iface.network.prefixlen, flags)
        except KernelError as exc:
            if exc.errno != errno.EEXIST:
                raise
            return
        if announce:
            self._announce(addr.namespace, addr.link, index, str(iface.ip))

    def _announce(self, ns: str, name: str, index: int, address: str) -> None:
        """Tell the link's neighbours the address is here now, with this MAC (announce.py):
        a recreated link has a new one, which they would otherwise learn only after their
        entry timed out."""
        msg = self.rtnl(ns).link_by_index(index)
        if msg is not None and msg.flags & IFF_UP:
            self._announcer.announce(ns, name, index, msg.attrs.get(IFLA_ADDRESS), address)

    def namespace_gone(self, ns: str) -> bool:
        """Whether ``ns`` no longer exists, and everything that was in it went with it."""
        return ns != ROOT and ns not in self._raw and not namespaces.exists(ns)

    def delete_address(self, addr: Address) -> None:
        if self.namespace_gone(addr.namespace):
            return
        iface = ipaddress.ip_interface(addr.cidr)
        try:
            self._raw_call(addr.namespace, f"delete {addr.describe()}", "del_address",
                           self.index_of(addr.namespace, addr.link), str(iface.ip),
                           iface.network.prefixlen)
        except KernelError as exc:
            if exc.errno not in (errno.EADDRNOTAVAIL, errno.ENODEV):
                raise

    # -- routes --------------------------------------------------------------------------------
    def _route_args(self, route: Route, for_delete: bool = False,
                    proto: int = RTPROT_NETDECL) -> dict[str, Any]:
        net = ipaddress.ip_network(route.to)
        args: dict[str, Any] = {
            "family": socket.AF_INET6 if net.version == 6 else socket.AF_INET,
            "dst": str(net.network_address), "dst_len": net.prefixlen,
            "table": route.table, "metric": route.metric, "proto": proto,
            # a delete names the route by its key (and our protocol) only: type 0 matches any
            "rtype": 0 if for_delete else ROUTE_TYPE_CODES[route.type or "unicast"],
        }
        if for_delete:
            return {**args, "scope": RT_SCOPE_NOWHERE}  # names no scope: the kernel matches any
        # No scope in the model: what iproute2 would pick (the loader always gives one)
        args["scope"] = ROUTE_SCOPE_CODES[route.scope or (
            "link" if net.version == 4 and not route.via and route.type in (None, "unicast")
            else "global")]
        if route.via:
            args["gateway"] = route.via
        if route.dev:
            args["oif"] = self.index_of(route.namespace, route.dev)
        if route.src:
            args["prefsrc"] = route.src
        if route.onlink:
            args["flags"] = RTNH_F_ONLINK
        return args

    def replace_route(self, route: Route, proto: int = RTPROT_NETDECL) -> None:
        """Add ``route`` or replace the one at its key. It carries netdecl's protocol, except
        when a failed adopting apply puts back the ``proto`` the route had before."""
        self._raw_call(route.namespace, f"set {route.describe()}", "replace_route",
                       **self._route_args(route, proto=proto))

    def delete_route(self, route: Route) -> None:
        if self.namespace_gone(route.namespace):
            return
        try:
            self._raw_call(route.namespace, f"delete {route.describe()}", "del_route",
                           **self._route_args(route, for_delete=True))
        except KernelError as exc:
            if exc.errno != errno.ESRCH:
                raise

    # -- fdb, neighbours, rules ----------------------------------------------------------------
    def add_fdb(self, entry: FdbEntry) -> None:
        args: dict[str, Any] = {"ifindex": self.index_of(entry.namespace, entry.link),
                                "lladdr": entry.mac, "state": NUD_PERMANENT}
        if entry.dst:
            args["dst"] = entry.dst
        self._call(entry.namespace, f"add {entry.describe()}", "fdb", "append", **args)

    def delete_fdb(self, entry: FdbEntry) -> None:
        try:
            args: dict[str, Any] = {"ifindex": self.index_of(entry.namespace, entry.link),
                                    "lladdr": entry.mac}
        except KernelError:
            return
        if entry.dst:
            args["dst"] = entry.dst
        try:
            self._call(entry.namespace, f"delete {entry.describe()}", "fdb", "del", **args)
        except KernelError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENODEV):
                raise

    def replace_neighbor(self, n: Neighbor) -> None:
        self._call(n.namespace, f"set {n.describe()}", "neigh", "replace",
                   ifindex=self.index_of(n.namespace, n.link), dst=n.address,
                   lladdr=n.mac, state=NUD_PERMANENT)

    def delete_neighbor(self, n: Neighbor) -> None:
        try:
            idx = self.index_of(n.namespace, n.link)
            self._call(n.namespace, f"delete {n.describe()}", "neigh", "del",
                       ifindex=idx, dst=n.address)
        except KernelError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENODEV):
                raise

    def _rule_args(self, r: Rule) -> dict[str, Any]:
        args: dict[str, Any] = {
            "family": socket.AF_INET6 if r.family == 6 else socket.AF_INET,
            "priority": r.priority, "table": r.table, "protocol": RTPROT_NETDECL,
        }
        if r.src:
            net = ipaddress.ip_network(r.src)
            args.update(src=str(net.network_address), src_len=net.prefixlen)
        if r.dst:
            net = ipaddress.ip_network(r.dst)
            args.update(dst=str(net.network_address), dst_len=net.prefixlen)
        if r.iif:
            args["iifname"] = r.iif
        if r.oif:
            args["oifname"] = r.oif
        return args

    def add_rule(self, r: Rule) -> None:
        self._call(r.namespace, f"add {r.describe()}", "rule", "add", **self._rule_args(r))

    def delete_rule(self, r: Rule) -> None:
        # Match every attribute, protocol included: with the priority alone the kernel deletes
        # the first rule at that priority, which may be someone else's.
        try:
            self._call(r.namespace, f"delete {r.describe()}", "rule", "del",
                       **self._rule_args(r))
        except KernelError as exc:
            if exc.errno != errno.ENOENT:
                raise


    # -- lookups (explain) ---------------------------------------------------------------------
    def route_get(self, ns: str, dst: str, src: str | None = None,
                  iif: str | None = None) -> dict[str, Any]:
        """The kernel's own route decision for ``dst`` (RTM_GETROUTE, like `ip route get`).

        With ``iif`` (a link name) the kernel decides as for a packet that arrived there
        (forwarding, rp_filter and local delivery included); pass the packet's ``src`` then.
        Returns type (unicast, local, ...), dev, via, src (preferred source) and table; raises
        KernelError (e.g. ENETUNREACH) when the kernel has no route.
        """
        kwargs: dict[str, Any] = {"dst": dst}
        if src:
            kwargs["src"] = src
        if iif:
            kwargs["iif"] = self.index_of(ns, iif)
        msg = self._call(ns, f"route get {dst} in {ns or 'root'}", "route", "get", **kwargs)[0]
        oif = msg.get("RTA_OIF")
        kinds = {**ROUTE_TYPES, RTN_LOCAL: "local", RTN_BROADCAST: "broadcast",
                 RTN_MULTICAST: "multicast"}
        return {"type": kinds.get(msg["type"], str(msg["type"])),
                "dev": self._name_of_index(ns, oif) if oif else None,
                "via": msg.get("RTA_GATEWAY"), "src": msg.get("RTA_PREFSRC"),
                "table": msg.get("RTA_TABLE") or msg["table"]}

    def bridge_ports_for(self, ns: str, bridge: str, mac: str) -> list[str]:
        """Ports of ``bridge`` whose forwarding database (learned or static) holds ``mac``."""
        br = self.index_of(ns, bridge)
        return sorted({self._name_of_index(ns, m["ifindex"]) or str(m["ifindex"])
                       for m in self.ipr(ns).fdb("dump")
                       if m.get("NDA_MASTER") == br and (m.get("NDA_LLADDR") or "").lower()
                       == mac.lower() and m["ifindex"] != br})

    def neighbor_entry(self, ns: str, link: str, address: str) -> tuple[str | None, int] | None:
        """(mac, NUD state bits) of the neighbour entry for ``address`` on ``link``, if any."""
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        idx = self.index_of(ns, link)
        for m in self.ipr(ns).neigh("dump", family=family):
            if m["ifindex"] == idx and m.get("NDA_DST") == address:
                return (m.get("NDA_LLADDR") or "").lower() or None, m["state"]
        return None
