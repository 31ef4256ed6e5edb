"""The host -> model, scoped to what a topology and its ownership record name.

scope_for decides what to read (pure); the Host reads it (each namespace once per object type,
one netlink dump each), and ownership.observed_topology keeps what netdecl manages. Nothing
outside the scope is read, so `plan` on a host with hundreds of unrelated namespaces stays cheap.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable

from netdecl.backends.host import Host, Scope
from netdecl.engine.ownership import (
    LINK_LOCAL_V6,
    external_views,
    manageable,
    observed_topology,
)
from netdecl.engine.state.record import OwnershipRecord
from netdecl.links import link_kind
from netdecl.model import (
    EGRESS,
    MAIN_TABLE,
    ROOT,
    ExternalLink,
    FdbEntry,
    Link,
    NatTable,
    Neighbor,
    NetObject,
    Qdisc,
    Route,
    Rule,
    Sysctl,
    Topology,
)
from netdecl.nlconst import RT_TABLE_DEFAULT, RT_TABLE_LOCAL, RTPROT_KERNEL
from netdecl.tc.qdiscs import file_form, with_distribution
from netdecl.topology.checks import FORWARDING

__all__ = ["Scope", "scope_for", "observe", "observe_for", "observe_again", "observe_all"]


def scope_for(desired: Topology, record: OwnershipRecord) -> Scope:
    names = {ROOT} | {o.namespace for o in desired.objects.values()} | record.namespaces
    names |= {key[1] for key in record.objects} | record.nat_namespaces
    names |= {key[1] for key in record.identities if key[0] == "link"}
    names |= {ns for ns, _ in record.sysctl_originals}
    names |= {ns for ns, _, _ in record.link_originals}
    names |= {ns for ns, _, _ in record.qdisc_originals}
    sysctls: dict[str, set[str]] = {}
    for o in desired.of_type(Sysctl):
        sysctls.setdefault(o.namespace, set()).add(o.name)
    for ns, name in record.sysctl_originals:
        sysctls.setdefault(ns, set()).add(name)
    for table in desired.of_type(NatTable):
        # the planner explains NAT that cannot forward, so it needs the forwarding switch of
        # each family the table's rules translate (planner.forwarding_notes)
        for family in table.forwarded_families():
            sysctls.setdefault(table.namespace, set()).add(FORWARDING[family][0])
    types = {key[0] for key in record.objects}
    return Scope(
        namespaces=sorted(names),
        sysctls=sysctls,
        nat=bool(desired.of_type(NatTable) or record.nat_namespaces),
        nat_namespaces={t.namespace for t in desired.of_type(NatTable)} | record.nat_namespaces,
        rules=bool(desired.of_type(Rule)) or "rule" in types,
        fdb=bool(desired.of_type(FdbEntry) or desired.of_type(Neighbor))
        or "fdb" in types or "neighbor" in types
        or any(kind.reads_fdb for link in desired.of_type(Link)
               if (kind := link_kind(link.kind)) is not None),
        qdiscs={(q.namespace, q.link) for q in desired.of_type(Qdisc)}
        | {(ns, link) for ns, link, _ in record.qdisc_originals},
        bridge_vlans=any(link.vlans is not None for link in desired.of_type(Link)),
    )


def observe(host: Host, topology: str, scope: Scope) -> Topology:
    """Everything in scope netdecl manages (ours and others'; the planner sorts that out)."""
    return observed_topology(topology, host.observe(topology, scope))


def observe_for(host: Host, desired: Topology, record: OwnershipRecord) -> Topology:
    seen = observe(host, desired.name, scope_for(desired, record))
    _add_external_views(seen, desired, record)
    return seen


def observe_again(host: Host, desired: Topology, record: OwnershipRecord,
                  changed: Collection[str], before: Topology,
                  nat_changed: Collection[str] | None = None) -> Topology:
    """What observe_for would read now, when only the namespaces ``changed`` can differ from
    ``before`` (an observation made moments ago, under the same lock, by this process): those
    are read afresh, the rest is taken from ``before``. An apply's verification needs no more:
    it checks what its actions did, and a one-link change at 1000 namespaces re-reads one.
    ``nat_changed``: where the NAT tables can differ (None: all of ``changed``); elsewhere
    they are taken from ``before`` too: nothing but a NAT action (or a namespace made or
    deleted) changes them, and reading one is two `nft -j` runs (10-20 ms each, idle), what
    a one-link change at 1000 namespaces paid in the root for a table it never touched."""
    scope = scope_for(desired, record)
    again = [ns for ns in scope.namespaces if ns in changed]
    if len(again) == len(scope.namespaces):
        host.refresh()
        return observe_for(host, desired, record)
    nat_again = set(changed) if nat_changed is None else set(changed) & set(nat_changed)
    host.refresh(again)
    scope.namespaces = again
    scope.sysctls = {ns: names for ns, names in scope.sysctls.items() if ns in changed}
    if scope.nat_namespaces is not None:
        scope.nat_namespaces = {ns for ns in scope.nat_namespaces if ns in nat_again}
    fresh = observe(host, desired.name, scope)
    seen = Topology(name=desired.name)
    seen.extend(obj for obj in before.objects.values()
                if (obj.namespace not in changed
                    or (isinstance(obj, NatTable) and obj.namespace not in nat_again))
                and not isinstance(obj, ExternalLink))
    seen.extend(fresh.objects.values())
    _add_external_views(seen, desired, record)
    return seen


def _add_external_views(seen: Topology, desired: Topology, record: OwnershipRecord) -> None:
    # external links the file declares or whose old values the record keeps, as the planner
    # compares them
    external_views(seen, [(o.namespace, o.name) for o in desired.of_type(ExternalLink)]
                   + [(ns, name) for ns, name, _ in record.link_originals])
    _add_tables(seen, record)


def _add_tables(seen: Topology, record: OwnershipRecord) -> None:
    """A netem's delay distribution is never reported back by the kernel: the record keeps
    which one netdecl last sent to the link's netem (claims.py), and the kernel keeps a table
    across every change of the netem, so the observed chain has it. A table the file no
    longer names is then a change (a new netem, grafted: backends/qdiscs.py), and one the
    file names that the record does not know is sent."""
    for (ns, link), name in record.qdisc_tables.items():
        found = seen.get(("qdisc", ns, link, EGRESS))
        if isinstance(found, Qdisc) and found.stages:
            seen.add(dataclasses.replace(found, stages=with_distribution(found.stages, name)))


# What `show` writes out of the sysctls (IPv4 forwarding is net.ipv4.ip_forward: writing it
# sets every conf.*.forwarding, so those are not listed again).
SHOWN_SYSCTLS = (
    "net.ipv4.ip_forward",
    "net.ipv6.conf.all.forwarding",
    *(f"net.ipv4.conf.{where}.{name}" for where in ("all", "default")
      for name in ("rp_filter", "proxy_arp", "route_localnet")),
    *(f"net.ipv6.conf.{where}.accept_ra" for where in ("all", "default")),
)
# Per-link values, shown where they differ from what the namespace gives a new link.
PER_LINK_SYSCTLS = {
    "net.ipv4.conf.{}.rp_filter": "net.ipv4.conf.default.rp_filter",
    "net.ipv4.conf.{}.proxy_arp": "net.ipv4.conf.default.proxy_arp",
    "net.ipv4.conf.{}.route_localnet": "net.ipv4.conf.default.route_localnet",
    "net.ipv4.conf.{}.forwarding": "net.ipv4.ip_forward",
    "net.ipv6.conf.{}.accept_ra": "net.ipv6.conf.default.accept_ra",
    "net.ipv6.conf.{}.forwarding": "net.ipv6.conf.all.forwarding",
}
# The kernel's own policy rules (local, main, default): every namespace has them.
KERNEL_RULES = {(0, RT_TABLE_LOCAL), (32766, MAIN_TABLE), (32767, RT_TABLE_DEFAULT)}


def link_sysctl(template: str, link: str) -> str:
    """A per-link sysctl's name; written with '/' when the link name has a dot (eth0.100)."""
    return template.replace(".", "/").format(link) if "." in link else template.format(link)


def observe_all(host: Host, namespaces_to_read: list[str],
                records: Iterable[OwnershipRecord] = ()) -> Topology:
    """Everything in the given namespaces, for `show` (no ownership filtering): links,
    addresses, routes, policy rules (but the kernel's own), static FDB and neighbour entries,
    the sysctls that matter for forwarding (and any a topology manages), and the NAT rules of
    netdecl's tables (the topologies' ``records`` say where they are)."""
    records = list(records)
    scope = Scope(namespaces=namespaces_to_read, sysctls={}, nat=False, rules=True, fdb=True,
                  kernel_routes=True, bridge_vlans=True)
    seen = Topology(name="")
    everything = host.observe("", scope)
    seen.extend(o for o in everything if _shown(o))
    seen.warnings.extend(_prefix_routes_moved(everything))
    seen.warnings.extend(host.unmodelled(namespaces_to_read))
    seen.extend(_sysctls(host, seen, namespaces_to_read, records))
    seen.extend(_traffic_control(host, seen, namespaces_to_read))
    for table in _nat_tables(host, namespaces_to_read, records):
        seen.add(table)
    return seen


def _traffic_control(host: Host, seen: Topology, names: list[str]) -> list[Qdisc]:
    """The qdiscs of every link that the file format can say (netem, tbf, the root
    schedulers, an ingress redirect): the kernel's defaults are nothing to write."""
    links = {(link.namespace, link.name) for link in seen.of_type(Link)}
    if not links:
        return []
    scope = Scope(namespaces=names, sysctls={}, nat=False, rules=False, fdb=False,
                  qdiscs=links)
    return [q for q in host.observe("", scope) if isinstance(q, Qdisc)
            and (q.redirect or (q.handle and q.stages and file_form(q.stages)))]


def _shown(obj: NetObject) -> bool:
    if isinstance(obj, Rule):
        return (obj.priority, obj.table) not in KERNEL_RULES
    return manageable(obj) or _moved_kernel_route(obj)


def _moved_kernel_route(obj: NetObject) -> bool:
    """A route the kernel made for an address (proto kernel) that is in a table other than
    main and local: moved there by hand (or made there for a VRF's port). It follows no
    address of that table by itself, so `show` writes it; IPv6 link-local ones come back with
    their link."""
    return isinstance(obj, Route) and obj.proto == RTPROT_KERNEL \
        and obj.table not in (MAIN_TABLE, RT_TABLE_LOCAL) \
        and obj.type in (None, "unicast") and not obj.to.startswith(LINK_LOCAL_V6)


def _prefix_routes_moved(objects: Iterable[NetObject]) -> list[str]:
    """What `show` cannot write about a prefix route moved out of main: that main has none.
    The file adds the address, and the kernel its prefix route to main with it."""
    routes = [o for o in objects if isinstance(o, Route) and o.proto == RTPROT_KERNEL]
    in_main = {(r.namespace, r.to, r.dev) for r in routes if r.table == MAIN_TABLE}
    return [f"{r.describe()} is an address's prefix route outside table main (moved there, "
            f"or put there for a VRF), and main has none; the file cannot leave it out of "
            f"main (applying it adds one there with the address)"
            for r in routes if _moved_kernel_route(r)
            and (r.namespace, r.to, r.dev) not in in_main]


def _sysctls(host: Host, seen: Topology, names: list[str],
             records: list[OwnershipRecord]) -> list[Sysctl]:
    wanted: dict[str, set[str]] = {ns: set(SHOWN_SYSCTLS) for ns in names}
    reference: dict[tuple[str, str], str] = {}  # a per-link sysctl -> the namespace's value
    for link in seen.of_type(Link):
        for template, ref in PER_LINK_SYSCTLS.items():
            name = link_sysctl(template, link.name)
            wanted[link.namespace].add(name)
            reference[(link.namespace, name)] = ref
    for record in records:
        for ns, name in record.sysctl_originals:
            if ns in wanted:
                wanted[ns].add(name)
    scope = Scope(namespaces=names, sysctls=wanted, nat=False, rules=False, fdb=False)
    values = {o.key: o for o in host.observe("", scope) if isinstance(o, Sysctl)}
    managed = {(ns, name) for record in records for ns, name in record.sysctl_originals}
    kept = []
    for key, sysctl in sorted(values.items()):
        _, ns, name = key
        namespace_value = values.get(("sysctl", ns, reference.get((ns, name), "")))
        if namespace_value is not None and namespace_value.value == sysctl.value \
                and (ns, name) not in managed:
            continue  # a link with the namespace's value: nothing to say
        kept.append(sysctl)
    return kept


def _nat_tables(host: Host, names: list[str], records: list[OwnershipRecord]) -> list[NatTable]:
    """The rules of every topology's netdecl table in each namespace, in topology order."""
    rules: dict[str, list] = {}
    for record in sorted(records, key=lambda r: r.topology):
        where = sorted(record.nat_namespaces & set(names))
        if not where:
            continue
        scope = Scope(namespaces=where, sysctls={}, nat=True, rules=False, fdb=False,
                      nat_namespaces=set(where))
        for table in host.observe(record.topology, scope):
            if isinstance(table, NatTable) and table.rules:
                rules.setdefault(table.namespace, []).extend(table.rules)
    return [NatTable(ns, tuple(items)) for ns, items in sorted(rules.items())]
