"""Host facts: what a template's ``${facts...}`` reads from the machine it is planned on.

    hostname, machine_id
    links.NAME.{mac, mtu, up, addresses}       the root namespace's links; addresses as CIDRs
    default_route.{dev, gateway, address}      IPv4; address: the first IPv4 address on dev
    default_route6.{dev, gateway, address}     the same for IPv6

Read with `ip -j` (no shell; argv lists) from the namespace netdecl runs in, once, and only
when a template reads them: the API wraps gather() in a mapping that calls it on first use
(template.expand.LazyFacts), so files that never say ``facts`` pay nothing (not even this
module's import) and `validate` of them reads no host state. A value the
host lacks is an empty string (an empty mapping for a missing default route), so a template
can test for it.
"""

from __future__ import annotations

import json
import socket
import subprocess
from typing import Any

from netdecl.errors import EnvironmentProblem

MACHINE_ID = "/etc/machine-id"
TIMEOUT = 10.0


def _ip_json(*args: str) -> list[dict[str, Any]]:
    try:
        done = subprocess.run(["ip", "-j", *args], capture_output=True, text=True,
                              check=False, timeout=TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise EnvironmentProblem(f"reading host facts: ip -j {' '.join(args)}: {e}") from None
    if done.returncode != 0:
        raise EnvironmentProblem(f"reading host facts: ip -j {' '.join(args)}: "
                                 f"{done.stderr.strip()}")
    found = json.loads(done.stdout or "[]")
    return [entry for entry in found if isinstance(entry, dict)]


def _machine_id() -> str:
    try:
        with open(MACHINE_ID, encoding="ascii") as f:
            text = f.read(64).strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return text if text.isalnum() else ""


def _links() -> dict[str, dict[str, Any]]:
    links: dict[str, dict[str, Any]] = {}
    for entry in _ip_json("addr", "show"):
        name = entry.get("ifname")
        if not isinstance(name, str):
            continue
        addresses = [f"{a['local']}/{a['prefixlen']}" for a in entry.get("addr_info") or []
                     if isinstance(a, dict) and "local" in a and "prefixlen" in a
                     and a.get("scope") != "link"]
        links[name] = {"mac": str(entry.get("address", "")), "mtu": int(entry.get("mtu", 0)),
                       "up": "UP" in (entry.get("flags") or []), "addresses": addresses}
    return links


def _default_route(family: str, links: dict[str, dict[str, Any]]) -> dict[str, str]:
    routes = _ip_json(family, "route", "show", "default")
    if not routes:
        return {}
    route = min(routes, key=lambda r: int(r.get("metric", 0)))
    dev = str(route.get("dev", ""))
    version = ":" if family == "-6" else "."
    own = [a for a in links.get(dev, {}).get("addresses", []) if version in a.split("/")[0]]
    return {"dev": dev, "gateway": str(route.get("gateway", "")),
            "address": own[0] if own else ""}


def gather() -> dict[str, Any]:
    links = _links()
    return {"hostname": socket.gethostname(), "machine_id": _machine_id(), "links": links,
            "default_route": _default_route("-4", links),
            "default_route6": _default_route("-6", links)}
