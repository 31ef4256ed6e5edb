"""Across hosts: host-gw routing, VXLAN overlays (flooding and flannel-style static entries),
per-host files, and policy routing rules - each in its own hermetic host.

Every claim is checked against the kernel with independent tools (`ip -j`, `bridge -j`) and
with real HTTP between pods on different "nodes", the server reporting the client address it
saw (so nothing on the way may NAT).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from harness import STATE_DIR

HOST_GW = "topologies/two-node-host-gw.yaml"
VXLAN = "topologies/two-node-vxlan.yaml"
HOST_A = "topologies/host-a.yaml"
HOST_B = "topologies/host-b.yaml"
ZERO_MAC = "00:00:00:00:00:00"
NODE1_IP, NODE2_IP = "192.168.117.207", "192.168.117.208"


# -- helpers ----------------------------------------------------------------------------------

def apply_ok(host, path: str) -> str:
    result = host.netdecl("apply", path)
    assert result.returncode == 0, f"apply failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def plan_exit(host, path: str) -> tuple[int, str]:
    result = host.netdecl("plan", "--detailed-exitcode", path)
    return result.returncode, result.stdout + result.stderr


def destroy_ok(host, path: str) -> None:
    result = host.netdecl("destroy", path)
    assert result.returncode == 0, f"destroy failed:\n{result.stdout}\n{result.stderr}"


def http_both_ways(host, a: tuple[str, str], b: tuple[str, str]) -> None:
    """HTTP from pod a to pod b and back; each server must see the other pod's own address."""
    for (client_ns, client_ip), (server_ns, server_ip) in ((a, b), (b, a)):
        server = host.start_server(server_ns, 80)
        result = host.http_get(client_ns, server_ip, 80)
        assert result.ok, f"{client_ns} -> {server_ns} {server_ip}: {result.error}"
        assert f"ns={server_ns} client={client_ip}" in result.body
        assert server.seen_sources() == [client_ip]
        server.stop()


def link(host, name: str, ns: str | None) -> dict[str, Any]:
    (found,) = host.ip_json("-d", "link", "show", "dev", name, ns=ns)
    return found


def fdb(host, dev: str, ns: str | None) -> list[dict[str, Any]]:
    out = host.run(["bridge", "-j", "fdb", "show", "dev", dev], ns=ns).stdout.strip()
    return json.loads(out) if out else []


def static_fdb(host, dev: str, ns: str | None) -> set[tuple[str, str | None]]:
    """(mac, dst) of the VXLAN device's own permanent entries, per `bridge fdb` (not netdecl)."""
    return {(e["mac"], e.get("dst")) for e in fdb(host, dev, ns)
            if "self" in e.get("flags", []) and e.get("state") == "permanent"
            and e["mac"] != "33:33:00:00:00:01" and not e["mac"].startswith("01:00:5e")}


def assert_vxlan(host, ns: str | None, *, vni: int, local: str, remote: str,
                 port: int = 4789, learning: bool = True, mtu: int = 1450) -> None:
    dev = link(host, "vxlan42", ns)
    info = dev["linkinfo"]["info_data"]
    assert dev["linkinfo"]["info_kind"] == "vxlan"
    assert (info["id"], info["local"], info["link"], info["port"], info["learning"]) == \
        (vni, local, "eth0", port, learning)
    assert dev["mtu"] == mtu and dev["master"] == "br-overlay" and "UP" in dev["flags"]
    assert (ZERO_MAC, remote) in static_fdb(host, "vxlan42", ns)


# -- host-gw -----------------------------------------------------------------------------------

def test_host_gw_pods_on_two_nodes_talk_by_plain_routing(host):
    before = host.snapshot()
    apply_ok(host, HOST_GW)
    assert host.netns_list() == ["node1", "node2", "pod-a", "pod-b"]
    for ns, other_pods, via in (("node1", "10.244.2.0/24", NODE2_IP),
                                ("node2", "10.244.1.0/24", NODE1_IP)):
        assert host.sysctl("net.ipv4.ip_forward", ns=ns) == "1"
        (route,) = host.ip_json("route", "show", other_pods, ns=ns)
        assert (route["gateway"], route["dev"], route["protocol"]) == (via, "eth0", "211")
        assert link(host, "cni0", ns)["linkinfo"]["info_kind"] == "bridge"
    assert host.sysctl("net.ipv4.ip_forward") == "0"  # the machine itself routes nothing
    http_both_ways(host, ("pod-a", "10.244.1.2"), ("pod-b", "10.244.2.2"))
    assert plan_exit(host, HOST_GW)[0] == 0

    # The route really carries the traffic: without it pod-b is unreachable; plan sees the
    # drift, apply puts it back.
    host.run(["ip", "route", "del", "10.244.2.0/24"], ns="node1")
    assert not host.http_get("pod-a", "10.244.2.2", 80, timeout=2).ok
    code, text = plan_exit(host, HOST_GW)
    assert code == 2 and "+ route 10.244.2.0/24 in node1" in text, text
    apply_ok(host, HOST_GW)
    assert plan_exit(host, HOST_GW)[0] == 0
    http_both_ways(host, ("pod-a", "10.244.1.2"), ("pod-b", "10.244.2.2"))

    destroy_ok(host, HOST_GW)
    assert host.snapshot() == before


# -- VXLAN, two nodes in one file ---------------------------------------------------------------

def test_vxlan_overlay_carries_pod_traffic_and_fdb_drift_is_repaired(host, tmp_path: Path):
    before = host.snapshot()
    apply_ok(host, VXLAN)
    assert_vxlan(host, "node1", vni=42, local=NODE1_IP, remote=NODE2_IP)
    assert_vxlan(host, "node2", vni=42, local=NODE2_IP, remote=NODE1_IP)
    for ns, pod in (("node1", "pod-a"), ("node2", "pod-b")):
        assert link(host, "br-overlay", ns)["mtu"] == 1450
        assert link(host, "eth0", pod)["mtu"] == 1450
        assert link(host, "eth0", ns)["mtu"] == 1500  # the underlay keeps its MTU
    assert plan_exit(host, VXLAN)[0] == 0  # nothing reads back differently from how it was set

    tx_before = link_tx_packets(host, "vxlan42", "node1")
    http_both_ways(host, ("pod-a", "10.244.1.2"), ("pod-b", "10.244.2.2"))
    # the only way between the two bridges is the tunnel: it must have carried the traffic
    assert link_tx_packets(host, "vxlan42", "node1") > tx_before

    # Drift: a flood entry deleted by hand.
    host.run(["bridge", "fdb", "del", ZERO_MAC, "dev", "vxlan42", "dst", NODE2_IP], ns="node1")
    assert (ZERO_MAC, NODE2_IP) not in static_fdb(host, "vxlan42", "node1")
    code, text = plan_exit(host, VXLAN)
    assert code == 2, text
    assert f"+ fdb {ZERO_MAC} dst {NODE2_IP} on node1/vxlan42" in text
    apply_ok(host, VXLAN)
    assert (ZERO_MAC, NODE2_IP) in static_fdb(host, "vxlan42", "node1")
    assert plan_exit(host, VXLAN)[0] == 0

    # A new VNI can't be set in place: the devices are replaced and their flood entries follow.
    renumbered = tmp_path / "vni43.yaml"
    renumbered.write_text((Path(host.cwd) / VXLAN).read_text().replace("id: 42,", "id: 43,"))
    out = apply_ok(host, str(renumbered))
    assert "-/+ link node1/vxlan42" in out and "-/+ link node2/vxlan42" in out, out
    assert_vxlan(host, "node1", vni=43, local=NODE1_IP, remote=NODE2_IP)
    assert_vxlan(host, "node2", vni=43, local=NODE2_IP, remote=NODE1_IP)
    assert plan_exit(host, str(renumbered))[0] == 0
    http_both_ways(host, ("pod-a", "10.244.1.2"), ("pod-b", "10.244.2.2"))
    apply_ok(host, VXLAN)

    # An entry someone else added is theirs: kept. One netdecl added and the file dropped: pruned.
    host.run(["bridge", "fdb", "append", ZERO_MAC, "dev", "vxlan42", "dst", "192.168.117.250"],
             ns="node1")
    moved = tmp_path / "moved.yaml"
    moved.write_text((Path(host.cwd) / VXLAN).read_text().replace(
        f"remotes: [{NODE2_IP}]", "remotes: [192.168.117.209]"))
    out = apply_ok(host, str(moved))
    assert f"- fdb {ZERO_MAC} dst {NODE2_IP} on node1/vxlan42" in out, out
    assert "192.168.117.250" not in out
    assert {dst for mac, dst in static_fdb(host, "vxlan42", "node1") if mac == ZERO_MAC} == \
        {"192.168.117.209", "192.168.117.250"}
    assert plan_exit(host, str(moved))[0] == 0
    host.run(["bridge", "fdb", "del", ZERO_MAC, "dev", "vxlan42", "dst", "192.168.117.250"],
             ns="node1")

    destroy_ok(host, str(moved))
    assert host.snapshot() == before


def link_tx_packets(host, name: str, ns: str) -> int:
    (found,) = host.ip_json("-s", "link", "show", "dev", name, ns=ns)
    return int(found["stats64"]["tx"]["packets"])


# -- VXLAN, one file per host ------------------------------------------------------------------

MACHINES = {"hosta": NODE1_IP, "hostb": NODE2_IP}


def make_machines(host) -> None:
    """Two "machines" inside the hermetic host: network namespaces joined by a veth "LAN",
    each with a plain eth0 that netdecl does not own (like a real NIC set up by the distro)."""
    for name in MACHINES:
        host.run(["ip", "netns", "add", name])
        host.run(["ip", "-n", name, "link", "set", "lo", "up"])
    host.run(["ip", "link", "add", "eth0", "netns", "hosta", "type", "veth",
              "peer", "name", "eth0", "netns", "hostb"])
    for name, address in MACHINES.items():
        host.run(["ip", "-n", name, "addr", "add", f"{address}/24", "dev", "eth0"])
        host.run(["ip", "-n", name, "link", "set", "eth0", "up"])


def on_machine(host, machine: str, *args: str) -> Any:
    """Run netdecl on one "machine": in its network namespace (so the topology's root namespace
    is the machine's), with a state directory of its own. nsenter --net, not `ip netns exec`:
    netdecl must create its pods' namespaces in the shared /run/netns, and `ip netns exec`
    would give it a private mount namespace whose bind mounts die with it."""
    env = {"NETDECL_STATE_DIR": f"{STATE_DIR}/{machine}"}
    return host.run(["nsenter", f"--net=/run/netns/{machine}", sys.executable, "-m", "netdecl",
                     *args], env=env, check=False, timeout=120)


def test_per_host_files_build_one_overlay_between_two_machines(host):
    make_machines(host)
    before = host.snapshot()
    eth0_before = {m: link(host, "eth0", m) for m in MACHINES}
    for machine, path in (("hosta", HOST_A), ("hostb", HOST_B)):
        result = on_machine(host, machine, "apply", path)
        assert result.returncode == 0, f"{machine}:\n{result.stdout}\n{result.stderr}"
    assert host.netns_list() == ["hosta", "hostb", "pod-a1", "pod-b1"]
    assert_vxlan(host, "hosta", vni=42, local=NODE1_IP, remote=NODE2_IP)
    assert_vxlan(host, "hostb", vni=42, local=NODE2_IP, remote=NODE1_IP)
    http_both_ways(host, ("pod-a1", "10.244.1.2"), ("pod-b1", "10.244.2.2"))
    for machine, path in (("hosta", HOST_A), ("hostb", HOST_B)):
        result = on_machine(host, machine, "plan", "--detailed-exitcode", path)
        assert result.returncode == 0, result.stdout + result.stderr
        # the machine's NIC is only ridden on, never adopted or changed
        after = link(host, "eth0", machine)
        assert "ifalias" not in after
        assert (after["mtu"], after["flags"]) == (eth0_before[machine]["mtu"],
                                                  eth0_before[machine]["flags"])
    # each machine's netdecl knows only its own half: destroying A leaves B's intact
    assert on_machine(host, "hosta", "destroy", HOST_A).returncode == 0
    assert host.netns_list() == ["hosta", "hostb", "pod-b1"]
    assert on_machine(host, "hostb", "plan", "--detailed-exitcode", HOST_B).returncode == 0
    assert on_machine(host, "hostb", "destroy", HOST_B).returncode == 0
    assert host.snapshot() == before


# -- flannel style: static fdb + neighbour entries, no flooding, no learning ------------------

FLANNEL = """\
version: 1
name: flannel
namespaces:
  node1: {sysctls: {net.ipv4.ip_forward: 1}}
  node2: {sysctls: {net.ipv4.ip_forward: 1}}
  pod-a: {}
  pod-b: {}
links:
  - name: eth0
    kind: veth
    namespace: node1
    addresses: [192.168.117.207/24]
    peer: {name: eth0, namespace: node2, addresses: [192.168.117.208/24]}
  - name: flannel.1
    kind: vxlan
    namespace: node1
    mac: "02:00:0a:f4:01:00"
    mtu: 1450
    addresses: [10.244.1.0/32]
    vxlan: {id: 1, local: 192.168.117.207, dev: eth0, port: 8472, learning: false}
  - name: flannel.1
    kind: vxlan
    namespace: node2
    mac: "02:00:0a:f4:02:00"
    mtu: 1450
    addresses: [10.244.2.0/32]
    vxlan: {id: 1, local: 192.168.117.208, dev: eth0, port: 8472, learning: false}
  - name: cni0
    kind: bridge
    namespace: node1
    mtu: 1450
    addresses: [10.244.1.1/24]
  - name: cni0
    kind: bridge
    namespace: node2
    mtu: 1450
    addresses: [10.244.2.1/24]
  - name: veth-a
    kind: veth
    namespace: node1
    master: cni0
    mtu: 1450
    peer: {name: eth0, namespace: pod-a, mtu: 1450, addresses: [10.244.1.2/24]}
  - name: veth-b
    kind: veth
    namespace: node2
    master: cni0
    mtu: 1450
    peer: {name: eth0, namespace: pod-b, mtu: 1450, addresses: [10.244.2.2/24]}
routes:
  - {namespace: pod-a, to: default, via: 10.244.1.1}
  - {namespace: pod-b, to: default, via: 10.244.2.1}
  - {namespace: node1, to: 10.244.2.0/24, via: 10.244.2.0, dev: flannel.1, onlink: true}
  - {namespace: node2, to: 10.244.1.0/24, via: 10.244.1.0, dev: flannel.1, onlink: true}
neighbors:
  - {namespace: node1, link: flannel.1, address: 10.244.2.0, mac: "02:00:0a:f4:02:00"}
  - {namespace: node2, link: flannel.1, address: 10.244.1.0, mac: "02:00:0a:f4:01:00"}
fdb:
  - {namespace: node1, link: flannel.1, mac: "02:00:0a:f4:02:00", dst: 192.168.117.208}
  - {namespace: node2, link: flannel.1, mac: "02:00:0a:f4:01:00", dst: 192.168.117.207}
"""


def test_flannel_style_static_fdb_and_neighbors(host, tmp_path: Path):
    path = tmp_path / "flannel.yaml"
    path.write_text(FLANNEL)
    before = host.snapshot()
    apply_ok(host, str(path))
    dev = link(host, "flannel.1", "node1")
    info = dev["linkinfo"]["info_data"]
    assert (info["id"], info["port"], info["learning"], dev["address"]) == \
        (1, 8472, False, "02:00:0a:f4:01:00")
    assert static_fdb(host, "flannel.1", "node1") == {("02:00:0a:f4:02:00", NODE2_IP)}
    (neigh,) = host.ip_json("neigh", "show", "dev", "flannel.1", ns="node1")
    assert (neigh["dst"], neigh["lladdr"], neigh["state"]) == \
        ("10.244.2.0", "02:00:0a:f4:02:00", ["PERMANENT"])
    assert plan_exit(host, str(path))[0] == 0
    http_both_ways(host, ("pod-a", "10.244.1.2"), ("pod-b", "10.244.2.2"))

    # Without the neighbour entry node1 can't resolve node2's VTEP (nothing answers ARP on a
    # flannel VXLAN): traffic stops. plan shows it, apply repairs it.
    host.run(["ip", "neigh", "del", "10.244.2.0", "dev", "flannel.1"], ns="node1")
    host.run(["bridge", "fdb", "del", "02:00:0a:f4:01:00", "dev", "flannel.1",
              "dst", NODE1_IP], ns="node2")
    assert not host.http_get("pod-a", "10.244.2.2", 80, timeout=2).ok
    code, text = plan_exit(host, str(path))
    assert code == 2, text
    assert "+ neighbor 10.244.2.0 on node1/flannel.1" in text
    assert f"+ fdb 02:00:0a:f4:01:00 dst {NODE1_IP} on node2/flannel.1" in text
    apply_ok(host, str(path))
    assert plan_exit(host, str(path))[0] == 0
    http_both_ways(host, ("pod-a", "10.244.1.2"), ("pod-b", "10.244.2.2"))

    destroy_ok(host, str(path))
    assert host.snapshot() == before


# -- policy routing rules ----------------------------------------------------------------------

RULES = """\
version: 1
name: rules
namespaces:
  rt: {}
links:
  - name: veth-rt
    kind: veth
    addresses: [10.70.0.1/24, "fd00:70::1/64"]
    peer: {name: eth0, namespace: rt, addresses: [10.70.0.2/24]}
routes:
  - {to: 198.51.100.0/24, via: 10.70.0.2, table: 100}
  - {namespace: rt, to: 203.0.113.0/24, via: 10.70.0.1, table: 200}
rules:
  - {priority: 1000, from: 10.70.0.0/24, table: 100}
  - {priority: 1001, from: "fd00:70::/64", table: 100}
  - {namespace: rt, priority: 2000, to: 203.0.113.0/24, table: 200}
  - {namespace: rt, priority: 2001, iif: lo, oif: eth0, table: 200}
"""


def rules(host, ns: str | None = None, family: str = "-4") -> list[dict[str, Any]]:
    return host.ip_json(family, "rule", "show", ns=ns)


def netdecl_rule(host, priority: int, ns: str | None = None,
                 family: str = "-4") -> dict[str, Any] | None:
    found = [r for r in rules(host, ns, family) if r["priority"] == priority
             and r.get("protocol") == "211"]
    assert len(found) <= 1, found
    return found[0] if found else None


def test_policy_rules_apply_drift_prune_and_leave_foreign_rules_alone(host, tmp_path: Path):
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    # A hand-made rule at the same priority as one of ours: never netdecl's to delete.
    host.run(["ip", "rule", "add", "priority", "1000", "from", "192.0.2.0/24", "table", "300"])
    before = {"": rules(host), "v6": rules(host, family="-6")}
    apply_ok(host, str(path))
    r = netdecl_rule(host, 1000)
    assert r is not None and (r["src"], r["srclen"], r["table"]) == ("10.70.0.0", 24, "100")
    r6 = netdecl_rule(host, 1001, family="-6")
    assert r6 is not None and (r6["src"], r6["table"]) == ("fd00:70::", "100")
    r = netdecl_rule(host, 2000, "rt")
    assert r is not None and (r["dst"], r["dstlen"], r["table"]) == ("203.0.113.0", 24, "200")
    r = netdecl_rule(host, 2001, "rt")
    assert r is not None and (r["iif"], r["oif"], r["table"]) == ("lo", "eth0", "200")
    # the rule takes effect: a packet from 10.70.0.1 is routed by table 100
    (got,) = host.ip_json("route", "get", "198.51.100.7", "from", "10.70.0.1")
    assert got["gateway"] == "10.70.0.2"
    assert plan_exit(host, str(path))[0] == 0

    # drift: deleted by hand -> plan shows it, apply restores it
    host.run(["ip", "rule", "del", "priority", "2000"], ns="rt")
    code, text = plan_exit(host, str(path))
    assert code == 2 and "+ rule 2000 in rt" in text, text
    apply_ok(host, str(path))
    assert netdecl_rule(host, 2000, "rt") is not None
    assert plan_exit(host, str(path))[0] == 0

    # a changed rule is replaced; a rule that left the file is pruned
    changed = tmp_path / "changed.yaml"
    changed.write_text(RULES.replace("from: 10.70.0.0/24, table: 100", "from: 10.70.0.0/25, "
                                     "table: 100").replace(
        "  - {namespace: rt, priority: 2001, iif: lo, oif: eth0, table: 200}\n", ""))
    out = apply_ok(host, str(changed))
    assert "- rule 2001 in rt" in out and "~ rule 1000" in out, out
    assert netdecl_rule(host, 2001, "rt") is None
    assert netdecl_rule(host, 1000)["srclen"] == 25
    assert plan_exit(host, str(changed))[0] == 0

    destroy_ok(host, str(changed))
    assert {"": rules(host), "v6": rules(host, family="-6")} == before
    assert [r["table"] for r in rules(host) if r["priority"] == 1000] == ["300"]


# -- VXLAN over an IPv6 underlay -----------------------------------------------------------------

VXLAN6 = """\
version: 1
name: vx6
namespaces: {n1: {}, n2: {}}
links:
  - {name: u1, kind: veth, namespace: n1, addresses: ["fd00:77::1/64"],
     peer: {name: u2, namespace: n2, addresses: ["fd00:77::2/64"]}}
  - {name: vx77, kind: vxlan, namespace: n1, addresses: [10.99.0.1/24],
     vxlan: {id: 77, local: "fd00:77::1", dev: u1, remotes: ["fd00:77::2"]}}
  - {name: vx77, kind: vxlan, namespace: n2, addresses: [10.99.0.2/24],
     vxlan: {id: 77, local: "fd00:77::2", dev: u2, remotes: ["fd00:77::1"]}}
"""


def test_a_vxlan_with_an_ipv6_local_address_is_made_read_back_and_carries_traffic(host, tmp_path):
    """The VXLAN kind writes an IPv6 local address as IFLA_VXLAN_LOCAL6 and reads it back from
    there: no drift after the apply, and the traffic between the inner addresses crosses it."""
    path = tmp_path / "vx6.yaml"
    path.write_text(VXLAN6)
    before = host.snapshot()
    apply_ok(host, str(path))
    for ns, local, dev in (("n1", "fd00:77::1", "u1"), ("n2", "fd00:77::2", "u2")):
        info = link(host, "vx77", ns)["linkinfo"]["info_data"]
        assert (info["id"], info["local6"], info["link"], info["port"]) == (77, local, dev, 4789)
    assert plan_exit(host, str(path))[0] == 0
    tx_before = link_tx_packets(host, "vx77", "n1")
    # the first frame waits for two neighbour resolutions (the inner ARP, carried by the outer
    # IPv6 neighbour discovery): on a loaded machine give it a bounded while, then require
    # both directions at once
    server = host.start_server("n2", 80)
    deadline = time.monotonic() + 20
    while not (first := host.http_get("n1", "10.99.0.2", 80)).ok \
            and time.monotonic() < deadline:
        pass
    assert first.ok, f"n1 -> n2 over the IPv6 VXLAN: {first.error}"
    server.stop()
    http_both_ways(host, ("n1", "10.99.0.1"), ("n2", "10.99.0.2"))
    assert link_tx_packets(host, "vx77", "n1") > tx_before
    destroy_ok(host, str(path))
    assert host.snapshot() == before
