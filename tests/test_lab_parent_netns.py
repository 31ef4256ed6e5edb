"""A VLAN and an ipvlan whose parent is in the root while they live in namespaces, in the
kernel lab (this machine's kernel has neither 8021q nor ipvlan), as the CNI vlan and ipvlan
plugins make them: beside the host's NIC, moved into the container's namespace. One boot;
the tests judge what the steps left.

A "switch" namespace `sw` sits at the other end of the lab's NIC `uplink` (`kind: external`),
with VLAN 100 and an untagged subnet. Namespace `c` holds `eth0`, VLAN 100 on the root's
uplink; namespace `d` holds `eth0`, an ipvlan (l2) on it. HTTP from the switch reaches a
server in each; `ip -j -d link` in c and d says where the parent is (link_netnsid, and
link_index: the uplink's ifindex in the root).
"""

from __future__ import annotations

from typing import Any

import pytest
from harness import HTTP_CLIENT, SERVER
from kernellab import KernelLab, LabRun, Step

pytestmark = pytest.mark.lab("8021q", "ipvlan", "veth")

TOPOLOGY = """\
version: 1
name: parentns
namespaces:
  c: {}
  d: {}
links:
  - {name: uplink, kind: external}
  - name: eth0
    kind: vlan
    namespace: c
    link: {name: uplink}
    vlan: {id: 100}
    addresses: [10.90.0.11/24]
  - name: eth0
    kind: ipvlan
    namespace: d
    link: {name: uplink}
    ipvlan: {mode: l2}
    addresses: [10.91.0.12/24]
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
LINKS = ('ip -j -d link show > "$OUT/links.json"\n'
         'for ns in c d; do ip netns list | grep -qw $ns && '
         'ip -n $ns -j -d link show > "$OUT/links_$ns.json"; done; true\n')

STEPS = [
    Step("switch", """set -e
ip netns add sw
ip link add uplink type veth peer name trunk netns sw
ip link set uplink up
ip -n sw link set trunk up
ip -n sw link add link trunk name trunk.100 type vlan id 100
ip -n sw link set trunk.100 up
ip -n sw addr add 10.90.0.254/24 dev trunk.100
ip -n sw addr add 10.91.0.254/24 dev trunk
""" + LINKS),
    Step("apply", "netdecl apply parentns.yaml"),
    Step("applied", LINKS),
    Step("traffic", HTTP + """set -e
http c 10.90.0.11 sw to_vlan
http d 10.91.0.12 sw to_ipvlan
"""),
    Step("plan-same", "netdecl plan --detailed-exitcode parentns.yaml"),
    Step("show", "netdecl show --namespace c --namespace d --namespace '' --name shown"),
    Step("destroy", "netdecl destroy parentns.yaml"),
    Step("destroyed", LINKS),
]


@pytest.fixture(scope="module")
def run(module_lab: KernelLab) -> LabRun:
    return module_lab.run(STEPS, files={"parentns.yaml": TOPOLOGY, "server.py": SERVER,
                                        "client.py": HTTP_CLIENT})


def by_name(links: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {link["ifname"]: link for link in links}


def test_each_is_in_its_namespace_on_the_roots_uplink(run: LabRun) -> None:
    run["switch"].ok()
    run["apply"].ok()
    applied = run["applied"].json
    uplink = by_name(applied["links"])["uplink"]
    vlan = by_name(applied["links_c"])["eth0"]
    ipvlan = by_name(applied["links_d"])["eth0"]
    assert (vlan["linkinfo"]["info_kind"], vlan["linkinfo"]["info_data"]["id"]) == ("vlan", 100)
    assert ipvlan["linkinfo"]["info_kind"] == "ipvlan"
    assert ipvlan["linkinfo"]["info_data"]["mode"] == "l2"
    for found in (vlan, ipvlan):
        assert "link_netnsid" in found, found  # the parent is in another namespace
        assert found["link_index"] == uplink["ifindex"], found
        assert found.get("ifalias") == "netdecl:parentns"
    assert ipvlan["address"] == uplink["address"]  # an ipvlan has its parent's MAC
    assert "eth0" not in by_name(applied["links"])  # nothing left beside the parent


def test_http_reaches_both_and_the_plan_sees_no_drift(run: LabRun) -> None:
    traffic = run["traffic"]
    traffic.ok()
    assert traffic.json["to_vlan"]["ok"], traffic.json["to_vlan"]
    assert "ns=c client=10.90.0.254" in traffic.json["to_vlan"]["body"]
    assert traffic.json["to_ipvlan"]["ok"], traffic.json["to_ipvlan"]
    assert "ns=d client=10.91.0.254" in traffic.json["to_ipvlan"]["body"]
    assert run["plan-same"].returncode == 0, run["plan-same"].stdout


def test_show_writes_the_mapping_form(run: LabRun) -> None:
    import yaml

    shown = yaml.safe_load(run["show"].ok())
    parents = {(e.get("namespace"), e["name"]): e.get("link") for e in shown["links"]}
    assert parents[("c", "eth0")] == {"name": "uplink"}, parents
    assert parents[("d", "eth0")] == {"name": "uplink"}, parents


def test_destroy_leaves_the_links_as_they_were(run: LabRun) -> None:
    run["destroy"].ok()
    before = by_name(run["switch"].json["links"])
    after = by_name(run["destroyed"].json["links"])
    assert set(after) == set(before)
    assert after["uplink"]["flags"] == before["uplink"]["flags"]
