"""The host -> model, scoped to what a topology and its ownership record name.

scope_for decides what to read (pure); the Host reads it (each namespace once per object type,
one netlink dump each), and ownership.observed_topology keeps what netdecl manages. Nothing
outside the scope is read, so `plan` on a host with hundreds of unrelated namespaces stays cheap.
"""

from __future__ import annotations

from netdecl.backends.host import Host, Scope
from netdecl.engine.ownership import observed_topology
from netdecl.engine.record import OwnershipRecord
from netdecl.model import ROOT, FdbEntry, Link, NatTable, Neighbor, Rule, Sysctl, Topology

__all__ = ["Scope", "scope_for", "observe", "observe_for", "observe_all"]


def scope_for(desired: Topology, record: OwnershipRecord) -> Scope:
    names = {ROOT} | {o.namespace for o in desired.objects.values()} | record.namespaces
    names |= {key[1] for key in record.objects} | record.nat_namespaces
    names |= {key[1] for key in record.identities if key[0] == "link"}
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


def observe(host: Host, topology: str, scope: Scope) -> Topology:
    """Everything in scope netdecl manages (ours and others'; the planner sorts that out)."""
    return observed_topology(topology, host.observe(topology, scope))


def observe_for(host: Host, desired: Topology, record: OwnershipRecord) -> Topology:
    return observe(host, desired.name, scope_for(desired, record))


def observe_all(host: Host, namespaces_to_read: list[str]) -> Topology:
    """Everything in the given namespaces, for `show` (no ownership filtering)."""
    scope = Scope(namespaces=namespaces_to_read, sysctls={}, nat=False, rules=False, fdb=False)
    return observe(host, "", scope)
