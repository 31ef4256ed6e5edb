"""promisc and allmulti, on any link (the CNI tuning plugin's flags), on this machine's kernel:
set when a link is made, changed in place (same ifindex), seen by `ip -j link` (the
independent eye: the flags the kernel reports, which are the ones asked for, not a bridge's own
promiscuity on its ports), repaired when changed by hand; on a link the host owns (`kind:
external`), what it was before comes back on destroy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TOPOLOGY = """\
version: 1
name: flags
namespaces:
  c1: {}
links:
  - {name: nic0, kind: external, promisc: NICFLAG}
  - name: br0
    kind: bridge
    addresses: [10.60.0.1/24]
  - name: veth-c1
    kind: veth
    master: br0
    peer: {name: eth0, namespace: c1, addresses: [10.60.0.2/24], promisc: true,
           allmulti: ALLMULTI}
"""


def write(tmp_path: Path, allmulti: str, nic: str = "true") -> str:
    path = tmp_path / "flags.yaml"
    path.write_text(TOPOLOGY.replace("ALLMULTI", allmulti).replace("NICFLAG", nic))
    return str(path)


def ok(host, *args: str) -> str:
    result = host.netdecl(*args)
    assert result.returncode == 0, f"{args}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def link(host, name: str, ns: str | None = None) -> dict[str, Any]:
    (found,) = host.ip_json("link", "show", "dev", name, ns=ns)
    return found


def test_flags_are_set_changed_in_place_repaired_and_put_back(host, tmp_path: Path):
    host.run(["ip", "link", "add", "nic0", "type", "veth", "peer", "name", "far0"], check=True)
    before = host.snapshot()
    assert "PROMISC" not in link(host, "nic0")["flags"]

    ok(host, "apply", write(tmp_path, "true"))
    eth0 = link(host, "eth0", "c1")
    assert {"PROMISC", "ALLMULTI"} <= set(eth0["flags"]), eth0["flags"]
    assert "PROMISC" in link(host, "nic0")["flags"]
    # the bridge makes its port promiscuous on its own: that is not the file's, and no drift
    assert "PROMISC" not in link(host, "veth-c1")["flags"]
    assert host.netdecl("plan", "--detailed-exitcode", write(tmp_path, "true")).returncode == 0

    # traffic still crosses the link
    server = host.start_server("c1", 80, address="10.60.0.2")
    got = host.http_get(None, "10.60.0.2", 80)
    server.stop()
    assert got.ok, got.error

    # in place: the same device, allmulti off
    path = write(tmp_path, "false")
    plan = host.netdecl("plan", "--detailed-exitcode", path)
    assert plan.returncode == 2 and "~" in plan.stdout and "allmulti" in plan.stdout, plan.stdout
    assert "-/+" not in plan.stdout
    ok(host, "apply", path)
    after = link(host, "eth0", "c1")
    assert after["ifindex"] == eth0["ifindex"]
    assert "ALLMULTI" not in after["flags"] and "PROMISC" in after["flags"]

    # drift: someone turns promisc off by hand; plan sees it, apply puts it back
    host.run(["ip", "-n", "c1", "link", "set", "eth0", "promisc", "off"], check=True)
    drift = host.netdecl("plan", "--detailed-exitcode", path)
    assert drift.returncode == 2 and "promisc" in drift.stdout, drift.stdout
    ok(host, "apply", path)
    assert "PROMISC" in link(host, "eth0", "c1")["flags"]

    # destroy: the host's NIC is as it was before netdecl (promisc off)
    ok(host, "destroy", path)
    assert host.snapshot() == before
    assert "PROMISC" not in link(host, "nic0")["flags"]


def test_show_writes_the_flags_that_are_on(host, tmp_path: Path):
    host.run(["ip", "link", "add", "nic0", "type", "veth", "peer", "name", "far0"], check=True)
    ok(host, "apply", write(tmp_path, "true", nic="false"))
    shown = ok(host, "show", "--namespace", "c1")
    assert "promisc: true" in shown and "allmulti: true" in shown, shown
