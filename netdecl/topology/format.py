"""The one place that knows how a topology file spells things, and what the model holds for them.

The JSON Schema (topology.schema.json) says which shapes a file may have. This module owns
every other fact of the file's spelling: the grammar of values (addresses, networks,
``ADDRESS[:PORT]`` targets, port ranges), the words the file uses (``default`` for a default
route, ``in``/``from`` for the model's ``in_``/``from_``, the NAT and filter sections), what an
omitted key means (the kernel's default metric, iproute2's route scope, the VXLAN port). The
checks, the loader and the exporter all ask it; the model holds the parsed, typed values, so
the engine, the backends and the tools never parse file text.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from functools import lru_cache, wraps
from typing import Any, TypeVar

from netdecl.model import CT_STATES, FILTER, IPV6_DEFAULT_METRIC, MAIN_TABLE, NatRule, Route
from netdecl.topology.yamlsrc import quoted

IfAddr = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IpAddr = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNet = ipaddress.IPv4Network | ipaddress.IPv6Network

PORT_MIN, PORT_MAX = 1, 65535
_PORTS = re.compile(r"([0-9]{1,5})(?:-([0-9]{1,5}))?")
_BRACKETED = re.compile(r"\[([^\]]+)\](?::([0-9]{1,5}))?")


# ---------------------------------------------------------------------------- address rules

R = TypeVar("R")


def remembered(parse: Callable[[str], R]) -> Callable[[Any], R]:
    """``parse`` of a text it saw before answers from memory (its results are immutable): a
    file of a thousand containers names its gateway a thousand times, and ipaddress was a
    third of loading it."""
    cached = lru_cache(maxsize=16384)(parse)

    @wraps(parse)
    def parse_text(text: Any) -> R:
        return cached(text) if isinstance(text, str) else parse(text)

    return parse_text



def scoped(text: str) -> str | None:
    """ipaddress accepts fe80::1%eth0; a zone is free text we would pass on, so refuse it."""
    if "%" in text:
        return f"{quoted(text)}: zone ids ('%...') are not supported; use the route's dev"
    return None


@remembered
def parse_ip(text: str) -> tuple[IpAddr | None, str | None]:
    if problem := scoped(text):
        return None, problem
    try:
        return ipaddress.ip_address(text), None
    except ValueError:
        return None, f"{quoted(text)} is not an IP address"


@remembered
def parse_network(text: str) -> tuple[IpNet | None, str | None]:
    """A network (route destination, NAT source): host bits set is an error, with the fix."""
    if problem := scoped(text):
        return None, problem
    try:
        return ipaddress.ip_network(text, strict=True), None
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None, f"{quoted(text)} is not a network like 10.0.0.0/8"
    return None, f"{quoted(text)} has host bits set; did you mean {loose}?"


@remembered
def parse_interface(text: str) -> tuple[IfAddr | None, str | None]:
    """An address on a link; the prefix length is required (it decides what is on-link)."""
    if problem := scoped(text):
        return None, problem
    if "/" not in text:
        _, problem = parse_ip(text)
        return None, problem or f"address {quoted(text)} needs a prefix length, " \
                                f"e.g. {text}/{24 if ':' not in text else 64}"
    try:
        return ipaddress.ip_interface(text), None
    except ValueError:
        return None, f"{quoted(text)} is not an address with prefix length like 172.17.0.1/16"


def normal_ip(text: str | None) -> str | None:
    """An address the way the model keeps it: as the kernel reports it (IPv6 compressed)."""
    return None if text is None else _normal_ip(text)


def normal_net(text: str | None) -> str | None:
    """A network the way the model keeps it (the file's are checked to have no host bits)."""
    return None if text is None else _normal_net(text)


@remembered
def _normal_ip(text: str) -> str:
    return str(ipaddress.ip_address(text))


@remembered
def _normal_net(text: str) -> str:
    return str(ipaddress.ip_network(text, strict=True))


# ---------------------------------------------------------------------------- ports


def split_target(text: str) -> tuple[IpAddr | None, int | None, str | None]:
    """``ADDRESS[:PORT]`` (a port forward's ``to``, explain's DEST): ADDRESS, ADDRESS:PORT,
    IPV6 or [IPV6]:PORT -> (address, port or None, problem)."""
    bad = (None, None, f"{quoted(text)} is not ADDRESS[:PORT] like 172.17.0.2:80")
    port_text: str | None = None
    if text.startswith("["):
        m = _BRACKETED.fullmatch(text)
        if not m:
            return bad
        host, port_text = m.group(1), m.group(2)
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host = text
    addr, _ = parse_ip(host)
    if addr is None or (port_text is not None and not port_text.isdigit()):
        return bad
    port = int(port_text) if port_text is not None else None
    if port is not None and not PORT_MIN <= port <= PORT_MAX:
        return None, None, f"port {port} in {quoted(text)} is not in {PORT_MIN}..{PORT_MAX}"
    return addr, port, None


def split_ports(value: Any) -> tuple[int, int | None] | None:
    """A port forward's ``port``: 8080, "8080" or a range "8080-8090" -> (first, last or None
    for a single port); None if it is not written like that. Bounds are port_problem's."""
    if is_int(value):
        return int(value), None  # jsonschema counts 80.0 as an integer; the rule says 80
    if not isinstance(value, str) or not (m := _PORTS.fullmatch(value)):
        return None
    return int(m.group(1)), (int(m.group(2)) if m.group(2) else None)


def port_problem(value: Any) -> str | None:
    """Why a port forward's ``port`` written as text cannot be one."""
    if not isinstance(value, str) or (ports := split_ports(value)) is None:
        return None  # the schema reports wrong types, integers out of range and the pattern
    low, high = ports[0], ports[1] if ports[1] is not None else ports[0]
    if not (PORT_MIN <= low <= PORT_MAX and PORT_MIN <= high <= PORT_MAX):
        return f"port {value} is not in {PORT_MIN}..{PORT_MAX}"
    if low > high:
        return f"port range {value} runs backwards"
    return None


# ---------------------------------------------------------------------------- routes

DEFAULT_ROUTE = "default"
"""The file's word for the default route of a family (0.0.0.0/0 or ::/0)."""


UNICAST = "unicast"
"""The route ``type`` an omitted one means (the kernel's RTN_UNICAST)."""


def default_route_to(family: int) -> str:
    return "0.0.0.0/0" if family == 4 else "::/0"


def route_to(text: str, family: int) -> str:
    """A route's ``to`` (known good) as the model keeps it."""
    return default_route_to(family) if text == DEFAULT_ROUTE else normal_net(text) or ""


def route_to_text(route: Route) -> str:
    """Inverse of route_to: 'default' only where reading it back gives the same family (an
    IPv6 default route without via or src has to be written ::/0, see route_family)."""
    if route.is_default and (route.family == 4 or route.via or route.src):
        return DEFAULT_ROUTE
    return route.to


SCOPES = ("global", "link", "host")
"""A route's ``scope`` values: RT_SCOPE_UNIVERSE, RT_SCOPE_LINK, RT_SCOPE_HOST."""


def default_scope(family: int, rtype: Any, via: Any) -> str:
    """The scope an omitted ``scope`` means, as iproute2 decides it: a unicast IPv4 route
    without a gateway reaches its destination directly, so it is scope link (this is what
    makes `169.254.1.1 dev eth0` usable as a gateway, as Calico writes it); everything else
    is global. The kernel keeps every IPv6 route global."""
    if family == 4 and rtype in (None, UNICAST) and via is None:
        return "link"
    return "global"


def route_scope(spec: dict[str, Any], family: int) -> Any:
    """A route's scope: the file's, or what omitting it means."""
    return spec.get("scope", default_scope(family, spec.get("type", UNICAST), spec.get("via")))


def scope_in_file(route: Route) -> str | None:
    """The ``scope`` to write for a route, None when omitting it means the same (or when the
    file cannot say it: an IPv4 unicast route's scope other than these three, or a gateway
    route's other than global without onlink, which only another tool can make)."""
    default = default_scope(route.family, route.type, route.via)
    if route.scope in (None, default) or route.scope not in SCOPES or route.family != 4 or \
            route.type not in (None, UNICAST) or (route.via and not route.onlink):
        return None
    return route.scope


def default_metric(family: int) -> int:
    """An omitted ``metric`` means what the kernel assigns when none is given."""
    return 0 if family == 4 else IPV6_DEFAULT_METRIC


def route_metric(spec: dict[str, Any], family: int) -> Any:
    """A route's metric as the kernel will hold it. Linux stores an IPv6 route added with
    metric 0 at 1024, so the model must say 1024 too or the route would never match its
    declaration. (Not an integer: returned as is, for the schema to report.)"""
    metric = spec.get("metric", default_metric(family))
    if family == 6 and is_int(metric) and metric == 0:
        return IPV6_DEFAULT_METRIC
    return metric


def metric_in_file(route: Route) -> int | None:
    """The ``metric`` to write for a route, None when omitting it means the same."""
    return None if route.metric == default_metric(route.family) else route.metric


@remembered
def family_of(text: Any) -> int | None:
    """Family of an address or network given as text, None if it is neither."""
    if not isinstance(text, str):
        return None
    try:
        return ipaddress.ip_network(text, strict=False).version
    except ValueError:
        return None


def route_family(route: dict[str, Any]) -> int:
    """A route's family: from ``to`` unless it is 'default', then from via/src, else IPv4."""
    for key in ("to", "via", "src"):
        fam = family_of(route.get(key))
        if fam is not None and not (key == "to" and route.get("to") == DEFAULT_ROUTE):
            return fam
    return 4


# ---------------------------------------------------------------------------- tables

NamedTables = dict[tuple[str, str], int]
"""(namespace, link name) -> the routing table that link owns (a VRF's): what a route's or a
rule's ``table:`` may name instead of the number."""


def routing_table(value: Any, namespace: str, named: NamedTables) -> int:
    """A (known good) route's or rule's ``table``: a number, the name of a VRF of its
    namespace, or omitted (main)."""
    if isinstance(value, str):
        return named[(namespace, value)]
    return MAIN_TABLE if value is None else int(value)


def table_in_file(table: int, namespace: str, named: NamedTables) -> int | str | None:
    """Inverse of routing_table: a VRF's table by the VRF's name (a file may say it no other
    way), main as nothing."""
    if table == MAIN_TABLE:
        return None
    return next((name for (ns, name), number in sorted(named.items())
                 if ns == namespace and number == table), table)


# ---------------------------------------------------------------------------- vxlan


# ---------------------------------------------------------------------------- scalars


def is_int(value: Any) -> bool:
    """An integer as the schema means it (bool is not one; 80.0 is)."""
    if isinstance(value, float):
        return value.is_integer()
    return isinstance(value, int) and not isinstance(value, bool)


def sysctl_value(value: Any) -> str:
    """Sysctls compare as strings; booleans mean 1/0 like in /proc/sys."""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


# ---------------------------------------------------------------------------- NAT

NAT_SECTIONS: dict[str, str] = {"masquerade": "masquerade", "snat": "snat",
                                "port_forwards": "dnat"}
"""The sections under ``nat:`` in file order, and the NatRule kind each one holds."""

LOCAL_SOURCE = "local"
"""A masquerade's or snat's ``source`` for what the host itself sends (Docker's masquerade of
the host's own traffic into docker0: `-m addrtype --src-type LOCAL`)."""

FILTER_SECTIONS: dict[str, str] = {"forward": FILTER}
"""The sections under ``filter:``, and the NatRule kind each one holds (a filter rule lives in
the same nft table as the NAT rules, after them)."""

NAT_FAMILIES = (4, 6)
"""Address families a NAT rule may use (backends/nftables.py renders an ``ip`` and an ``ip6``
table); tests/test_format_agreement.py proves the checks and the backend agree."""


def as_list(value: Any) -> list[Any]:
    """A value the file may give as one item or as a list of them."""
    return value if isinstance(value, list) else [value]


def networks(value: Any) -> tuple[str, ...] | None:
    """``destination``/``not_destination`` (a CIDR or a list; known good) as the model keeps
    them."""
    if value is None:
        return None
    return tuple(normal_net(text) or "" for text in as_list(value))


def nat_rule(section: str, spec: dict[str, Any]) -> NatRule:
    """One (known good) rule of a ``nat:`` section as the model's NatRule. The file's ``in``
    and ``from`` are the model's ``in_`` and ``from_`` (Python keywords)."""
    kind = NAT_SECTIONS[section]
    if kind != "dnat":
        local = spec.get("source") == LOCAL_SOURCE
        return NatRule(kind=kind, source=None if local else normal_net(spec.get("source")),
                       local_source=True if local else None, out=spec.get("out"),
                       not_out=spec.get("not_out"), to_source=normal_ip(spec.get("to_source")),
                       destination=networks(spec.get("destination")),
                       not_destination=networks(spec.get("not_destination")))
    ports = split_ports(spec["port"])
    targets = [split_target(text) for text in as_list(spec["to"])]
    if ports is None or any(address is None for address, _, _ in targets):
        problem = next((p for _, _, p in targets if p), f"port {spec['port']!r}")
        raise ValueError(f"{problem} was not checked")
    to_port = targets[0][1]
    addresses = tuple(str(address) for address, _, _ in targets)
    return NatRule(kind=kind, proto=spec["proto"], port=ports[0], port_end=ports[1],
                   to_address=addresses[0] if len(addresses) == 1 else None,
                   to_addresses=addresses if len(addresses) > 1 else None,
                   to_port=to_port, in_=spec.get("in"),
                   from_=normal_net(spec.get("from")), address=normal_ip(spec.get("address")))


def filter_rule(spec: dict[str, Any]) -> NatRule:
    """One (known good) ``filter: forward:`` rule as the model's NatRule (kind filter)."""
    ports = split_ports(spec["port"]) if "port" in spec else None
    return NatRule(kind=FILTER, in_=spec.get("in"), out=spec.get("out"),
                   source=normal_net(spec.get("source")),
                   destination=networks(spec.get("destination")), proto=spec.get("proto"),
                   port=ports[0] if ports else None, port_end=ports[1] if ports else None,
                   action=spec["action"], state=ct_states(spec.get("state")))


def ct_states(value: Any) -> tuple[str, ...] | None:
    """A filter rule's ``state`` (known good) in the order nft lists it."""
    if value is None:
        return None
    return tuple(s for s in CT_STATES if s in value)


def _one_or_list(values: tuple[str, ...] | None) -> Any:
    if values is None:
        return None
    return values[0] if len(values) == 1 else list(values)


def nat_rule_spec(rule: NatRule) -> tuple[str, str, dict[str, Any]]:
    """Inverse of nat_rule and filter_rule: the top-level key (``nat`` or ``filter``), the
    section under it and the file's mapping for one rule."""
    port: int | str | None = None if rule.port is None else \
        rule.port if rule.port_end is None else f"{rule.port}-{rule.port_end}"
    if rule.kind == FILTER:
        spec = {"in": rule.in_, "out": rule.out, "source": rule.source,
                "destination": _one_or_list(rule.destination), "proto": rule.proto,
                "port": port, "state": list(rule.state) if rule.state else None,
                "action": rule.action}
        return "filter", "forward", {k: v for k, v in spec.items() if v is not None}
    section = next(s for s, kind in NAT_SECTIONS.items() if kind == rule.kind)
    if rule.kind != "dnat":
        spec = {"source": LOCAL_SOURCE if rule.local_source else rule.source,
                "out": rule.out, "not_out": rule.not_out,
                "to_source": rule.to_source, "destination": _one_or_list(rule.destination),
                "not_destination": _one_or_list(rule.not_destination)}
        return "nat", section, {k: v for k, v in spec.items() if v is not None}
    targets: list[str] = []
    for address in rule.targets:
        target = address
        if rule.to_port is not None:
            target = f"[{address}]:{rule.to_port}" if ":" in address \
                else f"{address}:{rule.to_port}"
        targets.append(target)
    spec = {"proto": rule.proto, "port": port,
            "to": targets[0] if len(targets) == 1 else targets, "in": rule.in_,
            "from": rule.from_, "address": rule.address}
    return "nat", section, {k: v for k, v in spec.items() if v is not None}
