"""The real Host: the kernel through netlink (netlink.py, rtnl.py), namespaces, sysctl files
and nftables. Per kind, one writer says how a model object is created, deleted and modified.
"""

from __future__ import annotations

import dataclasses
import errno
import secrets
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from netdecl.backends import namespaces, qdiscs, sysctl
from netdecl.backends.host import (
    ALTERNATIVES,
    BEING_REMOVED,
    Birth,
    NatHandles,
    Scope,
    temp_namespace_name,
)
from netdecl.backends.netlink import Kernel, KernelError
from netdecl.backends.rtnl import RtnlError, RtnlSocket
from netdecl.links import EXTERNAL, link_kind
from netdecl.model import (
    INGRESS,
    LINK_FLAGS,
    ROOT,
    Address,
    ExternalLink,
    Link,
    Namespace,
    NatTable,
    NetObject,
    Qdisc,
    Route,
    Sysctl,
    qualify,
)
from netdecl.tc.qdiscs import ROOT_HANDLES, TC_H_INGRESS, TC_H_ROOT, file_form


@dataclass(frozen=True)
class _Writer:
    create: Callable[[Kernel, Any, str, Any, Birth], None]  # (kernel, obj, topology, peer, ...)
    delete: Callable[[Kernel, Any, str, Any], None]
    # (kernel, before, after, changes, topology, birth)
    modify: Callable[[Kernel, Any, Any, dict[str, Any], str, Birth], None]


def _no_modify(kind: str) -> Callable[..., None]:
    def refuse(*_: Any) -> None:
        raise KernelError(errno.EOPNOTSUPP, f"a {kind} cannot be modified in place")

    return refuse


def _create_namespace(k: Kernel, ns: Namespace, topology: str, peer: Any, birth: Birth) -> None:
    k.create_namespace(ns.namespace, temp_namespace_name(birth.secret),
                       lambda ident: birth.made(ns.key, ident))


def _create_link(k: Kernel, link: Link, topology: str, peer: Link | None,
                 birth: Birth) -> None:
    kind = link_kind(link.kind)
    source = kind.taken(link) if kind is not None else None
    if source is not None:  # a host's link moved in (a host-device), not made
        k.take_link(link, source, topology, birth)
    else:
        k.create_link(link, topology, peer, birth)


def _delete_link(k: Kernel, link: Link, topology: str, peer: Link | None) -> None:
    back = link.spec.given_back() if link.spec is not None else None
    if back is not None:  # a host's link taken (a host-device): given back, never deleted
        k.give_back(link, back)
        return
    ends = [end for end in (link, peer) if end is not None]
    living = [end for end in ends if not k.deleted_namespace(end.namespace)]
    if len(living) < len(ends):
        # The namespace of one end was just deleted: the kernel removes the pair with it, in
        # one batch for all the namespaces deleted together, far faster than an RTM_DELLINK
        # (and an RCU grace period) per veth. Wait for the surviving end to go.
        if not living:
            return  # both ends' namespaces are gone, and the pair with them
        survivor = living[0]
        if k.await_link_gone(survivor.namespace, survivor.name, survivor.ifindex):
            return
    for end in living:  # (the end in a deleted namespace went with it)
        k.delete_link(end.namespace, end.name, end.ifindex)


def _never(what: str) -> Callable[..., None]:
    def refuse(*_: Any) -> None:
        raise KernelError(errno.EOPNOTSUPP, f"netdecl never {what} an external link")

    return refuse


def _configure_external(k: Kernel, before: Any, after: ExternalLink, changes: dict[str, Any],
                        topology: str, birth: Birth | None) -> None:
    """Set (or put back) the attributes named in ``changes`` on a link the host owns; no
    owner mark: it stays the host's."""
    # a flag put back to None was off (model.LINK_FLAGS): written as off
    promisc, allmulti = (bool(getattr(after, flag)) if flag in changes else None
                         for flag in LINK_FLAGS)
    link = Link(after.namespace, after.name, kind=EXTERNAL, up=after.up, mtu=after.mtu,
                master=after.master, promisc=promisc, allmulti=allmulti)
    k.configure_link(link, topology, changes=changes.keys())


def _delete_address(k: Kernel, address: Address, topology: str) -> None:
    """Delete ``address``; for IPv4 on a link netdecl made, first let the link promote a
    secondary address of the same subnet when the primary goes. Without promote_secondaries the
    kernel deletes every secondary with its primary, and the addresses the topology still
    declares vanish with it (the plan would never converge). A link that does not carry the
    topology's mark (an external NIC netdecl added an address to) keeps its settings."""
    if k.namespace_gone(address.namespace):
        return  # it went with its namespace
    if ":" not in address.cidr and k.link_marked(address.namespace, address.link, topology):
        try:
            sysctl.write(address.namespace,
                         f"net/ipv4/conf/{address.link}/promote_secondaries", "1")
        except sysctl.SysctlError:
            pass  # the link is gone (its addresses with it): the delete says what is left
    k.delete_address(address)


def _write_sysctl(k: Kernel, before: Any, after: Sysctl, changes: Any, topology: str,
                  birth: Birth) -> None:
    sysctl.write(after.namespace, after.name, after.value)


def nat_handles(table: NatTable | None) -> NatHandles | None:
    """nft's handles of an observed table, from its identity (see KernelHost.observe)."""
    found = NatHandles.of(table.ident if table is not None else None)
    return found[1] if found is not None else None


def _nat_identity(k: Kernel, ns: str, handles: NatHandles) -> str:
    return f"{k.namespace_identity(ns)}/{handles.identity()}"


def _create_nat(k: Kernel, table: NatTable, topology: str, birth: Birth) -> None:
    from netdecl.backends import nftables  # only topologies with NAT need nft at all

    handles = nftables.create(topology, table.namespace, table.rules or ())
    birth.made(table.key, _nat_identity(k, table.namespace, handles))


def _replace_nat(k: Kernel, before: NatTable | None, table: NatTable, topology: str,
                 birth: Birth) -> None:
    from netdecl.backends import nftables

    handles = nftables.replace(topology, table.namespace, table.rules or (),
                               nat_handles(before))
    birth.made(table.key, _nat_identity(k, table.namespace, handles))


def _delete_nat(topology: str, table: NatTable) -> None:
    from netdecl.backends import nftables

    nftables.delete(topology, table.namespace, nat_handles(table))


def _write_qdisc(k: Kernel, before: Qdisc | None, after: Qdisc) -> None:
    """A link's root chain replaced in place, or the qdisc from before netdecl put back."""
    ns = after.namespace
    what = f"{'restore' if after.original else 'set'} {after.describe()}"
    try:
        index = k.index_of(ns, after.link)
        sock = k.rtnl(ns)
        if after.direction == INGRESS:
            if before is not None:
                qdiscs.delete_ingress(sock, index)  # ours: the planner proved it
            if not after.original and after.redirect:
                qdiscs.write_ingress(sock, index, k.index_of(ns, after.redirect))
        elif after.original and not (after.stages and after.handle in ROOT_HANDLES):
            # what was there before netdecl (or someone's, in a snapshot): as it was dumped
            qdiscs.restore(sock, index, after.original)
        else:
            # netdecl's chain, declared or from a rollback's snapshot: every stage of it (the
            # dump of the root alone would leave a netem under a tbf as the apply left it)
            qdiscs.write_egress(sock, index, before, after)
    except RtnlError as exc:
        raise KernelError(exc.errno or errno.EIO, what) from None


def _readd(add: Callable[[Kernel, Any], None], remove: Callable[[Kernel, Any], None]
           ) -> Callable[[Kernel, Any, Any, Any, str, Birth], None]:
    """modify for objects the kernel cannot change in place: delete the old, add the new."""

    def modify(k: Kernel, before: Any, after: Any, changes: Any, topology: str,
               birth: Birth) -> None:
        if before is not None:
            remove(k, before)
        add(k, after)

    return modify


WRITERS: dict[str, _Writer] = {
    "namespace": _Writer(
        create=_create_namespace,
        delete=lambda k, o, t, p: k.delete_namespace(o.namespace, o.ident),
        modify=_no_modify("namespace")),
    "link": _Writer(
        create=_create_link,
        delete=_delete_link,
        modify=lambda k, b, a, c, t, _: k.configure_link(a, t, changes=c.keys())),
    "external": _Writer(
        create=_never("creates"),
        delete=_never("deletes"),
        modify=_configure_external),
    "address": _Writer(
        create=lambda k, o, t, p, b: k.add_address(o, announce=b.announce),
        delete=lambda k, o, t, p: _delete_address(k, o, t),
        modify=_no_modify("address")),
    # routes and neighbours have an in-place replace; rules and fdb entries do not
    "route": _Writer(
        create=lambda k, o, t, p, _: k.replace_route(o),
        delete=lambda k, o, t, p: k.delete_route(o),
        modify=lambda k, b, a, c, t, _: k.replace_route(a)),
    "rule": _Writer(
        create=lambda k, o, t, p, _: k.add_rule(o),
        delete=lambda k, o, t, p: k.delete_rule(o),
        modify=_readd(lambda k, o: k.add_rule(o), lambda k, o: k.delete_rule(o))),
    "fdb": _Writer(
        create=lambda k, o, t, p, _: k.add_fdb(o),
        delete=lambda k, o, t, p: k.delete_fdb(o),
        modify=_readd(lambda k, o: k.add_fdb(o), lambda k, o: k.delete_fdb(o))),
    "neighbor": _Writer(
        create=lambda k, o, t, p, _: k.replace_neighbor(o),
        delete=lambda k, o, t, p: k.delete_neighbor(o),
        modify=lambda k, b, a, c, t, _: k.replace_neighbor(a)),
    "sysctl": _Writer(
        create=lambda k, o, t, p, _: sysctl.write(o.namespace, o.name, o.value),
        delete=_no_modify("sysctl"),  # a sysctl is never deleted: its old value is restored
        modify=_write_sysctl),
    "nat": _Writer(
        create=lambda k, o, t, p, b: _create_nat(k, o, t, b),
        delete=lambda k, o, t, p: _delete_nat(t, o),
        modify=lambda k, b, a, c, t, birth: _replace_nat(k, b, a, t, birth)),
    # a link always has a root qdisc: netdecl replaces it, and puts the old one back
    "qdisc": _Writer(
        create=lambda k, o, t, p, _: _write_qdisc(k, None, o),
        delete=_no_modify("qdisc"),
        modify=lambda k, b, a, c, t, _: _write_qdisc(k, b, a)),
}


def _read_qdiscs(kernel: Kernel, ns: str, links: list[Link],
                 wanted: set[tuple[str, str]]) -> list[Qdisc]:
    sock = kernel.rtnl(ns)
    msgs = qdiscs.dump(sock)
    names = {link.ifindex: link.name for link in links if link.ifindex is not None}
    found = []
    for link in links:
        if (ns, link.name) in wanted and link.ifindex is not None:
            for qdisc in (qdiscs.egress_of(ns, link.name, link.ifindex, msgs),
                          qdiscs.ingress_of(sock, ns, link.name, link.ifindex, msgs, names)):
                if qdisc is not None:
                    found.append(qdisc)
    return found


def _written_qdiscs(sock: RtnlSocket, ns: str, msgs: list[qdiscs.QdiscMsg],
                    names: dict[int, str]) -> set[tuple[int, int]]:
    """(ifindex, handle) of the qdiscs `show` writes as their link's traffic control
    (engine/observer.observe_all: a root chain tc/ can say, an ingress redirect): the others
    are named, not written."""
    out = set()
    for index, link in names.items():
        egress = qdiscs.egress_of(ns, link, index, msgs)
        if egress is not None and egress.handle and egress.stages and file_form(egress.stages):
            out.add((index, egress.handle))
            out.update((index, m.handle) for m in msgs
                       if m.index == index and m.parent == egress.handle | 1)
        ingress = qdiscs.ingress_of(sock, ns, link, index, msgs, names)
        if ingress is not None and ingress.redirect and ingress.handle is not None:
            out.add((index, ingress.handle))
    return out


def _no_birth() -> Birth:
    """For a caller that does not need to know what a create made."""
    return Birth(secrets.token_hex(6), lambda key, ident: None)


class KernelHost:
    """The Host protocol (host.py) on this machine's kernel."""

    def __init__(self) -> None:
        self.kernel = Kernel()
        self._kinds_present: set[str] = set()  # link kinds the kernel was found to have

    # -- reading -------------------------------------------------------------------------------
    def named_namespaces(self) -> list[str]:
        return namespaces.list_named()

    def unmodelled(self, namespaces: list[str]) -> list[str]:
        out = []
        for ns in namespaces:
            sock = self.kernel.rtnl(ns)
            # handle 0: the kernel's own defaults (noqueue, pfifo_fast... as a link comes up)
            msgs = [m for m in qdiscs.dump(sock) if m.handle != 0]
            names = {m.index: self.kernel.name_of(ns, m.index) or f"#{m.index}" for m in msgs}
            written = _written_qdiscs(sock, ns, msgs, names)
            for m in msgs:
                if (m.index, m.handle) in written:
                    continue
                where = {TC_H_ROOT: "root", TC_H_INGRESS: "ingress"}.get(
                    m.parent, f"parent {m.parent >> 16:x}:{m.parent & 0xFFFF:x}")
                out.append(f"qdisc {m.kind} {m.handle >> 16:x}: ({where}) on link "
                           f"{qualify(ns, names[m.index])}: the file cannot say it")
        return out

    def missing_kinds(self, kinds: Collection[str]) -> list[str]:
        from netdecl.backends.kindprobe import missing_modules

        asked = [kind for name in kinds
                 if name not in self._kinds_present and (kind := link_kind(name)) is not None]
        missing = [kind.name for kind in missing_modules(asked, lambda: self.kernel.rtnl(ROOT))]
        # a module once there stays (unloading one under its links is refused): ask once
        self._kinds_present.update(kind.name for kind in asked if kind.name not in missing)
        return missing

    def observe(self, topology: str, scope: Scope) -> list[NetObject]:
        """Each namespace in scope read once per object type (one netlink dump each)."""
        kernel = self.kernel
        seen: list[NetObject] = []
        existing = set(namespaces.list_named())
        # the root last: by then each namespace's links are cached, so the root's veth peers
        # resolve without another dump per namespace
        present = [ns for ns in scope.namespaces if ns != ROOT and ns in existing]
        if ROOT in scope.namespaces:
            present.append(ROOT)
        # where a veth's peer may live: the namespaces in scope first (they nearly always hold
        # it, so the netnsid look-up stops there), then any other, to name a peer outside it
        in_scope = [ns for ns in present if ns != ROOT]
        all_named = in_scope + sorted(existing - set(in_scope))
        kernel.drop_link_dumps()
        kernel.open_sockets(present)
        values = sysctl.read_everywhere({ns: sorted(scope.sysctls[ns]) for ns in present
                                         if scope.sysctls.get(ns)})
        for ns in present:
            ns_ident = kernel.namespace_identity(ns)
            if ns != ROOT:
                seen.append(Namespace(ns, ident=ns_ident))
            links = kernel.read_links(ns, all_named, ns_ident)
            if scope.bridge_vlans:
                vlans = kernel.rtnl(ns).bridge_vlans()
                links = [dataclasses.replace(link, vlans=vlans.get(link.ifindex or 0))
                         for link in links]
            seen.extend(links)
            seen.extend(kernel.read_addresses(ns, link_local=False))  # never managed
            seen.extend(kernel.read_routes(ns, kernel_made=scope.kernel_routes))
            if any(where == ns for where, _ in scope.qdiscs):
                seen.extend(_read_qdiscs(kernel, ns, links, scope.qdiscs))
            if scope.rules:
                seen.extend(kernel.read_rules(ns))
            if scope.fdb:
                names = {link.name for link in links}
                seen.extend(kernel.read_fdb(ns, names))
                seen.extend(kernel.read_neighbors(ns, names))
            for name, value in values.get(ns, {}).items():
                if value is not None:
                    seen.append(Sysctl(ns, name, value))
            if scope.nat and (scope.nat_namespaces is None or ns in scope.nat_namespaces):
                from netdecl.backends import nftables  # imported only when a topology has NAT

                table = nftables.read(topology, ns)
                if table is not None:
                    seen.append(dataclasses.replace(table, ident=f"{ns_ident}/{table.ident}"))
        return seen

    # -- writing -------------------------------------------------------------------------------
    def create(self, obj: NetObject, topology: str, peer: NetObject | None = None,
               birth: Birth | None = None) -> None:
        WRITERS[obj.TYPE].create(self.kernel, obj, topology, peer, birth or _no_birth())

    def delete(self, obj: NetObject, topology: str, peer: NetObject | None = None) -> None:
        WRITERS[obj.TYPE].delete(self.kernel, obj, topology, peer)

    def modify(self, before: NetObject | None, after: NetObject,
               changes: dict[str, Any], topology: str, birth: Birth | None = None) -> None:
        WRITERS[after.TYPE].modify(self.kernel, before, after, changes, topology,
                                   birth or _no_birth())

    def missing_qdisc_kinds(self, kinds: Collection[str]) -> dict[str, str]:
        return qdiscs.missing_kinds(kinds)

    def set_alias(self, link: NetObject, alias: str | None) -> None:
        assert isinstance(link, Link)
        self.kernel.set_alias(link, alias)

    def restore_route(self, route: NetObject) -> None:
        assert isinstance(route, Route) and route.proto is not None
        self.kernel.replace_route(route, proto=route.proto)

    def remove_placeholders(self, proven: Mapping[str, str]) -> list[str]:
        problems = []
        for name, ident in sorted(proven.items()):
            try:
                if not namespaces.remove_placeholder(name, ident) and \
                        BEING_REMOVED in ident.split(ALTERNATIVES) and namespaces.leftover(name):
                    problems.append(f"{namespaces.netns_path(name)} holds no namespace but is "
                                    f"not the empty file netdecl's removal leaves: not removed "
                                    f"(namespace {name} cannot be made until it is gone)")
            except OSError as exc:
                problems.append(f"remove stale namespace file {namespaces.netns_path(name)}: "
                                f"{exc}")
        return problems

    # -- connections ---------------------------------------------------------------------------
    def refresh(self, namespaces: Collection[str] | None = None) -> None:
        self.kernel.reset_caches(namespaces)

    def reconnect(self) -> None:
        self.kernel.close()
        self.kernel = Kernel()

    def close(self) -> None:
        self.kernel.close()

    def __enter__(self) -> KernelHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["KernelHost", "WRITERS"]
