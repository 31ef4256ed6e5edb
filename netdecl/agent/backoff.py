"""No fighting: an object that drifts again and again is repaired less and less often.

When another controller owns something netdecl also declares (a route a routing daemon keeps
deleting, an MTU a DHCP client keeps resetting), repairing it at once every time is a busy
loop between two programs. Each object's repairs are counted: one that needed repair again
soon after the last one waits before the next (1 s, 2 s, 4 s ... up to 5 minutes); one left
alone for a while is forgiven. While an object is held back, the rest of its topology is still
repaired: ``hold_back`` rewrites the desired state so that the plan leaves it as it is.

Pure: time is passed in, so the unit tests need no clock.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

from netdecl.api import Plan
from netdecl.model import Address, FdbEntry, Key, Link, Neighbor, NetObject, Route, Topology

FIRST_DELAY = 1.0
MAX_DELAY = 300.0
# a repair this long after the previous one (or twice the current delay, if longer) is not a
# repeat: the object is forgiven and its next repair is immediate again
FORGIVE_AFTER = 30.0

# (topology, object key): two topologies may declare objects with the same key
ObjectId = tuple[str, Key]


@dataclass
class _Strikes:
    count: int  # repairs in a row, each soon after the one before
    last: float  # when the last repair happened
    delay: float  # how long after ``last`` the next repair may happen


class Backoff:
    def __init__(self, first: float = FIRST_DELAY, cap: float = MAX_DELAY,
                 forgive_after: float = FORGIVE_AFTER):
        self.first = first
        self.cap = cap
        self.forgive_after = forgive_after
        self._objects: dict[ObjectId, _Strikes] = {}

    def repaired(self, obj: ObjectId, now: float) -> float:
        """Note a repair of ``obj``; returns how long its next repair must wait (0: none)."""
        self._forget_old(now)
        strikes = self._objects.get(obj)
        count = strikes.count + 1 if strikes else 1
        # the first repair is free; the second in a row waits `first`, then it doubles
        delay = 0.0 if count == 1 else min(self.first * 2 ** (count - 2), self.cap)
        self._objects[obj] = _Strikes(count, now, delay)
        return delay

    def held(self, now: float) -> set[ObjectId]:
        """Objects whose next repair must still wait."""
        return {obj for obj, s in self._objects.items() if now < s.last + s.delay}

    def next_release(self, now: float) -> float | None:
        """When the earliest hold ends (None: nothing is held)."""
        ends = [s.last + s.delay for s in self._objects.values() if now < s.last + s.delay]
        return min(ends) if ends else None

    def flapping(self, now: float) -> list[ObjectId]:
        """Objects repaired more than once in a row and not forgiven yet."""
        self._forget_old(now)
        return sorted((obj for obj, s in self._objects.items() if s.count >= 2), key=repr)

    def forget(self) -> None:
        """Start afresh (SIGHUP: an operator asks for an immediate retry)."""
        self._objects.clear()

    def _forget_old(self, now: float) -> None:
        for obj, s in list(self._objects.items()):
            if now - s.last > max(self.forgive_after, 2 * s.delay):
                del self._objects[obj]


def hold_back(desired: Topology, plan: Plan, held: Iterable[Key]) -> Topology:
    """``desired`` changed so that planning toward it leaves the held objects as they are now:
    a held object that exists is desired exactly as observed (no modify, no delete); one that
    is missing is not desired at all, and neither is what needs it (the addresses and routes
    of a missing link, everything in a missing namespace), which would fail without it."""
    held = set(held)
    objects = dict(desired.objects)
    missing: set[Key] = set()
    for action in plan.actions:
        if action.key not in held:
            continue
        now = {obj.key: obj for obj in action.before}  # a veth pair: both its ends
        for want in action.after:
            if want.key not in now:
                objects.pop(want.key, None)
                missing.add(want.key)
        objects.update(now)
    for key in _dependants(objects.values(), missing):
        objects.pop(key, None)
    return dataclasses.replace(desired, objects=objects)


def _dependants(objects: Iterable[NetObject], missing: set[Key]) -> set[Key]:
    """Keys of the objects that need a missing one, transitively."""
    objects = list(objects)
    gone = set(missing)
    while True:
        more = {o.key for o in objects if o.key not in gone and _needs_any(o, gone)}
        if not more:
            return gone - missing
        gone |= more


def _needs_any(obj: NetObject, gone: set[Key]) -> bool:
    if obj.namespace and ("namespace", obj.namespace) in gone:
        return True
    ns = obj.namespace
    if isinstance(obj, Link):
        if obj.master and ("link", ns, obj.master) in gone:
            return True
        if obj.peer and ("link", *obj.peer) in gone:
            return True
        if obj.peer and obj.peer[0] and ("namespace", obj.peer[0]) in gone:
            return True
        if obj.spec is not None and any(("link", *used) in gone or ("namespace", used[0]) in gone
                                        for used in obj.spec.uses_elsewhere()):
            return True
        return any(("link", ns, used) in gone
                   for used in (obj.spec.uses() if obj.spec is not None else ()))
    if isinstance(obj, (Address, FdbEntry, Neighbor)):
        return ("link", ns, obj.link) in gone
    if isinstance(obj, Route):
        return bool(obj.dev and ("link", ns, obj.dev) in gone)
    return False
