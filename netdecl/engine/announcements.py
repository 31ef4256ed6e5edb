"""Which addresses an apply announces to their neighbours (backends/announce.py).

An announcement (gratuitous ARP, unsolicited neighbour advertisement) is for neighbours that
may hold the address at an old MAC: a container's veth recreated, an address moved. It is a
broadcast that every port of the segment receives, so announcing each of the thousand
addresses of a cold apply onto one bridge costs a million deliveries (2.3 s of kernel time at
1000 namespaces) and tells nobody anything.

Neighbour entries live on links: a link made by this apply (created, or deleted and made
again) has none, and a segment whose every link is new has none anywhere. So an address is
announced unless every link of its segment (the veth ends and the bridges and ports they join,
as the file declares them) is made by this apply, and none of them reaches beyond the host
(an external link, a VXLAN or macvlan device: the hosts behind it keep their entries).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from netdecl.engine.planner.plan import CREATE, REPLACE, Action
from netdecl.links import link_kind
from netdecl.model import Address, ExternalLink, Link, Topology


@dataclass(frozen=True)
class Announcements:
    new_segment_links: frozenset[tuple[str, str]]  # (namespace, link) on a segment all new

    @classmethod
    def for_apply(cls, desired: Topology, actions: Iterable[Action]) -> Announcements:
        made: set[tuple[str, str]] = set()
        for action in actions:
            if action.type == "link" and action.op in (CREATE, REPLACE):
                made |= {(end.namespace, end.name) for end in
                         (action.after, action.peer_after) if isinstance(end, Link)}
        return cls(frozenset(_new_segment_links(desired, made)))

    def wanted(self, obj: object) -> bool:
        """Whether adding ``obj`` (an address; nothing else is announced) is announced."""
        return (not isinstance(obj, Address)
                or (obj.namespace, obj.link) not in self.new_segment_links)


def _new_segment_links(desired: Topology, made: set[tuple[str, str]]
                       ) -> set[tuple[str, str]]:
    """The links (namespace, name) of the declared segments (veth pairs and bridge
    memberships joined up) whose every link is made by this apply and stays on this host."""
    parent: dict[tuple[str, str], tuple[str, str]] = {}

    def find(node: tuple[str, str]) -> tuple[str, str]:
        while parent.setdefault(node, node) != node:
            parent[node] = parent[parent[node]]  # path halving
            node = parent[node]
        return node

    def union(a: tuple[str, str], b: tuple[str, str]) -> None:
        parent[find(a)] = find(b)

    local = set()
    links: list[Link | ExternalLink] = [*desired.of_type(Link), *desired.of_type(ExternalLink)]
    for link in links:
        node = (link.namespace, link.name)
        find(node)
        if isinstance(link, Link):
            kind = link_kind(link.kind)
            if kind is not None and kind.host_local:
                local.add(node)
            if link.peer is not None:
                union(node, link.peer)
        if link.master:
            union(node, (link.namespace, link.master))
    old_segments = {find(node) for node in list(parent)
                    if node not in made or node not in local}
    return {node for node in parent if find(node) not in old_segments}


__all__ = ["Announcements"]
