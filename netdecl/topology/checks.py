"""Semantic checks: what a schema cannot say (references, address arithmetic, uniqueness).

Each check is a small function ``check_x(ctx)`` in CHECKS, run in order on the *raw* parsed data.
They run even when the schema found errors (so users see every problem in one go), so each one
looks only at values of the right type and leaves wrong types to the schema's message.

Names and addresses are checked here before they can reach netlink or an ``nft`` command line:
interface names are limited to [A-Za-z0-9_.-] so nothing in them can be nft or shell syntax.
"""

from __future__ import annotations

import difflib
import functools
import ipaddress
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from netdecl.errors import Diagnostic
from netdecl.links import LINK_KINDS, link_kind
from netdecl.links.base import End, entry_namespace, vlan_ids
from netdecl.model import COMMENT_MAX, MAIN_TABLE, ROOT, NatRule, encode_comment
from netdecl.topology import sbr
from netdecl.topology.format import (
    DEFAULT_ROUTE,
    FILTER_SECTIONS,
    LOCAL_SOURCE,
    NAT_FAMILIES,
    NAT_SECTIONS,
    UNICAST,
    IpAddr,
    IpNet,
    NamedTables,
    as_list,
    default_route_to,
    default_scope,
    filter_rule,
    is_int,
    nat_rule,
    parse_interface,
    parse_ip,
    parse_network,
    port_problem,
    route_family,
    route_metric,
    split_target,
    sysctl_value,
)
from netdecl.topology.trafficcontrol import check_traffic_control
from netdecl.topology.yamlsrc import Document, Path, quoted

IFNAMSIZ = 15  # bytes, without the kernel's trailing NUL
NS_NAME_MAX = 64
_IFNAME_CHARS = re.compile(r"[A-Za-z0-9_.-]+")
_NS_CHARS = re.compile(r"[A-Za-z0-9_.-]+")
_MAC = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}")
LOOPBACK_LINK = "lo"  # exists in every namespace without being declared


# ---------------------------------------------------------------------------- name rules


def ifname_problem(name: str) -> str | None:
    """Why ``name`` cannot be a Linux interface name (or be written into an nft rule)."""
    if len(name) <= IFNAMSIZ and _IFNAME_CHARS.fullmatch(name) and name not in (".", ".."):
        return None  # the common case, first: a file names thousands of links
    q = quoted(name)
    if not name:
        return "interface name is empty"
    if len(name.encode()) > IFNAMSIZ:
        return f"interface name {q} is {len(name.encode())} bytes; Linux allows at most 15"
    if name in (".", ".."):
        return f"interface name {q} is reserved"
    if "/" in name:
        return f"interface name {q} must not contain '/'"
    if any(c.isspace() for c in name):
        return f"interface name {q} must not contain whitespace"
    if ":" in name:
        return f"interface name {q} must not contain ':' (that is alias syntax)"
    if not _IFNAME_CHARS.fullmatch(name):
        return f"interface name {q} may only contain letters, digits, '_', '.' and '-'"
    return None


def nsname_problem(name: str) -> str | None:
    """Why ``name`` cannot be a namespace name: it becomes the file /run/netns/NAME."""
    if len(name) <= NS_NAME_MAX and _NS_CHARS.fullmatch(name) and ".." not in name \
            and not name.startswith("."):
        return None  # the common case, first: a file names a namespace thousands of times
    q = quoted(name)
    if not name:
        return "namespace name is empty"
    if len(name) > NS_NAME_MAX:
        return f"namespace name {q} is {len(name)} characters; the limit is {NS_NAME_MAX}"
    if "/" in name or ".." in name or name.startswith("."):
        return f"namespace name {q} could escape /run/netns ('/', '..' and a leading '.' " \
               "are not allowed)"
    if any(c.isspace() for c in name):
        return f"namespace name {q} must not contain whitespace"
    if not _NS_CHARS.fullmatch(name):
        return f"namespace name {q} may only contain letters, digits, '_', '.' and '-'"
    return None


SUGGEST_MAX_CANDIDATES = 200  # difflib is O(candidates); hostile files must not make it O(n^2)


def suggest(word: str, candidates: list[str]) -> str:
    if len(candidates) > SUGGEST_MAX_CANDIDATES:
        return ""
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


# ---------------------------------------------------------------------------- context


@dataclass
class LinkDecl:
    """One declared link end: a links[] item, or the peer inside it."""

    namespace: str
    name: str
    kind: Any
    path: Path  # path of the mapping declaring it
    spec: dict[str, Any]


@dataclass
class Context:
    doc: Document
    file: str
    errors: list[Diagnostic] = field(default_factory=list)
    warnings: list[Diagnostic] = field(default_factory=list)
    namespaces: set[str] = field(default_factory=set)
    links: list[LinkDecl] = field(default_factory=list)
    link_index: dict[tuple[str, str], LinkDecl] = field(default_factory=dict)
    names_in: dict[str, list[str]] = field(default_factory=dict)  # namespace -> link names
    namespaces_of: dict[str, list[str]] = field(default_factory=dict)  # link name -> namespaces
    # Declared networks per namespace by prefix length, so an on-link test is a few set lookups
    # however many addresses there are: namespace -> prefixlen -> networks.
    networks: dict[str, dict[int, set[IpNet]]] = field(default_factory=dict)
    # Destinations of the scope-link routes (no gateway) per namespace, with their dev: a
    # gateway they cover is on-link too (Calico's `169.254.1.1 dev eth0 scope link`).
    link_routes: dict[str, list[tuple[IpNet, Any]]] = field(default_factory=dict)
    addresses: set[tuple[str, IpAddr]] = field(default_factory=set)  # (namespace, address)
    # namespaces with a link the host owns (kind external): their live addresses decide
    # what is on-link there, which only plan can know
    external_namespaces: set[str] = field(default_factory=set)
    # the routing tables declared links own (a VRF's): what ``table:`` may name
    tables: NamedTables = field(default_factory=dict)
    # (namespace, name) of a host's link an entry moves away -> what moves it (host-device)
    moved: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def data(self) -> dict[str, Any]:
        return self.doc.data if isinstance(self.doc.data, dict) else {}

    def error(self, path: Path, message: str, at_key: bool = False) -> None:
        line, col = self.doc.key_pos(path) if at_key else self.doc.value_pos(path)
        file, note = self.doc.origin(path)
        self.errors.append(Diagnostic(file or self.file, line, col, message, note=note))

    def quoted(self, text: str) -> str:
        return quoted(text)

    def ip_version(self, path: Path, text: str) -> int | None:
        addr, problem = parse_ip(text)
        if problem:
            self.error(path, problem)
        return addr.version if addr is not None and not problem else None

    def ifname(self, path: Path, text: str) -> bool:
        problem = ifname_problem(text)
        if problem:
            self.error(path, problem)
        return problem is None

    def moved_away(self, namespace: str, name: str) -> str | None:
        return self.moved.get((namespace, name))

    def warn(self, path: Path, message: str) -> None:
        line, col = self.doc.value_pos(path)
        file, note = self.doc.origin(path)
        self.warnings.append(Diagnostic(file or self.file, line, col, message,
                                        severity="warning", note=note))

    def items(self, *section: str) -> Iterator[tuple[Path, dict[str, Any]]]:
        """The mapping items of a list section (``links``, ``nat.masquerade``), with paths."""
        node: Any = self.data
        for part in section:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, list):
            return
        for i, item in enumerate(node):
            if isinstance(item, dict):
                yield (*section, i), item

    def sysctls_of(self, namespace: str) -> dict[str, Any]:
        if namespace == ROOT:
            table = self.data.get("sysctls")
        else:
            namespaces = self.data.get("namespaces")
            spec = namespaces.get(namespace) if isinstance(namespaces, dict) else None
            table = spec.get("sysctls") if isinstance(spec, dict) else None
        return table if isinstance(table, dict) else {}

    # -- references -------------------------------------------------------------------------

    def ns_ref(self, path: Path, value: Any) -> str | None:
        """The namespace a ``namespace:`` value names (ROOT if omitted), or None after an error."""
        if value is None:
            return ROOT
        if not isinstance(value, str):
            return None
        problem = nsname_problem(value)
        if problem:
            self.error(path, problem)
            return None
        if value not in self.namespaces:
            declared = sorted(self.namespaces)
            hint = suggest(value, declared) or (
                f" (declared: {', '.join(declared)})" if declared else " (none are declared)")
            self.error(path, f"namespace '{value}' is not declared under namespaces:{hint}")
            return None
        return value

    def declared(self, namespace: str, name: str) -> LinkDecl | None:
        return self.link_index.get((namespace, name))

    def link_ref(self, path: Path, namespace: str | None, value: Any) -> LinkDecl | None:
        """Check a reference to a declared link in ``namespace``; errors say what's wrong."""
        if not isinstance(value, str):
            return None
        problem = ifname_problem(value)
        if problem:
            self.error(path, problem)
            return None
        if namespace is None or value == LOOPBACK_LINK:
            return None
        found = self.link_index.get((namespace, value))
        if found is None:
            elsewhere = sorted(ns or "root" for ns in self.namespaces_of.get(value, []))[:5]
            hint = (f" (it is in namespace {', '.join(elsewhere)})" if elsewhere
                    else suggest(value, self.names_in.get(namespace, [])))
            self.error(path, f"no link '{value}' in namespace {namespace or 'root'}{hint}")
        return found


def collect(ctx: Context) -> None:
    """Index what is declared, so checks can resolve references regardless of order."""
    namespaces = ctx.data.get("namespaces")
    if isinstance(namespaces, dict):
        ctx.namespaces = {n for n in namespaces if nsname_problem(n) is None}
    for path, item in ctx.items("links"):
        kind = link_kind(item.get("kind"))
        if kind is None:  # the schema reports the kind; the entry still declares its name
            if isinstance(item.get("name"), str):
                ctx.links.append(LinkDecl(entry_namespace(item), item["name"], item.get("kind"),
                                          path, item))
            continue
        for end in kind.ends(item, entry_namespace(item), path):
            ctx.links.append(LinkDecl(end.namespace, end.name, kind.name, end.path,
                                      dict(end.entry)))
        moved = kind.moves(item)
        if moved is not None:
            ctx.moved.setdefault(moved, f"{kind.name} {quoted(str(item.get('name')))} moves it "
                                        f"into namespace {entry_namespace(item) or 'root'}")
    ctx.external_namespaces = {d.namespace for d in ctx.links
                               if (k := link_kind(d.kind)) is not None and not k.made}
    for decl in ctx.links:
        kind = link_kind(decl.kind)
        table = kind.routing_table(decl.spec) if kind is not None else None
        if table is not None:
            ctx.tables.setdefault((decl.namespace, decl.name), table)
        if (decl.namespace, decl.name) not in ctx.link_index:
            ctx.link_index[(decl.namespace, decl.name)] = decl
            ctx.names_in.setdefault(decl.namespace, []).append(decl.name)
            ctx.namespaces_of.setdefault(decl.name, []).append(decl.namespace)


# ---------------------------------------------------------------------------- checks


def check_namespace_names(ctx: Context) -> None:
    namespaces = ctx.data.get("namespaces")
    if not isinstance(namespaces, dict):
        return
    for name in namespaces:
        problem = nsname_problem(name)
        if problem:
            ctx.error(("namespaces", name), problem, at_key=True)


def check_link_names(ctx: Context) -> None:
    for decl in ctx.links:
        problem = ifname_problem(decl.name)
        if problem:
            ctx.error((*decl.path, "name"), problem)
        ctx.ns_ref((*decl.path, "namespace"), decl.spec.get("namespace"))


def check_duplicate_links(ctx: Context) -> None:
    seen: dict[tuple[str, str], LinkDecl] = {}
    for decl in ctx.links:
        first = seen.setdefault((decl.namespace, decl.name), decl)
        if first is not decl:
            where = ctx.doc.where((*first.path, "name"), ctx.file)
            ctx.error((*decl.path, "name"),
                      f"link {quoted(decl.name)} is declared twice in namespace "
                      f"{decl.namespace or 'root'} (first at {where})")


# A Linux bridge has at most 1024 ports (BR_MAX_PORTS: 10 bits of port number); the 1025th is
# refused with EXFULL ("Exchange full"), so a star of 2000 containers needs two bridges.
BRIDGE_MAX_PORTS = 1024


def check_masters(ctx: Context) -> None:
    ports: dict[tuple[str, str], int] = {}
    for decl in ctx.links:
        master = decl.spec.get("master")
        path = (*decl.path, "master")
        if master is None:
            if decl.spec.get("hairpin") is True:
                ctx.warn((*decl.path, "hairpin"),
                         f"hairpin on {quoted(decl.name)} does nothing without a master bridge")
            continue
        if not isinstance(master, str):
            continue
        if master == decl.name:
            ctx.error(path, f"link {quoted(decl.name)} cannot be its own master")
            continue
        target = ctx.link_ref(path, decl.namespace, master)
        joined = link_kind(target.kind) if target is not None else None
        if target is not None and _routes_ports(target.kind):
            if _routes_ports(decl.kind):
                ctx.error(path, f"VRF {quoted(decl.name)} cannot be a port of another VRF")
            continue
        if target is not None and joined is not None and joined.members:
            joined.check_member(ctx, End(decl.namespace, decl.name, decl.path, decl.spec),
                                End(target.namespace, target.name, target.path, target.spec))
        elif target is not None and not _takes_ports(target.kind):
            ctx.error(path, f"master '{master}' is a {target.kind}, not a {_JOINABLE}")
        elif target is not None and (_takes_ports(decl.kind) or _routes_ports(decl.kind)):
            ctx.error(path, f"{decl.kind} {quoted(decl.name)} cannot be a port of a bridge")
        elif target is not None:
            count = ports[(decl.namespace, master)] = ports.get((decl.namespace, master), 0) + 1
            if count == BRIDGE_MAX_PORTS + 1:
                ctx.error(path, f"bridge '{master}' would have more than {BRIDGE_MAX_PORTS} "
                                "ports, the most a Linux bridge holds (the kernel refuses the "
                                "next one); spread the links over more bridges")


def check_link_macs(ctx: Context) -> None:
    for decl in ctx.links:
        mac = decl.spec.get("mac")
        if not isinstance(mac, str) or not _MAC.fullmatch(mac):
            continue  # the schema reports the form
        first = int(mac[:2], 16)
        if first & 1:
            ctx.error((*decl.path, "mac"),
                      f"MAC {mac} is a multicast address; a link needs a unicast one "
                      "(first byte even, e.g. 02:...)")
        elif mac.replace(":", "") == "0" * 12:
            ctx.error((*decl.path, "mac"), "MAC 00:00:00:00:00:00 cannot be a link address")


def _domain(ctx: Context, decl: LinkDecl) -> str | None:
    """The routing domain a link's addresses live in: the VRF it joins, None for its
    namespace's main one (VRFs are for overlapping addresses: 10.0.0.1 in each tenant's)."""
    master = decl.spec.get("master")
    if not isinstance(master, str):
        return None
    target = ctx.link_index.get((decl.namespace, master))
    return master if target is not None and _routes_ports(target.kind) else None


def check_addresses(ctx: Context) -> None:
    """Valid addresses with prefix, and no address twice in a namespace's routing domain."""
    owner: dict[tuple[str, str | None, IpAddr], tuple[str, Path]] = {}
    for decl in ctx.links:
        addresses = decl.spec.get("addresses")
        if not isinstance(addresses, list):
            continue
        domain = _domain(ctx, decl)
        for i, text in enumerate(addresses):
            if not isinstance(text, str):
                continue
            path = (*decl.path, "addresses", i)
            iface, problem = parse_interface(text)
            if iface is None:
                ctx.error(path, problem or "bad address")
                continue
            name, first = owner.setdefault((decl.namespace, domain, iface.ip),
                                           (decl.name, path))
            if first != path:
                where = f" in VRF {quoted(domain)}" if domain else ""
                ctx.error(path, f"address {iface.ip} is already on {quoted(name)} ("
                                f"{ctx.doc.where(first, ctx.file)}) in namespace "
                                f"{decl.namespace or 'root'}{where}")
                continue
            ctx.addresses.add((decl.namespace, iface.ip))
            by_len = ctx.networks.setdefault(decl.namespace, {})
            by_len.setdefault(iface.network.prefixlen, set()).add(iface.network)


# what a master may be: the kinds others join (a bridge's ports, a bond's members)
_JOINABLE = " or a ".join(k.name for k in LINK_KINDS.values()
                          if k.ports or k.members or k.l3_master)


def _takes_ports(kind: Any) -> bool:
    found = link_kind(kind)
    return found is not None and found.ports


def _routes_ports(kind: Any) -> bool:
    """Links join it to be routed in its table (a VRF)."""
    found = link_kind(kind)
    return found is not None and found.l3_master


def check_link_vlans(ctx: Context) -> None:
    """A ``vlans`` list: ids in 1-4094 (a range low to high), each once, one pvid, and only on
    a bridge or a port of one (the bridge keeps them)."""
    for decl in ctx.links:
        items = decl.spec.get("vlans")
        if not isinstance(items, list):
            continue
        path = (*decl.path, "vlans")
        master = ctx.link_index.get((decl.namespace, decl.spec.get("master") or ""))
        if not _takes_ports(decl.kind) and not (master is not None
                                                and _takes_ports(master.kind)):
            ctx.error(path, f"{quoted(decl.name)} has vlans but is no bridge and no port of "
                            "one: only a bridge keeps VLANs for its ports and itself")
            continue
        seen: set[int] = set()
        pvids = 0
        for i, item in enumerate(items):
            if not isinstance(item, dict) or "id" not in item:
                continue  # the schema says what is wrong
            ids = vlan_ids(item["id"])
            if ids is None:
                ctx.error((*path, i, "id"), f"VLAN {item['id']!r} is not an id or a range "
                                            "low-high within 1-4094")
                continue
            if item.get("pvid") is True:
                pvids += 1
                if len(ids) > 1 or pvids > 1:
                    ctx.error((*path, i, "pvid"), "one VLAN id is the pvid of a link, not "
                                                  "a range or several")
            twice = seen.intersection(ids)
            if twice:
                ctx.error((*path, i, "id"), f"VLAN {min(twice)} is listed twice")
            seen.update(ids)


def check_link_kinds(ctx: Context) -> None:
    """Each kind's own checks (netdecl/links/), over its declared links."""
    for kind in LINK_KINDS.values():
        ends = [End(d.namespace, d.name, d.path, d.spec) for d in ctx.links if d.kind == kind.name]
        if ends:
            kind.check(ctx, ends)


def check_sysctls(ctx: Context) -> None:
    tables: list[tuple[Path, Any]] = [(("sysctls",), ctx.data.get("sysctls"))]
    namespaces = ctx.data.get("namespaces")
    if isinstance(namespaces, dict):
        tables += [(("namespaces", n, "sysctls"), s.get("sysctls"))
                   for n, s in namespaces.items() if isinstance(s, dict)]
    for path, table in tables:
        if not isinstance(table, dict):
            continue
        for name, value in table.items():
            # Only net.* lives in a network namespace: kernel.*, vm.*, fs.* written from inside
            # one change the whole machine, which a namespace's settings must never do.
            if path[0] == "namespaces" and isinstance(name, str) and \
                    not name.replace("/", ".").startswith("net."):
                ctx.error((*path, name), f"sysctl {quoted(name)} is not per network namespace "
                                         "(only net.* are): setting it here would change the "
                                         "whole host; declare it in the top-level sysctls",
                          at_key=True)
            # Values are written to /proc/sys files: one line of printable text.
            if isinstance(value, str) and (not value.isprintable() or len(value) > 1024):
                ctx.error((*path, name), f"sysctl {quoted(name)}: value must be one line of "
                                         "printable text (at most 1024 characters)")


def collect_link_routes(ctx: Context) -> None:
    """Index the routes that make their destination on-link (before any gateway is checked)."""
    for _, route in ctx.items("routes"):
        family = route_family(route)
        scope = route.get("scope", default_scope(family, route.get("type", UNICAST),
                                                 route.get("via")))
        ns = route.get("namespace", ROOT)
        to = route.get("to")
        if scope != "link" or "via" in route or not isinstance(ns, str) or \
                not isinstance(to, str) or to == DEFAULT_ROUTE:
            continue
        net, _ = parse_network(to)
        # a default route is no on-link route, however it is spelled (`default` is skipped
        # above; 0.0.0.0/0 and ::/0 are the same route, and `show` writes them as `default`)
        if net is not None and net.prefixlen > 0:
            ctx.link_routes.setdefault(ns, []).append((net, route.get("dev")))


def check_route_scope(ctx: Context, path: Path, route: dict[str, Any], family: int) -> None:
    scope = route.get("scope")
    if scope is None or scope == "global":
        return
    if family == 6:
        ctx.error((*path, "scope"), f"an IPv6 route has no scope {scope}: the kernel keeps "
                                    "every IPv6 route global (leave scope out)")
    elif route.get("type", UNICAST) != UNICAST:
        ctx.error((*path, "scope"), f"a {route.get('type')} route is scope global")
    elif scope == "link" and "via" in route and route.get("onlink") is not True:
        ctx.error((*path, "scope"), "a route via a gateway cannot be scope link (the gateway "
                                    "is reached through another route): leave scope out")
    elif scope == "host" and "via" in route:
        ctx.error((*path, "scope"), "a route via a gateway cannot be scope host")


def check_routes(ctx: Context) -> None:
    seen: dict[tuple[Any, ...], Path] = {}
    collect_link_routes(ctx)
    own_tables = sbr.tables_through(ctx.data)
    for path, route in ctx.items("routes"):
        ns = ctx.ns_ref((*path, "namespace"), route.get("namespace"))
        family = route_family(route)
        to = check_route_to(ctx, path, route, family)
        check_route_scope(ctx, path, route, family)
        check_route_gateway(ctx, path, route, ns, family)
        if isinstance(route.get("dev"), str):
            ctx.link_ref((*path, "dev"), ns, route["dev"])
        metric = route_metric(route, family)
        table = check_table(ctx, path, route, ns)
        if "table" not in route and table is not None:  # through a link with its own table
            dev = route.get("dev")
            table = (own_tables.get((ns, dev)) if isinstance(ns, str) and isinstance(dev, str)
                     else None) or table
        if to is None or ns is None or not is_int(metric) or table is None:
            continue
        key = (ns, table, to, metric)
        first = seen.setdefault(key, path)
        if first != path:
            ctx.error((*path, "to"), f"route {route.get('to')} (table {key[1]}, metric {metric}) "
                                     f"is declared twice in namespace {ns or 'root'} "
                                     f"(first at {ctx.doc.where(first, ctx.file)})")


def check_table(ctx: Context, path: Path, item: dict[str, Any], ns: str | None) -> int | None:
    """The table number a route's or a rule's ``table:`` means, or None after saying why it
    cannot be one: a name must be a VRF's of the namespace, and a VRF's table is named, not
    numbered (one table, one meaning: a plain table that is also a VRF's would carry the
    VRF's traffic and the policy routing's at once)."""
    value = item.get("table", MAIN_TABLE)
    where = (*path, "table")
    if ns is None:
        return None
    if isinstance(value, str):
        if (ns, value) in ctx.tables:
            return ctx.tables[(ns, value)]
        if ifname_problem(value) is None:  # else the schema's pattern says it
            vrfs = sorted(name for (space, name) in ctx.tables if space == ns)
            hint = suggest(value, vrfs) or (f" (its VRFs: {', '.join(vrfs)})" if vrfs else "")
            ctx.error(where, f"table {quoted(value)} names no VRF in namespace "
                             f"{ns or 'root'}{hint}")
        return None
    if not is_int(value):
        return None
    owner = next((name for (space, name), table in sorted(ctx.tables.items())
                  if space == ns and table == value), None)
    if owner is not None:
        ctx.error(where, f"table {value} is the table of VRF {quoted(owner)}: a route or rule "
                         f"in it names the VRF (table: {owner}), and a plain table needs a "
                         "number no VRF uses")
        return None
    return int(value)


def check_route_to(ctx: Context, path: Path, route: dict[str, Any], family: int) -> str | None:
    """Normalised destination, or None after reporting why it can't be one."""
    to = route.get("to")
    if not isinstance(to, str):
        return None
    if to == DEFAULT_ROUTE:
        return default_route_to(family)
    net, problem = parse_network(to)
    if net is None:
        ctx.error((*path, "to"), problem or "bad network")
        return None
    return str(net)


def check_route_gateway(ctx: Context, path: Path, route: dict[str, Any], ns: str | None,
                        family: int) -> None:
    rtype = route.get("type", UNICAST)
    # src applies to every type (and its family must be the route's, or the kernel refuses);
    # via only to unicast routes
    checked: tuple[str, ...] = ("src",)
    if rtype in ("blackhole", "unreachable", "prohibit"):
        for key in ("via", "dev"):
            if key in route:
                ctx.error((*path, key), f"a {rtype} route has no '{key}'")
    else:
        checked = ("via", "src")
        if "via" not in route and "dev" not in route:
            ctx.error(path, "a route needs 'via' (a gateway) or 'dev' (a link)")
    for key in checked:
        text = route.get(key)
        if not isinstance(text, str):
            continue
        addr, problem = parse_ip(text)
        if addr is None:
            ctx.error((*path, key), problem or "bad address")
            continue
        if addr.version != family:
            ctx.error((*path, key), f"{key} {text} is IPv{addr.version} but the route is "
                                    f"IPv{family}")
            continue
        if key == "via" and ns is not None and route.get("onlink") is not True:
            check_on_link(ctx, (*path, key), addr, ns, route)


def check_on_link(ctx: Context, path: Path, gateway: IpAddr, ns: str,
                  route: dict[str, Any]) -> None:
    """The kernel refuses a gateway it cannot reach directly ("Nexthop has invalid gateway")."""
    if gateway.is_link_local and "dev" in route:
        return  # fe80:: gateways are on-link on the given device by definition
    if ns in ctx.external_namespaces:
        return  # the host's NIC has addresses only the live kernel knows: plan checks this
    for prefixlen, networks in ctx.networks.get(ns, {}).items():
        if prefixlen <= gateway.max_prefixlen and \
                ipaddress.ip_network((gateway, prefixlen), strict=False) in networks:
            return
    dev = route.get("dev")
    for net, link in ctx.link_routes.get(ns, []):
        if gateway in net and (dev is None or link is None or dev == link):
            return
    ctx.error(path, f"gateway {gateway} is not on-link: no address in namespace {ns or 'root'} "
                    "covers it, nor does a scope-link route (add one, or set onlink: true)")


def check_nat(ctx: Context) -> None:
    forwards: list[Forward] = []
    for section in NAT_SECTIONS:
        for path, rule in ctx.items("nat", section):
            errors = len(ctx.errors)
            ns = ctx.ns_ref((*path, "namespace"), rule.get("namespace"))
            for key in ("out", "not_out", "in"):
                if key in rule:
                    ctx.link_ref((*path, key), ns, rule[key])
            families = rule_families(ctx, path, rule)
            if check_one_family(ctx, path, section, families):
                check_nat_family(ctx, path, families)
            if section == "port_forwards" and (problem := port_problem(rule.get("port"))):
                ctx.error((*path, "port"), problem)
            if section == "port_forwards":
                check_targets(ctx, path, rule)
            if len(ctx.errors) == errors:
                built = check_label(ctx, path, functools.partial(nat_rule, section, rule))
                if built is not None and built.kind == "dnat" and ns is not None:
                    forwards.append(Forward(path, ns, built))
    check_forward_overlaps(ctx, forwards)


def check_filter(ctx: Context) -> None:
    for section in FILTER_SECTIONS:
        for path, rule in ctx.items("filter", section):
            errors = len(ctx.errors)
            ns = ctx.ns_ref((*path, "namespace"), rule.get("namespace"))
            for key in ("in", "out"):
                if key in rule:
                    ctx.link_ref((*path, key), ns, rule[key])
            check_one_family(ctx, path, f"filter {section}", rule_families(ctx, path, rule))
            if rule.get("source") == LOCAL_SOURCE:
                ctx.error((*path, "source"), "a forward filter never sees what the host itself "
                                             "sends (source: local is for masquerade and snat)")
            if "port" in rule:
                if problem := port_problem(rule.get("port")):
                    ctx.error((*path, "port"), problem)
                elif "proto" not in rule:
                    ctx.error((*path, "port"), "a port needs a proto (tcp or udp)")
            if len(ctx.errors) == errors:
                check_label(ctx, path, functools.partial(filter_rule, rule))


def check_label(ctx: Context, path: Path, build: Callable[[], NatRule]) -> NatRule | None:
    """Every rule carries its own description as its nft comment, which nft limits to 128
    bytes: refuse here what would not fit, rather than fail at apply."""
    try:
        rule = build()
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        return None  # a malformed rule: the schema reports it (the checks run on raw data)
    try:
        label = encode_comment(9999, rule)
    except TypeError:
        return None  # a value of the wrong type: the schema reports it
    except ValueError:
        label = ""  # too long, once written out
    if not label or len(label.encode()) > COMMENT_MAX:
        ctx.error(path, f"this rule is too long for netdecl to label in nftables (its "
                        f"description may be at most {COMMENT_MAX} bytes): shorten its link "
                        "names or split its lists over several rules")
    return rule


@dataclass
class Forward:
    path: Path
    namespace: str
    rule: NatRule


def check_forward_overlaps(ctx: Context, forwards: list[Forward]) -> None:
    """Two port forwards that catch the same connections: nft would silently use the first."""
    for i, later in enumerate(forwards):
        for earlier in forwards[:i]:
            if earlier.namespace == later.namespace and \
                    _same_traffic(ctx, later.namespace, earlier.rule, later.rule):
                where = ctx.doc.where(earlier.path, ctx.file)
                ctx.error(later.path, f"this port forward catches the same connections as the "
                                      f"one at {where} ({earlier.rule.describe()}), which "
                                      "would always win: give one of them another port, "
                                      "address, in or from")
                break


def _same_traffic(ctx: Context, ns: str, a: NatRule, b: NatRule) -> bool:
    if a.proto != b.proto or a.family != b.family or a.port is None or b.port is None:
        return False
    if max(a.port, b.port) > min(a.port_end or a.port, b.port_end or b.port):
        return False
    if a.address != b.address:
        one = a.address or b.address
        local = {str(ip) for (where, ip) in ctx.addresses if where == ns}
        if a.address and b.address or one not in local:
            return False  # different addresses, or a virtual IP next to the local addresses
    if a.in_ and b.in_ and a.in_ != b.in_:
        return False
    if a.from_ and b.from_ and not ipaddress.ip_network(a.from_).overlaps(
            ipaddress.ip_network(b.from_)):
        return False
    return True


def check_targets(ctx: Context, path: Path, rule: dict[str, Any]) -> None:
    """A load-balanced forward: distinct addresses, all on one port (nft maps the new
    connection to an address and then rewrites the port once)."""
    targets = rule.get("to")
    if not isinstance(targets, list):
        return
    ports: set[int | None] = set()
    seen: set[Any] = set()
    for i, text in enumerate(targets):
        if not isinstance(text, str):
            continue
        address, port, _ = split_target(text)
        if address is None:
            continue  # reported by rule_families
        if address in seen:
            ctx.error((*path, "to", i), f"target {address} is listed twice")
        seen.add(address)
        ports.add(port)
    if len(ports) > 1:
        ctx.error((*path, "to"), "the targets of one port forward must share one port (or all "
                                 "give none): write one port forward per target port")


def check_one_family(ctx: Context, path: Path, section: str,
                     families: dict[Path, int]) -> bool:
    """All addresses of a rule must be one family: an nft rule matches only one."""
    if not families:
        return True
    first_key, first = next(iter(families.items()))
    for key, family in families.items():
        if family != first:
            ctx.error((*path, *key), f"{section} rule mixes address families: {key[0]} is "
                                     f"IPv{family} but {first_key[0]} is IPv{first}")
            return False
    return True


def check_nat_family(ctx: Context, path: Path, families: dict[Path, int]) -> None:
    """Refuse at validate time what the NAT backend cannot render, rather than fail at apply."""
    for key, family in families.items():
        if family not in NAT_FAMILIES:
            ctx.error((*path, *key), f"IPv{family} NAT is not supported")
            return


def rule_families(ctx: Context, path: Path, rule: dict[str, Any]) -> dict[Path, int]:
    """Check the addresses of one NAT or filter rule; return the family of each valid one,
    keyed by where it is (``("to", 1)`` for the second of a list)."""
    families: dict[Path, int] = {}
    for key in ("source", "from", "destination", "not_destination"):
        values = rule.get(key)
        if values is None or (key == "source" and values == LOCAL_SOURCE):
            continue  # (``source: local``: the host's own traffic, no network; see check_filter)
        listed = isinstance(values, list)
        nets: list[tuple[Path, IpNet]] = []
        for i, text in enumerate(as_list(values)):
            where = (key, i) if listed else (key,)
            if not isinstance(text, str):
                continue
            net, problem = parse_network(text)
            if net is None:
                ctx.error((*path, *where), problem or "bad network")
                continue
            families[where] = net.version
            for _, other in nets:
                if other.version == net.version and other.overlaps(net):
                    ctx.error((*path, *where), f"{net} overlaps {other}, also in this list: "
                                               "list each network once")
                    break
            nets.append((where, net))
    for key in ("to_source", "address"):
        if isinstance(rule.get(key), str):
            addr, problem = parse_ip(rule[key])
            if addr is None:
                ctx.error((*path, key), problem or "bad address")
            else:
                families[(key,)] = addr.version
    targets = rule.get("to")
    for i, text in enumerate(as_list(targets) if targets is not None else []):
        where = ("to", i) if isinstance(targets, list) else ("to",)
        if not isinstance(text, str):
            continue
        addr, _, problem = split_target(text)
        if addr is None:
            ctx.error((*path, *where), problem or "bad target")
        else:
            families[where] = addr.version
    return families


def check_fdb(ctx: Context) -> None:
    for path, entry in ctx.items("fdb"):
        ns = ctx.ns_ref((*path, "namespace"), entry.get("namespace"))
        ctx.link_ref((*path, "link"), ns, entry.get("link"))
        if isinstance(entry.get("dst"), str) and (problem := parse_ip(entry["dst"])[1]):
            ctx.error((*path, "dst"), problem)


def check_neighbors(ctx: Context) -> None:
    for path, entry in ctx.items("neighbors"):
        ns = ctx.ns_ref((*path, "namespace"), entry.get("namespace"))
        ctx.link_ref((*path, "link"), ns, entry.get("link"))
        if isinstance(entry.get("address"), str) and (problem := parse_ip(entry["address"])[1]):
            ctx.error((*path, "address"), problem)


def check_rules(ctx: Context) -> None:
    seen: dict[tuple[Any, ...], Path] = {}
    for path, rule in ctx.items("rules"):
        ns = ctx.ns_ref((*path, "namespace"), rule.get("namespace"))
        families = set()
        for key in ("from", "to"):
            if isinstance(rule.get(key), str):
                net, problem = parse_network(rule[key])
                if net is None:
                    ctx.error((*path, key), problem or "bad network")
                else:
                    families.add(net.version)
        if len(families) > 1:
            ctx.error((*path, "to"), "rule 'from' and 'to' are different address families")
        for key in ("iif", "oif"):
            # Need not be declared (rules often match the host's own NICs); must be a name.
            if isinstance(rule.get(key), str) and (problem := ifname_problem(rule[key])):
                ctx.error((*path, key), problem)
        check_table(ctx, path, rule, ns)
        priority = rule.get("priority")
        if ns is None or not is_int(priority) or len(families) > 1:
            continue
        seen_key = (ns, families.pop() if families else 4, priority)
        first = seen.setdefault(seen_key, path)
        if first != path:
            ctx.error((*path, "priority"), f"rule priority {priority} is used twice in namespace "
                                           f"{ns or 'root'} (first at "
                                           f"{ctx.doc.where(first, ctx.file)})")


def check_probes(ctx: Context) -> None:
    for path, probe in ctx.items("probes"):
        if isinstance(probe.get("from"), str):
            ns = ctx.ns_ref((*path, "from"), probe["from"])
            vrf = probe.get("in_vrf")
            if isinstance(vrf, str) and ns is not None and \
                    (found := ctx.link_ref((*path, "in_vrf"), ns, vrf)) is not None and \
                    not _routes_ports(found.kind):
                ctx.error((*path, "in_vrf"), f"{quoted(vrf)} is a {found.kind}, not a VRF")
        to = probe.get("to")
        if isinstance(to, str) and to not in ctx.namespaces and parse_ip(to)[0] is None:
            hint = suggest(to, sorted(ctx.namespaces))
            ctx.error((*path, "to"), f"probe target {quoted(to)} is neither a declared "
                                     f"namespace nor an IP address{hint}")
        if isinstance(probe.get("source"), str) and (problem := parse_ip(probe["source"])[1]):
            ctx.error((*path, "source"), problem)
        if probe.get("proto") == "udp" and probe.get("port") is None:
            ctx.error((*path, "proto"), "a udp probe needs a port (without one, a probe is an "
                                        "ICMP echo)")


# ---------------------------------------------------------------------------- warnings


def sysctl_is_one(ctx: Context, namespace: str, *names: str) -> bool:
    table = ctx.sysctls_of(namespace)
    return any(sysctl_value(table.get(n)) == "1" for n in names if n in table)


FORWARDING = {4: ("net.ipv4.ip_forward", "net.ipv4.conf.all.forwarding"),
              6: ("net.ipv6.conf.all.forwarding",)}


def warn_nat_without_forwarding(ctx: Context) -> None:
    """NAT in a namespace that doesn't forward (that family) is almost always a forgotten
    sysctl."""
    warned: set[tuple[str, int]] = set()
    for section in NAT_SECTIONS:
        for path, rule in ctx.items("nat", section):
            ns = rule.get("namespace", ROOT)
            if not isinstance(ns, str):
                continue
            family = next(iter(rule_families(_quiet(ctx), path, rule).values()), 4)
            if (ns, family) in warned:
                continue
            warned.add((ns, family))
            names = FORWARDING[family]
            if not sysctl_is_one(ctx, ns, *names):
                where = f"namespaces.{ns}.sysctls" if ns else "sysctls"
                what = "nat rules" if family == 4 else "IPv6 nat rules"
                ctx.warn(path, f"{what} in namespace {ns or 'root'} but "
                               f"{names[0]} is not 1 there: forwarded traffic will be dropped "
                               f"(set it under {where})")


def _quiet(ctx: Context) -> Context:
    """A context whose errors go nowhere (to ask a check's helper, not to report twice)."""
    return Context(ctx.doc, ctx.file)


def warn_localnet(ctx: Context) -> None:
    """DNAT of traffic to 127.0.0.0/8 is dropped unless route_localnet is on."""
    for path, rule in ctx.items("nat", "port_forwards"):
        ns = rule.get("namespace", ROOT)
        if not isinstance(ns, str):
            continue
        address = rule.get("address")
        loopback = rule.get("in") == LOOPBACK_LINK or (
            isinstance(address, str) and (addr := parse_ip(address)[0]) is not None
            and addr.version == 4 and addr.is_loopback)
        if loopback and not sysctl_is_one(ctx, ns, "net.ipv4.conf.all.route_localnet",
                                          "net.ipv4.conf.lo.route_localnet"):
            ctx.warn(path, "port forward from the loopback needs "
                           "net.ipv4.conf.all.route_localnet: 1 in this namespace, or the "
                           "kernel drops the rewritten packets")


CHECKS: tuple[Callable[[Context], None], ...] = (
    check_namespace_names,
    check_link_names,
    check_duplicate_links,
    check_masters,
    check_link_macs,
    check_addresses,
    check_link_vlans,
    check_link_kinds,
    check_sysctls,
    check_routes,
    check_nat,
    check_filter,
    check_fdb,
    check_neighbors,
    check_rules,
    sbr.check,
    check_probes,
    check_traffic_control,
    warn_nat_without_forwarding,
    warn_localnet,
)


def run_checks(doc: Document, file: str) -> Context:
    """Run every check; the context holds the errors and warnings found."""
    ctx = Context(doc, file)
    collect(ctx)
    for check in CHECKS:
        check(ctx)
    return ctx
