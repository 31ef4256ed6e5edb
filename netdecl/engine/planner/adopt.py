"""Adoption (`apply --adopt`): which declared objects that already exist netdecl takes over.

Pure, like the rest of the planner. An object is adopted when it belongs to nobody and is
compatible with its declaration:

- a link: no owner mark, the declared kind; a veth: both ends exist, unmarked, and each one's
  peer is the declared other end;
- a namespace: everything in it (links, routes that are not the kernel's) is being adopted or
  is declared to be created;
- a route, FDB or neighbour entry: not carrying netdecl's protocol (one that does is another
  topology's).

The result is the ADOPT actions and the observed state and record *as they will be* once the
actions ran (adopted links marked, namespaces and keys recorded), so the diff then reconciles
adopted objects exactly like owned ones. Whatever is not adopted stays a conflict, with the
reason in ``refused``.

Adopting overwrites what the planner never compares: a link's ifalias (whatever text it had
gives way to the owner mark) and a route's protocol (it is written again as netdecl's).
``overwritten`` names those differences between the snapshot taken before an adopting apply
and the host now, so that a rollback puts them back.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from netdecl.backends.host import owner_mark
from netdecl.engine.ownership import owns
from netdecl.engine.planner.plan import ADOPT, Action
from netdecl.engine.state.record import OwnershipRecord
from netdecl.kinds import KINDS, Ownership
from netdecl.model import (
    RTPROT_NETDECL,
    Key,
    Link,
    Namespace,
    NetObject,
    Route,
    Topology,
    qualify,
)


@dataclass
class Adoption:
    actions: list[Action]
    observed: Topology
    record: OwnershipRecord
    refused: dict[Key, str] = field(default_factory=dict)

    @classmethod
    def of(cls, desired: Topology, observed: Topology, record: OwnershipRecord) -> Adoption:
        topology = desired.name
        view = Topology(name=observed.name, objects=dict(observed.objects))
        mine = record.copy()
        mine.shared_sysctls = dict(record.shared_sysctls)
        actions: list[Action] = []
        refused: dict[Key, str] = {}

        adopted_links = _links(desired, observed, topology, actions, refused)
        for key in adopted_links:
            link = view.get(key)
            assert isinstance(link, Link)
            view.add(dataclasses.replace(link, owner=topology, alias=owner_mark(topology)))
            if link.ident:  # ownership is by identity: this very link, not its name
                mine.identities[key] = link.ident

        for want in sorted(desired.objects.values(), key=lambda o: repr(o.key)):
            now = observed.get(want.key)
            how = KINDS[want.TYPE].ownership
            if how is not Ownership.RECORD or now is None or mine.owns(want.key):
                continue
            if getattr(now, "proto", None) == RTPROT_NETDECL:
                refused[want.key] = "it carries netdecl's protocol: another topology's"
                continue
            actions.append(Action(ADOPT, want.key, before=now, after=want))
            mine.objects.add(want.key)
            if isinstance(now, Route):
                view.add(dataclasses.replace(now, proto=RTPROT_NETDECL))

        adopted_keys = set(adopted_links) | {a.key for a in actions}
        for ns in desired.of_type(Namespace):
            if observed.get(ns.key) is None or ns.namespace in record.namespaces:
                continue
            strangers = sorted(_describe(o) for o in observed.objects.values()
                               if o.namespace == ns.namespace and _holds(o)
                               and o.key not in adopted_keys and not _owned_link(o, topology))
            if strangers:
                refused[ns.key] = f"it holds {', '.join(strangers[:5])}, which the file " \
                                  "does not declare or which cannot be adopted"
                continue
            now_ns = observed.get(ns.key)
            actions.insert(0, Action(ADOPT, ns.key, before=now_ns, after=ns))
            mine.namespaces.add(ns.namespace)
            if ident := getattr(now_ns, "ident", None):
                mine.identities[ns.key] = ident
        return cls(actions, view, mine, refused)


def _holds(obj: NetObject) -> bool:
    """What makes a namespace someone's: its links and the routes someone added (addresses
    live on links; the kernel's own routes are dropped while observing)."""
    return isinstance(obj, (Link, Route))


def _owned_link(obj: NetObject, topology: str) -> bool:
    return isinstance(obj, Link) and obj.owner == topology


def _describe(obj: NetObject) -> str:
    return obj.describe()


def _links(desired: Topology, observed: Topology, topology: str, actions: list[Action],
           refused: dict[Key, str]) -> list[Key]:
    adopted: list[Key] = []
    done: set[Key] = set()
    for want in sorted(desired.of_type(Link), key=lambda link: link.key):
        if want.key in done:
            continue
        ends = [want]
        if want.peer is not None:
            peer = desired.get(("link", *want.peer))
            assert isinstance(peer, Link)
            ends.append(peer)
        done.update(e.key for e in ends)
        seen = [observed.get(e.key) for e in ends]
        if all(o is None for o in seen):
            continue  # nothing to adopt: created as usual
        if all(isinstance(o, Link) and o.owner == topology for o in seen):
            continue  # ours already
        why = _incompatible(ends, seen)
        if why:
            for end, o in zip(ends, seen, strict=True):
                if o is not None:
                    refused[end.key] = why
            continue
        actions.append(Action(ADOPT, want.key, before=seen[0], after=want,
                              peer_before=seen[1] if len(seen) > 1 else None,
                              peer_after=ends[1] if len(ends) > 1 else None))
        adopted.extend(e.key for e in ends)
    return adopted


def _incompatible(ends: list[Link], seen: list[NetObject | None]) -> str | None:
    for want, o in zip(ends, seen, strict=True):
        name = qualify(want.namespace, want.name)
        if not isinstance(o, Link):
            return f"{name} is missing, so the pair is not the declared one"
        if o.owner:
            return f"{name} belongs to topology {o.owner}"
        if o.kind != want.kind:
            return f"{name} is a {o.kind}, the file declares a {want.kind}"
        if want.peer is not None and o.peer != want.peer:
            other = qualify(*o.peer) if o.peer else "an unknown link"
            return f"{name} is paired with {other}, not with {qualify(*want.peer or ('', ''))}"
    return None


@dataclass(frozen=True)
class Overwritten:
    """An owned object adoption changed where the planner does not look: ``before`` as the
    pre-apply snapshot has it, ``now`` as it is."""

    before: NetObject
    now: NetObject

    def describe(self) -> str:
        if isinstance(self.before, Link) and isinstance(self.now, Link):
            return (f"the alias of {self.now.describe()} ({self.now.alias!r}, "
                    f"was {self.before.alias!r})")
        return (f"the protocol of {self.now.describe()} ({getattr(self.now, 'proto', None)}, "
                f"was {getattr(self.before, 'proto', None)})")


def overwritten(snapshot: Topology, observed: Topology,
                record: OwnershipRecord) -> list[Overwritten]:
    """What adoption overwrote and is not as the ``snapshot`` (the host before an adopting
    apply) had it: the ifalias of a link that was not the topology's before (the mark took the
    place of its text, or of no alias), the protocol of a route that was not netdecl's (it now
    carries netdecl's). Only objects the topology owns now (``record``: by identity, by key
    and protocol) are named; anything else at those names is someone else's and never
    touched. A link the snapshot shows as the topology's keeps its mark: it was netdecl's
    before this apply."""
    found: list[Overwritten] = []
    for key, before in sorted(snapshot.objects.items(), key=lambda kv: repr(kv[0])):
        now = observed.get(key)
        if now is None or not owns(now, observed, record):
            continue
        if isinstance(before, Link) and isinstance(now, Link):
            if before.owner != snapshot.name and (before.alias or None) != (now.alias or None):
                found.append(Overwritten(before, now))
        elif isinstance(before, Route) and isinstance(now, Route):
            if before.proto not in (None, RTPROT_NETDECL) and now.proto == RTPROT_NETDECL:
                found.append(Overwritten(before, now))
    return found
