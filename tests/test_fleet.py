"""A fleet through Ansible: ansible-playbook drives three SSH hosts (tests/fleet.py) with the
collection's module and the shipped example (ansible/examples: one inventory shape, one
template, a serial rollout gated by probes).

Claims are checked on each host's kernel (`ip -j` snapshots taken inside its namespaces) and
with real HTTP between pods on different hosts, over the VXLAN overlay.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fleet import Fleet, Machine, sshd_missing
from harness import REPO_ROOT

PLAYBOOK = REPO_ROOT / "ansible" / "examples" / "fleet.yml"
HOSTS = ("h1", "h2", "h3")


def pod_address(host_number: int, pod: int = 1) -> str:
    return f"10.244.{host_number}.{pod + 1}"


@pytest.fixture
def fleet(host, tmp_path: Path) -> Iterator[Fleet]:
    missing = sshd_missing()
    if missing:
        # in CI the set-up installs all of it: a missing piece there is a failure, not a skip
        if os.environ.get("CI") == "true":
            pytest.fail(missing)
        pytest.skip(missing)
    started = Fleet(host, tmp_path)
    try:
        yield started.start()
    finally:
        started.stop()


def http_ok(client: Machine, client_ip: str, server: Machine, server_ip: str) -> None:
    """HTTP from a pod on one host to a pod on another; the server must see the client pod's
    own address (nothing on the way may NAT)."""
    listening = server.start_server("pod-1", 80)
    result = client.http_get("pod-1", server_ip, 80)
    assert result.ok, f"{client.name}/pod-1 -> {server.name} {server_ip}: {result.error}"
    assert f"client={client_ip}" in result.body
    assert listening.seen_sources() == [client_ip]
    listening.stop()


def test_fleet_rollout_is_serial_verified_idempotent_and_stops_at_the_first_failure(fleet):
    h1, h2, h3 = (fleet.machines[name] for name in HOSTS)
    bare = {name: m.snapshot() for name, m in fleet.machines.items()}

    # Check mode first: every host gets its plan, nothing changes anywhere.
    run = fleet.playbook(PLAYBOOK, "--check", "--diff")
    assert run.returncode == 0, run
    assert run.changed() == {"h1": 1, "h2": 1, "h3": 1}, run
    assert "+ link vxlan42 (vxlan, master br-overlay, mtu 1450)" in run.stdout
    assert {name: m.snapshot() for name, m in fleet.machines.items()} == bare

    # The rollout: one template, rendered per host from the inventory, applied and verified.
    run = fleet.playbook(PLAYBOOK)
    assert run.returncode == 0, run
    assert run.changed() == {"h1": 1, "h2": 1, "h3": 1}, run
    for number, machine in enumerate((h1, h2, h3), start=1):
        assert machine.netns_list() == ["pod-1"]
        (vxlan,) = machine.ip_json("-d", "link", "show", "dev", "vxlan42")
        info = vxlan["linkinfo"]["info_data"]
        assert (info["id"], info["local"], info["link"]) == (42, machine.address, "eth0")
        others = {m.address for m in (h1, h2, h3) if m is not machine}
        flood = {e.get("dst") for e in fdb(machine) if e["mac"] == "00:00:00:00:00:00"}
        assert flood == others
        (eth0,) = machine.ip_json("-d", "addr", "show", "dev", "eth0", ns="pod-1")
        assert [(a["local"], a["prefixlen"]) for a in eth0["addr_info"]
                if a["family"] == "inet"] == [(pod_address(number), 16)]
    # pods on different hosts reach each other over the overlay, with their own addresses
    http_ok(h1, pod_address(1), h2, pod_address(2))
    http_ok(h2, pod_address(2), h3, pod_address(3))
    http_ok(h3, pod_address(3), h1, pod_address(1))

    # Idempotence: a second run changes nothing, and says so on every host.
    run = fleet.playbook(PLAYBOOK)
    assert run.returncode == 0, run
    assert run.changed() == {"h1": 0, "h2": 0, "h3": 0}, run

    # Drift made by hand on h2 only: check mode reports it there, and only there.
    h2.run(["ip", "route", "del", "default"], ns="pod-1")
    drifted = h2.snapshot()
    run = fleet.playbook(PLAYBOOK, "--check", "--diff")
    assert run.returncode == 0, run
    assert run.changed() == {"h1": 0, "h2": 1, "h3": 0}, run
    assert "+ route default in pod-1 (via 10.244.2.1)" in run.stdout
    assert h2.snapshot() == drifted  # check mode changed nothing
    run = fleet.playbook(PLAYBOOK)
    assert run.returncode == 0, run
    assert run.changed() == {"h1": 0, "h2": 1, "h3": 0}, run
    (route,) = h2.ip_json("route", "show", "default", ns="pod-1")
    assert route["gateway"] == "10.244.2.1"

    # A change (a second pod per host) that fails on h2: the rollout stops there. h1 keeps
    # the new state, h2 is exactly as before, h3 is never touched.
    before = {name: m.snapshot() for name, m in fleet.machines.items()}
    run = fleet.playbook(PLAYBOOK, "-e", "pods_per_host=2",
                         host_vars={"h2": {"netdecl_environment": {"NETDECL_FAIL_AT": "3"}}})
    assert run.returncode != 0, run
    assert run.recap["h1"]["changed"] == 1 and run.failed()["h1"] == 0, run
    assert run.failed()["h2"] == 1, run
    assert "h3" not in run.recap or run.recap["h3"]["ok"] == 0, run
    assert "injected failure (NETDECL_FAIL_AT=3)" in run.stdout
    assert "rolled back" in run.stdout and "Traceback" not in run.stdout + run.stderr
    assert h1.netns_list() == ["pod-1", "pod-2"]
    assert h2.snapshot() == before["h2"]
    assert h3.snapshot() == before["h3"]
    # h1's new pod is on the overlay too: it reaches h3's pod with its own address
    server = h3.start_server("pod-1", 80)
    result = h1.http_get("pod-2", pod_address(3), 80)
    assert result.ok, result.error
    assert server.seen_sources() == [pod_address(1, pod=2)]


def fdb(machine: Machine) -> list[dict[str, str]]:
    out = machine.run(["bridge", "-j", "fdb", "show", "dev", "vxlan42"]).stdout.strip()
    return json.loads(out) if out else []
