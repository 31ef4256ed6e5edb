"""The CNI reference plugins and netdecl build the same kernel state, on this machine's kernel:
macvlan in its four modes, host-device, and tuning chained after macvlan (ipvlan and vlan,
which this kernel lacks, are in tests/test_lab_cni.py).

Each test makes two hermetic hosts with the same "host NICs": eth0 and eth1, veths whose other
ends are in a namespace `sw` that stands for the switch (trunk, a port of a hairpin bridge
holding the networks' gateways, and port1). On one host the real plugins (/usr/lib/cni) build
the network as a runtime calls them (tests/cniplugins.py: loopback, then the network's
plugins, config on stdin, `static` IPAM for addresses and routes); on the other netdecl
applies the shipped topology that writes the same network. `ip -j -d link/addr/route` and
/proc/sys of both, normalised (no ifindexes, random MACs, netnsids or owner tags), are equal;
the same traffic goes (and does not go) on both; and the plugins' DEL (then the runtime
removing the namespace) and `netdecl destroy` leave both hosts as the NICs alone left them.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from agentproc import wait_until
from cniplugins import COLLECTOR, LOOPBACK, RUNTIME, differences, normalise
from harness import REPO_ROOT, HermeticHost

pytestmark = pytest.mark.skipif(not Path("/usr/lib/cni/macvlan").exists(),
                                reason="needs /usr/lib/cni (apt-get install "
                                       "containernetworking-plugins; .ci/setup does)")

# the host NICs and the switch's ends, with MACs of their own so the normalised states keep
# them (a moved NIC keeps its MAC; a tuned one takes the one it is given)
NIC_MACS = {"eth0": "02:00:00:00:0a:01", "trunk": "02:00:00:00:0a:02",
            "eth1": "02:00:00:00:0b:01", "port1": "02:00:00:00:0b:02"}
TUNED_MAC = "02:00:00:00:64:11"
FIXED_MACS = {*NIC_MACS.values(), TUNED_MAC}
# the gateways of the networks, on the switch's bridge (eth0's networks) or on port1 (eth1's)
GATEWAYS = {"br0": ["10.60.0.1/24", "10.64.0.1/24"], "port1": ["10.63.0.1/24"]}


def static(address: str, gateway: str | None, *routes: dict[str, str]) -> dict[str, Any]:
    """The `static` IPAM of a plugin's config."""
    entry = {"address": address, **({"gateway": gateway} if gateway else {})}
    return {"type": "static", "addresses": [entry], "routes": list(routes)}


def macvlan_ipam(i: int) -> dict[str, Any]:
    ipam = static(f"10.60.0.{11 + i}/24", "10.60.0.1", {"dst": "0.0.0.0/0"},
                  {"dst": "10.99.0.0/16", "gw": "10.60.0.254"})
    ipam["addresses"].append({"address": f"fd60::{11 + i}/64"})
    return ipam


@dataclasses.dataclass(frozen=True)
class Case:
    topology: str
    variables: tuple[str, ...]
    # one network config per container: the list of plugins a runtime runs for it
    plugins: tuple[tuple[dict[str, Any], ...], ...]
    # (from, to namespace, to address, answered): HTTP that must, or must not, get through
    traffic: tuple[tuple[str, str, str, bool], ...]


def macvlan(mode: str, n: int, traffic: tuple[tuple[str, str, str, bool], ...]) -> Case:
    return Case("cni-macvlan.yaml", (f"mode={mode}", f"n={n}"), tuple(
        ({"type": "macvlan", "master": "eth0", "mode": mode, "mtu": 1400,
          "ipam": macvlan_ipam(i)},) for i in range(n)), traffic)


TO_GATEWAY = ("c1", "sw", "10.60.0.1", True)
CASES = {
    # bridge: the two containers talk directly; vepa: only through the switch, whose bridge
    # sends frames back out of the port they came in (hairpin); private: not even then
    "macvlan-bridge": macvlan("bridge", 2, (TO_GATEWAY, ("c1", "c2", "10.60.0.12", True),
                                            ("c2", "c1", "10.60.0.11", True))),
    "macvlan-vepa": macvlan("vepa", 2, (TO_GATEWAY, ("c1", "c2", "10.60.0.12", True))),
    "macvlan-private": macvlan("private", 2, (TO_GATEWAY, ("c1", "c2", "10.60.0.12", False))),
    "macvlan-passthru": macvlan("passthru", 1, (TO_GATEWAY,)),
    "host-device": Case("cni-host-device.yaml", (), (
        ({"type": "host-device", "device": "eth1",
          "ipam": static("10.63.0.11/24", "10.63.0.1", {"dst": "0.0.0.0/0"})},),),
        (("c1", "sw", "10.63.0.1", True),)),
    "tuning": Case("cni-tuning.yaml", (), (
        ({"type": "macvlan", "master": "eth0", "mode": "bridge",
          "ipam": static("10.64.0.11/24", None)},
         {"type": "tuning", "mac": TUNED_MAC, "mtu": 1280, "promisc": True, "allmulti": True,
          "sysctl": {"net.ipv4.conf.eth0.arp_filter": "1"}}),),
        (("c1", "sw", "10.64.0.1", True),)),
}


def make_nics(host: HermeticHost) -> None:
    """eth0 and eth1 in the root, up, their other ends in `sw`: trunk on a hairpin bridge
    holding eth0's gateways, port1 holding eth1's."""
    host.run(["ip", "netns", "add", "sw"])
    for nic, end in (("eth0", "trunk"), ("eth1", "port1")):
        host.run(["ip", "link", "add", nic, "address", NIC_MACS[nic], "type", "veth", "peer",
                  "name", end, "address", NIC_MACS[end], "netns", "sw"])
        host.run(["ip", "link", "set", nic, "up"])
    host.run(["ip", "-n", "sw", "link", "add", "br0", "type", "bridge"])
    host.run(["ip", "-n", "sw", "link", "set", "trunk", "master", "br0"])
    host.run(["bridge", "-n", "sw", "link", "set", "dev", "trunk", "hairpin", "on"])
    for dev, addresses in GATEWAYS.items():
        for address in addresses:
            host.run(["ip", "-n", "sw", "addr", "add", address, "dev", dev])
    for dev in ("lo", "trunk", "port1", "br0"):
        host.run(["ip", "-n", "sw", "link", "set", dev, "up"])
    # a router with no route out, so it answers "unreachable" at once: a test server's look
    # up of its own name (http.server asks the DNS) from behind the default route through sw
    # fails fast instead of waiting for a DNS server it can never reach
    host.write_sysctl("net.ipv4.ip_forward", 1, ns="sw")
    # with carrier, each has its IPv6 link-local address (COLLECTOR then waits out its DAD):
    # the picture of the NICs alone is whole

    def carrier(ns: str | None, names: tuple[str, ...]) -> bool:
        return all("LOWER_UP" in link["flags"] for link in host.ip_json("link", ns=ns)
                   if link["ifname"] in names)
    wait_until(lambda: carrier(None, ("eth0", "eth1")) and carrier(
        "sw", ("trunk", "port1", "br0")), 15.0, "the NICs' carrier")


def state(host: HermeticHost) -> dict[str, Any]:
    return normalise(json.loads(host.run([sys.executable, "-c", COLLECTOR]).stdout),
                     macs=FIXED_MACS)


def settled(host: HermeticHost, want: dict[str, Any]) -> None:
    """The host's state is ``want``, once a NIC just given back up has its IPv6 link-local
    address and the routes that come with it (the kernel adds them when the carrier is
    seen, a moment after the NIC is up)."""
    try:
        wait_until(lambda: differences(state(host), want) == [], 15.0)
    except AssertionError:
        assert differences(state(host), want) == []


def runtime(host: HermeticHost, command: str, network: Path, netns: str, ifname: str,
            cache: Path) -> None:
    host.run([sys.executable, "-c", RUNTIME, command, str(network), netns, ifname, str(cache)])


def networks(case: Case, tmp_path: Path) -> list[tuple[str, Path]]:
    """(container, its network config file): tuning's dataDir, where it keeps what to give
    back on DEL, under tmp_path (its default is the real host's /var/lib/cni)."""
    made = []
    for i, plugins in enumerate(case.plugins):
        path = tmp_path / f"net-c{i + 1}.json"
        listed = [{**p, "dataDir": str(tmp_path / "tuning")} if p["type"] == "tuning" else p
                  for p in plugins]
        path.write_text(json.dumps({"cniVersion": "0.4.0", "name": "net", "plugins": listed}))
        made.append((f"c{i + 1}", path))
    return made


def traffic(host: HermeticHost, case: Case) -> list[tuple[str, str, str, bool]]:
    """Which of the case's HTTP requests were answered, by a server on each address."""
    servers = {}
    for _, ns, address, _ in case.traffic:
        if address not in servers:
            servers[address] = host.start_server(ns, 80, address=address)
    seen = [(src, ns, address, host.http_get(src, address, 80, timeout=3).ok)
            for src, ns, address, _ in case.traffic]
    for server in servers.values():
        server.stop()
    return seen


@pytest.mark.parametrize("name", sorted(CASES))
def test_netdecl_builds_what_the_cni_plugin_builds(host, tmp_path: Path, name: str) -> None:
    case = CASES[name]
    (tmp_path / "cache").mkdir()
    nd = HermeticHost(cwd=REPO_ROOT).start()
    try:
        for h in (host, nd):
            make_nics(h)
        nics_alone = state(host)
        assert differences(state(nd), nics_alone) == []

        # the runtime: a namespace per container, lo up (the loopback plugin), the network
        made = networks(case, tmp_path)
        for netns, network in made:
            host.run(["ip", "netns", "add", netns])
            runtime(host, "ADD", _loopback(tmp_path), netns, "lo", tmp_path / "cache")
            runtime(host, "ADD", network, netns, "eth0", tmp_path / "cache")
        topology = f"topologies/{case.topology}"
        args = [a for v in case.variables for a in ("--var", v)]
        applied = nd.netdecl("apply", *args, topology)
        assert applied.returncode == 0, applied.stdout + applied.stderr

        cni, ours = state(host), state(nd)
        found = differences(ours, cni)
        assert found == [], "netdecl's build (first) and the plugins' differ:\n" + "\n".join(found)
        assert traffic(host, case) == list(case.traffic)
        assert traffic(nd, case) == list(case.traffic)
        plan = nd.netdecl("plan", "--detailed-exitcode", *args, topology)
        assert plan.returncode == 0, plan.stdout + plan.stderr

        # DEL, then the runtime removes the namespace; destroy
        for netns, network in reversed(made):
            runtime(host, "DEL", network, netns, "eth0", tmp_path / "cache")
            runtime(host, "DEL", _loopback(tmp_path), netns, "lo", tmp_path / "cache")
            assert [lk["ifname"] for lk in host.ip_json("link", ns=netns)] == ["lo"]
            host.run(["ip", "netns", "del", netns])
        destroyed = nd.netdecl("destroy", *args, topology)
        assert destroyed.returncode == 0, destroyed.stdout + destroyed.stderr
        settled(nd, nics_alone)
        if name == "host-device":
            # the plugin's DEL gives the NIC back under its own name but down (netdecl's
            # destroy brings it back as it found it: up); up again, it is as it was
            assert "UP" not in state(host)[""]["links"]["eth1"]["flags"]
            host.run(["ip", "link", "set", "eth1", "up"])
        settled(host, nics_alone)
    finally:
        nd.stop()


def _loopback(tmp_path: Path) -> Path:
    path = tmp_path / "lo.json"
    path.write_text(json.dumps(LOOPBACK))
    return path
