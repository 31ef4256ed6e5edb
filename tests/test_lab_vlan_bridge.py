"""A VLAN-aware bridge (`bridge: {vlan_filtering, default_pvid}`) in the kernel lab (this
machine's kernel has no bridge VLAN filtering). One boot for the module.

netdecl makes br0 filtering VLANs, its ports taking untagged frames into VLAN 10; containers a
and b on two of its ports talk (HTTP). A port made by hand for container c is put in VLAN 30:
a does not reach c, though c is in the same subnet. `bridge -j vlan` and `ip -j -d link` are the
eyes. Drift (filtering turned off by hand) is seen and repaired; a new default PVID is changed
in place (same ifindex), and the ports that had the old one follow it.
"""

from __future__ import annotations

from typing import Any

import pytest
from harness import HTTP_CLIENT, SERVER
from kernellab import KernelLab, LabRun, Step

pytestmark = pytest.mark.lab("bridge", "veth", "8021q")

TOPOLOGY = """\
version: 1
name: vbr
namespaces:
  a: {}
  b: {}
  t: {}
links:
  - {name: br0, kind: bridge, bridge: {vlan_filtering: true, default_pvid: PVID}}
  - {name: va, kind: veth, master: br0, peer: {name: eth0, namespace: a, addresses: [10.95.0.2/24]}}
  - {name: vb, kind: veth, master: br0, peer: {name: eth0, namespace: b, addresses: [10.95.0.3/24]}}
  - name: vt                # a trunk: VLANs 10, 20 and 21 tagged, no pvid
    kind: veth
    master: br0
    vlans: [{id: 10}, {id: "20-21"}]
    peer: {name: eth0, namespace: t}
"""

HTTP = r"""
within() { ns=$1; shift; if [ -n "$ns" ]; then ip netns exec "$ns" "$@"; else "$@"; fi; }
http() {
    within "$1" "$PYTHON" server.py "$1" "$2" 80 tcp > "/tmp/$4.server" &
    server=$!
    for _ in $(seq 100); do grep -q ready "/tmp/$4.server" && break; sleep 0.1; done
    within "$3" "$PYTHON" client.py "$2" 80 3 > "$OUT/$4.json"
    kill $server
}
"""
EYES = """ip -j -d link show br0 > "$OUT/br0.json"
bridge -j vlan show > "$OUT/vlans.json"
"""

STEPS = [
    Step("apply", "netdecl apply pvid10.yaml"),
    Step("applied", "set -e\n" + EYES),
    Step("traffic", HTTP + """set -e
ip netns add c
ip link add vc type veth peer name eth0 netns c
ip -n c addr add 10.95.0.4/24 dev eth0
ip -n c link set eth0 up
ip link set vc master br0
bridge vlan del dev vc vid 10
bridge vlan add dev vc vid 30 pvid untagged
ip link set vc up
ip -n t link set eth0 up
ip -n t link add link eth0 name eth0.10 type vlan id 10
ip -n t addr add 10.95.0.5/24 dev eth0.10
ip -n t link set eth0.10 up
http b 10.95.0.3 a a_to_b
http c 10.95.0.4 a a_to_c
http t 10.95.0.5 a a_to_t
"""),
    Step("vlan-drift", """bridge vlan del dev vt vid 21
bridge vlan add dev vt vid 99
netdecl plan --detailed-exitcode pvid10.yaml
"""),
    Step("vlan-repair", "set -e\nnetdecl apply pvid10.yaml\n" + EYES),
    Step("show", "set -e\nnetdecl show > shown.yaml\ncat shown.yaml\nnetdecl validate shown.yaml"
                 " >&2\n"),
    Step("drift", "ip link set br0 type bridge vlan_filtering 0\nnetdecl plan --detailed-exitcode"
                  " pvid10.yaml"),
    Step("repair", "netdecl apply pvid10.yaml"),
    Step("repaired", "set -e\n" + EYES),
    Step("plan-pvid", "netdecl plan pvid20.yaml"),
    Step("pvid", "netdecl apply pvid20.yaml"),
    Step("pvided", "set -e\n" + EYES),
    Step("pvid-traffic", HTTP + "set -e\nhttp b 10.95.0.3 a a_to_b\n"),
    Step("destroy", "ip link del vc\nip -n t link del eth0.10\nnetdecl destroy pvid20.yaml"),
]


@pytest.fixture(scope="module")
def run(module_lab: KernelLab) -> LabRun:
    return module_lab.run(STEPS, files={
        "pvid10.yaml": TOPOLOGY.replace("PVID", "10"),
        "pvid20.yaml": TOPOLOGY.replace("PVID", "20"),
        "server.py": SERVER, "client.py": HTTP_CLIENT})


def bridge_data(step: dict[str, Any]) -> dict[str, Any]:
    (br0,) = step["br0"]
    return br0["linkinfo"]["info_data"]


def port_vlans(step: dict[str, Any]) -> dict[str, set[tuple[int, bool, bool]]]:
    """port -> {(vid, pvid, untagged)} as `bridge -j vlan` reports them."""
    out = {}
    for entry in step["vlans"]:
        out[entry["ifname"]] = {(v["vlan"], "PVID" in v.get("flags", []),
                                 "Egress Untagged" in v.get("flags", [])) for v in entry["vlans"]}
    return out


def test_the_bridge_filters_vlans_and_its_ports_take_the_default_pvid(run: LabRun) -> None:
    run["apply"].ok()
    applied = run["applied"].json
    data = bridge_data(applied)
    assert (data["vlan_filtering"], data["vlan_default_pvid"]) == (1, 10), data
    vlans = port_vlans(applied)
    assert vlans["va"] == vlans["vb"] == {(10, True, True)}, vlans
    # the trunk: exactly the file's VLANs, tagged (VLAN 10, the default PVID, not as pvid)
    assert vlans["vt"] == {(10, False, False), (20, False, False), (21, False, False)}, vlans


def test_ports_of_one_vlan_talk_and_another_vlan_is_not_reached(run: LabRun) -> None:
    traffic = run["traffic"]
    traffic.ok()
    assert traffic.json["a_to_b"]["ok"], traffic.json["a_to_b"]
    assert "client=10.95.0.2" in traffic.json["a_to_b"]["body"]
    assert not traffic.json["a_to_c"]["ok"], traffic.json["a_to_c"]  # c is in VLAN 30
    # a's untagged frames, in VLAN 10 by its pvid, leave the trunk tagged 10 for t's eth0.10
    assert traffic.json["a_to_t"]["ok"], traffic.json["a_to_t"]


def test_a_ports_vlans_changed_by_hand_are_drift_and_repaired(run: LabRun) -> None:
    drift = run["vlan-drift"]
    assert drift.returncode == 2 and "~ link vt" in drift.stdout and "vlans" in drift.stdout, \
        drift.stdout
    run["vlan-repair"].ok()
    vlans = port_vlans(run["vlan-repair"].json)
    assert vlans["vt"] == {(10, False, False), (20, False, False), (21, False, False)}, vlans


def test_filtering_turned_off_by_hand_is_drift_and_repaired(run: LabRun) -> None:
    drift = run["drift"]
    assert drift.returncode == 2 and "vlan_filtering" in drift.stdout, drift.stdout
    run["repair"].ok()
    repaired = run["repaired"].json
    assert bridge_data(repaired)["vlan_filtering"] == 1
    assert repaired["br0"][0]["ifindex"] == run["applied"].json["br0"][0]["ifindex"]


def test_show_writes_the_bridge_and_its_ports_vlans_and_the_file_validates(
        run: LabRun) -> None:
    import yaml

    shown = yaml.safe_load(run["show"].ok())
    links = {link["name"]: link for link in shown["links"]}
    assert links["br0"]["bridge"]["vlan_filtering"] is True
    assert links["br0"]["bridge"]["default_pvid"] == 10
    assert links["vt"]["vlans"] == [{"id": 10}, {"id": 20}, {"id": 21}], links["vt"]
    # va has only what the bridge gives every port (its default PVID 10): not written, so the
    # shown file, like the original, lets va follow a new default_pvid
    assert "vlans" not in links["va"], links["va"]
    assert links["vc"]["vlans"] == [{"id": 30, "pvid": True, "untagged": True}]


def test_a_new_default_pvid_is_changed_in_place_and_the_ports_follow(run: LabRun) -> None:
    plan = run["plan-pvid"].ok()
    assert "~ link br0" in plan and "default_pvid 10 -> 20" in plan and "-/+" not in plan, plan
    run["pvid"].ok()
    pvided = run["pvided"].json
    assert bridge_data(pvided)["vlan_default_pvid"] == 20
    vlans = port_vlans(pvided)
    assert vlans["va"] == vlans["vb"] == {(20, True, True)}, vlans
    assert vlans["vc"] == {(30, True, True)}  # the hand-made port keeps its own
    assert vlans["vt"] == {(10, False, False), (20, False, False), (21, False, False)}
    assert pvided["br0"][0]["ifindex"] == run["applied"].json["br0"][0]["ifindex"]
    assert run["pvid-traffic"].json["a_to_b"]["ok"]
    run["destroy"].ok()
