"""What a topology's declared netem delays promise a probe: the least round trip between two
namespaces. Pure (the desired Topology only), so `verify` can hold a measured round trip to it.

The path is the shortest chain of veth pairs from one namespace to the other (bridges are
crossed inside a namespace, so a star's containers are two pairs apart); on each pair the
packet leaves by one end and the answer by the other, and each end's netem holds what it sends
for at least ``delay - jitter``. A path the file does not make with veths (a VXLAN, a macvlan,
the host's NIC) promises nothing. ``path_figures`` gives the same path's declared loss and
least rate, which ``verify --measure`` holds measured traffic to.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from netdecl.model import EGRESS, INGRESS, Link, Qdisc, Topology, qualify
from netdecl.tc.qdiscs import NETEM, SHAPERS
from netdecl.tc.units import U32_MAX


def least_delay_ns(topo: Topology, namespace: str, link: str) -> int:
    """The least time a packet ``link`` sends waits in its netem (0: none declared)."""
    qdisc = topo.get(("qdisc", namespace, link, EGRESS))
    if not isinstance(qdisc, Qdisc):
        return 0
    return sum(max(0, (s.get("delay") or 0) - (s.get("jitter") or 0))
               for s in qdisc.stages if s.kind == NETEM)


def least_round_trip_ns(topo: Topology, source: str, destination: str) -> int:
    """Both ways' declared delays on the shortest veth path from ``source`` to
    ``destination`` (namespaces); 0 when they are one, or no such path exists."""
    hops: dict[str, list[tuple[str, int]]] = {}
    for link in topo.of_type(Link):
        if link.peer is None:
            continue
        other = topo.get(("link", *link.peer))
        if isinstance(other, Link):
            both = least_delay_ns(topo, link.namespace, link.name) + \
                least_delay_ns(topo, other.namespace, other.name)
            hops.setdefault(link.namespace, []).append((other.namespace, both))
    best: dict[str, int] = {source: 0}
    queue = deque([source])
    while queue:
        here = queue.popleft()
        for there, delay in hops.get(here, ()):
            if there not in best:
                best[there] = best[here] + delay
                queue.append(there)
    return best.get(destination, 0)


# -- what `verify --measure` holds a path to: its declared loss and its least rate -------------

@dataclass(frozen=True)
class PathFigures:
    """One way from a probe's source to its destination, as the file declares it."""

    loss: float = 0.0  # the chance a packet is lost on the way (random netem loss, compounded)
    rate: int = 0  # the least rate on the way, bytes per second (0: no shaper)
    rate_at: str = ""  # the link (and direction) that holds it
    unmeasured: str = ""  # why the loss cannot be judged by a binomial tolerance, if so


def _ends_on_path(topo: Topology, source: str, destination: str) -> list[tuple[Link, Link]]:
    """(sending end, receiving end) of each veth pair on the shortest chain, in order."""
    pairs: dict[str, list[tuple[Link, Link]]] = {}
    for link in topo.of_type(Link):
        other = topo.get(("link", *link.peer)) if link.peer is not None else None
        if isinstance(other, Link):
            pairs.setdefault(link.namespace, []).append((link, other))
    came: dict[str, tuple[Link, Link] | None] = {source: None}
    queue = deque([source])
    while queue:
        here = queue.popleft()
        for out, into in pairs.get(here, ()):
            if into.namespace not in came:
                came[into.namespace] = (out, into)
                queue.append(into.namespace)
    if destination not in came or destination == source:
        return []
    path = []
    here = destination
    while (step := came[here]) is not None:
        path.append(step)
        here = step[0].namespace
    return path[::-1]


def path_figures(topo: Topology, source: str, destination: str) -> PathFigures:
    """The loss and least rate declared on the way from ``source`` to ``destination``: each
    sending end's netem loss and shaper (tbf, htb, netem's own rate), and each receiving
    end's ingress shaper (the tbf on the ifb its ingress redirects to)."""
    delivered, rate, rate_at, unmeasured = 1.0, 0, "", ""

    def slower(found: int, where: str) -> None:
        nonlocal rate, rate_at
        if found and (not rate or found < rate):
            rate, rate_at = found, where

    for out, into in _ends_on_path(topo, source, destination):
        sent = topo.get(("qdisc", out.namespace, out.name, EGRESS))
        for stage in sent.stages if isinstance(sent, Qdisc) else ():
            where = f"{qualify(out.namespace, out.name)} egress"
            if stage.kind in SHAPERS or stage.kind == NETEM:
                slower(stage.get("rate") or 0, where)
            if stage.kind == NETEM:
                delivered *= 1 - (stage.get("loss") or 0) / U32_MAX
                if stage.get("gemodel") or stage.get("corrupt"):
                    unmeasured = (f"{where} declares a Gilbert-Elliott loss model or "
                                  "corruption: its losses are not independent draws")
        received = topo.get(("qdisc", into.namespace, into.name, INGRESS))
        if isinstance(received, Qdisc) and received.redirect:
            shaper = topo.get(("qdisc", into.namespace, received.redirect, EGRESS))
            for stage in shaper.stages if isinstance(shaper, Qdisc) else ():
                slower(stage.get("rate") or 0, f"{qualify(into.namespace, into.name)} ingress")
    return PathFigures(1 - delivered, rate, rate_at, unmeasured)
