"""An in-memory Host (netdecl/backends/host.py) with the kernel behaviour the engine relies on.

Links get a MAC, an MTU and an ifindex when created and carry their owner mark (as their
alias); routes and rules made through it carry netdecl's protocol; deleting a link takes its
veth peer, its addresses, the routes through it and its FDB/neighbour entries along; deleting
a namespace takes everything in it (and the veth ends elsewhere whose peer was in it).
``arm(n)`` makes the n-th change from then on fail once, as if the kernel had refused it.

Identities behave like the kernel's: every namespace, link and NAT table made (by netdecl or
by ``add_foreign``) gets one that is never reused; a create reports it through its Birth; a
create at a taken name fails (EEXIST) and a delete of an object whose identity is no longer
the one at its name touches nothing. ``race(n, fn)`` runs ``fn`` just before the n-th change
from then on (someone else acting at the worst moment).
"""

from __future__ import annotations

import copy
import dataclasses
import errno
from collections.abc import Callable, Mapping
from typing import Any

from netdecl.backends.host import Birth, Scope, owner_mark, owner_of_alias
from netdecl.backends.sysctl import SysctlError
from netdecl.errors import NetdeclError
from netdecl.links.bridge import BridgeSpec
from netdecl.model import (
    ROOT,
    RTPROT_NETDECL,
    Address,
    FdbEntry,
    Key,
    Link,
    Namespace,
    NatTable,
    Neighbor,
    NetObject,
    Route,
    Rule,
    Sysctl,
)

SYSCTL_DEFAULTS = {"net.ipv4.ip_forward": "0", "net.ipv4.conf.all.rp_filter": "2",
                   "net.ipv6.conf.all.forwarding": "0"}


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
                "nat": {k: repr(_without_identity(v)) for k, v in sorted(self.nat.items())}}

    def add_foreign(self, *objs: NetObject, topology: str = "") -> None:
        """Objects someone else made (no owner mark unless a Link names one - a forged mark -,
        the kernel's protocol); a NatTable is put under ``topology``'s table name."""
        for o in objs:
            if isinstance(o, Link):
                o = self._as_created(o, owner=o.owner or owner_of_alias(o.alias),
                                     alias=o.alias)
            elif isinstance(o, Namespace):
                o = dataclasses.replace(o, ident=self._new_ident("ns"))
            elif isinstance(o, NatTable):
                self.nat[(topology, o.namespace)] = dataclasses.replace(
                    o, ident=f"{self._ns_ident(o.namespace)}/{self._new_ident('nft')}")
                continue
            self.objects[o.key] = o

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
            for name in sorted(scope.sysctls.get(ns, ())):
                value = self._sysctl(ns, name)
                if value is not None:
                    seen.append(Sysctl(ns, name, value))
            if scope.nat and (scope.nat_namespaces is None or ns in scope.nat_namespaces):
                table = self.nat.get((topology, ns))
                if table is not None:
                    seen.append(table)
        return seen

    def _sysctl(self, ns: str, name: str) -> str | None:
        return self.sysctls.get((ns, name), SYSCTL_DEFAULTS.get(name))

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

    def _as_created(self, link: Link, owner: str | None, alias: str | None = None) -> Link:
        self._next_index += 1
        return dataclasses.replace(
            link, owner=owner, alias=alias or (owner_mark(owner) if owner else None),
            ifindex=self._next_index,
            ident=f"{self._ns_ident(link.namespace)}/if{self._next_index}",
            mac=link.mac or f"02:00:00:00:{self._next_index // 256:02x}:"
                            f"{self._next_index % 256:02x}",
            mtu=link.mtu or 1500, up=True if link.up is None else link.up,
            spec=(BridgeSpec(stp=isinstance(link.spec, BridgeSpec) and bool(link.spec.stp))
                  if link.kind == "bridge" else link.spec),
            hairpin=(bool(link.hairpin) if link.master else None))

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
        if obj.key in self.objects and not isinstance(obj, (Address, Route, Neighbor)):
            raise FakeKernelError(errno.EEXIST, what)
        if isinstance(obj, Namespace):
            self.objects[obj.key] = dataclasses.replace(obj, ident=self._new_ident("ns"))
            made(obj.key, self.objects[obj.key].ident)
            return
        self._need_namespace(obj.namespace, what)
        if isinstance(obj, Link):
            ends = [obj] + ([peer] if isinstance(peer, Link) else [])
            for end in ends:
                self._need_namespace(end.namespace, what)
                if end.key in self.objects:
                    raise FakeKernelError(errno.EEXIST, what)
                self._need_link(end.namespace, end.master, what)
            for end in ends:
                self.objects[end.key] = created = self._as_created(end, topology)
                assert created.ident is not None
                made(end.key, created.ident)
            return
        self._need_link(obj.namespace, getattr(obj, "link", None) or getattr(obj, "dev", None),
                        what)
        if isinstance(obj, (Route, Rule)):
            obj = dataclasses.replace(obj, proto=RTPROT_NETDECL)
        self.objects[obj.key] = obj

    def _still(self, obj: NetObject, now: NetObject | None) -> bool:
        """Whether ``now`` is the very object ``obj`` was observed as (by identity)."""
        ident = getattr(obj, "ident", None)
        return now is not None and (ident is None or getattr(now, "ident", None) == ident)

    def delete(self, obj: NetObject, topology: str, peer: NetObject | None = None) -> None:
        self._change(f"delete {obj.describe()}")
        if isinstance(obj, NatTable):
            if self._still(obj, self.nat.get((topology, obj.namespace))):
                del self.nat[(topology, obj.namespace)]
        elif isinstance(obj, Namespace):
            if self._still(obj, self.objects.get(obj.key)):
                self._delete_namespace(obj.namespace)
        elif isinstance(obj, Link):
            for end in (obj, peer):
                if isinstance(end, Link) and self._still(end, self.objects.get(end.key)):
                    self._delete_link(end.key)
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
        elif isinstance(after, NatTable):
            if not self._still(before, self.nat.get((topology, after.namespace))) \
                    if before is not None else False:
                raise FakeKernelError(errno.ENOENT, f"{what}: not the table observed")
            self._write_nat(topology, after,
                            birth.made if birth is not None else (lambda key, ident: None))
        elif isinstance(after, Link):
            now = self.objects.get(after.key)
            if not isinstance(now, Link):
                raise FakeKernelError(errno.ENODEV, what)
            self._need_link(after.namespace, after.master if "master" in changes else None,
                            what)
            settings = after.settings()
            fields = {k: getattr(after, k) for k in changes if k not in settings}
            if set(changes) & set(settings):  # the kind's own: the spec carries them
                fields["spec"] = after.spec
            self.objects[after.key] = dataclasses.replace(now, **fields)
        elif isinstance(after, (Route, Rule, FdbEntry, Neighbor)):
            self._need_link(after.namespace,
                            getattr(after, "link", None) or getattr(after, "dev", None), what)
            if before is not None:
                self.objects.pop(before.key, None)
            if isinstance(after, (Route, Rule)):
                after = dataclasses.replace(after, proto=RTPROT_NETDECL)
            self.objects[after.key] = after
        else:
            raise FakeKernelError(errno.EOPNOTSUPP, what)

    def _write_sysctl(self, s: Sysctl) -> None:
        if not self._exists(s.namespace) or s.name not in SYSCTL_DEFAULTS:
            raise SysctlError(f"sysctl {s.name}: no such key in this kernel/namespace")
        self.sysctls[(s.namespace, s.name)] = s.value

    def _delete_link(self, key: Key) -> None:
        link = self.objects.pop(key, None)
        if not isinstance(link, Link):
            return
        if link.peer is not None:
            self.objects.pop(("link", *link.peer), None)
            self._forget_link(*link.peer)
        self._forget_link(link.namespace, link.name)

    def _forget_link(self, ns: str, name: str) -> None:
        """What the kernel drops with a link: its addresses, the routes through it, its
        FDB/neighbour entries, and its place as a master."""
        for key, o in list(self.objects.items()):
            if o.namespace != ns:
                continue
            if isinstance(o, (Address, FdbEntry, Neighbor)) and o.link == name:
                del self.objects[key]
            elif isinstance(o, Route) and o.dev == name:
                del self.objects[key]
            elif isinstance(o, Link) and o.master == name:
                self.objects[key] = dataclasses.replace(o, master=None, hairpin=None)

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
        self._need_link(route.namespace, route.dev, what)
        self.objects[route.key] = route  # replaced at its key, with the protocol given

    def remove_placeholders(self, proven: Mapping[str, str]) -> list[str]:
        return []

    def refresh(self, namespaces=None) -> None:
        pass

    def reconnect(self) -> None:
        pass

    def close(self) -> None:
        pass


def _without_identity(obj: NetObject) -> NetObject:
    """``obj`` without what the kernel never gives twice (ifindexes, identities)."""
    if isinstance(obj, Link):
        return dataclasses.replace(obj, ifindex=None, ident=None)
    if isinstance(obj, (Namespace, NatTable)):
        return dataclasses.replace(obj, ident=None)
    return obj
