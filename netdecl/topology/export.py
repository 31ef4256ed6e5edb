"""Model -> topology document (the file format), so `show` output can be fed back to `apply`.

What `show` observed (engine/observer.observe_all) is written so that the file always
validates and, applied to an empty host, rebuilds the same state:

- a link of a kind netdecl knows (links/) is written by its kind (``exportable``/``export``);
  a link with no kind of its own (a physical NIC) or one its kind cannot write from what was
  read (a veth whose other end is in a namespace not shown) as ``kind: external``, with its
  addresses, MTU and master;
- routes (the kernel's own prefix routes too, where moved out of ``main``), policy rules (not
  the kernel's own), static FDB entries (a VXLAN's all-zero ones as its ``remotes``; not the
  kernel's entries for the links' own and multicast MACs) and permanent neighbours on the
  links written;
- the forwarding sysctls observed, and the NAT rules of netdecl's tables.

Nothing is dropped silently: what the format cannot say (a link of a kind netdecl does not
know, such as a VRF or an ifb, and what hangs on it; a value the schema refuses, such as a
VRF's MTU of 65575; the kernel's l3mdev rule; a name the format refuses; a second copy of an
address in a namespace; whatever the observer says it saw but cannot be written, in the
topology's ``warnings``) is left out and named in a note, which `show` prints as a YAML
comment above the document (``to_yaml``). Each entry is checked against the schema itself, so
the file's limits are the schema's, stated once.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from netdecl.links import EXTERNAL, LINK_KINDS, link_kind
from netdecl.links.ifb import ifb_for
from netdecl.model import (
    DEVICE,
    EGRESS,
    INGRESS,
    LINK_FLAGS,
    ROOT,
    Address,
    FdbEntry,
    Link,
    Namespace,
    NatTable,
    Neighbor,
    Qdisc,
    Route,
    Rule,
    Sysctl,
    Topology,
    qualify,
)
from netdecl.tc.qdiscs import file_form
from netdecl.topology.checks import ifname_problem, nsname_problem
from netdecl.topology.format import (
    UNICAST,
    NamedTables,
    default_metric,
    metric_in_file,
    nat_rule_spec,
    route_to_text,
    scope_in_file,
    table_in_file,
)

ZERO_MAC = "00:00:00:00:00:00"
MAC_TEXT = len(ZERO_MAC)  # six octets as text
MTU_MAX = 65535  # the most a file's mtu says (topology.schema.json)
_SYSCTL_NAME = re.compile(r"[a-z0-9_]+([./][a-z0-9_-]+)+")


def _multicast(mac: str) -> bool:
    return bool(int(mac[:2], 16) & 1)


def _label(namespace: str, name: str) -> str:
    return f"link {qualify(namespace, name)}"


class _Exporter:
    def __init__(self, topo: Topology, name: str):
        self.topo = topo
        self.doc: dict[str, Any] = {"version": 1, "name": name}
        self.notes: list[str] = list(topo.warnings)
        spaces = {ns.namespace for ns in topo.of_type(Namespace)}
        for ns in sorted(spaces):
            if (problem := nsname_problem(ns)) is not None:
                self.note(f"namespace {ns} and everything in it: {problem}")
        self.spaces = {ROOT} | {ns for ns in spaces if nsname_problem(ns) is None}
        self.links: dict[tuple[str, str], Link] = {}
        # links not written, and why: what hangs on them is named with them
        self.unwritten: dict[tuple[str, str], str] = {}
        for link in sorted(topo.of_type(Link), key=lambda link: link.key):
            key = (link.namespace, link.name)
            if link.namespace not in self.spaces:
                continue
            if (problem := ifname_problem(link.name)) is not None:
                self.unwritten[key] = problem
            elif link.kind != DEVICE and link_kind(link.kind) is None:
                self.unwritten[key] = f"kind {link.kind}, which netdecl does not know"
            else:
                self.links[key] = link
        self.kinds = {key: self._kind(link) for key, link in self.links.items()}
        for key, why in self.unwritten.items():
            self.note(f"{_label(*key)}: {why}")
        self.done: set[tuple[str, str]] = set()  # links written (a veth's peer: in its entry)
        self.addresses = self._addresses()
        self.tables = self._named_tables()
        self.own_tables, self.implied = self._source_routing()

    def note(self, text: str) -> None:
        """Name something read that the file cannot say (links.base.ExportView.note)."""
        if text not in self.notes:
            self.notes.append(text)

    def _on_unwritten(self, namespace: str, link: str | None, what: str) -> bool:
        """Whether ``what`` hangs on a link not written; if so it is named in a note."""
        if link is None or (namespace, link) not in self.unwritten:
            return False
        self.note(f"{what}: on {_label(namespace, link)}, which is not written")
        return True

    def _kind(self, link: Link) -> str:
        """What the file can make of a link: netdecl's own kinds, or external."""
        kind = link_kind(link.kind)
        if kind is not None and kind.made and kind.exportable(link, self):
            return kind.name
        if kind is not None and kind.made:
            self.note(f"{_label(link.namespace, link.name)} (kind {link.kind}) is written as "
                      f"external: its kind cannot be written from what show read (its other "
                      f"end or parent is not shown)")
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

    def _named_tables(self) -> NamedTables:
        """The routing tables of the links written as a kind that owns one (a VRF's), which
        routes and rules name (the file names a VRF's table no other way)."""
        named: NamedTables = {}
        for key, link in self.links.items():
            kind = LINK_KINDS[self.kinds[key]]
            if not kind.l3_master:
                continue  # (an export may note the links it writes: a veth's peer)
            table = kind.routing_table(kind.export(link, self))
            if table is not None:
                named.setdefault(key, table)
        return named

    def _source_routing(self) -> tuple[dict[tuple[str, str], int], set[Any]]:
        """The links with a table of their own as the file says it (``route_table``, see
        sbr.py): every address without a prefix route in main, each with its rule to one
        table. Also the keys of the rules and prefix routes that implies (not written: the
        file makes them again, its rules at the priorities it gives them)."""
        addresses: dict[tuple[str, str], list[Address]] = {}
        for a in self.topo.of_type(Address):
            addresses.setdefault((a.namespace, a.link), []).append(a)
        rules = {(r.namespace, r.src): r for r in self.topo.of_type(Rule)
                 if r.src and not (r.dst or r.iif or r.oif)}
        own: dict[tuple[str, str], int] = {}
        implied: set[Any] = set()
        for key, found in addresses.items():
            if key not in self.links or not all(a.noprefixroute for a in found):
                continue
            ifaces = [ipaddress.ip_interface(a.cidr) for a in found]
            matched = [rules.get((key[0], f"{i.ip}/{i.max_prefixlen}")) for i in ifaces]
            tables = {r.table for r in matched if r is not None}
            if None in matched or len(tables) != 1:
                continue
            own[key] = table = tables.pop()
            implied |= {r.key for r in matched if r is not None}
            implied |= {("route", key[0], table, str(i.network), default_metric(i.version))
                        for i in ifaces if i.network.prefixlen < i.max_prefixlen}
        return own, implied

    def _addresses(self) -> dict[tuple[str, str], list[str]]:
        out: dict[tuple[str, str], list[str]] = {}
        seen_ips: set[tuple[str, str | None, str]] = set()
        for a in sorted(self.topo.of_type(Address), key=lambda a: a.key):
            ip = a.cidr.split("/")[0]
            key = (a.namespace, a.link)
            if a.namespace not in self.spaces or \
                    self._on_unwritten(a.namespace, a.link, f"address {a.cidr}"):
                continue
            link = self.links.get(key)
            if link is None:
                continue
            domain = self._domain(link)
            if (a.namespace, domain, ip) in seen_ips:
                self.note(f"{a.describe()}: a second copy of {ip} in its namespace, which the "
                          "file cannot say")
                continue
            seen_ips.add((a.namespace, domain, ip))
            out.setdefault(key, []).append(a.cidr)
        return out

    def _domain(self, link: Link) -> str | None:
        """The VRF a link joins (its addresses may repeat another VRF's), None: none."""
        master = self.kinds.get((link.namespace, link.master)) if link.master else None
        kind = link_kind(master)
        return link.master if kind is not None and kind.l3_master else None

    def _master(self, link: Link) -> str | None:
        if not link.master or self._on_unwritten(
                link.namespace, link.master,
                f"{_label(link.namespace, link.name)}'s master {link.master}"):
            return None
        master = self.kinds.get((link.namespace, link.master))
        kind = link_kind(master)
        return link.master if kind is not None and (kind.ports or kind.members
                                                      or kind.l3_master) else None

    def _default_pvid(self, link: Link) -> int:
        """The VLAN the bridge of ``link`` (its master, or itself) gives a port by itself."""
        bridge = self.links.get((link.namespace, link.master or link.name))
        pvid = getattr(bridge.spec, "default_pvid", None) if bridge is not None else None
        return pvid if isinstance(pvid, int) else 1

    def _fields(self, link: Link, kind: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if addresses := self.addresses.get((link.namespace, link.name)):
            out["addresses"] = addresses
        own = link_kind(kind)
        if link.mtu is not None and not (own is not None and own.l3_master
                                         and link.mtu > MTU_MAX):
            # a VRF's 65575 is the kernel's own for it, not a setting; any other MTU over
            # the file's bound is left out with a note (_valid)
            out["mtu"] = link.mtu
        if link.mac and kind != EXTERNAL and len(link.mac) == MAC_TEXT:
            # (an IP tunnel's hardware address is its local IP: not a MAC, not the file's)
            out["mac"] = link.mac
        if link.up is False:
            out["up"] = False
        if (table := self.own_tables.get((link.namespace, link.name))) is not None:
            out["route_table"] = table
        if master := self._master(link):
            out["master"] = master
            if link.hairpin and kind != EXTERNAL:
                out["hairpin"] = True
        for flag in LINK_FLAGS:  # on, as someone asked; off is every link's default
            if getattr(link, flag):
                out[flag] = True
        if (link.vlans is not None and link.vlans != ((self._default_pvid(link), True, True),)
                and kind != EXTERNAL):
            # (the bridge's default PVID, pvid and untagged, is what it gives every port and
            # itself: not written)
            out["vlans"] = [{"id": vid, **({"pvid": True} if pvid else {}),
                             **({"untagged": True} if untagged else {})}
                            for vid, pvid, untagged in link.vlans]
        return out

    def links_section(self) -> None:
        entries = []
        self.done |= self._derived_ifbs()
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
            entry.update(self._traffic_control(link))
            if (valid := self._valid("links", entry, _label(link.namespace, link.name))):
                entries.append(valid)
        if entries:
            self.doc["links"] = entries

    def _valid(self, section: str, entry: dict[str, Any], what: str) -> dict[str, Any] | None:
        """``entry`` of ``section`` with every value the schema refuses left out (and named
        in a note); None when the entry itself cannot be written."""
        from netdecl.topology.loader import fast_valid, validator

        while True:
            doc = {"version": 1, "name": "x", section: [entry]}
            # the common case, without jsonschema's cost per entry (on a copy: fastjsonschema
            # fills in the schema's defaults where it validates)
            if fast_valid(copy.deepcopy(doc)):
                return entry
            error = next(iter(sorted(validator().iter_errors(doc), key=lambda e: len(e.path))),
                         None)
            if error is None:
                return entry
            path = list(error.absolute_path)[2:]  # within the entry
            if not path:
                self.note(f"{what}: not written: {error.message}")
                return None
            container: Any = entry
            for step in path[:-1]:
                container = container[step]
            value = container[path[-1]]
            where = ".".join(str(step) for step in path)
            self.note(f"{what}: {where} {value!r} left out: {error.message}")
            del container[path[-1]]

    def _traffic_control(self, link: Link) -> dict[str, Any]:
        """``netem``, ``shaping``, ``qdisc`` as the file writes them; an ingress redirect to
        the ifb the loader would derive is ``shaping.ingress`` (that ifb is then not listed)."""
        found = {q.direction: q for q in self.topo.of_type(Qdisc)
                 if (q.namespace, q.link) == (link.namespace, link.name)}
        out = file_form(found[EGRESS].stages) if EGRESS in found else {}
        redirect = found[INGRESS].redirect if INGRESS in found else None
        shaper = self.topo.get(("qdisc", link.namespace, redirect or "", EGRESS))
        if redirect == ifb_for(link.namespace, link.name) and isinstance(shaper, Qdisc):
            bucket = file_form(shaper.stages).get("shaping", {}).get("egress")
            if bucket:
                bucket.pop("limit", None)
                out.setdefault("shaping", {})["ingress"] = bucket
        return out

    def _derived_ifbs(self) -> set[tuple[str, str]]:
        """The ifbs the loader makes from a link's shaping.ingress: written as that."""
        return {(q.namespace, q.redirect) for q in self.topo.of_type(Qdisc)
                if q.direction == INGRESS and q.redirect == ifb_for(q.namespace, q.link)
                and isinstance(self.topo.get(("qdisc", q.namespace, q.redirect, EGRESS)), Qdisc)}

    def _remotes(self, link: Link) -> list[str]:
        return sorted(e.dst for e in self.topo.of_type(FdbEntry)
                      if (e.namespace, e.link) == (link.namespace, link.name)
                      and e.mac == ZERO_MAC and e.dst)

    def routes_section(self) -> None:
        routes, keys = [], set()
        for r in sorted(self.topo.of_type(Route), key=lambda r: repr(r.key)):
            unicast = (r.type or UNICAST) == UNICAST
            if r.namespace not in self.spaces or r.key in keys or r.key in self.implied or \
                    self._on_unwritten(r.namespace, r.dev, r.describe()):
                continue
            if unicast and r.dev and (r.namespace, r.dev) not in self.links:
                self.note(f"{r.describe()}: through {r.dev}, which show does not write")
                continue
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
            if (table := table_in_file(r.table, r.namespace, self.tables)) is not None and \
                    self.own_tables.get((r.namespace, r.dev or "")) != r.table:
                entry["table"] = table  # (through a link with its own table: that table)
            if not unicast:
                entry["type"] = r.type
            if r.onlink:
                entry["onlink"] = True
            if (scope := scope_in_file(r)) is not None:
                entry["scope"] = scope
            if (valid := self._valid("routes", entry, r.describe())):
                routes.append(valid)
        if routes:
            self.doc["routes"] = routes

    def rules_section(self) -> None:
        rules, keys = [], set()
        for r in sorted(self.topo.of_type(Rule), key=lambda r: repr(r.key)):
            if r.namespace not in self.spaces or r.key in keys or r.key in self.implied:
                continue
            if r.table == 0:
                # the kernel's l3mdev rule (`lookup [l3mdev-table]`, made with the first VRF)
                # has no table: a kind that makes VRFs makes it again
                self.note(f"{r.describe()}: the kernel's l3mdev rule (lookup in a VRF's "
                          "table), which the file cannot say")
                continue
            if r.family == 6 and not (r.src or r.dst):
                # the file infers a rule's family from its addresses: an IPv6 rule needs one
                self.note(f"{r.describe()}: an IPv6 rule without from or to, which the file "
                          "cannot say")
                continue
            keys.add(r.key)
            entry: dict[str, Any] = {"namespace": r.namespace} if r.namespace else {}
            entry["priority"] = r.priority
            for key, value in (("from", r.src), ("to", r.dst), ("iif", r.iif), ("oif", r.oif)):
                if value and (key in ("from", "to") or ifname_problem(value) is None):
                    entry[key] = value
            if (table := table_in_file(r.table, r.namespace, self.tables)) is not None:
                entry["table"] = table
            if (valid := self._valid("rules", entry, r.describe())):
                rules.append(valid)
        if rules:
            self.doc["rules"] = rules

    def neighbour_sections(self) -> None:
        own_macs = {(link.namespace, link.mac) for link in self.links.values() if link.mac}
        fdb = []
        for e in sorted(self.topo.of_type(FdbEntry), key=lambda e: repr(e.key)):
            if _multicast(e.mac) or (e.namespace, e.mac) in own_macs:
                continue  # the kernel's own entries
            if self._on_unwritten(e.namespace, e.link, e.describe()) or \
                    (e.namespace, e.link) not in self.links:
                continue
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
            if self._on_unwritten(n.namespace, n.link, n.describe()):
                continue
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


@dataclass(frozen=True)
class Exported:
    """What `show` writes: the document, and what it read but could not write (each named)."""

    document: dict[str, Any]
    notes: tuple[str, ...]

    def text(self) -> str:
        """The file: the notes as a YAML comment above the document."""
        import yaml

        body = yaml.safe_dump(self.document, sort_keys=False).rstrip()
        if not self.notes:
            return body
        head = ["# netdecl show read these but cannot write them in this file; applying it",
                "# leaves them out:"]
        head += [f"# - {' '.join(note.split())}" for note in self.notes]
        return "\n".join(head) + "\n" + body


def export(topo: Topology, name: str) -> Exported:
    exporter = _Exporter(topo, name)
    document = exporter.document()
    return Exported(document, tuple(exporter.notes))


def to_document(topo: Topology, name: str) -> dict[str, Any]:
    return export(topo, name).document


def to_yaml(topo: Topology, name: str) -> str:
    """What `netdecl show` prints."""
    return export(topo, name).text()
