"""Stateful filter rules and `source: local` on this machine's kernel, as Docker builds them:
a container behind a bridge stays unreachable from a LAN host that routes to the bridge,
while its own connections out (and their replies) work; and what the host itself sends into
the bridge from another of its addresses is masqueraded. `nft -j` is the independent eye.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

TOPOLOGY = """\
version: 1
name: stateful
sysctls: {net.ipv4.ip_forward: 1}
namespaces: {c1: {}, lan: {}}
links:
  - {name: br0, kind: bridge, addresses: [172.18.0.1/24]}
  - name: veth-c1
    kind: veth
    master: br0
    peer: {name: eth0, namespace: c1, addresses: [172.18.0.2/24]}
  - name: uplink
    kind: veth
    addresses: [10.99.0.1/24]
    peer: {name: eth0, namespace: lan, addresses: [10.99.0.2/24]}
routes:
  - {namespace: c1, to: default, via: 172.18.0.1}
  - {namespace: lan, to: 172.18.0.0/24, via: 10.99.0.1}   # a LAN host routing to the bridge
nat:
  masquerade:
    - {source: local, out: br0}   # the host's own traffic into the bridge
filter:
  forward:
    - {out: br0, state: [related, established], action: accept}
    - {out: br0, action: drop}
"""

# GET http://ADDRESS:80/ from a socket bound to SOURCE
BOUND_CLIENT = r"""
import socket, sys
source, address = sys.argv[1], sys.argv[2]
s = socket.create_connection((address, 80), timeout=5, source_address=(source, 0))
s.sendall(b"GET / HTTP/1.0\r\n\r\n")
answer = b""
while chunk := s.recv(4096):
    answer += chunk
print(answer.decode().split("\r\n\r\n", 1)[-1])
"""


def exprs(host) -> list[str]:
    listing = host.run(["nft", "-j", "list", "table", "ip", "netdecl-stateful"]).stdout
    return [json.dumps(o["rule"]["expr"]) for o in json.loads(listing)["nftables"]
            if "rule" in o]


def test_replies_pass_new_connections_do_not_and_local_traffic_is_masqueraded(host, tmp_path):
    path = tmp_path / "stateful.yaml"
    path.write_text(TOPOLOGY)
    before = host.snapshot()
    applied = host.netdecl("apply", str(path))
    assert applied.returncode == 0, applied.stdout + applied.stderr

    rules = exprs(host)
    assert any('"ct": {"key": "state"}' in r and '["established", "related"]' in r
               for r in rules), rules
    assert any('"flags": ["saddr"]' in r and '"masquerade"' in r for r in rules), rules

    c1 = host.start_server("c1", 80)
    lan = host.start_server("lan", 80)
    # the LAN host cannot open a connection to the container...
    assert not host.http_get("lan", "172.18.0.2", 80, timeout=1).ok
    assert c1.seen_sources() == []
    # ...while the container's own connection out, and its replies, work (not masqueraded:
    # the rule is for the host's own traffic only)
    out = host.http_get("c1", "10.99.0.2", 80)
    assert out.ok and "client=172.18.0.2" in out.body, out
    # the host itself, from its LAN address, into the bridge: masqueraded to br0's address
    own = host.run([sys.executable, "-c", BOUND_CLIENT, "10.99.0.1", "172.18.0.2"]).stdout
    assert "client=172.18.0.1" in own, own
    assert lan.seen_sources() == ["172.18.0.2"]

    plan = host.netdecl("plan", "--detailed-exitcode", str(path))
    assert plan.returncode == 0, plan.stdout + plan.stderr  # read back as written
    shown = host.netdecl("show", "--namespace", "root", "--name", "shown")
    assert "state:\n    - established\n    - related" in shown.stdout or \
        "state: [established, related]" in shown.stdout, shown.stdout
    assert "source: local" in shown.stdout
    destroyed = host.netdecl("destroy", str(path))
    assert destroyed.returncode == 0, destroyed.stdout + destroyed.stderr
    assert host.snapshot() == before


def test_a_forward_filter_cannot_match_the_hosts_own_traffic(tmp_path: Path):
    from netdecl.errors import InvalidTopology
    from netdecl.topology.loader import load_topology_text

    bad = TOPOLOGY.replace("{out: br0, action: drop}", "{source: local, action: drop}")
    try:
        load_topology_text(bad)
    except InvalidTopology as exc:
        assert "a forward filter never sees what the host itself sends" in str(exc)
    else:
        raise AssertionError("source: local on a filter rule was accepted")


def test_state_and_local_source_survive_the_nft_comment():
    """netdecl reads its rules back from their nft comments: the new words round-trip, and a
    comment written before them reads as it did."""
    from netdecl.model import NatRule, decode_comment, encode_comment

    for rule in (NatRule("filter", out="br0", state=("established", "related"), action="accept"),
                 NatRule("masquerade", local_source=True, out="br0")):
        assert decode_comment(encode_comment(3, rule)) == (3, rule)
    assert decode_comment("0 masquerade src=172.17.0.0/16 nout=docker0") == (
        0, NatRule("masquerade", source="172.17.0.0/16", not_out="docker0"))
    assert decode_comment("0 masquerade loc=yes") is None
