"""The data planes real CNI plugins and Docker build, as shipped topologies, proven with traffic.

calico-node.yaml (no bridge, a /32 per pod, the 169.254.1.1 gateway written as Calico writes
it), flannel-host-gw.yaml and flannel-fleet.yaml, one templated file per cluster that every
node applies unchanged (masquerade only what
leaves the cluster network) and
docker-networks.yaml (two isolated dual-stack bridges, IPv6 masquerade and published port, a
load-balanced virtual IP). Every test runs in its
own hermetic host; where NAT (or its absence) matters, the server's view of the source address
is what is checked.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from typing import Any

from test_overlay import make_machines, on_machine

CALICO = "topologies/calico-node.yaml"
FLANNEL = "topologies/flannel-host-gw.yaml"
FLANNEL_FLEET = "topologies/flannel-fleet.yaml"
NETWORKS = "topologies/docker-networks.yaml"
TABLE = "netdecl-docker-networks"


def apply_ok(host, path: str, env: dict[str, str] | None = None) -> str:
    result = host.netdecl("apply", path, env=env)
    assert result.returncode == 0, f"apply failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def assert_no_changes(host, path: str) -> None:
    plan = host.netdecl("plan", "--detailed-exitcode", path)
    assert plan.returncode == 0, plan.stdout + plan.stderr


def get(host, ns: str | None, address: str, port: int, server) -> tuple[str, str]:
    """GET from ns; (the namespace that answered, the source address its server saw)."""
    result = host.http_get(ns, address, port)
    assert result.ok, f"{ns} -> {address}:{port}: {result.error}"
    answered = result.body.split("ns=")[1].split()[0]
    # a server listening on :: sees IPv4 clients as ::ffff:a.b.c.d
    return answered, server.seen_sources()[-1].removeprefix("::ffff:")


def tables(host, ns: str | None = None) -> list[tuple[str, str]]:
    return sorted((e["table"]["family"], e["table"]["name"])
                  for e in host.nft_json(ns)["nftables"] if "table" in e)


def without_handles(ruleset: dict[str, Any]) -> list[Any]:
    out = []
    for entry in ruleset["nftables"]:
        if "metainfo" in entry:
            continue
        out.append({k: {f: v for f, v in body.items() if f != "handle"}
                    for k, body in entry.items()})
    return out


# -- Calico ----------------------------------------------------------------------------------


def test_calico_node_routes_as_calico_writes_them(host):
    before = host.snapshot()
    apply_ok(host, CALICO)
    verified = host.netdecl("verify", CALICO)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # the kernel holds the gateway route as scope link and the default route through it,
    # without onlink
    routes = {r["dst"]: r for r in host.ip_json("-4", "route", "show", ns="pod-1")}
    assert routes["169.254.1.1"]["scope"] == "link" and routes["169.254.1.1"]["dev"] == "eth0"
    assert routes["default"]["gateway"] == "169.254.1.1"
    assert "onlink" not in routes["default"].get("flags", [])
    host_routes = {r["dst"]: r for r in host.ip_json("-4", "route", "show")}
    assert host_routes["10.65.0.2"]["scope"] == "link"
    assert host_routes["10.65.0.2"]["dev"] == "cali0a1b2c3d4e5"
    (cali,) = host.ip_json("link", "show", "dev", "cali0a1b2c3d4e5")
    assert cali["address"] == "ee:ee:ee:ee:ee:ee"

    # pod to pod through the node: no bridge, no NAT
    pod2 = host.start_server("pod-2", 80)
    assert get(host, "pod-1", "10.65.0.3", 80, pod2) == ("pod-2", "10.65.0.2")
    # out of the pool: masqueraded (natOutgoing)
    ext = host.start_server("ext", 80)
    assert get(host, "pod-2", "10.168.0.3", 80, ext) == ("ext", "10.168.0.1")

    assert_no_changes(host, CALICO)
    assert host.netdecl("destroy", CALICO).returncode == 0
    assert host.snapshot() == before


# -- flannel host-gw ---------------------------------------------------------------------------


def test_flannel_masquerades_only_traffic_leaving_the_cluster(host):
    before = host.snapshot()
    apply_ok(host, FLANNEL)
    pod_b = host.start_server("pod-b", 80)
    assert get(host, "pod-a", "10.244.2.2", 80, pod_b) == ("pod-b", "10.244.1.2")
    ext = host.start_server("ext", 80)
    assert get(host, "pod-a", "10.168.0.3", 80, ext) == ("ext", "10.168.0.1")
    assert_no_changes(host, FLANNEL)
    assert host.netdecl("destroy", FLANNEL).returncode == 0
    assert host.snapshot() == before


def test_one_flannel_file_serves_every_machine_from_its_facts(host):
    """flannel-fleet.yaml, applied unchanged on two "machines" (namespaces, each with a NIC
    netdecl does not own): each finds its pod subnet and its peer from its own eth0 address,
    a host fact read at plan time."""
    make_machines(host)
    before = host.snapshot()
    for machine in ("hosta", "hostb"):
        result = on_machine(host, machine, "apply", FLANNEL_FLEET)
        assert result.returncode == 0, f"{machine}:\n{result.stdout}\n{result.stderr}"
    # each machine built its own half (an independent eye: ip -j on each)
    for machine, subnet, peer, pod in (("hosta", "10.244.2.0/24", "192.168.117.208", "pod-n1"),
                                       ("hostb", "10.244.1.0/24", "192.168.117.207", "pod-n2")):
        routes = json.loads(host.run(["ip", "-n", machine, "-j", "route", "show",
                                      subnet]).stdout)
        assert [(r["gateway"], r["dev"]) for r in routes] == [(peer, "eth0")]
        assert pod in host.netns_list()
    pod = host.start_server("pod-n2", 80)
    assert get(host, "pod-n1", "10.244.2.2", 80, pod) == ("pod-n2", "10.244.1.2")
    lan = host.start_server("hostb", 80)  # a server on node 2 itself: outside the pod network
    assert get(host, "pod-n1", "192.168.117.208", 80, lan) == ("hostb", "192.168.117.207")
    for machine in ("hosta", "hostb"):
        plan = on_machine(host, machine, "plan", "--detailed-exitcode", FLANNEL_FLEET)
        assert plan.returncode == 0, plan.stdout + plan.stderr
        assert on_machine(host, machine, "destroy", FLANNEL_FLEET).returncode == 0
    assert host.snapshot() == before


# -- Docker networks -------------------------------------------------------------------------


def test_docker_networks_isolation_dual_stack_nat_and_published_ports(host):
    host.run(["nft", "-f", "-"], input=(
        "table inet filter {\n"
        "  chain forward { type filter hook forward priority filter; policy accept;\n"
        "    ip saddr 192.168.99.0/24 counter accept\n  }\n}\n"))
    foreign = without_handles(host.nft_json())
    before = host.snapshot()
    apply_ok(host, NETWORKS)
    assert ("ip", TABLE) in tables(host) and ("ip6", TABLE) in tables(host)
    assert [e for e in without_handles(host.nft_json())
            if next(iter(e.values())).get("table", next(iter(e.values())).get("name"))
            != TABLE] == foreign  # the foreign table is byte-identical
    # the file's probes, before any test server listens (verify places its own listeners)
    verified = host.netdecl("verify", NETWORKS)
    assert verified.returncode == 0, verified.stdout + verified.stderr

    web1 = host.start_server("web-1", 80, address="::")  # both families
    db1 = host.start_server("db-1", 80, address="::")
    ext = host.start_server("ext", 80, address="::")

    # same network: direct, both families
    assert get(host, "web-2", "172.18.0.2", 80, web1) == ("web-1", "172.18.0.3")
    assert get(host, "web-2", "fd00:18::2", 80, web1) == ("web-1", "fd00:18::3")
    # across networks: dropped by the forward filter, both directions, both families
    for client, address in (("web-1", "172.19.0.2"), ("web-1", "fd00:19::2"),
                            ("db-1", "172.18.0.2"), ("db-1", "fd00:18::2")):
        result = host.http_get(client, address, 80, timeout=1)
        assert not result.ok, f"{client} reached {address} across networks"
    assert db1.seen_sources() == []
    # both networks still reach the outside, masqueraded in both families
    assert get(host, "web-1", "10.168.0.3", 80, ext) == ("ext", "10.168.0.1")
    assert get(host, "db-1", "fd00:168::3", 80, ext) == ("ext", "fd00:168::1")
    # the published port over IPv6 (and IPv4), from the LAN: the client's own address
    assert get(host, "ext", "fd00:168::1", 8080, web1) == ("web-1", "fd00:168::3")
    assert get(host, "ext", "10.168.0.1", 8080, web1) == ("web-1", "10.168.0.3")

    # explain names the rule that drops a packet
    explained = host.netdecl("explain", "--from", "web-1", "172.19.0.2:80", NETWORKS)
    assert explained.returncode == 1, explained.stderr  # exit 1: the packet is dropped
    assert "dropped" in explained.stdout and \
        "filter drop out=br-net2 in=br-net1" in explained.stdout, explained.stdout

    assert_no_changes(host, NETWORKS)
    assert host.netdecl("destroy", NETWORKS).returncode == 0
    assert host.snapshot() == before
    assert without_handles(host.nft_json()) == foreign


def test_a_virtual_ip_spreads_connections_over_every_target(host):
    apply_ok(host, NETWORKS)
    servers = {ns: host.start_server(ns, 80) for ns in ("web-1", "web-2")}
    # 30 new connections from a container on the same bridge (one of them a target: hairpin)
    # and from the host itself
    answered: Counter[str] = Counter()
    for client in ["web-2"] * 20 + [None] * 10:
        result = host.http_get(client, "10.96.0.10", 80)
        assert result.ok, f"{client} -> 10.96.0.10:80: {result.error}"
        answered[result.body.split("ns=")[1].split()[0]] += 1
    # round robin: evenly, whatever else happened before
    assert set(answered) == {"web-1", "web-2"} and abs(answered["web-1"] - answered["web-2"]) <= 1
    assert sum(len(s.seen_sources()) for s in servers.values()) == 30


def test_hairpin_is_on_where_a_forward_needs_it_unless_the_file_says_no(host, tmp_path):
    text = open(NETWORKS).read()
    plan = json.loads(host.netdecl("plan", "--json", NETWORKS).stdout)
    creates = {a["key"][2]: a["after"] for a in plan["actions"]
               if a["type"] == "link" and a["op"] == "create"}
    assert creates["veth-web1"]["hairpin"] is True and creates["veth-web2"]["hairpin"] is True
    assert creates["veth-db1"]["hairpin"] is None  # no forward to db-1

    apply_ok(host, NETWORKS)
    port = host.ip_json("-d", "link", "show", "dev", "veth-web1")[0]
    assert port["linkinfo"]["info_slave_data"]["hairpin"] is True
    # web-1 reaches its own published port through the host
    web1 = host.start_server("web-1", 80)
    assert get(host, "web-1", "10.168.0.1", 8080, web1)[0] == "web-1"

    refused = tmp_path / "no-hairpin.yaml"
    refused.write_text(text.replace("    master: br-net1\n    peer: {name: eth0, namespace: "
                                    "web-1", "    master: br-net1\n    hairpin: false\n"
                                    "    peer: {name: eth0, namespace: web-1"))
    plan = host.netdecl("plan", str(refused))
    assert "~ link veth-web1 (veth, master br-net1): hairpin true -> false" in plan.stdout, \
        plan.stdout


def test_a_recreated_container_answers_at_once(host):
    """The recreated veth gets a new MAC; netdecl announces the address, so the neighbour on
    the bridge switches without waiting for its entry to time out."""
    apply_ok(host, NETWORKS)
    host.start_server("web-1", 80)
    assert host.http_get("web-2", "172.18.0.2", 80).ok  # web-2 now caches web-1's MAC
    old_mac = host.ip_json("link", "show", "dev", "eth0", ns="web-1")[0]["address"]
    host.run(["ip", "link", "del", "veth-web1"])  # the runtime crashed
    apply_ok(host, NETWORKS)
    new_mac = host.ip_json("link", "show", "dev", "eth0", ns="web-1")[0]["address"]
    assert new_mac != old_mac  # (the server still listens: its namespace stayed)
    # one process in web-2 retries a TCP connection for up to 20 s and says when it succeeded
    script = (
        "import socket, time, json\n"
        "start = time.monotonic()\n"
        "while time.monotonic() - start < 20:\n"
        "    try:\n"
        "        socket.create_connection(('172.18.0.2', 80), timeout=0.2).close()\n"
        "        break\n"
        "    except OSError:\n"
        "        time.sleep(0.02)\n"
        "print(json.dumps({'seconds': time.monotonic() - start}))\n")
    out = host.run([sys.executable, "-c", script], ns="web-2", timeout=60).stdout
    seconds = json.loads(out)["seconds"]
    print(f"re-connection after recreation: {seconds:.3f} s")
    assert seconds < 1.0, f"web-2 reached the recreated web-1 only after {seconds:.2f} s"
    neighbour = [n for n in host.ip_json("neigh", "show", "dev", "eth0", ns="web-2")
                 if n["dst"] == "172.18.0.2"]
    assert neighbour and neighbour[0].get("lladdr") == new_mac


def test_rollback_is_exact_at_every_step_of_adding_filter_and_ipv6_nat(host, tmp_path):
    """From docker-networks without its IPv6 NAT and filter rules, apply the full file with
    NETDECL_FAIL_AT=N for every N: each attempt leaves the host exactly as before."""
    full = open(NETWORKS).read()
    head, tail = full.split("filter:\n", 1)
    base = head.replace('    - {source: "fd00:18::/64", not_out: br-net1}\n', "") \
        .replace('    - {source: "fd00:19::/64", not_out: br-net2}\n', "") \
        .replace('    - {proto: tcp, port: 8080, to: "[fd00:18::2]:80"}\n', "")
    base += "probes:" + tail.split("probes:", 1)[1]
    start = tmp_path / "base.yaml"
    start.write_text(base)
    apply_ok(host, str(start))
    plan = json.loads(host.netdecl("plan", "--json", NETWORKS).stdout)
    steps = len(plan["actions"])
    assert steps >= 1 and any(a["type"] == "nat" for a in plan["actions"])
    before = host.snapshot()
    for n in range(1, steps + 1):
        result = host.netdecl("apply", NETWORKS, env={"NETDECL_FAIL_AT": str(n)})
        assert result.returncode == 1, f"step {n}: {result.stdout}\n{result.stderr}"
        assert host.snapshot() == before, f"failure at step {n} was not rolled back exactly"
    apply_ok(host, NETWORKS)
    assert ("ip6", TABLE) in tables(host)
    assert_no_changes(host, NETWORKS)
    # pruning the IPv6 rules again removes the ip6 table
    apply_ok(host, str(start))
    assert ("ip6", TABLE) not in tables(host)
    assert_no_changes(host, str(start))


def test_a_hand_edited_filter_rule_is_drift_that_apply_repairs(host):
    apply_ok(host, NETWORKS)
    ruleset = host.nft_json()
    (handle,) = [e["rule"]["handle"] for e in ruleset["nftables"]
                 if "rule" in e and e["rule"]["table"] == TABLE and e["rule"]["family"] == "ip6"
                 and e["rule"]["chain"] == "forward" and "in=br-net2" in e["rule"]["comment"]]
    host.run(["nft", "delete", "rule", "ip6", TABLE, "forward", "handle", str(handle)])
    plan = host.netdecl("plan", "--detailed-exitcode", NETWORKS)
    assert plan.returncode == 2, plan.stdout + plan.stderr
    assert "~ nat table in root" in plan.stdout
    apply_ok(host, NETWORKS)
    assert_no_changes(host, NETWORKS)
    web1 = host.start_server("web-1", 80, address="::")
    assert not host.http_get("db-1", "fd00:18::2", 80, timeout=1).ok
    assert web1.seen_sources() == []



# Runs in the hermetic host's root namespace: an unbound packet socket sees every ARP frame on
# every root link (a frame sent in a container crosses its veth into the root, then the bridge
# floods it). Prints "ready", then, when its stdin closes, the sender addresses of the
# gratuitous ARPs seen (sender address = target address) as a JSON list.
GARP_SNIFFER = r"""
import json, select, socket, sys
ETH_P_ARP = 0x0806
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
print("ready", flush=True)
seen = []
while True:
    ready, _, _ = select.select([sock, sys.stdin], [], [])
    if sys.stdin in ready:
        break
    frame = sock.recv(2048)
    arp = frame[14:]
    if len(arp) >= 28 and arp[14:18] == arp[24:28]:
        seen.append(socket.inet_ntoa(arp[14:18]))
while True:  # what arrived before the stop
    ready, _, _ = select.select([sock], [], [], 0)
    if not ready:
        break
    arp = sock.recv(2048)[14:]
    if len(arp) >= 28 and arp[14:18] == arp[24:28]:
        seen.append(socket.inet_ntoa(arp[14:18]))
print(json.dumps(sorted(set(seen))), flush=True)
"""


def _sniff_garps(host, during) -> list[str]:
    proc = subprocess.Popen(host._argv([sys.executable, "-c", GARP_SNIFFER], None),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        during()
        out, _ = proc.communicate("", timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return json.loads(out)


def test_only_addresses_the_neighbours_may_know_are_announced(host):
    """A cold apply announces nothing: every link of each segment is new, so no neighbour
    entry for its addresses exists anywhere (and a broadcast per address to every port would
    cost O(N^2) at a thousand containers). An address re-added after its veth was deleted by
    hand goes onto a bridge whose other ports remember the old MAC: it is announced."""
    cold = _sniff_garps(host, lambda: apply_ok(host, NETWORKS))
    assert cold == [], f"a cold apply announced {cold}"
    host.run(["ip", "link", "del", "veth-web1"])  # the runtime crashed
    repair = _sniff_garps(host, lambda: apply_ok(host, NETWORKS))
    assert repair == ["172.18.0.2"], repair  # only the re-added address, web-1's


BRIDGE_PODS = """version: 1
name: bridge-mac
namespaces:
{namespaces}
links:
  - {{name: br-mac, kind: bridge, addresses: [10.50.0.1/24]}}
{ports}
routes:
{routes}
"""


def bridge_pods(*ports: tuple[str, str | None]) -> str:
    """A bridge with a veth per (namespace, MAC of its root end or None) on it."""
    return BRIDGE_PODS.format(
        namespaces="\n".join(f"  {ns}: {{}}" for ns, _ in ports),
        ports="\n".join(
            f"  - {{name: v-{ns}, kind: veth, master: br-mac"
            + (f", mac: '{mac}'" if mac else "")
            + f", peer: {{name: eth0, namespace: {ns}, addresses: [10.50.0.{i + 2}/24]}}}}"
            for i, (ns, mac) in enumerate(ports)),
        routes="\n".join(f"  - {{namespace: {ns}, to: default, via: 10.50.0.1}}"
                         for ns, _ in ports))


def test_a_port_joining_a_bridge_keeps_the_bridges_mac(host, tmp_path):
    """Linux gives a bridge whose MAC was never set its lowest port's MAC, so a port with a
    lower one moved it, and a pod holding its gateway at the old MAC (another port's) had its
    packets dropped for seconds (a third of the fleet test's runs failed their probe so).
    netdecl sets the MAC of a bridge it makes: a joining port changes nothing for the pods."""
    path = tmp_path / "pods.yaml"
    # (without the fix the bridge would take pod-a's port MAC, the lowest)
    path.write_text(bridge_pods(("pod-a", "02:00:00:00:00:20"), ("pod-c", "02:00:00:00:00:30")))
    apply_ok(host, str(path))
    server = host.start_server(None, 7946, address="10.50.0.1")
    assert host.http_get("pod-c", "10.50.0.1", 7946).ok  # pod-c now holds the gateway's MAC
    bridge_mac = host.ip_json("link", "show", "dev", "br-mac")[0]["address"]
    path.write_text(bridge_pods(("pod-a", "02:00:00:00:00:20"), ("pod-c", "02:00:00:00:00:30"),
                                ("pod-b", "02:00:00:00:00:01")))
    apply_ok(host, str(path))
    result = host.http_get("pod-c", "10.50.0.1", 7946, timeout=1)
    assert result.ok, f"pod-c lost its gateway when pod-b joined: {result.error}"
    assert server.seen_sources()[-1] == "10.50.0.3"
    assert host.ip_json("link", "show", "dev", "v-pod-b")[0]["address"] == "02:00:00:00:00:01"
    assert host.ip_json("link", "show", "dev", "br-mac")[0]["address"] == bridge_mac
    assert_no_changes(host, str(path))
