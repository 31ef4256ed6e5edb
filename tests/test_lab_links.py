"""kind: dummy and kind: vlan on a kernel that has them: the kernel lab (tests/kernellab.py;
this machine's kernel has neither dummy nor 802.1q). One boot for the module.

Inside, a "switch" is made by hand: the lab's `uplink` (the host's NIC, declared `kind:
external`) is one end of a veth whose other end, `trunk`, carries VLANs 100 and 200 into two
namespaces, one host on each VLAN: h100 (10.100.0.2) and h200 (10.100.0.3, the same subnet on
purpose). netdecl makes VLAN 100 on the uplink with 10.100.0.1, an 802.1ad VLAN 300 beside it,
and a dummy holding a service address. The steps leave what `ip -j -d` says, the traffic's
outcome and netdecl's exit codes; the tests here judge them.
"""

from __future__ import annotations

from typing import Any

import pytest
from harness import HTTP_CLIENT, PING, SERVER
from kernellab import KernelLab, LabRun, Step

pytestmark = pytest.mark.lab("dummy", "8021q", "veth")

TOPOLOGY = """\
version: 1
name: linklab
links:
  - {name: uplink, kind: external}
  - name: uplink.100
    kind: vlan
    link: uplink
    vlan: {id: 100}
    addresses: [10.100.0.1/24]
  - name: qinq300
    kind: vlan
    link: uplink
    vlan: {id: 300, protocol: 802.1ad}
  - name: svc0
    kind: dummy
    addresses: [10.96.0.10/32]
"""
MARK = "netdecl:linklab"

# `http NS ADDRESS CLIENT_NS NAME`: an HTTP server on ADDRESS in NS ("" is the lab's root),
# one GET from CLIENT_NS, its outcome in $OUT/NAME.json.
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

STEPS = [
    Step("switch", """set -e
ip netns add sw
ip link add uplink type veth peer name trunk netns sw
ip link set uplink up
ip -n sw link set trunk up
for id in 100 200; do
    ip netns add h$id
    ip -n sw link add link trunk name trunk.$id type vlan id $id
    ip -n sw link set trunk.$id netns h$id
    ip -n h$id link set trunk.$id up
done
ip -n h100 addr add 10.100.0.2/24 dev trunk.100
ip -n h200 addr add 10.100.0.3/24 dev trunk.200
ip -n h100 route add 10.96.0.0/24 via 10.100.0.1
ip -j -d link show > "$OUT/links.json"
ip -j addr show > "$OUT/addresses.json"
"""),
    Step("apply", "netdecl apply topo.yaml"),
    Step("applied", """set -e
ip -j -d link show > "$OUT/links.json"
ip -j addr show > "$OUT/addresses.json"
"""),
    Step("traffic", HTTP + """set -e
ping() { "$PYTHON" ping.py "$@"; }
http "" 10.96.0.10 h100 to_service
http h100 10.100.0.2 "" to_h100
vlan100=$(ping 10.100.0.2 3 1)
vlan200=$(ping 10.100.0.3 3 0.5)
# the control: h200 does answer whoever is on VLAN 200 (a VLAN 200 made by hand on the uplink)
ip netns add probe
ip link add link uplink name probe.200 type vlan id 200
ip link set probe.200 netns probe
ip -n probe addr add 10.100.0.9/24 dev probe.200
ip -n probe link set probe.200 up
control=$(ip netns exec probe "$PYTHON" ping.py 10.100.0.3 3 1)
ip -n probe link del probe.200
ip netns del probe
printf '{"vlan100": "%s", "vlan200": "%s", "control": "%s"}' \\
    "$vlan100" "$vlan200" "$control" > "$OUT/pings.json"
"""),
    Step("plan", "netdecl plan --detailed-exitcode topo.yaml"),
    Step("destroy", "netdecl destroy topo.yaml"),
    Step("destroyed", """set -e
ip -j -d link show > "$OUT/links.json"
ip -j addr show > "$OUT/addresses.json"
"""),
]


@pytest.fixture(scope="module")
def run(module_lab: KernelLab) -> LabRun:
    """One boot for the whole module: every test below reads its own part of it."""
    return module_lab.run(STEPS, files={"topo.yaml": TOPOLOGY, "ping.py": PING,
                                        "server.py": SERVER, "client.py": HTTP_CLIENT})


def by_name(links: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {link["ifname"]: link for link in links}


def info(link: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    linkinfo = link.get("linkinfo", {})
    return linkinfo.get("info_kind"), linkinfo.get("info_data", {})


def addresses(entries: list[dict[str, Any]]) -> dict[str, set[str]]:
    return {entry["ifname"]: {f"{a['local']}/{a['prefixlen']}" for a in entry["addr_info"]
                              if a["family"] == "inet"} for entry in entries}


def settled(link: dict[str, Any]) -> dict[str, Any]:
    """What a link is made of (not its operstate or counters, which the kernel moves)."""
    return {k: link.get(k) for k in ("ifindex", "link", "mtu", "address", "flags", "ifalias",
                                     "linkinfo", "master")}


def test_the_vlans_are_on_their_parent_with_their_id_and_protocol(run: LabRun) -> None:
    run["switch"].ok()
    run["apply"].ok()
    links = by_name(run["applied"].json["links"])
    vlan = links["uplink.100"]
    kind, data = info(vlan)
    assert (kind, data["id"], data["protocol"], vlan["link"]) == ("vlan", 100, "802.1Q",
                                                                  "uplink")
    kind, data = info(links["qinq300"])
    assert (kind, data["id"], data["protocol"], links["qinq300"]["link"]) == (
        "vlan", 300, "802.1ad", "uplink")
    assert info(links["svc0"])[0] == "dummy"
    for name in ("uplink.100", "qinq300", "svc0"):
        assert links[name].get("ifalias") == MARK, name
        assert "UP" in links[name]["flags"], name
    found = addresses(run["applied"].json["addresses"])
    assert found["uplink.100"] == {"10.100.0.1/24"}
    assert found["svc0"] == {"10.96.0.10/32"}
    # the host's NIC is only named: not marked, not changed
    before = by_name(run["switch"].json["links"])
    assert settled(links["uplink"]) == settled(before["uplink"])


def test_traffic_crosses_vlan_100_both_ways_and_reaches_the_service_address(
        run: LabRun) -> None:
    traffic = run["traffic"]
    traffic.ok()
    to_service = traffic.json["to_service"]
    assert to_service["ok"], to_service  # h100 -> the dummy's 10.96.0.10, over VLAN 100
    assert "ns=root client=10.100.0.2" in to_service["body"]
    to_h100 = traffic.json["to_h100"]
    assert to_h100["ok"], to_h100  # the host -> h100
    assert "ns=h100 client=10.100.0.1" in to_h100["body"]


def test_vlan_100_does_not_reach_a_host_on_vlan_200(run: LabRun) -> None:
    pings = run["traffic"].json["pings"]
    assert pings["vlan100"] == "ok"
    assert pings["vlan200"] == "fail"  # the same subnet on another VLAN: never reached
    assert pings["control"] == "ok"  # ...though it answers on VLAN 200


def test_a_second_plan_has_nothing_to_do(run: LabRun) -> None:
    assert "No changes" in run["plan"].ok()


def test_destroy_leaves_the_host_as_it_was(run: LabRun) -> None:
    run["destroy"].ok()
    destroyed = run["destroyed"]
    destroyed.ok()
    before = by_name(run["switch"].json["links"])
    after = by_name(destroyed.json["links"])
    assert set(after) == set(before)
    for name in before:
        assert settled(after[name]) == settled(before[name]), name
    assert addresses(destroyed.json["addresses"]) == addresses(run["switch"].json["addresses"])
