"""When an apply brings up the veth pairs it makes: one end at once, the other after the run of
link creations it belongs to.

A veth pair has carrier only once both ends are up, and with carrier each end starts IPv6:
duplicate address detection, MLD reports and router solicitations, multicast that a bridge
floods to every port. Made one pair at a time with both ends up, the thousand pairs of a
1000-namespace lab each start that traffic while the next ones are still being made, so every
new port receives the traffic of all the ports before it: work that grows with the square of
the ports and lands inside the apply's own requests (at N=1000 the links took 3.4-4.6 s this
way, 1.0 s with IPv6 off, 0.95 s made as below: benchmarks/bench_linkup.py).

So, as a hand-written script does (all links made, then every container's end brought up),
an action that makes a veth pair whose ends should both be up leaves its second end down;
the ends left down are brought up together before the first action that is not the creation
of a link, and before verification. Nothing else is left down and nothing is reordered: the
link stage still ends with every link as the file declares it, before addresses and routes
(a route through a gateway needs its link up). The IPv6 start-up traffic itself is the
kernel's, and still runs (as it does after the script): it starts once, with every port made.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from netdecl.engine.planner.plan import CREATE, REPLACE, Action
from netdecl.model import Link, NetObject


class LateUp:
    """The veth ends an apply made and has yet to bring up."""

    def __init__(self) -> None:
        self.pending: list[Link] = []

    @staticmethod
    def defers(action: Action) -> bool:
        """Whether ``action`` makes a veth pair whose second end can wait to come up."""
        return (action.type == "link" and action.op in (CREATE, REPLACE)
                and isinstance(action.after, Link) and action.after.peer is not None
                and isinstance(action.peer_after, Link)
                and action.after.up is True and action.peer_after.up is True)

    def hold(self, peer: Link) -> Link:
        """The ``peer`` end to create now (down); it is brought up by ``release``."""
        self.pending.append(peer)
        return dataclasses.replace(peer, up=False)

    def release(self, bring_up: Callable[[NetObject, NetObject], None]) -> None:
        """Bring up every end held so far: ``bring_up(down, up)`` for each, in the order they
        were made."""
        pending, self.pending = self.pending, []
        for end in pending:
            bring_up(dataclasses.replace(end, up=False), end)


__all__ = ["LateUp"]
