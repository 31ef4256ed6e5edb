"""The real Host: the kernel through netlink (netlink.py, rtnl.py), namespaces, sysctl files
and nftables. Per kind, one writer says how a model object is created, deleted and modified.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from netdecl.backends import namespaces, sysctl
from netdecl.backends.host import Scope
from netdecl.backends.netlink import Kernel, KernelError
from netdecl.model import ROOT, ExternalLink, Link, Namespace, NatTable, NetObject, Sysctl


@dataclass(frozen=True)
class _Writer:
    create: Callable[[Kernel, Any, str, Any], None]  # (kernel, obj, topology, peer)
    delete: Callable[[Kernel, Any, str, Any], None]
    modify: Callable[[Kernel, Any, Any, dict[str, Any], str], None]  # (k, before, after, ...)


def _no_modify(kind: str) -> Callable[..., None]:
    def refuse(*_: Any) -> None:
        raise KernelError(95, f"a {kind} cannot be modified in place")  # EOPNOTSUPP

    return refuse


def _delete_link(k: Kernel, link: Link, topology: str, peer: Link | None) -> None:
    ends = [end for end in (link, peer) if end is not None]
    dying = [end for end in ends if k.deleted_namespace(end.namespace)]
    if dying and len(dying) < len(ends):
        # The namespace of one end was just deleted: the kernel removes the pair with it, in
        # one batch for all the namespaces deleted together, far faster than an RTM_DELLINK
        # (and an RCU grace period) per veth. Wait for the surviving end to go.
        survivor = next(end for end in ends if end not in dying)
        if k.await_link_gone(survivor.namespace, survivor.name):
            return
    for end in ends:
        k.delete_link(end.namespace, end.name)


def _never(what: str) -> Callable[..., None]:
    def refuse(*_: Any) -> None:
        raise KernelError(95, f"netdecl never {what} an external link")  # EOPNOTSUPP

    return refuse


def _configure_external(k: Kernel, before: Any, after: ExternalLink, changes: dict[str, Any],
                        topology: str) -> None:
    """Set (or put back) the attributes named in ``changes`` on a link the host owns; no
    owner mark: it stays the host's."""
    link = Link(after.namespace, after.name, kind="external", up=after.up, mtu=after.mtu,
                master=after.master)
    k.configure_link(link, topology, changes=changes.keys())


def _write_sysctl(k: Kernel, before: Any, after: Sysctl, changes: Any, topology: str) -> None:
    sysctl.write(after.namespace, after.name, after.value)


def _replace_nat(topology: str, table: NatTable) -> None:
    from netdecl.backends import nftables  # only topologies with NAT need nft at all

    nftables.replace(topology, table.namespace, table.rules or ())


def _delete_nat(topology: str, table: NatTable) -> None:
    from netdecl.backends import nftables

    nftables.delete(topology, table.namespace)


def _readd(add: Callable[[Kernel, Any], None], remove: Callable[[Kernel, Any], None]):
    """modify for objects the kernel cannot change in place: delete the old, add the new."""

    def modify(k: Kernel, before: Any, after: Any, changes: Any, topology: str) -> None:
        if before is not None:
            remove(k, before)
        add(k, after)

    return modify


WRITERS: dict[str, _Writer] = {
    "namespace": _Writer(
        create=lambda k, o, t, p: k.create_namespace(o.namespace),
        delete=lambda k, o, t, p: k.delete_namespace(o.namespace),
        modify=_no_modify("namespace")),
    "link": _Writer(
        create=lambda k, o, t, p: k.create_link(o, t, peer=p),
        delete=_delete_link,
        modify=lambda k, b, a, c, t: k.configure_link(a, t, changes=c.keys())),
    "external": _Writer(
        create=_never("creates"),
        delete=_never("deletes"),
        modify=_configure_external),
    "address": _Writer(
        create=lambda k, o, t, p: k.add_address(o),
        delete=lambda k, o, t, p: k.delete_address(o),
        modify=_no_modify("address")),
    # routes and neighbours have an in-place replace; rules and fdb entries do not
    "route": _Writer(
        create=lambda k, o, t, p: k.replace_route(o),
        delete=lambda k, o, t, p: k.delete_route(o),
        modify=lambda k, b, a, c, t: k.replace_route(a)),
    "rule": _Writer(
        create=lambda k, o, t, p: k.add_rule(o),
        delete=lambda k, o, t, p: k.delete_rule(o),
        modify=_readd(lambda k, o: k.add_rule(o), lambda k, o: k.delete_rule(o))),
    "fdb": _Writer(
        create=lambda k, o, t, p: k.add_fdb(o),
        delete=lambda k, o, t, p: k.delete_fdb(o),
        modify=_readd(lambda k, o: k.add_fdb(o), lambda k, o: k.delete_fdb(o))),
    "neighbor": _Writer(
        create=lambda k, o, t, p: k.replace_neighbor(o),
        delete=lambda k, o, t, p: k.delete_neighbor(o),
        modify=lambda k, b, a, c, t: k.replace_neighbor(a)),
    "sysctl": _Writer(
        create=lambda k, o, t, p: sysctl.write(o.namespace, o.name, o.value),
        delete=_no_modify("sysctl"),  # a sysctl is never deleted: its old value is restored
        modify=_write_sysctl),
    "nat": _Writer(
        create=lambda k, o, t, p: _replace_nat(t, o),
        delete=lambda k, o, t, p: _delete_nat(t, o),
        modify=lambda k, b, a, c, t: _replace_nat(t, a)),
}


class KernelHost:
    """The Host protocol (host.py) on this machine's kernel."""

    def __init__(self) -> None:
        self.kernel = Kernel()

    # -- reading -------------------------------------------------------------------------------
    def named_namespaces(self) -> list[str]:
        return namespaces.list_named()

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
            if ns != ROOT:
                seen.append(Namespace(ns))
            links = kernel.read_links(ns, all_named)
            seen.extend(links)
            seen.extend(kernel.read_addresses(ns))
            seen.extend(kernel.read_routes(ns))
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
                    seen.append(table)
        return seen

    # -- writing -------------------------------------------------------------------------------
    def create(self, obj: NetObject, topology: str, peer: NetObject | None = None) -> None:
        WRITERS[obj.TYPE].create(self.kernel, obj, topology, peer)

    def delete(self, obj: NetObject, topology: str, peer: NetObject | None = None) -> None:
        WRITERS[obj.TYPE].delete(self.kernel, obj, topology, peer)

    def modify(self, before: NetObject | None, after: NetObject,
               changes: dict[str, Any], topology: str) -> None:
        WRITERS[after.TYPE].modify(self.kernel, before, after, changes, topology)

    def claim_unmarked_link(self, link: Link, topology: str) -> None:
        try:
            if link.namespace != ROOT and not namespaces.exists(link.namespace):
                return
            if any(o.name == link.name and not o.owner and o.kind == link.kind
                   for o in self.kernel.read_links(link.namespace, namespaces.list_named())):
                self.kernel.configure_link(link, topology, fresh=True, changes=())
        except (KernelError, OSError):
            return  # gone already, or not there: nothing to claim

    def remove_placeholders(self, names: Iterable[str]) -> list[str]:
        problems = []
        live = set(namespaces.list_named())
        for name in sorted(set(names) - live):
            path = namespaces.netns_path(name)
            if not os.path.lexists(path):
                continue
            try:
                os.unlink(path)
            except OSError as exc:
                problems.append(f"remove stale namespace file {path}: {exc}")
        return problems

    # -- connections ---------------------------------------------------------------------------
    def refresh(self) -> None:
        self.kernel.reset_caches()

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
