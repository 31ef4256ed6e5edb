"""Source-based routing, as the CNI sbr plugin builds it: ``route_table: N`` on a link.

What the plugin does by hand to a container's interface, the file says once: every route of
the link lives in table N, not in main, and a rule sends what comes from each of the link's
addresses to table N. So:

- the link's addresses are added without the prefix route the kernel would put in main
  (IFA_F_NOPREFIXROUTE), and netdecl puts that route in table N itself (scope link, from the
  address, as the kernel writes it);
- the file's routes through the link (``dev:`` it) that name no table go in table N;
- each address gets ``from ADDRESS/32`` (or /128) ``lookup N``, at the priorities the plugin's
  rules get from the kernel: just above main's (32765, then 32764...), per namespace and
  family in file order.

Nothing of the link is left in main. (The kernel's own local routes, in the local table, stay:
they make the address the host's.)
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from netdecl.links import link_kind
from netdecl.model import ROOT, Address, Route, Rule, Topology
from netdecl.topology.format import default_metric, is_int, parse_interface
from netdecl.topology.yamlsrc import Document, Path

KEY = "route_table"
FIRST_PRIORITY = 32765  # the first rule added without a priority gets main's (32766) less one
KERNEL_TABLES = (253, 254, 255)  # default, main, local


@dataclass(frozen=True)
class SourceRouted:
    """One link end with a table of its own, from the file (valid or not)."""

    namespace: str
    link: str
    table: Any
    addresses: list[Any]
    path: Path


def source_routed(data: Any) -> Iterator[SourceRouted]:
    """Every link end of the file that says ``route_table`` (a veth's peer included)."""
    links = data.get("links") if isinstance(data, dict) else None
    for i, entry in enumerate(links if isinstance(links, list) else []):
        if not isinstance(entry, dict):
            continue
        kind = link_kind(entry.get("kind"))
        if kind is None:
            continue
        namespace = entry.get("namespace", ROOT)
        for end in kind.ends(entry, namespace if isinstance(namespace, str) else ROOT,
                             ("links", i)):
            if KEY in end.entry and isinstance(end.name, str) and isinstance(end.namespace, str):
                addresses = end.entry.get("addresses")
                yield SourceRouted(end.namespace, end.name, end.entry[KEY],
                                   addresses if isinstance(addresses, list) else [], end.path)


def rule_priorities(data: Any) -> dict[tuple[str, int, int], tuple[str, Path]]:
    """(namespace, family, priority) -> (link, where) of each rule source routing makes."""
    taken: dict[tuple[str, int, int], tuple[str, Path]] = {}
    count: dict[tuple[str, int], int] = {}
    for routed in source_routed(data):
        for k, text in enumerate(routed.addresses):
            iface, _ = parse_interface(text) if isinstance(text, str) else (None, None)
            if iface is None:
                continue
            n = count[(routed.namespace, iface.version)] = \
                count.get((routed.namespace, iface.version), 0) + 1
            taken[(routed.namespace, iface.version, FIRST_PRIORITY + 1 - n)] = (
                routed.link, (*routed.path, "addresses", k))
    return taken


def tables_through(data: Any) -> dict[tuple[str, str], int]:
    """(namespace, link) -> the table of each link with one of its own (the file may be
    invalid: a table that is not a number is left out). One pass over the links, so the
    routes' check looks each route's link up instead of walking every link per route."""
    tables: dict[tuple[str, str], int] = {}
    for r in source_routed(data):
        if is_int(r.table):
            tables.setdefault((r.namespace, r.link), int(r.table))
    return tables


def tables_of(data: Any) -> dict[tuple[str, str], int]:
    """(namespace, link) -> the table a (valid) file gives the link."""
    return {(r.namespace, r.link): int(r.table) for r in source_routed(data)}


def derive(topology: Topology, data: dict[str, Any], doc: Document) -> None:
    """The loader's part: addresses without a prefix route, that route in the link's table,
    and a rule per address (the file's routes through the link: loader.build_routes)."""
    tables = tables_of(data)
    if not tables:
        return
    for (ns, family, priority), (link, where) in rule_priorities(data).items():
        pos = doc.value_pos(where)
        iface = ipaddress.ip_interface(_value_at(data, where))
        address = topology.get(("address", ns, link, iface.with_prefixlen))
        assert isinstance(address, Address)  # (loader.add_addresses placed it, by that key)
        table = tables[(ns, link)]
        for obj in (dataclasses.replace(address, noprefixroute=True),
                    Rule(ns, priority=priority, family=family,
                         src=f"{iface.ip}/{iface.max_prefixlen}", table=table)):
            topology.add(obj)
            topology.positions[obj.key] = pos
        if iface.network.prefixlen < iface.max_prefixlen:
            prefix = Route(ns, to=str(iface.network), table=table,
                           metric=default_metric(family), dev=link, src=str(iface.ip),
                           scope="link" if family == 4 else "global")
            topology.add(prefix)
            topology.positions[prefix.key] = pos


def _value_at(data: Any, where: Path) -> Any:
    node = data
    for part in where:
        node = node[part]
    return node


def check(ctx: Any) -> None:
    """validate's part: a table of the link's own (not the kernel's, not a VRF's), and no
    rule of the file at the priority of one source routing makes."""
    for routed in source_routed(ctx.data):
        where = (*routed.path, KEY)
        if not is_int(routed.table):
            continue  # the schema says what is wrong
        if routed.table in KERNEL_TABLES:
            ctx.error(where, f"table {routed.table} is one of the kernel's own (253 default, "
                             "254 main, 255 local): give the link a table of its own")
        owner = next((name for (ns, name), table in ctx.tables.items()
                      if ns == routed.namespace and table == routed.table), None)
        if owner is not None:
            ctx.error(where, f"table {routed.table} is the table of VRF {ctx.quoted(owner)}")
    taken = rule_priorities(ctx.data)
    for path, rule in ctx.items("rules"):
        ns = rule.get("namespace", ROOT)
        priority = rule.get("priority")
        if not isinstance(ns, str):
            continue  # the schema says what is wrong
        for family in (4, 6):
            found = taken.get((ns, family, priority)) if is_int(priority) else None
            if found is not None:
                ctx.error((*path, "priority"), f"priority {priority} is taken by the "
                                               f"source-routing rule of link "
                                               f"{ctx.quoted(found[0])} (route_table)")
                break


