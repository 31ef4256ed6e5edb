"""The file format's spelling of values: addresses, networks, ports, defaults.

The JSON Schema says which shapes a topology file may have; this module says how a value is
written in the file and what it means, for everyone who reads or writes the file (checks,
loader, export).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from netdecl.topology.yamlsrc import quoted

IfAddr = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IpAddr = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNet = ipaddress.IPv4Network | ipaddress.IPv6Network

_PORTS = re.compile(r"([0-9]{1,5})(?:-([0-9]{1,5}))?")
NAT_SECTIONS = ("masquerade", "snat", "port_forwards")


# ---------------------------------------------------------------------------- address rules


def scoped(text: str) -> str | None:
    """ipaddress accepts fe80::1%eth0; a zone is free text we would pass on, so refuse it."""
    if "%" in text:
        return f"{quoted(text)}: zone ids ('%...') are not supported; use the route's dev"
    return None


def parse_ip(text: str) -> tuple[IpAddr | None, str | None]:
    if problem := scoped(text):
        return None, problem
    try:
        return ipaddress.ip_address(text), None
    except ValueError:
        return None, f"{quoted(text)} is not an IP address"


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


def split_target(text: str) -> tuple[IpAddr | None, int | None, str | None]:
    """Port-forward ``to``: ADDRESS, ADDRESS:PORT, IPV6 or [IPV6]:PORT."""
    bad = (None, None, f"{quoted(text)} is not ADDRESS[:PORT] like 172.17.0.2:80")
    port_text: str | None = None
    if text.startswith("["):
        m = re.fullmatch(r"\[([^\]]+)\](?::([0-9]{1,5}))?", text)
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
    if port is not None and not 1 <= port <= 65535:
        return None, None, f"port {port} in {quoted(text)} is not in 1..65535"
    return addr, port, None


def port_problem(value: Any) -> str | None:
    """A forwarded port given as text: "8080" or a range "8080-8090"."""
    if not isinstance(value, str):
        return None  # the schema reports wrong types and integers out of range
    m = _PORTS.fullmatch(str(value))
    if not m:
        return None  # the schema's pattern message covers it
    low = int(m.group(1))
    high = int(m.group(2)) if m.group(2) else low
    if not (1 <= low <= 65535 and 1 <= high <= 65535):
        return f"port {value} is not in 1..65535"
    if low > high:
        return f"port range {value} runs backwards"
    return None


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


def default_route_to(family: int) -> str:
    return "0.0.0.0/0" if family == 4 else "::/0"


def default_metric(family: int) -> int:
    """What the kernel assigns when no metric is given."""
    return 0 if family == 4 else 1024


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
        if fam is not None and not (key == "to" and route.get("to") == "default"):
            return fam
    return 4
