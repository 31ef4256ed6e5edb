"""`netdecl explain`: the path one packet would take, hop by hop, from the live kernel.

Routing decisions are the kernel's own (RTM_GETROUTE through Kernel.route_get, with the incoming
interface for forwarded packets), never a re-implementation of the lookup. What netlink cannot
answer is modelled from live state: layer 2 (a veth lands on its peer; a bridge forwards to the
port its FDB names for the next hop's MAC, or floods) and netdecl's own NAT rules (the only
rules whose meaning we know exactly, read back from the live netdecl table). The walk stops at
the namespace that owns the destination, or where the packet is dropped or leaves the
namespaces in scope, and says why.
"""

from __future__ import annotations

import errno
import ipaddress
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from netdecl.backends import qdiscs
from netdecl.links import link_kind
from netdecl.model import EGRESS, FILTER, INGRESS, MAIN_TABLE, Link, NatRule, ns_label, qualify
from netdecl.nlconst import NUD_FAILED, NUD_INCOMPLETE
from netdecl.tc.qdiscs import IMPAIRING, describe_qdisc
from netdecl.topology.format import split_target

MAX_HOPS = 32
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


# -- NAT rule matching (pure; verify uses it to place listeners behind port forwards) ---------

def _in_cidr(address: str | None, cidr: str) -> bool:
    if address is None:
        return False
    return ipaddress.ip_address(address) in ipaddress.ip_network(cidr, strict=False)


def _family(address: str) -> int:
    return ipaddress.ip_address(address).version


def match_dnat(rules: tuple[NatRule, ...], proto: str, dst: str, port: int | None, *,
               local: bool, iif: str | None, src: str | None) -> NatRule | None:
    """The first port forward that catches (proto, dst:port) arriving on ``iif`` (None: sent
    by the namespace itself). ``local``: dst is one of the namespace's own addresses (what a
    forward without ``address`` matches, like nft's ``fib daddr type local``)."""
    if port is None:
        return None
    for rule in rules:
        if rule.kind != "dnat" or rule.proto != proto or rule.port is None or \
                _family(dst) not in rule.families:
            continue
        last = rule.port if rule.port_end is None else rule.port_end
        if not rule.port <= port <= last:
            continue
        if rule.address:
            if rule.address != dst:
                continue
        elif not local:
            continue
        if rule.in_ and rule.in_ != iif:  # also: locally sent packets arrive on no interface
            continue
        if rule.from_ and not _in_cidr(src, rule.from_):
            continue
        return rule
    return None


def dnat_target(rule: NatRule, port: int) -> tuple[str, int]:
    """Where a matching port forward sends a packet for ``port`` (a load-balanced one: its
    first target; the others are equally likely)."""
    return rule.targets[0], port if rule.to_port is None else rule.to_port


def _in_any(address: str | None, cidrs: tuple[str, ...]) -> bool:
    return any(_in_cidr(address, cidr) for cidr in cidrs)


def match_snat(rules: tuple[NatRule, ...], src: str | None, out: str,
               dst: str | None = None, local: bool = False) -> NatRule | None:
    """The first masquerade/snat rule that applies to a packet from ``src`` to ``dst``
    leaving via ``out`` (``local``: sent by the namespace itself, not forwarded)."""
    for rule in rules:
        if rule.kind not in ("masquerade", "snat"):
            continue
        if rule.local_source and not local:
            continue
        if src is not None and _family(src) not in rule.families:
            continue
        if rule.source and not _in_cidr(src, rule.source):
            continue
        if rule.destination and not _in_any(dst, rule.destination):
            continue
        if rule.not_destination and _in_any(dst, rule.not_destination):
            continue
        if rule.out and rule.out != out:
            continue
        if rule.not_out and rule.not_out == out:
            continue
        return rule
    return None


def match_filter(rules: tuple[NatRule, ...], *, iif: str, out: str, src: str | None, dst: str,
                 proto: str, port: int | None) -> NatRule | None:
    """The first forward-filter rule that decides a forwarded packet (after DNAT, before SNAT,
    as the forward hook sees it)."""
    for rule in rules:
        if rule.kind != FILTER or _family(dst) not in rule.families:
            continue
        if (rule.in_ and rule.in_ != iif) or (rule.out and rule.out != out):
            continue
        if rule.source and not _in_cidr(src, rule.source):
            continue
        if rule.destination and not _in_any(dst, rule.destination):
            continue
        if rule.state and "new" not in rule.state:
            continue  # explain follows a new connection's first packet
        if rule.proto and rule.proto != proto:
            continue
        if rule.port is not None and (port is None or not
                                      rule.port <= port <= (rule.port_end or rule.port)):
            continue
        return rule
    return None


# -- the result ---------------------------------------------------------------------------------

@dataclass
class Step:
    namespace: str
    text: str


@dataclass
class Explanation:
    source: str
    destination: str
    port: int | None
    proto: str
    steps: list[Step] = field(default_factory=list)
    outcome: str = ""  # delivered | dropped | left
    reason: str = ""
    final_namespace: str | None = None
    final_source: str | None = None
    final_destination: str | None = None

    def add(self, namespace: str, text: str) -> None:
        self.steps.append(Step(namespace, text))

    def text(self) -> str:
        dest = f"{self.destination}:{self.port}" if self.port else self.destination
        lines = [f"{self.proto} {ns_label(self.source)} -> {dest}"]
        width = max((len(ns_label(s.namespace)) for s in self.steps), default=4) + 2
        for number, step in enumerate(self.steps, 1):
            where = f"[{ns_label(step.namespace)}]".ljust(width)
            lines.append(f"{number:3}. {where} {step.text}")
        lines.append(f"{self.outcome}: {self.reason}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "from": ns_label(self.source), "to": self.destination, "port": self.port,
            "proto": self.proto, "outcome": self.outcome, "reason": self.reason,
            "final_namespace": None if self.final_namespace is None
            else ns_label(self.final_namespace),
            "final_source": self.final_source, "final_destination": self.final_destination,
            "steps": [{"namespace": ns_label(s.namespace), "text": s.text} for s in self.steps],
        }


# -- live state the walk needs ------------------------------------------------------------------

class World:
    """Links and addresses of the namespaces in scope, read once, plus lazy NAT rules."""

    def __init__(self, kernel: Any, namespaces: list[str],
                 nat_rules: Callable[[str], tuple[NatRule, ...]]) -> None:
        self.kernel = kernel
        self.namespaces = namespaces
        self._nat_rules = nat_rules
        self._nat: dict[str, tuple[NatRule, ...]] = {}
        self._tc: dict[str, dict[tuple[str, str], str]] = {}
        self.links: dict[tuple[str, str], Link] = {}
        self.addrs: dict[tuple[str, str], list[Any]] = {}  # (ns, link) -> ip_interface
        # (ns, address) -> link: per namespace, for namespaces (and VRFs) reuse addresses
        self.owner: dict[tuple[str, str], str] = {}
        # parent -> the links on its segment made on it (macvlans: LinkKind.on_parent_segment)
        self.on_parent: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for ns in namespaces:
            for link in kernel.read_links(ns, namespaces):
                self.links[(ns, link.name)] = link
                for parent in _segment_parents(link):
                    self.on_parent.setdefault((ns, parent), []).append((ns, link.name))
            for addr in kernel.read_addresses(ns):
                iface = ipaddress.ip_interface(addr.cidr)
                self.addrs.setdefault((ns, addr.link), []).append(iface)
                self.owner.setdefault((ns, str(iface.ip)), addr.link)

    def impairment(self, node: tuple[str, str], direction: str) -> str | None:
        """The traffic control netdecl writes on a link, one direction (read lazily, one
        qdisc dump per namespace): what shapes or delays a packet crossing there."""
        ns = node[0]
        if ns not in self._tc:
            self._tc[ns] = {}
            sock = self.kernel.rtnl(ns)
            msgs = qdiscs.dump(sock)
            names = {link.ifindex: name for (where, name), link in self.links.items()
                     if where == ns and link.ifindex is not None}
            for index, name in names.items():
                for qdisc in (qdiscs.egress_of(sock, ns, name, index, msgs),
                              qdiscs.ingress_of(sock, ns, name, index, msgs, names)):
                    if qdisc is not None and (qdisc.redirect or any(
                            stage.kind in IMPAIRING for stage in qdisc.stages)):
                        self._tc[ns][(name, qdisc.direction)] = describe_qdisc(qdisc)
        found = self._tc[ns].get((node[1], direction))
        ifb = self._tc[ns].get((found[len("redirect to "):], EGRESS)) \
            if found and direction == INGRESS else None
        return f"{found}, shaped there by {ifb}" if ifb else found

    def nat(self, ns: str) -> tuple[NatRule, ...]:
        if ns not in self._nat:
            self._nat[ns] = self._nat_rules(ns)
        return self._nat[ns]

    def is_local(self, ns: str, address: str) -> bool:
        return (ns, address) in self.owner or ipaddress.ip_address(address) in LOOPBACK

    def routing_domain(self, ns: str, name: str | None) -> str | None:
        """The VRF whose table routes for the link ``name`` (a port of it), if any."""
        link = self.links.get((ns, name)) if name else None
        master = self.links.get((ns, link.master)) if link and link.master else None
        kind = link_kind(master.kind) if master is not None else None
        return master.name if master is not None and kind is not None and kind.l3_master \
            else None

    def address_towards(self, ns: str, link: str, nexthop: str) -> str | None:
        """The address masquerade picks on ``link``: the one on the next hop's subnet, else the
        first."""
        family = ipaddress.ip_address(nexthop).version
        ifaces = [i for i in self.addrs.get((ns, link), []) if i.version == family]
        for iface in ifaces:
            if ipaddress.ip_address(nexthop) in iface.network:
                return str(iface.ip)
        return str(ifaces[0].ip) if ifaces else None

    def neighbours(self, node: tuple[str, str]) -> list[tuple[tuple[str, str], str]]:
        """Layer-2 adjacency of a link: (other link, how) for veth peer, bridge membership and
        VXLAN devices of the same id."""
        link = self.links[node]
        out: list[tuple[tuple[str, str], str]] = []
        if link.peer and link.peer in self.links:
            out.append((link.peer, "pair"))
        master = self.links.get((node[0], link.master)) if link.master else None
        master_kind = link_kind(master.kind) if master is not None else None
        if master is not None and master_kind is not None and master_kind.ports:
            out.append(((node[0], master.name), "port-to-bridge"))  # (a VRF is no L2 hop)
        kind = link_kind(link.kind)
        if kind is not None and kind.ports:
            out += [(key, "bridge-to-port") for key, other in self.links.items()
                    if key[0] == node[0] and other.master == link.name]
        if kind is not None:
            out += [(key, "tunnel") for key in kind.far_ends(node, link, self.links)]
        out += [((node[0], parent), "onto-parent") for parent in _segment_parents(link)
                if (node[0], parent) in self.links]
        out += [(child, "from-parent") for child in self.on_parent.get(node, [])]
        return out

    def crosses(self, came: tuple[tuple[str, str], str] | None, node: tuple[str, str],
                other: tuple[str, str], how: str) -> bool:
        """Whether a frame at ``node`` (arrived by ``came``: (link, how), None: sent by it)
        goes on to ``other``: from a parent down to a link made on it only when it came from
        the segment, or from a sibling the kind lets reach it; never from the parent's own
        stack (a macvlan's host cannot reach it through the parent)."""
        if how != "from-parent":
            return True
        if came is None:
            return False
        if came[1] != "onto-parent":
            return True
        sibling = self.links[came[0]]
        kind = link_kind(sibling.kind)
        return kind is not None and kind.reaches_sibling(sibling, self.links[other])


def _segment_parents(link: Link) -> tuple[str, ...]:
    """The links whose segment ``link`` sends on untagged (a macvlan's parent)."""
    kind = link_kind(link.kind)
    if kind is None or not kind.on_parent_segment or link.spec is None:
        return ()
    return link.spec.uses()


@dataclass
class Packet:
    ns: str
    dst: str
    port: int | None
    proto: str
    src: str | None = None
    iif: str | None = None  # None: sent by a program in ns (not forwarded)
    dnatted_here: bool = False


# -- the walk -----------------------------------------------------------------------------------

def explain(world: World, source: str, destination: str, port: int | None,
            proto: str) -> Explanation:
    result = Explanation(source, destination, port, proto)
    pkt = Packet(ns=source, dst=destination, port=port, proto=proto)
    seen: set[tuple[str, str, str | None]] = set()
    for _ in range(MAX_HOPS):
        if (pkt.ns, pkt.dst, pkt.iif) in seen:
            return _finish(result, pkt, "dropped", f"routing loop: back in {ns_label(pkt.ns)}")
        seen.add((pkt.ns, pkt.dst, pkt.iif))
        done = _one_namespace(world, result, pkt)
        if done:
            return result
    return _finish(result, pkt, "dropped", f"more than {MAX_HOPS} hops (a loop?)")


def _finish(result: Explanation, pkt: Packet, outcome: str, reason: str) -> Explanation:
    result.outcome, result.reason = outcome, reason
    result.final_namespace, result.final_source = pkt.ns, pkt.src
    result.final_destination = f"{pkt.dst}:{pkt.port}" if pkt.port else pkt.dst
    return result


def _one_namespace(world: World, result: Explanation, pkt: Packet) -> bool:
    """Route the packet through pkt.ns and across the link it leaves by. True when finished."""
    ns = pkt.ns
    _apply_dnat(world, result, pkt)
    route = _route(world, result, pkt)
    if route is None:
        return True
    if route["type"] == "local":
        owner = world.owner.get((ns, pkt.dst))
        where = f" ({owner})" if owner else ""
        result.add(ns, f"{pkt.dst} is a local address{where}: delivered")
        _finish(result, pkt, "delivered",
                f"to {ns_label(ns)} ({pkt.dst}); source seen there: {pkt.src or '-'}")
        return True
    if route["type"] != "unicast" or not route["dev"]:
        _finish(result, pkt, "dropped", f"{route['type']} route to {pkt.dst} in {ns_label(ns)}")
        return True
    out, nexthop = route["dev"], route["via"] or pkt.dst
    if pkt.src is None:
        pkt.src = route["src"] or world.address_towards(ns, out, nexthop)
    link = world.links.get((ns, out))
    if link is None:
        result.add(ns, f"out {out}, which is not in the namespaces in scope")
        _finish(result, pkt, "left", f"leaves through {qualify(ns, out)}")
        return True
    if not link.up:
        _finish(result, pkt, "dropped", f"link {qualify(ns, out)} is down")
        return True
    if pkt.iif is not None and _filtered(world, result, pkt, out):
        return True
    _apply_snat(world, result, pkt, out, nexthop)
    return _cross(world, result, pkt, (ns, out), nexthop)


def _apply_dnat(world: World, result: Explanation, pkt: Packet) -> None:
    rule = match_dnat(world.nat(pkt.ns), pkt.proto, pkt.dst, pkt.port,
                      local=world.is_local(pkt.ns, pkt.dst), iif=pkt.iif, src=pkt.src)
    if rule is None or pkt.port is None:
        return
    addr, port = dnat_target(rule, pkt.port)
    hook = "prerouting" if pkt.iif else "output"
    spread = f" (round robin over {', '.join(rule.targets)}; following the first)" \
        if len(rule.targets) > 1 else ""
    result.add(pkt.ns, f"DNAT ({hook}, netdecl rule: {rule.describe()}): "
                       f"{pkt.dst}:{pkt.port} -> {addr}:{port}{spread}")
    pkt.dst, pkt.port, pkt.dnatted_here = addr, port, True


def _route(world: World, result: Explanation, pkt: Packet) -> dict[str, Any] | None:
    from netdecl.backends.netlink import KernelError

    ns = pkt.ns
    asked = f"{pkt.dst}" + (f" from {pkt.src} iif {pkt.iif}" if pkt.iif else "")
    try:
        route = world.kernel.route_get(ns, pkt.dst, pkt.src if pkt.iif else None, pkt.iif)
    except KernelError as exc:
        reasons = {
            errno.ENETUNREACH: f"no route to {pkt.dst} in {ns_label(ns)}",
            errno.EHOSTUNREACH: _unreachable_reason(ns, pkt),
            errno.EXDEV: f"reverse-path filter in {ns_label(ns)}: source {pkt.src} is not "
                         f"expected on {pkt.iif} (rp_filter)",
            errno.EINVAL: f"the kernel in {ns_label(ns)} rejects the lookup for {asked}",
        }
        result.add(ns, f"route lookup for {asked}: {os.strerror(exc.errno)}")
        _finish(result, pkt, "dropped", reasons.get(exc.errno, str(exc)))
        return None
    if route["type"] == "unicast":
        via = f" via {route['via']}" if route["via"] else ""
        src = f" src {route['src']}" if route["src"] and not pkt.iif else ""
        table = "main" if route["table"] == MAIN_TABLE else str(route["table"])
        vrf = world.routing_domain(ns, pkt.iif or route["dev"])
        if vrf is not None:  # (the kernel reports main for a lookup a VRF's rule redirected)
            table = f"of VRF {vrf}"
        how = f" (forwarding: from {pkt.src} in {pkt.iif})" if pkt.iif else ""
        result.add(ns, f"route {pkt.dst}{via} dev {route['dev']}{src} table {table}{how}")
    return route


def _filtered(world: World, result: Explanation, pkt: Packet, out: str) -> bool:
    """netdecl's forward filter on a forwarded packet; True when it drops or rejects it."""
    rule = match_filter(world.nat(pkt.ns), iif=pkt.iif or "", out=out, src=pkt.src,
                        dst=pkt.dst, proto=pkt.proto, port=pkt.port)
    if rule is None:
        return False
    result.add(pkt.ns, f"filter (forward, netdecl rule: {rule.describe()}): {rule.action}")
    if rule.action == "accept":
        return False
    _finish(result, pkt, "dropped", f"by netdecl's forward filter in {ns_label(pkt.ns)}: "
                                    f"{rule.describe()}")
    return True


def _unreachable_reason(ns: str, pkt: Packet) -> str:
    """EHOSTUNREACH from an input lookup: forwarding off, or an unreachable route."""
    from netdecl.backends import sysctl

    if pkt.iif:
        key = f"net.ipv4.conf.{pkt.iif}.forwarding"
        if sysctl.read_many(ns, [key]).get(key) == "0":
            return (f"forwarding is off in {ns_label(ns)} ({key} = 0; the topology should set "
                    f"net.ipv4.ip_forward: 1)")
    return f"{pkt.dst} is unreachable from {ns_label(ns)}"


def _full(node: tuple[str, str]) -> str:
    """namespace/link, the root spelled out: explain crosses namespaces all the time."""
    return f"{ns_label(node[0])}/{node[1]}"


def _apply_snat(world: World, result: Explanation, pkt: Packet, out: str, nexthop: str) -> None:
    rule = match_snat(world.nat(pkt.ns), pkt.src, out, pkt.dst, local=pkt.iif is None)
    label = rule.describe() if rule else None
    if rule is None and pkt.dnatted_here and pkt.iif == out:
        label = "masquerade of a DNATed flow that leaves the way it came"
    elif rule is None and pkt.dnatted_here and _in_cidr(pkt.src, str(LOOPBACK)):
        label = "masquerade of a DNATed flow from 127.0.0.0/8"
    if label is None:
        return
    if rule is not None and rule.kind == "snat":
        new = rule.to_source
    else:
        new = world.address_towards(pkt.ns, out, nexthop)
    result.add(pkt.ns, f"NAT (postrouting, netdecl rule: {label}) on {out}: "
                       f"source {pkt.src} -> {new}")
    pkt.src = new


def _cross(world: World, result: Explanation, pkt: Packet, start: tuple[str, str],
           nexthop: str) -> bool:
    """Follow layer 2 from the egress link to the link that owns ``nexthop``."""
    ns, out = start
    path = _l2_path(world, start, nexthop)
    if path is None:
        return _no_neighbour(world, result, pkt, start, nexthop)
    target = path[-1][0]
    mac = _nexthop_mac(world, ns, out, nexthop, target)
    for (here, how), (there, _) in zip(path, path[1:], strict=False):
        link = world.links[there]
        if how == "pair":
            result.add(here[0], f"{here[1]} -> {link.kind} peer {_full(there)}")
            for where, direction in ((here, EGRESS), (there, INGRESS)):
                shaped = world.impairment(where, direction)
                if shaped is not None:
                    result.add(where[0], f"{where[1]} {direction}: {shaped}")
        elif how == "port-to-bridge":
            result.add(here[0], f"{here[1]} is a port of {link.kind} {there[1]}")
        elif how == "bridge-to-port":
            result.add(here[0], _bridge_choice(world, here, there[1], mac))
        elif how == "tunnel":
            kind = link_kind(link.kind)
            crossing = kind.crossing(link) if kind is not None else link.kind
            result.add(here[0], f"{here[1]} -> {crossing} -> {qualify(*there)}")
        elif how == "onto-parent":
            result.add(here[0], f"{here[1]} sends on the segment of {there[1]}, its parent")
        elif how == "from-parent":
            result.add(here[0], f"{here[1]} -> {link.kind} {there[1]}, made on it (its MAC)")
        if not link.up:
            _finish(result, pkt, "dropped", f"link {qualify(*there)} is down")
            return True
    owner = f"{qualify(*target)} owns next hop {nexthop}"
    if target[0] == ns and pkt.iif is None and len(path) == 1:
        owner = f"{out} owns next hop {nexthop}"
    result.add(target[0], f"{owner}: into routing in {ns_label(target[0])}")
    pkt.ns, pkt.iif, pkt.dnatted_here = target[0], target[1], False
    return False


def _l2_path(world: World, start: tuple[str, str],
             nexthop: str) -> list[tuple[tuple[str, str], str]] | None:
    """Breadth-first over veth/bridge/VXLAN adjacency to the link that holds ``nexthop``:
    [(link, how we left it), ...], the last element being the owner. The egress link itself
    is not a candidate (its own address is never the next hop)."""
    parents: dict[tuple[str, str], tuple[tuple[str, str], str] | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        came = parents[node]
        # a frame a link sends on its parent's segment leaves by the parent, never reaching
        # the parent's own addresses
        if node != start and (came is None or came[1] != "onto-parent") \
                and _holds(world, node, nexthop):
            chain: list[tuple[tuple[str, str], str]] = [(node, "")]
            step = parents[node]
            while step is not None:
                prev, how = step
                chain.insert(0, (prev, how))
                step = parents[prev]
            return chain
        for other, how in world.neighbours(node):
            if other not in parents and world.crosses(parents[node], node, other, how):
                parents[other] = (node, how)
                queue.append(other)
    return None


def _holds(world: World, node: tuple[str, str], address: str) -> bool:
    link = world.links[node]
    master = world.links.get((node[0], link.master)) if link.master else None
    kind = link_kind(master.kind) if master is not None else None
    if kind is not None and kind.ports:
        return False  # a bridge port's addresses are not used for forwarding; the bridge's are
    # (a VRF's port routes with its own addresses, in the VRF's table)
    return any(str(i.ip) == address for i in world.addrs.get(node, []))


def _nexthop_mac(world: World, ns: str, out: str, nexthop: str,
                 target: tuple[str, str]) -> str | None:
    """The MAC the frame is addressed to: the neighbour entry if the kernel has resolved it,
    else the owner's link MAC (what ARP would answer)."""
    entry = world.kernel.neighbor_entry(ns, out, nexthop)
    if entry and entry[0] and not entry[1] & (NUD_FAILED | NUD_INCOMPLETE):
        return entry[0]
    return world.links[target].mac


def _bridge_choice(world: World, bridge: tuple[str, str], port: str, mac: str | None) -> str:
    ns, name = bridge
    ports = world.kernel.bridge_ports_for(ns, name, mac) if mac else []
    if port in ports:
        return f"bridge {name}: forwards to port {port} (FDB: {mac} on {port})"
    if ports:  # the FDB points elsewhere than the owner we found: say both
        return (f"bridge {name}: FDB has {mac} on {', '.join(ports)}, but the next hop is "
                f"behind {port}")
    members = sorted(k[1] for k, lk in world.links.items() if k[0] == ns and lk.master == name)
    return (f"bridge {name}: {mac or 'the next hop'} not in its FDB yet: flooded to ports "
            f"{', '.join(members)} (the next hop is behind {port})")


def _no_neighbour(world: World, result: Explanation, pkt: Packet, start: tuple[str, str],
                  nexthop: str) -> bool:
    ns, out = start
    entry = world.kernel.neighbor_entry(ns, out, nexthop)
    exits = _exits(world, start)
    if entry and entry[1] & (NUD_FAILED | NUD_INCOMPLETE):
        reason = f"neighbour {nexthop} on {qualify(ns, out)} does not answer (ARP failed)"
        _finish(result, pkt, "dropped", reason)
    elif exits:
        result.add(ns, f"{nexthop} is not in the namespaces in scope; the segment of {out} "
                       f"leaves through {', '.join(exits)}")
        _finish(result, pkt, "left", f"leaves the topology through {exits[0]} "
                                     f"towards {nexthop}")
    else:
        _finish(result, pkt, "dropped", f"no neighbour {nexthop} on {qualify(ns, out)}: "
                                        "nothing on that segment has that address")
    return True


def _exits(world: World, start: tuple[str, str]) -> list[str]:
    """Links on the egress segment that lead outside the namespaces in scope (physical NICs,
    veths whose peer is elsewhere)."""
    seen = {start}
    queue = deque([start])
    exits = []
    while queue:
        node = queue.popleft()
        link = world.links[node]
        kind = link_kind(link.kind)
        if kind is None or not kind.layer2 or (kind.paired and link.peer not in world.links):
            exits.append(qualify(*node))
        for other, _ in world.neighbours(node):
            if other not in seen:
                seen.add(other)
                queue.append(other)
    return exits


# -- entry point for the CLI --------------------------------------------------------------------

def parse_destination(text: str) -> tuple[str, int | None]:
    """"10.0.0.1:80" -> ("10.0.0.1", 80); "[fd00::1]:80" and bare addresses too: the file's
    ADDRESS[:PORT] (ValueError saying what is wrong otherwise)."""
    address, port, problem = split_target(text)
    if address is None:
        raise ValueError(problem)
    return str(address), port


def live_nat_rules(topology_name: str | None) -> Callable[[str], tuple[NatRule, ...]]:
    """NAT rules per namespace from the live netdecl tables: the topology's table, or (no
    topology) every netdecl-* table there. No nft: no NAT rules (said by the caller)."""
    from netdecl.backends import nftables

    def rules(ns: str) -> tuple[NatRule, ...]:
        try:
            if topology_name is not None:
                names = [topology_name]
            else:
                listing = nftables.ruleset(ns).get("nftables", [])
                names = [obj["table"]["name"][len(nftables.TABLE_PREFIX):] for obj in listing
                         if "table" in obj and obj["table"].get("family") == nftables.FAMILY
                         and obj["table"]["name"].startswith(nftables.TABLE_PREFIX)]
            out: list[NatRule] = []
            for name in names:
                table = nftables.read(name, ns)
                if table is not None and table.rules:
                    out += table.rules
            return tuple(out)
        except nftables.NftUnavailable:
            return ()

    return rules


def explain_live(source: str, destination: str, proto: str | None,
                 topology: Any | None = None) -> Explanation:
    """Explain with the live kernel. Scope: the topology's namespaces (and its NAT table), or
    without one the root and every named namespace (and every netdecl table)."""
    from netdecl.backends import namespaces
    from netdecl.backends.netlink import Kernel
    from netdecl.errors import NetdeclError
    from netdecl.model import ROOT

    source = ROOT if source in ("", "root") else source
    try:
        dst, port = parse_destination(destination)
    except ValueError as exc:
        raise NetdeclError(f"explain: {exc}") from None
    proto = proto or ("tcp" if port is not None else "icmp")
    if proto == "icmp" and port is not None:
        raise NetdeclError("icmp has no ports: drop the :PORT or say --proto tcp|udp")
    scope = [ROOT, *namespaces.list_named()]
    if topology is not None:
        scope = [ns for ns in topology.all_namespaces() if ns in scope]
    if source not in scope:
        where = f"topology {topology.name}" if topology is not None else "this host"
        raise NetdeclError(f"namespace {ns_label(source)} does not exist in {where}")
    with Kernel() as kernel:
        world = World(kernel, scope, live_nat_rules(topology.name if topology else None))
        return explain(world, source, dst, port, proto)
