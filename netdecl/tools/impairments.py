"""What a topology's declared netem delays promise a probe: the least round trip between two
namespaces. Pure (the desired Topology only), so `verify` can hold a measured round trip to it.

The path is the shortest chain of veth pairs from one namespace to the other (bridges are
crossed inside a namespace, so a star's containers are two pairs apart); on each pair the
packet leaves by one end and the answer by the other, and each end's netem holds what it sends
for at least ``delay - jitter``. A path the file does not make with veths (a VXLAN, a macvlan,
the host's NIC) promises nothing.
"""

from __future__ import annotations

from collections import deque

from netdecl.model import EGRESS, Link, Qdisc, Topology
from netdecl.tc.qdiscs import NETEM


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
