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

Ownership is by identity, not by name. When netdecl makes a namespace, a link or a NAT table,
the record keeps what the kernel says that object is (``ident``: a namespace's nsfs device and
inode, a link's ifindex in its namespace, a table's nft handle in its namespace); an object at
a claimed name whose identity differs was made by someone else (deleted and made again by hand,
or a foreign link carrying a forged ``netdecl:`` mark) and is never adopted, changed or
deleted. The backends observe identities; here they are only compared, as data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable

from netdecl.backends.host import ALTERNATIVES, BY_SECRET_NAME, NatHandles
from netdecl.engine.state.record import OwnershipRecord
from netdecl.kinds import KINDS, Ownership
from netdecl.model import (
    RTPROT_NETDECL,
    Address,
    ExternalLink,
    FdbEntry,
    Link,
    NatRule,
    NatTable,
    Neighbor,
    NetObject,
    Route,
    Rule,
    Topology,
)
from netdecl.nlconst import RTPROT_KERNEL

# A recorded identity may list alternatives (after a crash inside an action the object may be
# in its state before or after it), separated by ALTERNATIVES.
# The identity of a NAT table whose creation was cut off before nft's handle was known: a table
# holding exactly the rules that action wrote (and nothing else) is the one it made.
RULES_PREFIX = "rules:"


def rules_identity(rules: tuple[NatRule, ...] | None) -> str:
    text = json.dumps([r.to_dict() for r in rules] if rules is not None else None,
                      sort_keys=True)
    return RULES_PREFIX + hashlib.sha256(text.encode()).hexdigest()[:32]


def identity_of(obj: NetObject) -> str | None:
    return getattr(obj, "ident", None)


def _identities(obj: NetObject) -> set[str]:
    """Every recorded identity the observed ``obj`` satisfies."""
    found = {i for i in (identity_of(obj),) if i}
    if isinstance(obj, NatTable) and obj.rules is not None:
        found.add(rules_identity(obj.rules))
    return found


def identity_proven(obj: NetObject, record: OwnershipRecord) -> bool | None:
    """Whether the record's identity for ``obj``'s key is ``obj``'s; None: none recorded."""
    recorded = record.identities.get(obj.key)
    if recorded is None:
        return None
    alternatives = set(recorded.split(ALTERNATIVES))
    if BY_SECRET_NAME in alternatives or alternatives & _identities(obj):
        return True
    return isinstance(obj, NatTable) and any(all(_tables_proven(alt, obj.ident))
                                             for alt in alternatives)


def _tables_proven(recorded: str, observed: str | None) -> tuple[bool, bool]:
    """Whether each observed NAT table (ip, ip6) is the one the record names, by its handle,
    or absent: a table of ours that is gone (deleted by hand) is drift that the plan repairs;
    a table at our name with another handle is someone else's. A record from before the ip6
    table's handle was kept proves the ip table only, as it did then."""
    mine, seen = NatHandles.of(recorded), NatHandles.of(observed)
    if mine is None or seen is None or mine[0] != seen[0]:
        return False, False
    ours, there = mine[1], seen[1]
    if there.ip is None and there.ip6 is None:
        return False, False
    return (there.ip is None or there.ip == ours.ip,
            not ours.ip6_known or there.ip6 is None or there.ip6 == ours.ip6)


def _nat_proven(table: NatTable, record: OwnershipRecord) -> tuple[bool, bool]:
    found = [_tables_proven(alt, table.ident)
             for alt in (record.identities.get(table.key) or "").split(ALTERNATIVES)]
    return any(ip for ip, _ in found), any(ip6 for _, ip6 in found)


def nat_ours(table: NatTable, observed: Topology, record: OwnershipRecord) -> NatTable | None:
    """What of the observed NAT tables the topology owns: all of it, or its ip table alone
    when someone else made an ip6 table under the name (this ``table`` with an identity that
    names the ip table only, so a delete never touches theirs), or nothing."""
    if owns(table, observed, record):
        return table
    ip, _ = _nat_proven(table, record)
    found = NatHandles.of(table.ident)
    if not ip or found is None or found[1].ip is None:
        return None
    alone = NatHandles(found[1].ip, None).identity()
    return dataclasses.replace(table, ident=f"{found[0]}/{alone}")


def foreign_nat_tables(table: NatTable, record: OwnershipRecord) -> str:
    """Which observed NAT tables are someone else's, for a message: ip, ip6 or both."""
    found = NatHandles.of(table.ident)
    if found is None:
        return "ip"
    there = found[1]
    ip, ip6 = _nat_proven(table, record)
    foreign = [family for family, present, proven in (("ip", there.ip, ip),
                                                      ("ip6", there.ip6, ip6))
               if present is not None and not proven]
    return " and ".join(foreign) or "ip"


LINK_LOCAL_V6 = ("fe8", "fe9", "fea", "feb")


def manageable(obj: NetObject) -> bool:
    if isinstance(obj, Address):
        # not IPv6 link-local (fe80::/10): a normalised one's first group is fe8x to febx
        # (ipaddress costs a tenth of a no-op plan when every container has one)
        first = obj.cidr.split(":", 1)[0]
        return not (len(first) == 4 and ":" in obj.cidr and first.startswith(LINK_LOCAL_V6))
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


def owns(obj: NetObject, observed: Topology, record: OwnershipRecord) -> bool:
    """Whether the observed ``obj`` belongs to the topology (``observed.name``)."""
    how = KINDS[obj.TYPE].ownership
    if how is Ownership.NAMESPACE:
        if obj.namespace not in record.namespaces:
            return False
        proven = identity_proven(obj, record)
        # a record from before identities: trusted by name once, then its identity is written
        return proven if proven is not None else record.legacy
    if how is Ownership.MARK:
        proven = identity_proven(obj, record)
        if proven is not None:
            return proven
        # before identities the mark was the proof; now a mark alone proves nothing
        return record.legacy and isinstance(obj, Link) and obj.owner == observed.name
    if how is Ownership.LINK:
        link = observed.get(("link", obj.namespace, getattr(obj, "link", "")))
        if link is None:
            return record.owns(obj.key)
        # on a link the topology owns; or, on a link the host owns (external), one the record
        # says netdecl added
        return owns(link, observed, record) or record.owns(obj.key)
    if how is Ownership.TABLE:
        proven = identity_proven(obj, record)
        if proven is not None:
            return proven
        return record.legacy and obj.namespace in record.nat_namespaces
    if how is Ownership.RECORD:
        # the record names the key AND the kernel object carries our protocol (routes; rules
        # are seen only when they do, see manageable): someone else's route that took the
        # key of one of ours is not ours
        proto = getattr(obj, "proto", None)
        return record.owns(obj.key) and proto in (None, RTPROT_NETDECL)
    # ORIGINAL: only the sysctls and external links the topology manages are observed as
    # such, and their values are ours
    return True


def external_views(observed: Topology, names: Iterable[tuple[str, str]]) -> None:
    """Add to ``observed`` an ExternalLink for each (namespace, name) whose link exists: the
    managed attributes of a link the host owns, as the planner compares them."""
    for ns, name in sorted(set(names)):
        link = observed.get(("link", ns, name))
        if isinstance(link, Link):
            observed.add(ExternalLink(ns, name, up=link.up, mtu=link.mtu, master=link.master,
                                      promisc=link.promisc, allmulti=link.allmulti))


def pin_identities(observed: Topology, record: OwnershipRecord) -> bool:
    """A record from before identities: write down the identity of everything it owns now
    (by name and mark, for the last time), so that from here on identity decides."""
    if not record.legacy:
        return False
    for obj in observed.objects.values():
        ident = identity_of(obj)
        if ident and owns(obj, observed, record):
            record.identities.setdefault(obj.key, ident)
    record.legacy = False
    return True


def forget_gone(observed: Topology, record: OwnershipRecord) -> bool:
    """Drop the claims whose object is gone, or is someone else's now, or that a newer claim of
    another topology superseded: a claim must not outlive its object, or the name it held
    would be taken for ours when someone else uses it. Returns whether anything was dropped.

    Only what was observed is judged: the observer reads every namespace the record names."""
    record.flush()
    dropped = False
    present = {o.namespace: o for o in observed.objects.values()
               if KINDS[o.TYPE].ownership is Ownership.NAMESPACE}
    for name in sorted(record.namespaces):
        ns = present.get(name)
        if ns is None or not owns(ns, observed, record):
            record.namespaces.discard(name)
            record.identities.pop(("namespace", name), None)
            dropped = True
    for key in list(record.objects):
        now = observed.get(key)
        if key in record.superseded or now is None or not owns(now, observed, record):
            record.objects.discard(key)
            record.identities.pop(key, None)
            dropped = True
    for name in sorted(record.nat_namespaces):
        now = observed.get(("nat", name))
        if not isinstance(now, NatTable) or nat_ours(now, observed, record) is None:
            record.nat_namespaces.discard(name)
            record.identities.pop(("nat", name), None)
            dropped = True
    for qdisc in [k for k in record.qdisc_originals if ("link", *k[:2]) not in observed.objects]:
        del record.qdisc_originals[qdisc]  # its link is gone, and with it what to put back
        dropped = True
    for key in [k for k in record.identities if k[0] == "link"]:
        now = observed.get(key)
        if now is None or not owns(now, observed, record):
            del record.identities[key]
            dropped = True
    record.superseded.clear()
    return dropped
