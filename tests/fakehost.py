"""An in-memory Host (netdecl/backends/host.py) that behaves as KernelHost on a Linux kernel
does, as far as the engine can tell: tests/test_host_conformance.py runs the same cases on both
and holds the two to it.

Links are made the kernel's way: under a temporary name derived from the Birth's secret
(temp_link_name), down, with a MAC, an MTU and an ifindex; their identity is reported; then
each end is configured (MAC, MTU, its real name, its owner mark as alias, master, up) in the
order do_setlink applies them, so a create that fails half-way (the real name taken, a master
that does not exist, an MTU too large) leaves what the kernel would leave: a link under its
temporary name. A bridge whose MTU was never set follows the smallest MTU of its ports; a
VXLAN over a device starts 50 bytes below it.

Routes are checked and completed as the kernel does: a device must exist and be up, a gateway
must be on a connected network (or the route onlink), a preferred source must be a local
address; the device a gateway leads through is filled in, IPv6 metric 0 becomes 1024 and IPv6
scope is always global. What the kernel drops along with something, the fake drops too:
deleting a link takes its veth peer, its addresses, the routes through it and its FDB and
neighbour entries; a link going down takes the routes through it (but IPv4 host-scope ones),
its IPv6 addresses and its neighbours; an IPv4 address takes the routes that prefer it as
source, and the last IPv4 address of a link every IPv4 route through the link; deleting a
namespace takes everything in it (and the veth ends elsewhere whose peer was in it). Observing
rules shows the kernel's default policy rules beside netdecl's.

Routes and rules made through it carry netdecl's protocol. ``arm(n)`` makes the n-th change
from then on fail once, as if the kernel had refused it.

Identities behave like the kernel's: every namespace, link and NAT table made (by netdecl or
by ``add_foreign``) gets one that is never reused; a create reports it through its Birth (a
namespace in the three steps KernelHost reports: its placeholder file, file or namespace, the
namespace); a create at a taken name fails (EEXIST) and a delete of an object whose identity is
no longer the one at its name touches nothing (a namespace: refused, EEXIST, as KernelHost
does). ``race(n, fn)`` runs ``fn`` just before the n-th change from then on (someone else
acting at the worst moment).

Not modelled (the conformance suite says why each is left out): the kernel's own FDB entries
(multicast addresses and the links' own MACs), two rules at one priority, sysctls other than
the three in SYSCTL_DEFAULTS, and the seconds the kernel takes to remove a veth's surviving end
after its peer's namespace went (here it goes at once).
"""

from __future__ import annotations

import copy
import dataclasses
import errno
import ipaddress
import secrets
from collections.abc import Callable, Collection, Mapping
from typing import Any

from netdecl.backends.host import (
    Birth,
    Scope,
    owner_mark,
    owner_of_alias,
    temp_link_name,
)
from netdecl.backends.sysctl import SysctlError
from netdecl.errors import NetdeclError
from netdecl.links import link_kind
from netdecl.links.bridge import BridgeSpec
from netdecl.links.veth import VethSpec
from netdecl.links.vxlan import Vxlan
from netdecl.model import (
    EGRESS,
    INGRESS,
    IPV6_DEFAULT_METRIC,
    LINK_FLAGS,
    ROOT,
    RTPROT_NETDECL,
    Address,
    ExternalLink,
    FdbEntry,
    Key,
    Link,
    LinkSpec,
    Namespace,
    NatTable,
    Neighbor,
    NetObject,
    Qdisc,
    QdiscStage,
    Route,
    Rule,
    Sysctl,
)

SYSCTL_DEFAULTS = {"net.ipv4.ip_forward": "0", "net.ipv4.conf.all.rp_filter": "2",
                   "net.ipv6.conf.all.forwarding": "0"}
RTPROT_KERNEL = 2
# The policy rules every new namespace has (family, priority, table), as `ip rule` lists them.
DEFAULT_RULES = ((4, 0, 255), (4, 32766, 254), (4, 32767, 253), (6, 0, 255), (6, 32766, 254))
ETH_DATA_LEN = 1500
# what a VXLAN's headers take from its underlay device's MTU (include/net/vxlan.h)
VXLAN_HEADROOM = {4: 50, 6: 70}
MIN_MTU, MAX_MTU = 68, 65535


class FakeKernelError(NetdeclError):
    def __init__(self, code: int, what: str):
        self.errno = code
        super().__init__(f"{what}: {errno.errorcode[code]}")


class FakeHost:
    def __init__(self) -> None:
        self.objects: dict[Key, NetObject] = {}
        self.sysctls: dict[tuple[str, str], str] = {}
        self.nat: dict[tuple[str, str], NatTable] = {}  # (topology, namespace) -> table
        self.changes = 0  # create/delete/modify calls so far
        self._fail_at: int | None = None
        self._race: tuple[int, Callable[[], None]] | None = None
        self._next_index = 100
        self._next_ident = 0
        # identities of the bridges whose MTU someone set: those no longer follow their ports
        self._mtu_set: set[str] = set()
        # (namespace, link, its ident) -> the root qdisc netdecl (or a test) set there; a
        # link without one has the kernel's default, and a link made again starts with it
        self.qdiscs: dict[tuple[str, str, str | None], Qdisc] = {}
        self.ingress: dict[tuple[str, str, str | None], Qdisc] = {}  # ingress qdiscs, alike
        self.qdiscs_lacking: dict[str, str] = {}  # qdisc kind -> module the fake kernel lacks
        # link kinds this fake kernel has no module for (missing_kinds)
        self.kernel_lacks: set[str] = set()

    # -- test helpers --------------------------------------------------------------------------
    def arm(self, n: int) -> None:
        """The n-th change from now fails (once)."""
        self._fail_at = self.changes + n

    def race(self, n: int, fn: Callable[[], None]) -> None:
        """Run ``fn`` just before the n-th change from now."""
        self._race = (self.changes + n, fn)

    def copy(self) -> FakeHost:
        return copy.deepcopy(self)

    def state(self) -> dict[str, Any]:
        """Everything, comparable: ifindexes (which the kernel never reuses) left out."""
        objects = sorted(repr(_without_identity(o)) for o in self.objects.values())
        sysctls = {(ns, name): self._sysctl(ns, name)
                   for ns in [ROOT, *self.named_namespaces()] for name in SYSCTL_DEFAULTS}
        return {"objects": objects, "sysctls": sysctls,
                "nat": {k: repr(_without_identity(v)) for k, v in sorted(self.nat.items())},
                "qdiscs": {(ns, name): q.stages for (ns, name, _), q in sorted(
                    self.qdiscs.items(), key=repr) if self._qdisc_link(ns, name, _)},
                "ingress": {(ns, name): q.redirect for (ns, name, _), q in sorted(
                    self.ingress.items(), key=repr) if self._qdisc_link(ns, name, _)}}

    def _qdisc_link(self, ns: str, name: str, ident: str | None) -> bool:
        link = self.objects.get(("link", ns, name))
        return isinstance(link, Link) and link.ident == ident

    def _root_qdisc(self, ns: str, name: str) -> Qdisc | None:
        link = self.objects.get(("link", ns, name))
        if not isinstance(link, Link):
            return None
        return self.qdiscs.get((ns, name, link.ident)) or Qdisc(
            ns, name, EGRESS, (QdiscStage("noqueue"),), handle=0, original="default")

    def missing_qdisc_kinds(self, kinds: Collection[str]) -> dict[str, str]:
        return {k: m for k, m in self.qdiscs_lacking.items() if k in kinds}

    def _write_qdisc(self, before: NetObject | None, after: Qdisc, what: str) -> None:
        link = self.objects.get(("link", after.namespace, after.link))
        if not isinstance(link, Link):
            raise FakeKernelError(errno.ENODEV, f"{what}: no link {after.link}")
        key = (after.namespace, after.link, link.ident)
        if after.direction == INGRESS:
            if after.original:
                self.ingress.pop(key, None)
            else:
                self.ingress[key] = dataclasses.replace(after, handle=0xFFFF0000,
                                                        original="ingress")
        elif after.original and after.stages and after.handle == 0xD3 << 16:
            self.qdiscs[key] = after  # netdecl's chain written back whole (a rollback)
        elif after.original == "default":
            self.qdiscs.pop(key, None)
        elif after.original:
            kind, hex_handle, _ = after.original.split(":")
            self.qdiscs[key] = Qdisc(after.namespace, after.link, EGRESS, (QdiscStage(kind),),
                                     handle=int(hex_handle, 16), original=after.original)
        else:
            ours = 0xD3 << 16
            self.qdiscs[key] = dataclasses.replace(
                after, handle=ours, original=f"{after.stages[0].kind}:{ours:08x}:")

    def add_foreign(self, *objs: NetObject, topology: str = "") -> None:
        """Objects someone else made (no owner mark unless a Link names one - a forged mark -,
        the kernel's protocol); a NatTable is put under ``topology``'s table name. A route is
        completed as the kernel would (the device its gateway leads through)."""
        for o in objs:
            if isinstance(o, Link):
                owner = o.owner or owner_of_alias(o.alias)
                o = dataclasses.replace(
                    self._born(o, o.name, peer=o.peer), owner=owner,
                    alias=o.alias or (owner_mark(owner) if owner else None), up=o.up,
                    master=o.master, hairpin=bool(o.hairpin) if o.master else None)
                if o.kind == "bridge" and o.mtu != ETH_DATA_LEN:
                    assert o.ident is not None
                    self._mtu_set.add(o.ident)
            elif isinstance(o, Namespace):
                o = dataclasses.replace(o, ident=self._new_ident("ns"))
            elif isinstance(o, NatTable):
                self.nat[(topology, o.namespace)] = dataclasses.replace(
                    o, ident=f"{self._ns_ident(o.namespace)}/{self._new_ident('nft')}")
                continue
            elif isinstance(o, Route):
                o = self._route_as_kernel(o, o.proto, f"add {o.describe()}")
            self.objects[o.key] = o

    def remove(self, key: Key) -> None:
        """Someone else removes the object at ``key`` (with what the kernel drops along)."""
        obj = self.objects.get(key)
        if isinstance(obj, Namespace):
            self._delete_namespace(obj.namespace)
        elif isinstance(obj, Link):
            self._delete_link(key)
        elif isinstance(obj, Address):
            del self.objects[key]
            self._address_gone(obj)
        else:
            self.objects.pop(key, None)

    def _new_ident(self, prefix: str) -> str:
        self._next_ident += 1
        return f"{prefix}{self._next_ident}"

    def _ns_ident(self, ns: str) -> str:
        if ns == ROOT:
            return "ns-root"
        now = self.objects.get(("namespace", ns))
        return now.ident or "ns-unknown" if isinstance(now, Namespace) else "gone"

    # -- reading -------------------------------------------------------------------------------
    def named_namespaces(self) -> list[str]:
        return sorted(o.namespace for o in self.objects.values() if isinstance(o, Namespace))

    def unmodelled(self, namespaces: list[str]) -> list[str]:
        return []  # holds nothing netdecl has no model for

    def missing_kinds(self, kinds: Collection[str]) -> list[str]:
        return [kind for kind in kinds if kind in self.kernel_lacks]

    def _exists(self, ns: str) -> bool:
        return ns == ROOT or ("namespace", ns) in self.objects

    def observe(self, topology: str, scope: Scope) -> list[NetObject]:
        seen: list[NetObject] = []
        for ns in scope.namespaces:
            if not self._exists(ns):
                continue
            for o in self.objects.values():
                if o.namespace != ns:
                    continue
                if isinstance(o, Rule) and not scope.rules:
                    continue
                if isinstance(o, (FdbEntry, Neighbor)) and not scope.fdb:
                    continue
                seen.append(o)
            if scope.rules:
                seen += [Rule(ns, priority=priority, family=family, table=table,
                              proto=RTPROT_KERNEL) for family, priority, table in DEFAULT_RULES]
            for name in sorted(scope.sysctls.get(ns, ())):
                value = self._sysctl(ns, name)
                if value is not None:
                    seen.append(Sysctl(ns, name, value))
            for where, name in sorted(scope.qdiscs):
                qdisc = self._root_qdisc(ns, name) if where == ns else None
                if qdisc is not None:
                    seen.append(qdisc)
                    link = self.objects.get(("link", ns, name))
                    found = self.ingress.get((ns, name, getattr(link, "ident", None)))
                    if found is not None:
                        seen.append(found)
            if scope.nat and (scope.nat_namespaces is None or ns in scope.nat_namespaces):
                table = self.nat.get((topology, ns))
                if table is not None:
                    seen.append(table)
        return seen

    def _sysctl(self, ns: str, name: str) -> str | None:
        return self.sysctls.get((ns, name), SYSCTL_DEFAULTS.get(name))

    def _links(self, ns: str) -> list[Link]:
        return [o for o in self.objects.values() if isinstance(o, Link) and o.namespace == ns]

    def _link(self, ns: str, name: str | None) -> Link | None:
        found = self.objects.get(("link", ns, name)) if name else None
        return found if isinstance(found, Link) else None

    # -- changing ------------------------------------------------------------------------------
    def _change(self, what: str) -> None:
        self.changes += 1
        if self._race is not None and self._race[0] == self.changes:
            fn = self._race[1]
            self._race = None
            fn()
        if self._fail_at == self.changes:
            self._fail_at = None
            raise FakeKernelError(errno.EPERM, f"{what} (injected)")

    def _need_namespace(self, ns: str, what: str) -> None:
        if not self._exists(ns):
            raise FakeKernelError(errno.ENOENT, f"{what}: namespace {ns} does not exist")

    def _need_link(self, ns: str, name: str | None, what: str) -> None:
        if name and ("link", ns, name) not in self.objects:
            raise FakeKernelError(errno.ENODEV, f"{what}: no link {name} in {ns or 'root'}")

    def create(self, obj: NetObject, topology: str, peer: NetObject | None = None,
               birth: Birth | None = None) -> None:
        what = f"create {obj.describe()}"
        self._change(what)
        made = birth.made if birth is not None else (lambda key, ident: None)
        if isinstance(obj, NatTable):
            self._need_namespace(obj.namespace, what)
            if (topology, obj.namespace) in self.nat:
                raise FakeKernelError(errno.EEXIST, what)  # nft's `create table`
            self._write_nat(topology, obj, made)
            return
        if isinstance(obj, Sysctl):
            self._write_sysctl(obj)
            return
        if isinstance(obj, Qdisc):
            self._write_qdisc(None, obj, what)
            return
        if isinstance(obj, ExternalLink):
            raise FakeKernelError(errno.EOPNOTSUPP, f"{what}: netdecl never creates one")
        if isinstance(obj, Namespace):
            self._create_namespace(obj, made)
            return
        self._need_namespace(obj.namespace, what)
        if isinstance(obj, Link):
            secret = birth.secret if birth is not None else secrets.token_hex(6)
            self._create_link(obj, peer if isinstance(peer, Link) else None, topology, secret,
                              made, what)
            return
        # an address or FDB entry that is there already is no error (the kernel's EEXIST is
        # taken as done, or `fdb append` of the same entry); a neighbour or route is replaced
        if obj.key in self.objects and isinstance(obj, Rule):
            raise FakeKernelError(errno.EEXIST, what)
        self._need_link(obj.namespace, getattr(obj, "link", None), what)
        if isinstance(obj, Route):
            obj = self._route_as_kernel(obj, RTPROT_NETDECL, what)
        elif isinstance(obj, Rule):
            obj = dataclasses.replace(obj, proto=RTPROT_NETDECL)
        self.objects[obj.key] = obj

    def _create_namespace(self, ns: Namespace, made: Callable[[Key, str], None]) -> None:
        """namespaces.create: a placeholder file made and reported first, then linked to the
        name (EEXIST when taken: the placeholder goes, nothing of theirs is touched), then the
        namespace, reported as either of the two before it is mounted there, and as itself."""
        placeholder = self._new_ident("file")
        made(ns.key, placeholder)
        if ns.key in self.objects:
            raise FileExistsError(errno.EEXIST, f"namespace {ns.namespace} exists")
        ident = self._new_ident("ns")
        made(ns.key, f"{placeholder}|{ident}")
        self.objects[ns.key] = dataclasses.replace(ns, ident=ident)
        made(ns.key, ident)

    def _born(self, link: Link, name: str, peer: tuple[str, str] | None) -> Link:
        """``link`` as the kernel makes it under ``name``: down, no alias, no master, a MAC,
        the default MTU of its kind, an ifindex and an identity."""
        self._next_index += 1
        index = self._next_index
        return Link(
            link.namespace, name, kind=link.kind, up=False, mtu=link.mtu or
            self._default_mtu(link), mac=link.mac or f"02:00:00:00:{index // 256:02x}:"
                                                     f"{index % 256:02x}",
            spec=_spec_as_born(link, peer), ifindex=index,
            ident=f"{self._ns_ident(link.namespace)}/if{index}")

    def _default_mtu(self, link: Link) -> int:
        """A VXLAN over a device leaves room for its headers below the device's MTU."""
        under = self._link(link.namespace, vx.dev) if (vx := _vxlan(link)) else None
        return ETH_DATA_LEN if under is None or under.mtu is None else min(
            ETH_DATA_LEN, under.mtu - _vxlan_headroom(link))

    def _create_link(self, link: Link, peer: Link | None, topology: str, secret: str,
                     made: Callable[[Key, str], None], what: str) -> None:
        """KernelHost's create_link: every end born under its temporary name and reported,
        then configured one after the other; a failure leaves the rest where it is."""
        ends = [link] + ([peer] if peer is not None else [])
        for end in ends:
            self._need_namespace(end.namespace, what)
        if (vx := _vxlan(link)) is not None:
            self._need_link(link.namespace, vx.dev, what)  # before anything is made
        temps = [temp_link_name(secret, number) for number in range(len(ends))]
        for end, temp in zip(ends, temps, strict=True):
            if ("link", end.namespace, temp) in self.objects:
                raise FakeKernelError(errno.EEXIST, what)
        for number, (end, temp) in enumerate(zip(ends, temps, strict=True)):
            other = (ends[1 - number].namespace, temps[1 - number]) if len(ends) == 2 else None
            born = self._born(dataclasses.replace(end, mtu=None, mac=None), temp, other)
            self.objects[born.key] = born
            assert born.ident is not None
            made(end.key, born.ident)
        for end, temp in zip(ends, temps, strict=True):
            self._configure_new(end, temp, topology, what)

    def _configure_new(self, end: Link, temp: str, topology: str, what: str) -> None:
        """One RTM_NEWLINK giving a new link its attributes, in do_setlink's order: MAC and
        MTU, then the name (EEXIST when taken: what came before stays applied), alias,
        master, up; then its hairpin mode. The master is looked up before the request."""
        self._need_link(end.namespace, end.master, what)
        key = ("link", end.namespace, temp)
        now = self.objects[key]
        assert isinstance(now, Link)
        if end.mac is not None:
            now = dataclasses.replace(now, mac=end.mac)
        if end.mtu is not None:
            now = self._with_mtu(now, end.mtu, what)
        self.objects[key] = now
        if end.key in self.objects:
            raise FakeKernelError(errno.EEXIST, what)
        del self.objects[key]
        self._renamed(now, end.name)
        now = dataclasses.replace(now, name=end.name, owner=topology, alias=owner_mark(topology))
        if end.master is not None:
            now = dataclasses.replace(now, master=end.master, hairpin=bool(end.hairpin))
        if end.up is not None:
            now = dataclasses.replace(now, up=end.up)
        now = _with_flags(now, end, LINK_FLAGS)
        if end.vlans is not None:
            now = dataclasses.replace(now, vlans=end.vlans)
        self.objects[end.key] = now
        self._follow_ports(end.namespace, end.master)

    def _renamed(self, link: Link, name: str) -> None:
        """What names ``link`` by name (its veth peer) follows it to ``name``, as the kernel's
        references are by ifindex."""
        for key, o in list(self.objects.items()):
            if isinstance(o, Link) and o.peer == (link.namespace, link.name):
                self.objects[key] = dataclasses.replace(
                    o, spec=VethSpec(peer=(link.namespace, name)))

    def _with_mtu(self, link: Link, mtu: int, what: str) -> Link:
        """``link`` with ``mtu``, or EINVAL beyond what it can carry (a VXLAN: its device's
        MTU less its headers). A bridge given an MTU other than its own stops following its
        ports (br_change_mtu: the same MTU again changes nothing)."""
        under = self._link(link.namespace, vx.dev) if (vx := _vxlan(link)) else None
        most = MAX_MTU if under is None or under.mtu is None else \
            under.mtu - _vxlan_headroom(link)
        if not MIN_MTU <= mtu <= most:
            raise FakeKernelError(errno.EINVAL, f"{what}: mtu {mtu}")
        if link.kind == "bridge" and mtu != link.mtu and link.ident is not None:
            self._mtu_set.add(link.ident)
        return dataclasses.replace(link, mtu=mtu)

    def _follow_ports(self, ns: str, bridge: str | None) -> None:
        """A bridge whose MTU nobody set takes the smallest of its ports' (1500 without any),
        as br_mtu_auto_adjust does whenever a port joins, leaves or changes its MTU."""
        now = self._link(ns, bridge)
        if now is None or now.kind != "bridge" or now.ident in self._mtu_set:
            return
        ports = [o.mtu or ETH_DATA_LEN for o in self._links(ns) if o.master == bridge]
        self.objects[now.key] = dataclasses.replace(now, mtu=min(ports, default=ETH_DATA_LEN))

    def _still(self, obj: NetObject, now: NetObject | None) -> bool:
        """Whether ``now`` is the very object ``obj`` was observed as (by identity)."""
        ident = getattr(obj, "ident", None)
        return now is not None and (ident is None or getattr(now, "ident", None) == ident)

    def delete(self, obj: NetObject, topology: str, peer: NetObject | None = None) -> None:
        what = f"delete {obj.describe()}"
        self._change(what)
        if isinstance(obj, NatTable):
            if self._still(obj, self.nat.get((topology, obj.namespace))):
                del self.nat[(topology, obj.namespace)]
        elif isinstance(obj, Namespace):
            now = self.objects.get(obj.key)
            if now is None:
                return
            if not self._still(obj, now):
                # namespaces.delete refuses a namespace someone made again at the name
                raise FileExistsError(errno.EEXIST, f"namespace {obj.namespace} is not the "
                                                    f"one observed: left alone")
            self._delete_namespace(obj.namespace)
        elif isinstance(obj, Link):
            for end in (obj, peer):
                if isinstance(end, Link) and self._still(end, self.objects.get(end.key)):
                    self._delete_link(end.key)
        elif isinstance(obj, (Sysctl, ExternalLink)):
            # a sysctl is restored, never deleted; a link the host owns is never deleted
            raise FakeKernelError(errno.EOPNOTSUPP, what)
        elif isinstance(obj, Address):
            if self.objects.pop(obj.key, None) is not None:
                self._address_gone(obj)
        else:
            self.objects.pop(obj.key, None)

    def _write_nat(self, topology: str, table: NatTable,
                   made: Callable[[Any, str], None]) -> None:
        ident = f"{self._ns_ident(table.namespace)}/{self._new_ident('nft')}"
        self.nat[(topology, table.namespace)] = NatTable(table.namespace, table.rules,
                                                         ident=ident)
        made(table.key, ident)

    def modify(self, before: NetObject | None, after: NetObject,
               changes: dict[str, Any], topology: str, birth: Birth | None = None) -> None:
        what = f"modify {after.describe()}"
        self._change(what)
        if isinstance(after, Sysctl):
            self._write_sysctl(after)
        elif isinstance(after, Qdisc):
            self._write_qdisc(before, after, what)
        elif isinstance(after, NatTable):
            if not self._still(before, self.nat.get((topology, after.namespace))) \
                    if before is not None else False:
                raise FakeKernelError(errno.ENOENT, f"{what}: not the table observed")
            self._write_nat(topology, after,
                            birth.made if birth is not None else (lambda key, ident: None))
        elif isinstance(after, (Link, ExternalLink)):
            self._configure(after, changes, what)
        elif isinstance(after, (Route, Rule, FdbEntry, Neighbor)):
            self._need_link(after.namespace, getattr(after, "link", None), what)
            if isinstance(after, Route):
                # checked before anything changes: a refused replace leaves the route there
                after = self._route_as_kernel(after, RTPROT_NETDECL, what)
            if before is not None:
                self.objects.pop(before.key, None)
            if isinstance(after, Rule):
                after = dataclasses.replace(after, proto=RTPROT_NETDECL)
            self.objects[after.key] = after
        else:
            raise FakeKernelError(errno.EOPNOTSUPP, what)

    def _configure(self, after: Link | ExternalLink, changes: Collection[str],
                   what: str) -> None:
        """KernelHost's configure_link on the link at ``after``'s name: the attributes named
        in ``changes`` that ``after`` specifies (a master of None: out of its bridge)."""
        now = self._link(after.namespace, after.name)
        if now is None:
            raise FakeKernelError(errno.ENODEV, what)
        if "master" in changes:
            self._need_link(after.namespace, after.master, what)
        old_master, was_up = now.master, now.up
        mac = getattr(after, "mac", None)
        if "mac" in changes and mac is not None:
            now = dataclasses.replace(now, mac=mac)
        if "mtu" in changes and after.mtu is not None:
            now = self._with_mtu(now, after.mtu, what)
        if "master" in changes:
            # a port joins with hairpin off; out of a bridge there is no port to have one
            now = dataclasses.replace(now, master=after.master,
                                      hairpin=False if after.master else None)
        stp = after.spec.stp if isinstance(after, Link) and isinstance(after.spec, BridgeSpec) \
            else None
        if "stp" in changes and now.kind == "bridge" and stp is not None:
            now = dataclasses.replace(now, spec=BridgeSpec(stp=stp))
        kind = link_kind(now.kind) if isinstance(after, Link) else None
        if kind is not None and kind.configured_by is not None and isinstance(after, Link) \
                and set(changes) & set(after.settings()):
            # (KernelHost: the kind's configure writes every setting of its own at once)
            now = dataclasses.replace(now, spec=after.spec)
        hairpin = getattr(after, "hairpin", None)
        if "hairpin" in changes and hairpin is not None and now.master:
            now = dataclasses.replace(now, hairpin=hairpin)
        if "up" in changes and after.up is not None:
            now = dataclasses.replace(now, up=after.up)
        now = _with_flags(now, after, [flag for flag in LINK_FLAGS if flag in changes])
        if "vlans" in changes and isinstance(after, Link) and after.vlans is not None:
            now = dataclasses.replace(now, vlans=after.vlans)
        self.objects[now.key] = now
        for bridge in {old_master, now.master}:
            self._follow_ports(now.namespace, bridge)
        self._follow_ports(now.namespace, now.name)  # (a bridge's own MTU, set or not)
        if was_up and not now.up:
            self._went_down(now)

    def _write_sysctl(self, s: Sysctl) -> None:
        if not self._exists(s.namespace):
            # sysctl.write opens /run/netns/NAME to enter the namespace
            raise FileNotFoundError(errno.ENOENT, f"/run/netns/{s.namespace}")
        if s.name not in SYSCTL_DEFAULTS:
            raise SysctlError(f"sysctl {s.name}: no such key in this kernel/namespace")
        self.sysctls[(s.namespace, s.name)] = s.value

    # -- what the kernel drops along -----------------------------------------------------------
    def _route_as_kernel(self, route: Route, proto: int | None, what: str) -> Route:
        """``route`` as the kernel keeps it, written with ``proto``; or the kernel's refusal."""
        self._need_namespace(route.namespace, what)
        ipv6 = route.family == 6
        dev = route.dev
        self._need_link(route.namespace, dev, what)
        if (route.type or "unicast") == "unicast":
            link = self._link(route.namespace, dev)
            if link is not None and not link.up:
                raise FakeKernelError(errno.ENETDOWN, what)
            if route.onlink and dev is None:
                raise FakeKernelError(errno.ENODEV, f"{what}: onlink needs a device")
            if route.via and not route.onlink:
                dev = self._gateway_link(route.namespace, route.via, dev)
                if dev is None:
                    raise FakeKernelError(errno.EHOSTUNREACH if ipv6 else errno.ENETUNREACH,
                                          f"{what}: gateway {route.via} is not on-link")
        if route.src and not any(o.cidr.split("/")[0] == route.src
                                 for o in self._addresses(route.namespace)):
            raise FakeKernelError(errno.EINVAL, f"{what}: {route.src} is no local address")
        scope = "global" if ipv6 else route.scope or (
            "link" if not route.via and route.type in (None, "unicast") else "global")
        return dataclasses.replace(
            route, dev=dev, onlink=bool(route.onlink), scope=scope, proto=proto,
            metric=route.metric or (IPV6_DEFAULT_METRIC if ipv6 else 0))

    def _addresses(self, ns: str) -> list[Address]:
        return [o for o in self.objects.values() if isinstance(o, Address) and o.namespace == ns]

    def _gateway_link(self, ns: str, gateway: str, dev: str | None) -> str | None:
        """The up link (``dev`` when given) with a connected network holding ``gateway``: an
        address's, or a route's through a device without a gateway of its own."""
        ip = ipaddress.ip_address(gateway)
        up = {o.name for o in self._links(ns) if o.up}
        networks = [(o.link, ipaddress.ip_interface(o.cidr).network) for o in self._addresses(ns)]
        networks += [(o.dev, ipaddress.ip_network(o.to)) for o in self.objects.values()
                     if isinstance(o, Route) and o.namespace == ns and o.dev and not o.via
                     and (o.type or "unicast") == "unicast"]
        for link, network in networks:
            if link in up and (dev is None or link == dev) and ip in network:
                return link
        return None

    def _address_gone(self, address: Address) -> None:
        """An IPv4 address takes the routes preferring it as source along, and a link's last
        IPv4 address every IPv4 route through it (fib_disable_ip); an IPv6 route preferring a
        deleted address keeps going, without a preferred source."""
        ip = address.cidr.split("/")[0]
        v6 = ":" in ip
        last = not v6 and not any(":" not in o.cidr for o in self._addresses(address.namespace)
                                  if o.link == address.link)
        for key, o in list(self.objects.items()):
            if not isinstance(o, Route) or o.namespace != address.namespace:
                continue
            if v6 and o.src == ip:
                self.objects[key] = dataclasses.replace(o, src=None)
            elif not v6 and (o.src == ip or (last and o.family == 4 and o.dev == address.link)):
                del self.objects[key]

    def _went_down(self, link: Link) -> None:
        """A link going down loses the routes through it (an IPv4 host-scope one stays), its
        IPv6 addresses (keep_addr_on_down is off) and its neighbour entries."""
        for key, o in list(self.objects.items()):
            if o.namespace != link.namespace:
                continue
            if isinstance(o, Route) and o.dev == link.name and not (
                    o.family == 4 and o.scope == "host"):
                del self.objects[key]
            elif isinstance(o, Neighbor) and o.link == link.name:
                del self.objects[key]
        for o in self._addresses(link.namespace):
            if o.link == link.name and ":" in o.cidr:
                del self.objects[o.key]
                self._address_gone(o)

    def _delete_link(self, key: Key) -> None:
        link = self.objects.pop(key, None)
        if not isinstance(link, Link):
            return
        if link.kind == "veth" and link.peer is not None:
            peer = self.objects.pop(("link", *link.peer), None)
            if isinstance(peer, Link):
                self._forget_link(peer)
        self._forget_link(link)

    def _forget_link(self, link: Link) -> None:
        """What the kernel drops with a link: its addresses (and what they take along), the
        routes through it, its FDB/neighbour entries, and its place as a master."""
        ns, name = link.namespace, link.name
        self._mtu_set.discard(link.ident or "")
        for key, o in list(self.objects.items()):
            if o.namespace != ns:
                continue
            if isinstance(o, (FdbEntry, Neighbor)) and o.link == name:
                del self.objects[key]
            elif isinstance(o, Route) and o.dev == name:
                del self.objects[key]
            elif isinstance(o, Link) and o.master == name:
                self.objects[key] = dataclasses.replace(o, master=None, hairpin=None)
        for o in self._addresses(ns):
            if o.link == name:
                del self.objects[o.key]
                self._address_gone(o)
        self._follow_ports(ns, link.master)

    def _delete_namespace(self, ns: str) -> None:
        for key, o in list(self.objects.items()):
            if isinstance(o, Link) and o.namespace != ns and o.peer and o.peer[0] == ns:
                self._delete_link(key)
        for key in [k for k, o in self.objects.items() if o.namespace == ns]:
            del self.objects[key]
        for key in [k for k in self.sysctls if k[0] == ns]:
            del self.sysctls[key]
        for key in [k for k in self.nat if k[1] == ns]:
            del self.nat[key]

    def set_alias(self, link: NetObject, alias: str | None) -> None:
        what = f"set the alias of {link.describe()}"
        self._change(what)
        now = self.objects.get(link.key)
        if not isinstance(now, Link) or not self._still(link, now):
            raise FakeKernelError(errno.ENODEV, f"{what}: not the link observed")
        self.objects[link.key] = dataclasses.replace(now, owner=owner_of_alias(alias),
                                                     alias=alias or None)

    def restore_route(self, route: NetObject) -> None:
        what = f"restore {route.describe()}"
        self._change(what)
        assert isinstance(route, Route) and route.proto is not None
        # replaced at its key, with the protocol given
        self.objects[route.key] = self._route_as_kernel(route, route.proto, what)

    def remove_placeholders(self, proven: Mapping[str, str]) -> list[str]:
        return []  # no placeholder is ever left: a create here cannot crash half-way

    def refresh(self, namespaces: Collection[str] | None = None) -> None:
        pass  # nothing is cached: every observe reads the objects as they are

    def reconnect(self) -> None:
        pass

    def close(self) -> None:
        pass


def _vxlan(link: Link) -> Vxlan | None:
    return link.spec if isinstance(link.spec, Vxlan) else None


def _spec_as_born(link: Link, peer: tuple[str, str] | None) -> LinkSpec | None:
    """What the kernel reports of a new link's kind: a bridge's STP state (off unless asked),
    a veth's peer as named now."""
    if link.kind == "bridge":
        return BridgeSpec(stp=isinstance(link.spec, BridgeSpec) and bool(link.spec.stp))
    if link.kind == "veth":
        return VethSpec(peer=peer)
    return link.spec


def _vxlan_headroom(link: Link) -> int:
    local = vx.local if (vx := _vxlan(link)) else None
    return VXLAN_HEADROOM[6 if local and ":" in local else 4]


def _without_identity(obj: NetObject) -> NetObject:
    """``obj`` without what the kernel never gives twice (ifindexes, identities)."""
    if isinstance(obj, Link):
        return dataclasses.replace(obj, ifindex=None, ident=None)
    if isinstance(obj, (Namespace, NatTable)):
        return dataclasses.replace(obj, ident=None)
    return obj


def _with_flags(now: Link, asked: Link | ExternalLink, flags: Collection[str]) -> Link:
    """``now`` with the interface flags of ``flags`` that ``asked`` says, as the kernel reads
    them back: on, or None for off (model.LINK_FLAGS)."""
    promisc, allmulti = (getattr(asked, flag) if flag in flags else getattr(now, flag)
                         for flag in LINK_FLAGS)
    return dataclasses.replace(now, promisc=promisc or None, allmulti=allmulti or None)
