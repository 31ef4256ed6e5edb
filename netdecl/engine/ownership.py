"""Ownership policy, in one place: what netdecl manages at all, and which of it a topology owns.

Two questions, asked of observed objects only (desired objects are the file's):

- ``manageable``: is this an object netdecl reconciles at all? The kernel's own IPv6
  link-local addresses and the routes it derives from addresses (proto kernel) are not; nor
  are policy rules netdecl did not make: netdecl identifies its rules by priority, and the
  kernel allows several rules per priority, so a foreign rule must not even be seen (it could
  take the key of one of ours). Objects that fail it are dropped while observing.
- ``owns``: does the topology own this observed object? Changes and deletes are made only to
  owned objects; a declared object that exists but is not owned is a conflict. How ownership
  is known is declared per kind (kinds.Ownership).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from netdecl.engine.record import OwnershipRecord
from netdecl.kinds import KINDS, Ownership
from netdecl.model import (
    RTPROT_NETDECL,
    Address,
    ExternalLink,
    FdbEntry,
    Link,
    Neighbor,
    NetObject,
    Route,
    Rule,
    Topology,
)

RTPROT_KERNEL = 2


def manageable(obj: NetObject) -> bool:
    if isinstance(obj, Address):
        iface = ipaddress.ip_interface(obj.cidr)
        return not (iface.version == 6 and iface.ip.is_link_local)
    if isinstance(obj, Route):
        return obj.proto != RTPROT_KERNEL
    if isinstance(obj, Rule):
        return obj.proto == RTPROT_NETDECL
    return True


def observed_topology(topology: str, objects: Iterable[NetObject]) -> Topology:
    """What a Host read, as a Topology: only manageable objects, and static FDB entries and
    neighbours only on links the topology owns (on anyone else's they are not ours to see)."""
    kept = [o for o in objects if manageable(o)]
    ours = {(o.namespace, o.name) for o in kept if isinstance(o, Link) and o.owner == topology}
    seen = Topology(name=topology)
    seen.extend(o for o in kept if not isinstance(o, (FdbEntry, Neighbor))
                or (o.namespace, o.link) in ours)
    return seen


def link_owned(link: NetObject | None, topology: str) -> bool:
    return isinstance(link, Link) and link.owner == topology


def owns(obj: NetObject, observed: Topology, record: OwnershipRecord) -> bool:
    """Whether the observed ``obj`` belongs to the topology (``observed.name``)."""
    how = KINDS[obj.TYPE].ownership
    if how is Ownership.NAMESPACE:
        return obj.namespace in record.namespaces
    if how is Ownership.MARK:
        return link_owned(obj, observed.name)
    if how is Ownership.LINK:
        # on a link the topology owns; or, on a link the host owns (external), one the
        # record says netdecl added
        link = observed.get(("link", obj.namespace, getattr(obj, "link", "")))
        return link_owned(link, observed.name) or record.owns(obj.key)
    if how is Ownership.RECORD:
        # the record names the key AND the kernel object carries our protocol (routes; rules
        # are seen only when they do, see manageable): someone else's route that took the
        # key of one of ours is not ours
        proto = getattr(obj, "proto", None)
        return record.owns(obj.key) and proto in (None, RTPROT_NETDECL)
    # ORIGINAL, TABLE: only the sysctls and external links the topology manages and its own
    # table are observed as such
    return True


def external_views(observed: Topology, names: Iterable[tuple[str, str]]) -> None:
    """Add to ``observed`` an ExternalLink for each (namespace, name) whose link exists: the
    managed attributes of a link the host owns, as the planner compares them."""
    for ns, name in sorted(set(names)):
        link = observed.get(("link", ns, name))
        if isinstance(link, Link):
            observed.add(ExternalLink(ns, name, up=link.up, mtu=link.mtu, master=link.master))
