"""Model -> topology document (the file format), so `show` output can be fed back to `apply`.

`show` observes links, addresses and routes (observer.observe_all reads no sysctls and no NAT
table: it cannot tell which values or rules are the user's), so those are what is written.
"""

from __future__ import annotations

from typing import Any

from netdecl.model import (
    MAIN_TABLE,
    Address,
    Link,
    Namespace,
    Route,
    Topology,
)
from netdecl.topology.format import UNICAST, metric_in_file, route_to_text, scope_in_file


def _link_fields(link: Link, addresses: list[str], with_name: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if with_name:
        out["name"] = link.name
    if link.namespace and with_name:
        out["namespace"] = link.namespace
    if addresses:
        out["addresses"] = addresses
    if link.mtu is not None:
        out["mtu"] = link.mtu
    if link.mac:
        out["mac"] = link.mac
    if link.up is False:
        out["up"] = False
    if link.master:
        out["master"] = link.master
    if link.hairpin:
        out["hairpin"] = True
    return out


def _expressible(link: Link) -> bool:
    """Physical NICs, tunnels of kinds netdecl does not manage, and veths whose other end is in
    a namespace not shown cannot be written as a topology that would apply; leave them out."""
    if link.kind == "veth":
        return link.peer is not None
    return link.kind in ("bridge", "vxlan")


def to_document(topo: Topology, name: str) -> dict[str, Any]:
    addrs: dict[tuple[str, str], list[str]] = {}
    for a in sorted(topo.of_type(Address), key=lambda a: a.key):
        addrs.setdefault((a.namespace, a.link), []).append(a.cidr)
    doc: dict[str, Any] = {"version": 1, "name": name}
    namespaces: dict[str, Any] = {ns.namespace: {} for ns in
                                  sorted(topo.of_type(Namespace), key=lambda n: n.namespace)}
    if namespaces:
        doc["namespaces"] = namespaces
    links = []
    emitted: set[tuple] = set()
    for link in sorted(topo.of_type(Link), key=lambda link: link.key):
        if link.key in emitted or not _expressible(link):
            continue
        emitted.add(link.key)
        entry = {"name": link.name, "kind": link.kind}
        entry.update(_link_fields(link, addrs.get((link.namespace, link.name), [])))
        if link.kind == "bridge" and link.stp is not None:
            entry["bridge"] = {"stp": link.stp}
        if link.kind == "vxlan" and link.vxlan is not None:
            entry["vxlan"] = {k: v for k, v in link.vxlan.to_dict().items() if v is not None}
        if link.kind == "veth" and link.peer is not None:
            peer = topo.get(("link", *link.peer))
            if isinstance(peer, Link):
                emitted.add(peer.key)
                peer_doc = {"name": peer.name}
                if peer.namespace:
                    peer_doc["namespace"] = peer.namespace
                peer_doc.update(_link_fields(peer, addrs.get((peer.namespace, peer.name), []),
                                             with_name=False))
                entry["peer"] = peer_doc
        links.append(entry)
    if links:
        doc["links"] = links
    routes = []
    for r in sorted(topo.of_type(Route), key=lambda r: repr(r.key)):
        if r.dev and ("link", r.namespace, r.dev) not in emitted:
            continue  # through a link left out above
        entry = {}
        if r.namespace:
            entry["namespace"] = r.namespace
        entry["to"] = route_to_text(r)
        for attr in ("via", "dev", "src"):
            if getattr(r, attr):
                entry[attr] = getattr(r, attr)
        if (metric := metric_in_file(r)) is not None:
            entry["metric"] = metric
        if r.table != MAIN_TABLE:
            entry["table"] = r.table
        if r.type and r.type != UNICAST:
            entry["type"] = r.type
        if r.onlink:
            entry["onlink"] = True
        if (scope := scope_in_file(r)) is not None:
            entry["scope"] = scope
        routes.append(entry)
    if routes:
        doc["routes"] = routes
    return doc
