"""Namespace-first teardown against the real kernel.

destroy (and a rollback, which plans the same deletes) unmounts a namespace before the veths
with an end in it: the kernel removes those pairs itself in its batched namespace cleanup, and
netdecl waits for the surviving root-side ends by link notifications. These tests prove it
stays exact: nothing of the topology is left the moment netdecl returns (checked with `ip -j`,
no settling), foreign objects survive, and a namespace that something else keeps alive still
loses its veth.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.kernel

BRIDGE = "topologies/docker-bridge.yaml"


def star(n: int) -> str:
    lines = ["version: 1", "name: teardown", "namespaces:",
             *(f"  t{i}: {{}}" for i in range(n)),
             "links:", "  - {name: brt, kind: bridge, addresses: [10.77.0.1/16]}"]
    for i in range(n):
        lines.append(f"  - {{name: vt{i}, kind: veth, master: brt, peer: {{name: eth0, "
                     f"namespace: t{i}, addresses: [10.77.1.{i + 1}/16]}}}}")
    lines.append("routes:")
    lines += [f"  - {{namespace: t{i}, to: default, via: 10.77.0.1}}" for i in range(n)]
    return "\n".join(lines) + "\n"


def root_links(host) -> set[str]:
    return {link["ifname"] for link in host.ip_json("link", "show")}


def test_destroy_of_many_namespaces_leaves_nothing_the_moment_it_returns(host, tmp_path: Path):
    host.run(["ip", "link", "add", "foreign0", "type", "bridge"])
    host.run(["ip", "netns", "add", "bystander"])
    topo = tmp_path / "star.yaml"
    topo.write_text(star(30))
    before = host.snapshot()
    result = host.netdecl("apply", str(topo))
    assert result.returncode == 0, result.stderr
    assert {f"vt{i}" for i in range(30)} <= root_links(host)
    result = host.netdecl("destroy", str(topo))
    assert result.returncode == 0, result.stderr
    # read at once, not settled: destroy waited for the kernel to remove every veth pair
    assert root_links(host) == {"lo", "foreign0"}
    assert host.netns_list() == ["bystander"]
    assert host.snapshot() == before


def test_a_failed_cold_apply_rolls_back_namespace_first_and_exactly(host, tmp_path: Path):
    topo = tmp_path / "star.yaml"
    topo.write_text(star(12))
    before = host.snapshot()
    planned = host.netdecl("plan", "--json", str(topo), check=True)

    last = len(json.loads(planned.stdout)["actions"])
    result = host.netdecl("apply", str(topo), env={"NETDECL_FAIL_AT": str(last)})
    assert result.returncode == 1, result.stderr
    assert f"NETDECL_FAIL_AT={last}" in result.stderr and "rolled back" in result.stderr
    assert root_links(host) == {"lo"}
    assert host.netns_list() == []
    assert host.snapshot() == before


def test_a_namespace_kept_alive_by_a_process_still_loses_its_veth(host):
    result = host.netdecl("apply", BRIDGE)
    assert result.returncode == 0, result.stderr
    # a process inside nginx-1 keeps that namespace (and the veth pair in it) alive after
    # its name is gone: netdecl must notice the kernel is not removing veth-n1 and delete it
    server = host.start_server("nginx-1", 8080)
    try:
        result = host.netdecl("destroy", BRIDGE)
        assert result.returncode == 0, result.stderr
        assert root_links(host) == {"lo"}
        assert host.netns_list() == []
    finally:
        server.stop()


def test_a_namespace_holding_a_foreign_link_is_still_refused(host):
    result = host.netdecl("apply", BRIDGE)
    assert result.returncode == 0, result.stderr
    host.run(["ip", "-n", "nginx-2", "link", "add", "handmade", "type", "bridge"])
    before = host.snapshot()
    result = host.netdecl("destroy", BRIDGE)
    assert result.returncode == 1
    assert "handmade" in result.stdout + result.stderr
    assert host.snapshot() == before
    assert "handmade" in {link["ifname"] for link in host.ip_json("link", "show", ns="nginx-2")}

