"""Model objects for tests that must not depend on the loader (planner unit tests)."""

from __future__ import annotations

from netdecl.links.veth import VethSpec
from netdecl.model import ROOT, Address, Link, Namespace, Route, Sysctl, Topology


def docker_bridge(name: str = "docker-bridge") -> Topology:
    """The seed scenario, built directly from model objects."""
    topo = Topology(name=name)
    topo.add(Sysctl(ROOT, "net.ipv4.ip_forward", "1"))
    for ns in ("nginx-1", "nginx-2"):
        topo.add(Namespace(ns))
    topo.add(Link(ROOT, "docker0", "bridge"))
    topo.add(Address(ROOT, "docker0", "172.17.0.1/16"))
    for i, ns in ((1, "nginx-1"), (2, "nginx-2")):
        topo.add(Link(ROOT, f"veth-n{i}", "veth", master="docker0",
                      spec=VethSpec(peer=(ns, "eth0"))))
        topo.add(Link(ns, "eth0", "veth", spec=VethSpec(peer=(ROOT, f"veth-n{i}"))))
        topo.add(Address(ns, "eth0", f"172.17.0.{i + 1}/16"))
        topo.add(Route(ns, "0.0.0.0/0", via="172.17.0.1"))
    return topo
