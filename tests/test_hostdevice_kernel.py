"""kind: host-device on this machine's kernel, as the CNI host-device plugin uses it: the
host's NIC moved into a namespace under another name while the topology exists, and given
back, with its name, addresses, MTU and state, on destroy and on a failed apply.

The "NIC" is `nic0`, a veth end in the root made by hand (its other end `sw`, in namespace
`b`, stands for the switch and the machines outside), with an address and an MTU of its own.
The file moves it into namespace `c` as `eth0`. HTTP from `b` to eth0's address is answered
by a server in `c`; `ip -j -d link` and `ip -j addr` are the independent eyes on where the
NIC is and what it has.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TOPOLOGY = """\
version: 1
name: hostdev
namespaces:
  c: {}
links:
  - name: eth0
    kind: host-device
    namespace: c
    device: nic0
    mtu: 1450
    addresses: [10.70.0.11/24]
"""


def netdecl_ok(host, *args: str, env: dict[str, str] | None = None) -> str:
    result = host.netdecl(*args, env=env)
    assert result.returncode == 0, f"{args}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def links(host, ns: str | None) -> dict[str, dict[str, Any]]:
    return {lk["ifname"]: lk for lk in host.ip_json("-d", "link", "show", ns=ns)}


def addresses(host, name: str, ns: str | None) -> list[str]:
    (found,) = host.ip_json("addr", "show", "dev", name, ns=ns)
    return sorted(f"{a['local']}/{a['prefixlen']}" for a in found["addr_info"]
                  if a["family"] == "inet")


def make_nic(host) -> dict[str, Any]:
    host.run(["ip", "netns", "add", "b"])
    host.run(["ip", "link", "add", "nic0", "mtu", "1400", "type", "veth", "peer", "name", "sw",
              "netns", "b"])
    host.run(["ip", "addr", "add", "10.70.0.1/24", "dev", "nic0"])
    host.run(["ip", "link", "set", "nic0", "up"])
    host.run(["ip", "-n", "b", "addr", "add", "10.70.0.2/24", "dev", "sw"])
    host.run(["ip", "-n", "b", "link", "set", "sw", "up"])
    return links(host, None)["nic0"]


def assert_given_back(host, nic: dict[str, Any]) -> None:
    """nic0 is in the root again, as it was: the very device (its MAC), its name, address,
    MTU, state and no alias; and nothing of it is left in c."""
    root = links(host, None)
    assert "nic0" in root, sorted(root)
    back = root["nic0"]
    assert (back["address"], back["mtu"], "UP" in back["flags"], back.get("ifalias")) == (
        nic["address"], 1400, True, None), back
    assert addresses(host, "nic0", None) == ["10.70.0.1/24"]
    assert "c" not in host.netns_list() or "eth0" not in links(host, "c")


def test_a_nic_is_moved_in_renamed_and_given_back_as_it_was(host, tmp_path: Path):
    nic = make_nic(host)
    before = host.snapshot(link_local=False)
    path = tmp_path / "hostdev.yaml"
    path.write_text(TOPOLOGY)
    netdecl_ok(host, "apply", str(path))

    inside = links(host, "c")["eth0"]
    assert inside["address"] == nic["address"]  # the very NIC, not a new link
    assert (inside["mtu"], inside.get("ifalias")) == (1450, "netdecl:hostdev"), inside
    assert "nic0" not in links(host, None)
    assert addresses(host, "eth0", "c") == ["10.70.0.11/24"]
    assert host.netdecl("plan", "--detailed-exitcode", str(path)).returncode == 0  # no drift

    server = host.start_server("c", 80, address="10.70.0.11")
    result = host.http_get("b", "10.70.0.11", 80)
    assert result.ok and "ns=c client=10.70.0.2" in result.body, result.error or result.body
    server.stop()

    netdecl_ok(host, "destroy", str(path))
    assert_given_back(host, nic)
    assert host.snapshot(link_local=False) == before
    # and it works as a NIC of the root again
    assert host.ping(None, "10.70.0.2")


def test_a_failed_apply_gives_the_nic_back(host, tmp_path: Path):
    """NETDECL_FAIL_AT at every action of the first apply: each time, the rollback moves the
    NIC back to the root with its name, address and MTU."""
    nic = make_nic(host)
    path = tmp_path / "hostdev.yaml"
    path.write_text(TOPOLOGY)
    plan = host.netdecl("plan", "--json", str(path))
    assert plan.returncode == 0, plan.stderr
    import json

    count = len(json.loads(plan.stdout)["actions"])
    assert count >= 3
    for number in range(1, count + 1):
        result = host.netdecl("apply", str(path), env={"NETDECL_FAIL_AT": str(number)})
        assert result.returncode == 1 and "injected failure" in result.stderr, \
            (number, result.stdout, result.stderr)
        assert_given_back(host, nic)
    netdecl_ok(host, "apply", str(path))
    assert links(host, "c")["eth0"]["address"] == nic["address"]
    netdecl_ok(host, "destroy", str(path))
    assert_given_back(host, nic)
