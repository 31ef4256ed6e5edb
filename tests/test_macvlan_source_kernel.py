"""macvlan source mode on this machine's kernel: a macvlan that receives the frames whose
source MAC is on its list, and so answers only those senders; the list changes in place.

Namespace `a` holds the parent (a veth end) and `msrc` (mode source, 10.53.0.11); namespace
`b`, the other end, has two senders with MACs of their own: its veth end `vb` (10.53.0.2, on
the list) and a macvlan made by hand on it, `other` (10.53.0.3, not on it). HTTP from vb
reaches msrc; from `other` it does not (its ARP request never gets to msrc); once the file puts
other's MAC on the list (in place: same ifindex), it does. `ip -j -d link` shows the list.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

TOPOLOGY = """\
version: 1
name: msrc
namespaces:
  # answer ARP only on the link that holds the address: else the parent, which hears every
  # broadcast, answers for msrc with its own MAC, and msrc's list proves nothing
  a: {sysctls: {net.ipv4.conf.all.arp_ignore: 1}}
  b: {}
links:
  - name: va
    kind: veth
    namespace: a
    peer: {name: vb, namespace: b, mac: "02:00:00:00:53:02", addresses: [10.53.0.2/24]}
  - name: msrc
    kind: macvlan
    namespace: a
    link: va
    macvlan: {mode: source, macs: MACS}
    addresses: [10.53.0.11/24]
"""
VB, OTHER = "02:00:00:00:53:02", "02:00:00:00:53:03"


def write(tmp_path: Path, macs: list[str]) -> str:
    path = tmp_path / "msrc.yaml"
    path.write_text(TOPOLOGY.replace("MACS", "[" + ", ".join(f'"{m}"' for m in macs) + "]"))
    return str(path)


def ok(host, *args: str) -> str:
    result = host.netdecl(*args)
    assert result.returncode == 0, f"{args}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def msrc(host) -> dict[str, Any]:
    (found,) = host.ip_json("-d", "link", "show", "dev", "msrc", ns="a")
    return found


def reached_from(host, source: str) -> bool:
    server = host.start_server("a", 80, address="10.53.0.11")
    try:
        result = host.run(["ip", "netns", "exec", "b", sys.executable, "-c", CLIENT, source])
    finally:
        server.stop()
    return result.stdout.strip() == "ok"


# an HTTP GET to msrc bound to one of b's addresses (so it leaves by that sender's link)
CLIENT = r"""
import socket, sys
try:
    s = socket.create_connection(("10.53.0.11", 80), timeout=3, source_address=(sys.argv[1], 0))
    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    print("ok" if s.recv(100).startswith(b"HTTP/") else "bad")
except OSError:
    print("fail")
"""


def test_a_source_macvlan_answers_only_the_macs_on_its_list(host, tmp_path: Path):
    before = host.snapshot()
    path = write(tmp_path, [VB])
    ok(host, "apply", path)
    host.run(["ip", "-n", "b", "link", "add", "link", "vb", "name", "other", "address", OTHER,
              "type", "macvlan", "mode", "bridge"], check=True)
    host.run(["ip", "-n", "b", "addr", "add", "10.53.0.3/24", "dev", "other"], check=True)
    host.run(["ip", "-n", "b", "link", "set", "other", "up"], check=True)
    # vb and other in one subnet: each reaches 10.53.0.11 through its own link
    host.run(["ip", "-n", "b", "rule", "add", "from", "10.53.0.3", "table", "3"], check=True)
    host.run(["ip", "-n", "b", "route", "add", "10.53.0.0/24", "dev", "other", "table", "3"],
             check=True)

    found = msrc(host)
    data = found["linkinfo"]["info_data"]
    assert (data["mode"], data.get("macaddr_count")) == ("source", 1), data
    assert [m.lower() for m in data["macaddr_data"]] == [VB], data
    assert host.netdecl("plan", "--detailed-exitcode", path).returncode == 0

    assert reached_from(host, "10.53.0.2")
    assert not reached_from(host, "10.53.0.3")

    path = write(tmp_path, [VB, OTHER])
    plan = host.netdecl("plan", "--detailed-exitcode", path)
    assert plan.returncode == 2 and "~ link a/msrc" in plan.stdout and "-/+" not in plan.stdout, \
        plan.stdout
    ok(host, "apply", path)
    again = msrc(host)
    assert again["ifindex"] == found["ifindex"]
    assert sorted(m.lower() for m in again["linkinfo"]["info_data"]["macaddr_data"]) == [
        VB, OTHER]
    assert reached_from(host, "10.53.0.3")

    host.run(["ip", "-n", "b", "link", "del", "other"], check=True)
    host.run(["ip", "-n", "b", "rule", "del", "from", "10.53.0.3", "table", "3"], check=True)
    ok(host, "destroy", path)
    assert host.snapshot() == before
