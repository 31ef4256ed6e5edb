"""Model -> topology document (the file format), so `show` output can be fed back to `apply`.

What `show` observed (engine/observer.observe_all) is written so that the file always
validates and, applied to an empty host, rebuilds the same state:

- bridges, VXLANs and veth pairs whose both ends are shown are written as netdecl links; every
  other link (a physical NIC, a tunnel or bond netdecl does not make, a veth whose other end
  is in a namespace not shown) as ``kind: external``, with its addresses, MTU and master;
- routes, policy rules (not the kernel's own), static FDB entries (a VXLAN's all-zero ones as
  its ``remotes``; not the kernel's entries for the links' own and multicast MACs) and
  permanent neighbours on the links written;
- the forwarding sysctls observed, and the NAT rules of netdecl's tables.

What the format cannot say (a name it refuses, a second copy of an address in a namespace) is
left out rather than written invalid.
"""

from __future__ import annotations

import re
from typing import Any

from netdecl.links import EXTERNAL, LINK_KINDS, link_kind
from netdecl.model import (
    LINK_FLAGS,
    MAIN_TABLE,
    ROOT,
    Address,
    FdbEntry,
    Link,
    Namespace,
    NatTable,
    Neighbor,
    Route,
    Rule,
    Sysctl,
    Topology,
)
from netdecl.topology.checks import ifname_problem, nsname_problem
from netdecl.topology.format import (
    UNICAST,
    metric_in_file,
    nat_rule_spec,
    route_to_text,
    scope_in_file,
)

ZERO_MAC = "00:00:00:00:00:00"
_SYSCTL_NAME = re.compile(r"[a-z0-9_]+([./][a-z0-9_-]+)+")


def _multicast(mac: str) -> bool:
    return bool(int(mac[:2], 16) & 1)


class _Exporter:
    def __init__(self, topo: Topology, name: str):
        self.topo = topo
        self.doc: dict[str, Any] = {"version": 1, "name": name}
        self.spaces = {ROOT} | {ns.namespace for ns in topo.of_type(Namespace)
                                if nsname_problem(ns.namespace) is None}
        self.links = {(link.namespace, link.name): link for link in topo.of_type(Link)
                      if link.namespace in self.spaces and ifname_problem(link.name) is None}
        self.kinds = {key: self._kind(link) for key, link in self.links.items()}
        self.done: set[tuple[str, str]] = set()  # links written (a veth's peer: in its entry)
        self.addresses = self._addresses()

    def _kind(self, link: Link) -> str:
        """What the file can make of a link: netdecl's own kinds, or external."""
        kind = link_kind(link.kind)
        if kind is not None and kind.made and kind.exportable(link, self):
            return kind.name
        return EXTERNAL

    # -- what a link kind is offered (links.base.ExportView) --
    def kind_written(self, key: tuple[str, str]) -> str:
        return self.kinds[key]

    def common(self, link: Link, kind: str) -> dict[str, Any]:
        return self._fields(link, kind)

    def written(self, key: tuple[str, str]) -> None:
        self.done.add(key)

    def fdb_remotes(self, link: Link) -> list[str]:
        return self._remotes(link)

    def _addresses(self) -> dict[tuple[str, str], list[str]]:
        out: dict[tuple[str, str], list[str]] = {}
        seen_ips: set[tuple[str, str]] = set()
        for a in sorted(self.topo.of_type(Address), key=lambda a: a.key):
            ip = a.cidr.split("/")[0]
            if (a.namespace, a.link) not in self.links or (a.namespace, ip) in seen_ips:
                continue  # on a link not written, or a second copy the format refuses
            seen_ips.add((a.namespace, ip))
            out.setdefault((a.namespace, a.link), []).append(a.cidr)
        return out

    def _master(self, link: Link) -> str | None:
        master = self.kinds.get((link.namespace, link.master)) if link.master else None
        kind = link_kind(master)
        return link.master if kind is not None and (kind.ports or kind.members) else None

    def _fields(self, link: Link, kind: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if addresses := self.addresses.get((link.namespace, link.name)):
            out["addresses"] = addresses
        if link.mtu is not None:
            out["mtu"] = link.mtu
        if link.mac and kind != EXTERNAL:
            out["mac"] = link.mac
        if link.up is False:
            out["up"] = False
        if master := self._master(link):
            out["master"] = master
            if link.hairpin and kind != EXTERNAL:
                out["hairpin"] = True
        for flag in LINK_FLAGS:  # on, as someone asked; off is every link's default
            if getattr(link, flag):
                out[flag] = True
        if link.vlans is not None and link.vlans != ((1, True, True),) and kind != EXTERNAL:
            # (VLAN 1, pvid and untagged, is what a bridge gives every port: not written)
            out["vlans"] = [{"id": vid, **({"pvid": True} if pvid else {}),
                             **({"untagged": True} if untagged else {})}
                            for vid, pvid, untagged in link.vlans]
        return out

    def links_section(self) -> None:
        entries = []
        for key, link in sorted(self.links.items()):
            if key in self.done:
                continue
            self.done.add(key)
            kind = self.kinds[key]
            entry: dict[str, Any] = {"name": link.name, "kind": kind}
            if link.namespace:
                entry["namespace"] = link.namespace
            entry.update(self._fields(link, kind))
            entry.update(LINK_KINDS[kind].export(link, self))
            entries.append(entry)
        if entries:
            self.doc["links"] = entries

    def _remotes(self, link: Link) -> list[str]:
        return sorted(e.dst for e in self.topo.of_type(FdbEntry)
                      if (e.namespace, e.link) == (link.namespace, link.name)
                      and e.mac == ZERO_MAC and e.dst)

    def routes_section(self) -> None:
        routes, keys = [], set()
        for r in sorted(self.topo.of_type(Route), key=lambda r: repr(r.key)):
            unicast = (r.type or UNICAST) == UNICAST
            if r.namespace not in self.spaces or r.key in keys or \
                    (unicast and r.dev and (r.namespace, r.dev) not in self.links):
                continue  # through a link not written (lo, say)
            keys.add(r.key)
            entry: dict[str, Any] = {}
            if r.namespace:
                entry["namespace"] = r.namespace
            entry["to"] = route_to_text(r)
            for attr in (("via", "dev", "src") if unicast else ("src",)):
                if getattr(r, attr):
                    entry[attr] = getattr(r, attr)
            if (metric := metric_in_file(r)) is not None:
                entry["metric"] = metric
            if r.table != MAIN_TABLE:
                entry["table"] = r.table
            if not unicast:
                entry["type"] = r.type
            if r.onlink:
                entry["onlink"] = True
            if (scope := scope_in_file(r)) is not None:
                entry["scope"] = scope
            routes.append(entry)
        if routes:
            self.doc["routes"] = routes

    def rules_section(self) -> None:
        rules, keys = [], set()
        for r in sorted(self.topo.of_type(Rule), key=lambda r: repr(r.key)):
            # the file infers a rule's family from its addresses: an IPv6 rule needs one
            if r.namespace not in self.spaces or r.key in keys or \
                    (r.family == 6 and not (r.src or r.dst)):
                continue
            keys.add(r.key)
            entry: dict[str, Any] = {"namespace": r.namespace} if r.namespace else {}
            entry["priority"] = r.priority
            for key, value in (("from", r.src), ("to", r.dst), ("iif", r.iif), ("oif", r.oif)):
                if value and (key in ("from", "to") or ifname_problem(value) is None):
                    entry[key] = value
            if r.table != MAIN_TABLE:
                entry["table"] = r.table
            rules.append(entry)
        if rules:
            self.doc["rules"] = rules

    def neighbour_sections(self) -> None:
        own_macs = {(link.namespace, link.mac) for link in self.links.values() if link.mac}
        fdb = []
        for e in sorted(self.topo.of_type(FdbEntry), key=lambda e: repr(e.key)):
            if (e.namespace, e.link) not in self.links or _multicast(e.mac) \
                    or (e.namespace, e.mac) in own_macs:
                continue  # the kernel's own entries
            if e.mac == ZERO_MAC and e.dst and \
                    LINK_KINDS[self.kinds[(e.namespace, e.link)]].reads_fdb:
                continue  # written as the link's own (a VXLAN's remotes)
            entry: dict[str, Any] = {"namespace": e.namespace} if e.namespace else {}
            entry.update({"link": e.link, "mac": e.mac})
            if e.dst:
                entry["dst"] = e.dst
            fdb.append(entry)
        if fdb:
            self.doc["fdb"] = fdb
        neighbors = []
        for n in sorted(self.topo.of_type(Neighbor), key=lambda n: repr(n.key)):
            if (n.namespace, n.link) not in self.links or not n.mac:
                continue
            entry = {"namespace": n.namespace} if n.namespace else {}
            entry.update({"link": n.link, "address": n.address, "mac": n.mac})
            neighbors.append(entry)
        if neighbors:
            self.doc["neighbors"] = neighbors

    def nat_section(self) -> None:
        """The NAT rules and the forward filter of netdecl's tables."""
        sections: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for table in sorted(self.topo.of_type(NatTable), key=lambda t: t.namespace):
            if table.namespace not in self.spaces:
                continue
            for rule in table.rules or ():
                top, section, spec = nat_rule_spec(rule)
                if table.namespace:
                    spec = {"namespace": table.namespace, **spec}
                sections.setdefault(top, {}).setdefault(section, []).append(spec)
        for top in ("nat", "filter"):
            if top in sections:
                self.doc[top] = sections[top]

    def sysctls_of(self, namespace: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for s in sorted(self.topo.of_type(Sysctl), key=lambda s: s.name):
            if s.namespace == namespace and _SYSCTL_NAME.fullmatch(s.name):
                out[s.name] = int(s.value) if s.value.isdigit() else s.value
        return out

    def document(self) -> dict[str, Any]:
        if sysctls := self.sysctls_of(ROOT):
            self.doc["sysctls"] = sysctls
        namespaces: dict[str, Any] = {}
        for ns in sorted(self.spaces - {ROOT}):
            sysctls = self.sysctls_of(ns)
            namespaces[ns] = {"sysctls": sysctls} if sysctls else {}
        if namespaces:
            self.doc["namespaces"] = namespaces
        self.links_section()
        self.routes_section()
        self.rules_section()
        self.nat_section()
        self.neighbour_sections()
        return self.doc


def to_document(topo: Topology, name: str) -> dict[str, Any]:
    return _Exporter(topo, name).document()
