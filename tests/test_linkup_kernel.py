"""When an apply brings up the veth pairs it makes (engine/linkup.py), on the kernel.

A pair gets carrier only once every link of the run is made: each pair's second end waits
down, so no pair starts its IPv6 start-up traffic (flooded to every bridge port) while the
next ones are still being made. Checked with `ip -j link` while the apply is held before its
last link (the NETDECL_TEST_PAUSE_BEFORE hook), then with traffic once it is done.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from test_identity_kernel import Paused, write
from test_rollback import plan_actions

THREE = """version: 1
name: three
namespaces:
  s0: {}
  s1: {}
  s2: {}
links:
  - name: tbr0
    kind: bridge
    addresses: [10.63.0.1/24]
  - name: tv0
    kind: veth
    master: tbr0
    peer: {name: eth0, namespace: s0, addresses: [10.63.0.10/24]}
  - name: tv1
    kind: veth
    master: tbr0
    peer: {name: eth0, namespace: s1, addresses: [10.63.0.11/24]}
  - name: tv2
    kind: veth
    master: tbr0
    peer: {name: eth0, namespace: s2, addresses: [10.63.0.12/24]}
"""


def link_state(host, name: str, ns: str | None = None) -> dict[str, Any]:
    (entry,) = [e for e in host.ip_json("link", ns=ns) if e["ifname"] == name]
    flags = entry.get("flags", [])
    return {"up": "UP" in flags, "carrier": "LOWER_UP" in flags,
            "alias": entry.get("ifalias"), "master": entry.get("master")}


def test_veth_pairs_get_carrier_only_once_every_link_is_made(host, tmp_path: Path):
    path = write(tmp_path, "three.yaml", THREE)
    links = [(number, action["object"]) for number, action in
             enumerate(plan_actions(host, path), start=1)
             if action["op"] == "create" and action["object"].startswith("link ")]
    assert [name for _, name in links][-3:] == [f"link tv{n}" for n in (0, 1, 2)], links
    last = links[-1][0]
    paused = Paused(host, tmp_path, last, "apply", path)
    try:
        # held before the last pair: the two made so far are named, marked and enslaved, their
        # root end up, their container end down, so neither has carrier yet
        for number in (0, 1):
            root_end = link_state(host, f"tv{number}")
            container_end = link_state(host, "eth0", ns=f"s{number}")
            assert root_end == {"up": True, "carrier": False, "alias": "netdecl:three",
                                "master": "tbr0"}, root_end
            assert container_end == {"up": False, "carrier": False, "alias": "netdecl:three",
                                     "master": None}, container_end
        assert [e["ifname"] for e in host.ip_json("link", ns="s2")] == ["lo"]
    finally:
        rc, _, err = paused.resume()
    assert rc == 0, err
    for number in (0, 1, 2):
        assert link_state(host, f"tv{number}")["carrier"]
        assert link_state(host, "eth0", ns=f"s{number}") == {
            "up": True, "carrier": True, "alias": "netdecl:three", "master": None}
    server = host.start_server("s2", 8080)
    reply = host.http_get("s0", "10.63.0.12", 8080)
    assert reply.ok, reply.error
    assert server.seen_sources() == ["10.63.0.10"]
