"""netdecl beside links it does not make, on a kernel that has them: a VLAN on a dummy.

This machine's kernel has neither dummy nor 802.1q, so this runs in the kernel lab (one boot
for the module, tests/kernellab.py). Inside, a dummy0 and a VLAN dummy0.10 on it are made by
hand, with an address; netdecl applies a topology whose `kind: external` link is that VLAN: a
bridge, two veths into namespaces, an address of its own on the VLAN and a route out through
it. The tests here read what the lab's steps left (`ip -j -d`, counters, exit codes) and judge.
"""

from __future__ import annotations

from typing import Any

import pytest
from harness import PING
from kernellab import KernelLab, LabRun, Step

pytestmark = pytest.mark.lab("dummy", "8021q", "bridge", "veth")

TOPOLOGY = """\
version: 1
name: vlanlab
sysctls:
  net.ipv4.ip_forward: 1
namespaces:
  c1: {}
  c2: {}
links:
  - name: dummy0.10
    kind: external
    addresses: [10.20.0.1/24]
  - name: br0
    kind: bridge
    addresses: [172.31.0.1/24]
  - name: v1
    kind: veth
    master: br0
    peer: {name: eth0, namespace: c1, addresses: [172.31.0.2/24]}
  - name: v2
    kind: veth
    master: br0
    peer: {name: eth0, namespace: c2, addresses: [172.31.0.3/24]}
routes:
  - {namespace: c1, to: default, via: 172.31.0.1}
  - {namespace: c2, to: default, via: 172.31.0.1}
  - {to: 198.51.100.0/24, via: 10.10.0.2, dev: dummy0.10}
"""
MARK = "netdecl:vlanlab"
SENT = 3  # echo requests c1 sends to 198.51.100.7, out through the VLAN

STEPS = [
    Step("handmade", """set -e
ip link add dummy0 type dummy
ip link add link dummy0 name dummy0.10 type vlan id 10
# no IPv6 on the VLAN: its solicitations would count with the traffic measured below
echo 1 > /proc/sys/net/ipv6/conf/dummy0.10/disable_ipv6
ip link set dummy0 up
ip link set dummy0.10 up
ip addr add 10.10.0.1/24 dev dummy0.10
ip -j -d link show > "$OUT/links.json"
"""),
    Step("apply", "netdecl apply topo.yaml"),
    Step("applied", """set -e
ip -j -d link show > "$OUT/root.json"
ip -n c1 -j -d link show > "$OUT/c1.json"
ip -n c2 -j -d link show > "$OUT/c2.json"
ip -j route show > "$OUT/routes.json"
ip -j addr show dev dummy0.10 > "$OUT/vlan_addresses.json"
"""),
    Step("traffic", f"""set -e
ping() {{ ip netns exec c1 "$PYTHON" ping.py "$@"; }}
tx() {{ cat /sys/class/net/dummy0.10/statistics/tx_packets; }}
c2=$(ping 172.31.0.3 3 1)
vlan=$(ping 10.10.0.1 3 1)
before=$(tx)
beyond=$(ping 198.51.100.7 {SENT} 0.2)
after=$(tx)
cat > "$OUT/traffic.json" <<EOF
{{"c2": "$c2", "vlan": "$vlan", "beyond": "$beyond", "tx_before": $before, "tx_after": $after}}
EOF
"""),
    Step("plan", "netdecl plan --detailed-exitcode topo.yaml"),
    Step("destroy", "netdecl destroy topo.yaml"),
    Step("destroyed", """set -e
ip -j -d link show > "$OUT/links.json"
ip -j route show > "$OUT/routes.json"
ip -j addr show dev dummy0.10 > "$OUT/vlan_addresses.json"
ls -A /run/netns
"""),
]


@pytest.fixture(scope="module")
def run(module_lab: KernelLab) -> LabRun:
    """One boot for the whole module: every test below reads its own part of it."""
    return module_lab.run(STEPS, files={"topo.yaml": TOPOLOGY, "ping.py": PING})


def by_name(links: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {link["ifname"]: link for link in links}


def kind(link: dict[str, Any]) -> str | None:
    return link.get("linkinfo", {}).get("info_kind")


def handmade(link: dict[str, Any]) -> dict[str, Any]:
    """What the hand-made links are made of (not operstate, which the kernel settles later)."""
    return {"kind": kind(link), "info": link.get("linkinfo", {}).get("info_data"),
            "lower": link.get("link"), "mtu": link["mtu"], "mac": link["address"],
            "up": "UP" in link["flags"], "ifalias": link.get("ifalias")}


def addresses(entries: list[dict[str, Any]]) -> set[str]:
    return {f"{a['local']}/{a['prefixlen']}" for entry in entries
            for a in entry.get("addr_info", []) if a["family"] == "inet"}


def test_the_lab_has_the_handmade_vlan_on_the_dummy(run: LabRun) -> None:
    run["handmade"].ok()
    links = by_name(run["handmade"].json["links"])
    assert kind(links["dummy0"]) == "dummy"
    vlan = links["dummy0.10"]
    assert (kind(vlan), vlan["link"]) == ("vlan", "dummy0")
    assert vlan["linkinfo"]["info_data"]["id"] == 10


def test_netdecls_objects_stand_beside_the_handmade_ones_marked_as_its_own(run: LabRun) -> None:
    run["apply"].ok()
    applied = run["applied"]
    applied.ok()
    root, before = by_name(applied.json["root"]), by_name(run["handmade"].json["links"])
    for name in ("dummy0", "dummy0.10"):  # not touched, not marked
        assert handmade(root[name]) == handmade(before[name]), name
    assert root["dummy0.10"]["linkinfo"]["info_data"]["id"] == 10
    assert (kind(root["br0"]), root["br0"].get("ifalias")) == ("bridge", MARK)
    for port in ("v1", "v2"):
        assert (kind(root[port]), root[port]["master"], root[port].get("ifalias")) == (
            "veth", "br0", MARK)
    for ns in ("c1", "c2"):
        eth0 = by_name(applied.json[ns])["eth0"]
        assert (kind(eth0), eth0.get("ifalias")) == ("veth", MARK), ns

    # the route out through the VLAN, and netdecl's address on it beside the hand-made one
    (route,) = [r for r in applied.json["routes"] if r["dst"] == "198.51.100.0/24"]
    assert (route["gateway"], route["dev"]) == ("10.10.0.2", "dummy0.10")
    assert addresses(applied.json["vlan_addresses"]) == {"10.10.0.1/24", "10.20.0.1/24"}


def test_traffic_crosses_the_bridge_reaches_the_vlan_and_leaves_through_it(run: LabRun) -> None:
    traffic = run["traffic"]
    traffic.ok()
    result = traffic.json["traffic"]
    assert result["c2"] == "ok"  # c1 -> c2 across netdecl's bridge
    assert result["vlan"] == "ok"  # c1 -> the hand-made address, routed by the root namespace
    # c1 -> 198.51.100.7: forwarded out through the VLAN by netdecl's route (nobody answers
    # behind a dummy), one packet per echo request
    assert result["beyond"] == "fail"
    assert result["tx_after"] - result["tx_before"] >= SENT, result


def test_a_second_plan_has_nothing_to_do(run: LabRun) -> None:
    assert "No changes" in run["plan"].ok()


def test_destroy_removes_netdecls_objects_and_leaves_the_handmade_ones(run: LabRun) -> None:
    run["destroy"].ok()
    destroyed = run["destroyed"]
    assert destroyed.ok() == ""  # no namespace left in /run/netns
    links = by_name(destroyed.json["links"])
    assert set(links) == {"lo", "dummy0", "dummy0.10"}
    before = by_name(run["handmade"].json["links"])
    for name in ("dummy0", "dummy0.10"):
        assert handmade(links[name]) == handmade(before[name]), name
    assert [r for r in destroyed.json["routes"] if r["dst"] == "198.51.100.0/24"] == []
    assert addresses(destroyed.json["vlan_addresses"]) == {"10.10.0.1/24"}
