"""Capture the rtnetlink exchanges that tests/test_rtnl_codec.py replays offline.

Run it by hand, as root, from the checkout, after a change to netdecl/backends/rtnl.py that
changes what it sends or reads (or to look at a newer kernel)::

    sudo .venv/bin/python tests/data/rtnl/capture.py

It never touches this machine's network: it starts a hermetic host (tests/harness.py: a
throwaway network + mount namespace) and runs itself again inside it (``--inside DIR``), where
it builds a small scene with KernelHost (a bridge with STP, a veth whose other end is in
namespace ``peer`` and a port of the bridge in hairpin mode, a VXLAN over the bridge, IPv4 and
IPv6 addresses, routes in two tables, a blackhole) and then drives ``rtnl.RtnlSocket`` and
``rtnl.LinkEvents`` over sockets that record every datagram. When the hermetic host ends, so
does all of it.

Each ``NAME.hex`` file next to this script is one exchange: ``>`` lines are what the codec
sent, ``<`` lines what the kernel answered (one datagram a line, hex), in order; ``@`` lines
are facts the test needs to replay it (an argument, such as a file descriptor's number);
``#`` lines say what it is. Rewriting them changes what the offline tests compare against:
look at the diff.
"""

from __future__ import annotations

import os
import platform
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent.parent


class Recording:
    """A NETLINK_ROUTE socket that writes down what goes through it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lines: list[str] = []

    def bind(self, address: tuple[int, int]) -> None:
        self.sock.bind(address)

    def setsockopt(self, *args: Any) -> None:
        self.sock.setsockopt(*args)

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> int:
        self.lines.append("> " + data.hex())
        return self.sock.send(data)

    def recv(self, size: int, flags: int = 0) -> bytes:
        data = self.sock.recv(size, flags)
        self.lines.append("< " + data.hex())
        return data


def inside(out: Path) -> None:
    """The capture proper: only ever run inside the hermetic host."""
    from netdecl.backends import namespaces, rtnl
    from netdecl.backends.kernelhost import KernelHost
    from netdecl.links import veth
    from netdecl.links.bridge import BridgeSpec
    from netdecl.links.veth import VethSpec
    from netdecl.links.vxlan import Vxlan
    from netdecl.model import ROOT, Address, Link, Namespace, Route

    def netlink(ns: str = ROOT) -> socket.socket:
        return namespaces.run_in(ns, lambda: socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE))

    def record(name: str, note: str, run: Callable[[rtnl.RtnlSocket], object],
               ns: str = ROOT, facts: dict[str, object] | None = None) -> object:
        recording = Recording(netlink(ns))
        try:
            result = run(rtnl.RtnlSocket(recording))  # type: ignore[arg-type]
        except rtnl.RtnlError as exc:
            result = exc
        finally:
            recording.close()
        head = [f"# {note}", f"# captured on Linux {platform.release()}"]
        head += [f"@ {key}={value}" for key, value in (facts or {}).items()]
        (out / f"{name}.hex").write_text("\n".join(head + recording.lines) + "\n")
        return result

    # -- the scene, made the production way --------------------------------------------------
    host = KernelHost()
    topo = "cap"
    host.create(Namespace("peer"), topo)
    host.create(Link(ROOT, "br0", "bridge", spec=BridgeSpec(stp=True)), topo)
    host.create(Link(ROOT, "v0", "veth", master="br0", hairpin=True,
                     spec=VethSpec(peer=("peer", "eth0"))),
                topo, peer=Link("peer", "eth0", "veth", spec=VethSpec(peer=(ROOT, "v0"))))
    host.create(Link(ROOT, "vx0", "vxlan", spec=Vxlan(id=42, local="10.0.0.1", dev="br0",
                                                      port=4790, learning=False)), topo)
    for obj in (Address(ROOT, "br0", "10.0.0.1/24"), Address(ROOT, "br0", "fd00::1/64"),
                Address("peer", "eth0", "10.0.0.2/24"),
                Route(ROOT, "10.9.0.0/16", via="10.0.0.9", table=100, metric=7),
                Route(ROOT, "fd01::/64", dev="br0", metric=1024),
                Route(ROOT, "192.0.2.0/24", type="blackhole")):
        host.create(obj, topo)
    host.close()

    # -- reads: what KernelHost's observe reads ----------------------------------------------
    record("links_root", "RtnlSocket.links() in the root: lo, br0, v0, vx0",
           lambda s: s.links())
    record("links_peer", "RtnlSocket.links() in namespace peer: lo, eth0 (its peer elsewhere)",
           lambda s: s.links(), ns="peer")
    record("addresses_root", "RtnlSocket.addresses() in the root", lambda s: s.addresses())
    record("routes_root", "RtnlSocket.routes() in the root, both families",
           lambda s: s.routes())
    record("link_by_name", "RtnlSocket.link_by_name('br0')", lambda s: s.link_by_name("br0"))
    record("link_by_name_missing", "RtnlSocket.link_by_name('nope'): ENODEV, None",
           lambda s: s.link_by_name("nope"))
    peer_fd = os.open(namespaces.netns_path("peer"), os.O_RDONLY)
    record("nsid_of", "RtnlSocket.nsid_of(fd of namespace peer) in the root",
           lambda s: s.nsid_of(peer_fd), facts={"fd": peer_fd})

    # -- writes: what KernelHost's creates and changes send ----------------------------------
    echoed = record("new_link", "RtnlSocket.new_link('cap0', 'bridge', STP on): echoed",
                    lambda s: s.new_link("cap0", "bridge",
                                         rtnl.attr_u32(5, 1)))  # IFLA_BR_STP_STATE
    assert isinstance(echoed, rtnl.LinkMsg), echoed
    bridge = echoed.index
    pair = record("new_veth", "RtnlSocket.new_link('cap1', 'veth', the veth kind's request "
                  "for peer cap2 in the namespace of fd): echoed",
                  lambda s: s.new_link("cap1", "veth", veth.peer_data("cap2", peer_fd)),
                  facts={"fd": peer_fd})
    assert isinstance(pair, rtnl.LinkMsg), pair
    record("set_link", "RtnlSocket.set_link(cap1: all of it, cap0 its master)",
           lambda s: s.set_link(pair.index, up=True, mtu=1400, mac="02:00:00:00:ca:01",
                                master=bridge, alias="netdecl:cap", name="cap1r"),
           facts={"index": pair.index, "master": bridge})
    record("set_link_no_alias", "RtnlSocket.set_link(cap1r, alias=''): the alias removed",
           lambda s: s.set_link(pair.index, alias=""), facts={"index": pair.index})
    record("set_link_up", "RtnlSocket.set_link(cap0, up=True)",
           lambda s: s.set_link(bridge, up=True), facts={"index": bridge})
    record("add_address", "RtnlSocket.add_address(cap0, 10.5.0.1/24)",
           lambda s: s.add_address(bridge, "10.5.0.1", 24), facts={"index": bridge})
    record("add_address_v6", "RtnlSocket.add_address(cap0, fd05::1/64, IFA_F_NODAD)",
           lambda s: s.add_address(bridge, "fd05::1", 64, 0x02), facts={"index": bridge})
    record("add_address_exists", "RtnlSocket.add_address(cap0, 10.5.0.1/24) again: EEXIST",
           lambda s: s.add_address(bridge, "10.5.0.1", 24), facts={"index": bridge})
    route: dict[str, Any] = {"family": socket.AF_INET, "dst": "10.6.0.0", "dst_len": 16,
                             "table": 1000, "metric": 5, "proto": 211, "gateway": "10.5.0.9",
                             "oif": bridge, "prefsrc": "10.5.0.1"}
    record("replace_route", "RtnlSocket.replace_route(10.6.0.0/16 table 1000 via 10.5.0.9)",
           lambda s: s.replace_route(**route), facts={"index": bridge})
    gone = {**route, "rtype": 0, "scope": 255, "gateway": None, "oif": None, "prefsrc": None}
    record("del_route", "RtnlSocket.del_route(10.6.0.0/16 table 1000, as KernelHost deletes)",
           lambda s: s.del_route(**gone))
    record("del_route_missing", "RtnlSocket.del_route() of that route again: ESRCH",
           lambda s: s.del_route(**gone))
    record("del_address", "RtnlSocket.del_address(cap0, 10.5.0.1/24)",
           lambda s: s.del_address(bridge, "10.5.0.1", 24), facts={"index": bridge})

    # -- link notifications: what LinkEvents waits on ----------------------------------------
    events_socket = Recording(netlink())
    events = rtnl.LinkEvents(events_socket)  # type: ignore[arg-type]

    def leave_and_delete(s: rtnl.RtnlSocket) -> None:
        s.set_link(pair.index, master=0)
        s.del_link(pair.index)

    record("del_link", "RtnlSocket.del_link(cap1r), out of its bridge first: the pair goes",
           leave_and_delete, facts={"index": pair.index})
    events._read(block=False)
    events.close()
    head = ["# LinkEvents: what a socket subscribed to RTNLGRP_LINK read while cap1r left its "
            "bridge (AF_BRIDGE RTM_DELLINK: the link lives) and was deleted with its peer",
            f"# captured on Linux {platform.release()}", f"@ index={pair.index}"]
    (out / "link_events.hex").write_text("\n".join(head + events_socket.lines) + "\n")
    os.close(peer_fd)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--inside":
        inside(Path(sys.argv[2]))
        return
    sys.path.insert(0, str(TESTS))
    from harness import HermeticHost

    with HermeticHost(cwd=TESTS.parent) as hermetic:
        result = hermetic.run([sys.executable, str(Path(__file__).resolve()), "--inside",
                               str(HERE)], check=False)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    if result.returncode == 0:
        print(f"captured: {', '.join(sorted(p.stem for p in HERE.glob('*.hex')))}")
    sys.exit(result.returncode)


if __name__ == "__main__":
    main()
