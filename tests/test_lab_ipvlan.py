"""kind: ipvlan in the kernel lab (this machine's kernel has no ipvlan). One boot for the
module; the tests judge what the steps left.

A "switch" namespace sits at the other end of the lab's NIC `uplink` (`kind: external`).
netdecl makes two ipvlans on the uplink, ipv1 and ipv2 (l2; one mode per parent), each in a
subnet of its own; HTTP from the switch reaches a server on each, and the switch's neighbour
table holds the uplink's own MAC for both addresses: ipvlans share their parent's MAC (a
macvlan would have its own). Then both go to l3 in place (same ifindexes), still reached;
destroy leaves the links as they were.
"""

from __future__ import annotations

from typing import Any

import pytest
from harness import HTTP_CLIENT, SERVER
from kernellab import KernelLab, LabRun, Step

pytestmark = pytest.mark.lab("ipvlan", "veth")

TOPOLOGY = """\
version: 1
name: ipvlab
links:
  - {name: uplink, kind: external}
  - {name: ipv1, kind: ipvlan, link: uplink, ipvlan: {mode: MODE}, addresses: [10.80.0.11/24]}
  - name: ipv2
    kind: ipvlan
    link: uplink
    ipvlan: {mode: MODE}
    addresses: [10.81.0.12/24]
"""

HTTP = r"""
within() { ns=$1; shift; if [ -n "$ns" ]; then ip netns exec "$ns" "$@"; else "$@"; fi; }
http() {
    within "$1" "$PYTHON" server.py "$1" "$2" 80 tcp > "/tmp/$4.server" &
    server=$!
    for _ in $(seq 100); do grep -q ready "/tmp/$4.server" && break; sleep 0.1; done
    within "$3" "$PYTHON" client.py "$2" 80 5 > "$OUT/$4.json"
    kill $server
}
"""
LINKS = 'ip -j -d link show > "$OUT/links.json"\n'

STEPS = [
    Step("switch", """set -e
ip netns add sw
ip link add uplink type veth peer name trunk netns sw
ip link set uplink up
ip -n sw link set trunk up
ip -n sw addr add 10.80.0.254/24 dev trunk
ip -n sw addr add 10.81.0.254/24 dev trunk
""" + LINKS),
    Step("apply", "netdecl apply l2.yaml"),
    Step("applied", LINKS),
    Step("traffic", HTTP + """set -e
http "" 10.80.0.11 sw to_ipv1
http "" 10.81.0.12 sw to_ipv2
ip -n sw -j neigh show dev trunk > "$OUT/neighbours.json"
"""),
    Step("plan-same", "netdecl plan --detailed-exitcode l2.yaml"),
    Step("plan-l3", "netdecl plan l3.yaml"),
    Step("l3", "netdecl apply l3.yaml"),
    Step("l3-traffic", HTTP + LINKS + 'http "" 10.81.0.12 sw to_ipv2_l3\n'),
    Step("destroy", "netdecl destroy l3.yaml"),
    Step("destroyed", LINKS),
]


@pytest.fixture(scope="module")
def run(module_lab: KernelLab) -> LabRun:
    return module_lab.run(STEPS, files={
        "l2.yaml": TOPOLOGY.replace("MODE", "l2"), "l3.yaml": TOPOLOGY.replace("MODE", "l3"),
        "server.py": SERVER, "client.py": HTTP_CLIENT})


def by_name(links: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {link["ifname"]: link for link in links}


def test_the_ipvlans_are_on_the_uplink_with_its_mac_and_their_mode(run: LabRun) -> None:
    run["switch"].ok()
    run["apply"].ok()
    links = by_name(run["applied"].json["links"])
    for name in ("ipv1", "ipv2"):
        info = links[name]["linkinfo"]
        assert info["info_kind"] == "ipvlan" and info["info_data"]["mode"] == "l2", info
        assert links[name]["link"] == "uplink"
        assert links[name]["address"] == links["uplink"]["address"]  # the parent's MAC
        assert links[name].get("ifalias") == "netdecl:ipvlab"


def test_http_reaches_each_ipvlan_at_the_uplinks_mac(run: LabRun) -> None:
    traffic = run["traffic"]
    traffic.ok()
    for name in ("to_ipv1", "to_ipv2"):
        assert traffic.json[name]["ok"], traffic.json[name]
        assert "ns=root client=10.8" in traffic.json[name]["body"]
    mac = by_name(run["applied"].json["links"])["uplink"]["address"]
    neighbours = {n["dst"]: n.get("lladdr") for n in traffic.json["neighbours"]}
    assert neighbours["10.80.0.11"] == mac and neighbours["10.81.0.12"] == mac, neighbours
    assert run["plan-same"].returncode == 0, run["plan-same"].stdout


def test_a_new_mode_is_changed_in_place(run: LabRun) -> None:
    plan = run["plan-l3"].ok()
    assert "~ link ipv1" in plan and "~ link ipv2" in plan and "-/+" not in plan, plan
    run["l3"].ok()
    after = run["l3-traffic"]
    after.ok()
    links = by_name(after.json["links"])
    for name in ("ipv1", "ipv2"):
        assert links[name]["linkinfo"]["info_data"]["mode"] == "l3"
        assert links[name]["ifindex"] == by_name(run["applied"].json["links"])[name]["ifindex"]
    assert after.json["to_ipv2_l3"]["ok"], after.json["to_ipv2_l3"]


def test_destroy_leaves_the_links_as_they_were(run: LabRun) -> None:
    run["destroy"].ok()
    before = by_name(run["switch"].json["links"])
    after = by_name(run["destroyed"].json["links"])
    assert set(after) == set(before)
    assert after["uplink"]["flags"] == before["uplink"]["flags"]
