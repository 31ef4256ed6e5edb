"""The kernel -> model, scoped to what a topology and its ownership record name.

Each namespace is read once per object type (one netlink dump each); nothing outside the scope
is read, so `plan` on a host with hundreds of unrelated namespaces stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass

from netdecl.backends import namespaces, sysctl
from netdecl.backends.netlink import RTPROT_NETDECL, Kernel
from netdecl.engine.record import OwnershipRecord
from netdecl.model import (
    ROOT,
    FdbEntry,
    Link,
    Namespace,
    NatTable,
    Neighbor,
    Rule,
    Sysctl,
    Topology,
)


@dataclass
class Scope:
    """What to read: namespaces, sysctl names per namespace, and which optional families."""

    namespaces: list[str]
    sysctls: dict[str, set[str]]
    nat: bool
    rules: bool
    fdb: bool
    # where netdecl's NAT table can be (declared there or recorded as made there); None: all.
    # Reading it costs an `nft` process per namespace, so never in the hundreds of others.
    nat_namespaces: set[str] | None = None


def scope_for(desired: Topology, record: OwnershipRecord) -> Scope:
    names = {ROOT} | {o.namespace for o in desired.objects.values()} | record.namespaces
    names |= {key[1] for key in record.objects} | record.nat_namespaces
    names |= {ns for ns, _ in record.sysctl_originals}
    sysctls: dict[str, set[str]] = {}
    for o in desired.of_type(Sysctl):
        sysctls.setdefault(o.namespace, set()).add(o.name)
    for ns, name in record.sysctl_originals:
        sysctls.setdefault(ns, set()).add(name)
    for table in desired.of_type(NatTable):
        # the planner explains NAT that cannot forward, so it needs ip_forward there
        if table.rules:
            sysctls.setdefault(table.namespace, set()).add("net.ipv4.ip_forward")
    types = {key[0] for key in record.objects}
    return Scope(
        namespaces=sorted(names),
        sysctls=sysctls,
        nat=bool(desired.of_type(NatTable) or record.nat_namespaces),
        nat_namespaces={t.namespace for t in desired.of_type(NatTable)} | record.nat_namespaces,
        rules=bool(desired.of_type(Rule)) or "rule" in types,
        fdb=bool(desired.of_type(FdbEntry) or desired.of_type(Neighbor))
        or "fdb" in types or "neighbor" in types
        or any(link.kind == "vxlan" for link in desired.of_type(Link)),
    )


def observe(kernel: Kernel, topology: str, scope: Scope) -> Topology:
    """Everything in scope as model objects (ours and others'; the planner sorts that out)."""
    seen = Topology(name=topology)
    existing = set(namespaces.list_named())
    # the root last: by then each namespace's links are cached, so the root's veth peers
    # resolve without another dump per namespace
    present = [ns for ns in scope.namespaces if ns != ROOT and ns in existing]
    if ROOT in scope.namespaces:
        present.append(ROOT)
    # where a veth's peer may live: the namespaces in scope first (they nearly always hold it,
    # so the netnsid look-up stops there), then any other, to name a peer outside the scope
    in_scope = [ns for ns in present if ns != ROOT]
    all_named = in_scope + sorted(existing - set(in_scope))
    kernel.open_sockets(present)
    values = sysctl.read_everywhere({ns: sorted(scope.sysctls[ns]) for ns in present
                                     if scope.sysctls.get(ns)})
    for ns in present:
        if ns != ROOT:
            seen.add(Namespace(ns))
        links = kernel.read_links(ns, all_named)
        seen.extend(links)
        seen.extend(kernel.read_addresses(ns))
        seen.extend(kernel.read_routes(ns))
        if scope.rules:
            seen.extend(r for r in kernel.read_rules(ns) if r.proto == RTPROT_NETDECL)
        if scope.fdb:
            ours = {link.name for link in links if link.owner == topology}
            seen.extend(kernel.read_fdb(ns, ours))
            seen.extend(kernel.read_neighbors(ns, ours))
        for name, value in values.get(ns, {}).items():
            if value is not None:
                seen.add(Sysctl(ns, name, value))
        if scope.nat and (scope.nat_namespaces is None or ns in scope.nat_namespaces):
            from netdecl.backends import nftables  # imported only when a topology uses NAT

            table = nftables.read(topology, ns)
            if table is not None:
                seen.add(table)
    return seen


def observe_all(kernel: Kernel, namespaces_to_read: list[str]) -> Topology:
    """Everything in the given namespaces, for `show` (no ownership filtering)."""
    scope = Scope(namespaces=namespaces_to_read, sysctls={}, nat=False, rules=False, fdb=False)
    return observe(kernel, "", scope)
