"""`netdecl verify`: probes with real traffic on topologies/docker-nat.yaml.

Kernel tests run in a hermetic host; the pure part (where a probe goes, what verify refuses)
needs no kernel.
"""

from __future__ import annotations

import json
from pathlib import Path

from netdecl.model import Probe
from netdecl.tools.verify import resolve, run_probe
from netdecl.topology.loader import load_topology

NAT = "topologies/docker-nat.yaml"

# The probes of the issue, verbatim (the shipped file has the same kinds, with port 80).
ISSUE_PROBES = """\
probes:
  - {from: nginx-2, to: nginx-1, port: 80}
  - {from: nginx-1, to: 172.17.0.3}
  - {from: nginx-1, to: 10.168.0.3, port: 443, source: 10.168.0.1}
  - {from: ext, to: 10.168.0.1, port: 8080}
  - {from: ext, to: 172.17.0.2, expect: blocked}
"""


def apply_ok(host, path: str = NAT) -> None:
    result = host.netdecl("apply", path)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"


def with_probes(tmp_path: Path, probes: str) -> str:
    text = Path(NAT).read_text()
    path = tmp_path / "docker-nat.yaml"
    path.write_text(text[: text.index("\nprobes:")] + "\n" + probes)
    return str(path)


def verify_json(host, path: str, *extra: str) -> tuple[int, dict]:
    result = host.netdecl("verify", "--json", *extra, path)
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)


def listening_ports(host, ns: str) -> list[int]:
    """TCP ports in LISTEN state in ``ns``, from /proc (needs no ss)."""
    lines = host.run(["cat", "/proc/net/tcp", "/proc/net/tcp6"], ns=ns).stdout.splitlines()
    return [int(f[1].split(":")[1], 16) for f in (line.split() for line in lines)
            if len(f) > 3 and f[3] == "0A"]


def test_shipped_probes_pass_with_real_traffic(host, tmp_path: Path):
    apply_ok(host)
    result = host.netdecl("verify", NAT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 probes: 6 passed, 0 failed" in result.stdout
    assert result.stdout.splitlines()[0].split() == \
        ["FROM", "TO", "EXPECTED", "RESULT", "TIME", "SEEN", "SOURCE"]

    code, data = verify_json(host, with_probes(tmp_path, ISSUE_PROBES))
    assert code == 0, data
    probes = data["probes"]
    assert [p["ok"] for p in probes] == [True] * 5
    bridge, icmp, masq, forward, blocked = probes
    assert bridge["seen_source"] == "172.17.0.3" and bridge["listener"] == "started"
    assert icmp["proto"] == "icmp" and icmp["seen_source"] == "172.17.0.2"
    assert masq["seen_source"] == "10.168.0.1"
    # the listener went where the port forward points, and saw the LAN client
    assert forward["delivered_to"] == {"namespace": "nginx-1", "address": "172.17.0.2",
                                       "port": 80}
    assert forward["seen_source"] == "10.168.0.3"
    assert blocked["result"] == "blocked" and blocked["seen_source"] is None
    # verify cleaned up after itself: nothing listens anywhere any more
    for ns in ("nginx-1", "nginx-2", "ext"):
        assert listening_ports(host, ns) == [], ns


def test_flushed_masquerade_fails_naming_destination_and_source(host):
    apply_ok(host)
    host.run(["nft", "flush", "table", "ip", "netdecl-docker-nat"])
    result = host.netdecl("verify", "--timeout", "1", NAT)
    assert result.returncode == 1, result.stdout + result.stderr
    line = next(x for x in result.stdout.splitlines() if "10.168.0.3" in x)
    assert "FAIL" in line and "timeout after 1s" in line
    assert "10.168.0.3 in ext saw source 172.17.0.2" in line
    assert "expected source 10.168.0.1" in line
    code, data = verify_json(host, NAT, "--timeout", "1")
    masq = next(p for p in data["probes"] if p["to"] == "10.168.0.3")
    assert (masq["ok"], masq["seen_source"]) == (False, "172.17.0.2")
    assert data["failed"] >= 1 and code == 1
    # container to container does not need NAT and still passes
    assert data["probes"][0]["ok"] is True


def test_blocked_probe_that_gets_through_fails(host, tmp_path: Path):
    apply_ok(host)
    path = with_probes(tmp_path, "probes:\n  - {from: nginx-2, to: nginx-1, port: 80, "
                                 "expect: blocked}\n")
    code, data = verify_json(host, path)
    assert code == 1
    (probe,) = data["probes"]
    assert probe["ok"] is False and probe["result"] == "reachable"
    assert "got through" in probe["detail"] and probe["seen_source"] == "172.17.0.3"


def test_existing_server_is_used_not_replaced(host, tmp_path: Path):
    apply_ok(host)
    server = host.start_server("nginx-1", 80)
    path = with_probes(tmp_path, "probes:\n  - {from: nginx-2, to: nginx-1, port: 80}\n")
    code, data = verify_json(host, path)
    (probe,) = data["probes"]
    assert code == 0, probe
    assert probe["listener"] == "existing", probe
    assert probe["seen_source"] == "172.17.0.3", probe  # from the raw sniffer
    assert server.proc.poll() is None  # still serving
    result = host.http_get("nginx-2", "172.17.0.2", 80)
    assert result.ok, result.error


def test_where_probes_go_and_what_is_refused():
    topo = load_topology(NAT)
    forward = resolve(topo, Probe(source="ext", to="10.168.0.1", port=8080))
    assert (forward.owner, forward.listen_ns, forward.listen_address, forward.listen_port) == \
        ("", "nginx-1", "172.17.0.2", 80)
    named = resolve(topo, Probe(source="nginx-2", to="nginx-1", port=80))
    assert (named.address, named.listen_ns, named.proto) == ("172.17.0.2", "nginx-1", "tcp")
    assert resolve(topo, Probe(source="ext", to="172.17.0.2")).proto == "icmp"
    # never outside the topology: these are refused before any socket exists
    outside = run_probe(topo, Probe(source="nginx-1", to="192.0.2.7", port=80), 1.0)
    assert (outside.ok, outside.result) == (False, "skipped")
    assert "not an address of this topology" in outside.detail
    stranger = run_probe(topo, Probe(source="somewhere", to="nginx-1", port=80), 1.0)
    assert stranger.result == "skipped" and "not declared" in stranger.detail


UDP_PROBES = """\
probes:
  - {from: nginx-2, to: nginx-1, port: 53, proto: udp}
  - {from: ext, to: 10.168.0.1, port: 5353, proto: udp}
  - {from: nginx-1, to: 10.168.0.3, port: 53, proto: udp, source: 10.168.0.1}
"""


def test_udp_probes_direct_through_a_forward_and_masqueraded(host, tmp_path: Path):
    text = Path(with_probes(tmp_path, UDP_PROBES)).read_text()
    text = text.replace("  port_forwards:\n", "  port_forwards:\n"
                        "    - {proto: udp, port: 5353, to: \"172.17.0.2:53\"}\n", 1)
    path = tmp_path / "udp.yaml"
    path.write_text(text)
    apply_ok(host, str(path))
    code, data = verify_json(host, str(path))
    assert code == 0, data
    direct, forward, masq = data["probes"]
    assert [p["proto"] for p in data["probes"]] == ["udp"] * 3
    assert direct["seen_source"] == "172.17.0.3"
    assert forward["delivered_to"] == {"namespace": "nginx-1", "address": "172.17.0.2",
                                       "port": 53}
    assert forward["seen_source"] == "10.168.0.3"
    assert masq["seen_source"] == "10.168.0.1"
    # with the NAT table flushed the forward gets no answer: the probe fails
    host.run(["nft", "flush", "table", "ip", "netdecl-docker-nat"])
    code, data = verify_json(host, str(path))
    assert code == 1 and data["probes"][1]["ok"] is False


def test_a_probe_leaves_the_topology_only_into_a_network_the_file_declares():
    """Another host's pod is outside the topology but inside a network the file declares:
    host-a.yaml's overlay subnet on its bridge, flannel-fleet.yaml's host-gw route (as node 1
    applies it). A default route declares nothing: 192.0.2.7 stays refused."""
    node1 = {"node_ip": "192.168.117.207"}
    for path, address, network in (("topologies/host-a.yaml", "10.244.2.2", "10.244.0.0/16"),
                                   ("topologies/flannel-fleet.yaml", "10.244.2.2",
                                    "10.244.2.0/24")):
        topo = load_topology(path, variables=node1 if "fleet" in path else None)
        (probe,) = topo.probes
        target = resolve(topo, probe)
        assert (target.address, target.outside, target.port) == (address, network, 80), path
        assert target.describe() == f"{address}:80/tcp (outside, in {network})"
    topo = load_topology("topologies/host-a.yaml")
    refused = run_probe(topo, Probe(source="pod-a1", to="192.0.2.7", port=80), 1.0)
    assert refused.result == "skipped" and "nor in a network it declares" in refused.detail
