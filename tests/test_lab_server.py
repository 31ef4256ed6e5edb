"""topologies/server.yaml in the kernel lab: the typical server (two NICs in an LACP bond,
VLANs 100 and 200 on it, a bridge per VLAN with a VM's tap and a container's veth, a dummy
with a service address, the default route on VLAN 100) against a switch made by hand.

The switch: namespace `sw` with its own 802.3ad bond over the far ends of the NICs (veth
pairs) and a VLAN interface per VLAN, each moved into a gateway namespace of its own: gw100
(192.168.100.1) and gw200 (192.168.200.1). gw200's VLAN 200 interface also holds
192.168.100.99, in VLAN 100's subnet: only the VLANs keep it from app100.

Proven with HTTP: each container reaches its own VLAN's gateway; app100 does not reach
192.168.100.99 on VLAN 200; the host's default route goes out on VLAN 100 (to an address only
gw100 has); gw100 reaches the service address on the dummy; app100 still reaches its gateway
with a bond member down. The independent eyes: `ip -j -d link` (bond, VLAN ids on the bond,
taps and veths in their bridges) and /proc/net/bonding/bond0 (LACP partner, both members).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from harness import HTTP_CLIENT, SERVER
from kernellab import KernelLab, LabRun, Step
from test_lab_bond import STATE

pytestmark = pytest.mark.lab("bonding", "8021q", "bridge", "veth", "tun", "dummy")

TOPOLOGY = (Path(__file__).resolve().parent.parent / "topologies" / "server.yaml").read_text()

STEPS = [
    Step("switch", STATE + """set -e
ip netns add sw
ip link add eth1 type veth peer name swp1 netns sw
ip link add eth2 type veth peer name swp2 netns sw
ip -n sw link add swbond type bond mode 802.3ad miimon 100 lacp_rate fast
ip -n sw link set swp1 master swbond
ip -n sw link set swp2 master swbond
ip -n sw link set swbond up
for id in 100 200; do
    ip netns add gw$id
    ip -n sw link add link swbond name swbond.$id type vlan id $id
    ip -n sw link set swbond.$id netns gw$id
    ip -n gw$id link set swbond.$id up
    ip -n gw$id link set lo up
    ip -n gw$id addr add 192.168.$id.1/24 dev swbond.$id
done
ip -n gw200 addr add 192.168.100.99/24 dev swbond.200
ip -n gw100 addr add 198.51.100.1/32 dev lo
ip -n gw100 route add 10.96.0.0/24 via 192.168.100.10
state before
"""),
    Step("apply", "netdecl apply server.yaml"),
    Step("applied", STATE + "lacp_up; echo lacp=$?\nstate applied\n"),
    Step("traffic", STATE + """set -e
http gw100 192.168.100.1 app100 app100_gw100
http gw200 192.168.200.1 app200 app200_gw200
http gw200 192.168.100.99 app100 app100_vlan200
http gw100 198.51.100.1 "" host_default
http "" 10.96.0.10 gw100 gw100_service
"""),
    Step("member-down", STATE + """set -e
ip link set eth1 down
for _ in $(seq 100); do
    grep -A1 "Slave Interface: eth1" /proc/net/bonding/bond0 | grep -q "MII Status: down" && break
    sleep 0.1
done
state one_down
http gw100 192.168.100.1 app100 app100_one_down
ip link set eth1 up
"""),
    Step("plan", "netdecl plan --detailed-exitcode server.yaml"),
    Step("destroy", "netdecl destroy server.yaml"),
    Step("destroyed", STATE + "state destroyed\n"),
]


@pytest.fixture(scope="module")
def run(module_lab: KernelLab) -> LabRun:
    return module_lab.run(STEPS, files={"server.yaml": TOPOLOGY, "server.py": SERVER,
                                        "client.py": HTTP_CLIENT})


def links(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {link["ifname"]: link for link in state["links"]}


def test_the_kernel_has_what_the_file_says(run: LabRun) -> None:
    run["switch"].ok()
    run["apply"].ok()
    applied = run["applied"]
    assert "lacp=0" in applied.ok(), applied.json["applied"]["bonding"]
    found = links(applied.json["applied"])
    assert found["bond0"]["linkinfo"]["info_data"]["mode"] == "802.3ad"
    for nic in ("eth1", "eth2"):
        assert found[nic]["master"] == "bond0", found[nic]
    for vid in (100, 200):
        vlan = found[f"bond0.{vid}"]
        assert (vlan["link"], vlan["linkinfo"]["info_data"]["id"], vlan["master"]) == (
            "bond0", vid, f"br{vid}")
        tap = found[f"vm{vid}"]
        assert (tap["linkinfo"]["info_data"]["type"], tap["master"]) == ("tap", f"br{vid}")
        assert found[f"veth{vid}"]["master"] == f"br{vid}"
    assert found["svc0"]["linkinfo"]["info_kind"] == "dummy"
    bonding = applied.json["applied"]["bonding"]
    assert "Slave Interface: eth1" in bonding and "Slave Interface: eth2" in bonding


def test_each_vlan_reaches_its_own_gateway_and_not_the_others(run: LabRun) -> None:
    traffic = run["traffic"]
    traffic.ok()
    for name, client in (("app100_gw100", "192.168.100.20"), ("app200_gw200", "192.168.200.20")):
        result = traffic.json[name]
        assert result["ok"], (name, result)
        assert f"client={client}" in result["body"], result
    # 192.168.100.99 is in VLAN 100's subnet but on VLAN 200: never reached from VLAN 100
    assert not traffic.json["app100_vlan200"]["ok"], traffic.json["app100_vlan200"]


def test_the_default_route_and_the_service_address(run: LabRun) -> None:
    traffic = run["traffic"].json
    assert traffic["host_default"]["ok"], traffic["host_default"]  # via VLAN 100 to gw100
    assert "client=192.168.100.10" in traffic["host_default"]["body"]
    assert traffic["gw100_service"]["ok"], traffic["gw100_service"]
    assert "ns=root client=192.168.100.1" in traffic["gw100_service"]["body"]


def test_traffic_flows_with_a_bond_member_down(run: LabRun) -> None:
    down = run["member-down"]
    down.ok()
    bonding = down.json["one_down"]["bonding"]
    assert bonding.split("Slave Interface: eth1", 1)[1].split("\n")[1].strip() == \
        "MII Status: down", bonding
    assert down.json["app100_one_down"]["ok"], down.json["app100_one_down"]


def test_nothing_to_do_after_apply_and_destroy_gives_the_nics_back(run: LabRun) -> None:
    assert run["plan"].returncode == 0, run["plan"].stdout + run["plan"].stderr
    run["destroy"].ok()
    before = links(run["switch"].json["before"])
    after = links(run["destroyed"].json["destroyed"])
    assert set(after) == set(before)
    for nic in ("eth1", "eth2"):
        assert (after[nic].get("master"), after[nic]["mtu"], after[nic]["flags"]) == (
            before[nic].get("master"), before[nic]["mtu"], before[nic]["flags"]), nic
