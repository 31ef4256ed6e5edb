"""Calico's IPIP mode, topologies/calico-ipip.yaml and calico-ipip-node2.yaml, each applied on
its own "machine" in the kernel lab (this machine's kernel may lack ipip). One boot.

The machines are namespaces joined by a veth LAN, each with an eth0 netdecl does not own
(declared kind external) and the tunl0 the ipip module made in it when it was created. The
test proves with HTTP that a pod on node 1 reaches a pod on node 2 and that the server sees
the client pod's own address, with `ip -j` that the traffic went through tunl0 as IP in IP and
that the routes are Calico's (`via <node> dev tunl0 onlink`), and that destroy hands tunl0
back as it was: never deleted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from harness import HTTP_CLIENT, SERVER
from kernellab import KernelLab, LabRun, Step

pytestmark = pytest.mark.lab("veth", "ipip")

TOPOLOGIES = Path(__file__).resolve().parent.parent / "topologies"
FILES = {"node1": "calico-ipip.yaml", "node2": "calico-ipip-node2.yaml"}
MACHINES = {"node1": "192.168.1.11", "node2": "192.168.1.12"}

# `on MACHINE ARGS...`: netdecl in the machine's network namespace, with its own state dir
# (nsenter --net, not `ip netns exec`: the pods' namespaces must outlive the command)
ON = r"""
on() {
    m=$1; shift
    NETDECL_STATE_DIR=/var/lib/netdecl/$m nsenter --net=/run/netns/$m netdecl "$@"
}
"""
TUNL0 = """set -e
for m in node1 node2; do
    ip -n $m -j -d -s link show tunl0 > "$OUT/tunl0_$m.json"
    ip -n $m -j addr show tunl0 > "$OUT/addr_$m.json"
done
"""

STEPS = [
    Step("machines", """set -e
ip netns add node1
ip netns add node2
ip link add eth0 netns node1 type veth peer name eth0 netns node2
ip -n node1 addr add 192.168.1.11/24 dev eth0
ip -n node2 addr add 192.168.1.12/24 dev eth0
for m in node1 node2; do
    ip -n $m link set lo up
    ip -n $m link set eth0 up
    # a machine's default route (its router is not needed here): proxy ARP answers a pod's
    # ARP for 169.254.1.1 only when the node has a route to it, as every real node does
    ip -n $m route add default via 192.168.1.254
done
""" + TUNL0[len("set -e\n"):]),
    Step("apply", ON + "set -e\non node1 apply node1.yaml\non node2 apply node2.yaml\n"),
    Step("applied", TUNL0 + 'ip -n node1 -j -d route show 10.244.2.0/24 > "$OUT/route.json"\n'),
    Step("traffic", r"""set -e
ip netns exec pod-n2 "$PYTHON" server.py pod-n2 10.244.2.2 80 tcp > /tmp/server &
for _ in $(seq 100); do grep -q ready /tmp/server && break; sleep 0.1; done
ip netns exec pod-n1 "$PYTHON" client.py 10.244.2.2 80 5 > "$OUT/pod_to_pod.json"
ip -n node1 -j -s link show tunl0 > "$OUT/tunl0_after.json"
"""),
    Step("plan", ON + "set -e\non node1 plan --detailed-exitcode node1.yaml\n"
                      "on node2 plan --detailed-exitcode node2.yaml\n"),
    Step("show", ON + """set -e
on node1 show --name shown --namespace root --namespace pod-n1 > shown.yaml
NETDECL_STATE_DIR=/var/lib/netdecl/node1 netdecl validate shown.yaml >&2
cat shown.yaml
"""),
    Step("destroy", ON + "set -e\non node1 destroy node1.yaml\non node2 destroy node2.yaml\n"),
    Step("destroyed", TUNL0),
]


@pytest.fixture(scope="module")
def run(module_lab: KernelLab) -> LabRun:
    files = {f"{m}.yaml": (TOPOLOGIES / name).read_text() for m, name in FILES.items()}
    return module_lab.run(STEPS, files={**files, "server.py": SERVER,
                                        "client.py": HTTP_CLIENT})


def tx_packets(entries: list[dict[str, Any]]) -> int:
    return int(entries[0]["stats64"]["tx"]["packets"])


def addresses(entries: list[dict[str, Any]]) -> set[str]:
    return {f"{a['local']}/{a['prefixlen']}" for e in entries for a in e.get("addr_info", [])}


def test_tunl0_is_the_kernels_and_netdecl_configures_it(run: LabRun) -> None:
    run["machines"].ok()
    run["apply"].ok()
    for m in MACHINES:
        before = run["machines"].json[f"tunl0_{m}"][0]
        after = run["applied"].json[f"tunl0_{m}"][0]
        assert after["linkinfo"]["info_kind"] == "ipip"
        assert after["ifindex"] == before["ifindex"]  # the very device: not made again
        assert after.get("ifalias") is None  # not marked: not netdecl's
        assert (before["mtu"], after["mtu"]) == (1480, 1440)  # the kernel's, Calico's
        assert "UP" in after["flags"]
    assert addresses(run["applied"].json["addr_node1"]) == {"10.244.1.0/32"}


def test_the_other_nodes_block_is_routed_through_tunl0_onlink(run: LabRun) -> None:
    (route,) = run["applied"].json["route"]
    assert (route["gateway"], route["dev"], route["protocol"]) == ("192.168.1.12", "tunl0",
                                                                   "211")
    assert "onlink" in route["flags"]


def test_a_pod_reaches_a_pod_on_the_other_node_with_its_own_address(run: LabRun) -> None:
    traffic = run["traffic"]
    traffic.ok()
    got = traffic.json["pod_to_pod"]
    assert got["ok"] and "ns=pod-n2 client=10.244.1.2" in got["body"], got
    # and it went through the tunnel, not around it
    sent = tx_packets(traffic.json["tunl0_after"]) - tx_packets(
        run["applied"].json["tunl0_node1"])
    assert sent > 0


def test_a_second_plan_on_each_node_has_nothing_to_do(run: LabRun) -> None:
    assert run["plan"].ok().count("No changes") == 2


def test_show_writes_tunl0_as_the_hosts_own(run: LabRun) -> None:
    shown = run["show"].ok()
    assert "name: tunl0" in shown and "kind: ipip" not in shown, shown


def test_destroy_leaves_tunl0_as_it_was(run: LabRun) -> None:
    run["destroy"].ok()
    for m in MACHINES:
        before = run["machines"].json[f"tunl0_{m}"][0]
        after = run["destroyed"].json[f"tunl0_{m}"][0]
        assert (after["ifindex"], after["mtu"], after["flags"]) == (
            before["ifindex"], before["mtu"], before["flags"])
        assert addresses(run["destroyed"].json[f"addr_{m}"]) == \
            addresses(run["machines"].json[f"addr_{m}"])
