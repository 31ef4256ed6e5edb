"""kind: tap and kind: tun on this machine's kernel (it has tun): made persistent through
/dev/net/tun with their owner, group and header, seen as such by `ip -j -d link` (the kernel
calls both "tun" and tells them apart by type), carrying traffic to a program that attaches
to them, replaced when a setting the kernel fixes changes, gone after destroy.

The program (ATTACH below) attaches as a VM's hypervisor or a VPN would (TUNSETIFF on the
device's name) and waits for what the host sends through: the ARP request a datagram to a VM
behind the tap's bridge makes (a frame, after its virtio-net header), and the IP packet a
datagram routed into the tun is.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

TOPOLOGY = """\
version: 1
name: taps
links:
  - {name: br0, kind: bridge, addresses: [10.90.0.1/24]}
  - name: vm0
    kind: tap
    master: br0
    tap: {owner: 4242, group: 4343, vnet_hdr: VNET}  # ids with no name: `ip` shows names
  - {name: vpn0, kind: tun, addresses: [10.91.0.1/24]}
"""

ATTACH = r"""
import fcntl, os, select, socket, struct, sys
name, flags, skip, to, want = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), *sys.argv[4:6]
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, 0x400454CA, struct.pack("=16sH22x", name.encode(), flags))
sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
seen = "nothing"
for _ in range(40):
    sender.sendto(b"hello", (to, 9))  # (an ARP request first, behind the bridge)
    if not select.select([fd], [], [], 0.25)[0]:
        continue
    data = os.read(fd, 65536)[skip:]
    if want == "arp" and data[12:14] == b"\x08\x06" and data[38:42] == bytes([10, 90, 0, 2]):
        seen = "arp"
        break
    if want == "ip" and data[:1] == b"\x45" and data[16:20] == bytes([10, 91, 0, 2]):
        seen = "ip"
        break
print(seen)
"""
IFF_TUN, IFF_TAP, IFF_NO_PI, IFF_VNET_HDR = 0x1, 0x2, 0x1000, 0x4000
VNET_HDR_LEN = 10  # struct virtio_net_hdr, the default TUNSETVNETHDRSZ


def write(tmp_path: Path, vnet: str) -> str:
    path = tmp_path / "taps.yaml"
    path.write_text(TOPOLOGY.replace("VNET", vnet))
    return str(path)


def ok(host, *args: str) -> str:
    result = host.netdecl(*args)
    assert result.returncode == 0, f"{args}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def link(host, name: str) -> dict[str, Any]:
    (found,) = host.ip_json("-d", "link", "show", "dev", name)
    return found


def attach(host, *args: str | int) -> str:
    result = host.run([sys.executable, "-c", ATTACH, *map(str, args)])
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_taps_and_tuns_are_made_attached_to_replaced_and_removed(host, tmp_path: Path):
    before = host.snapshot()
    path = write(tmp_path, "true")
    ok(host, "apply", path)

    vm0, vpn0 = link(host, "vm0"), link(host, "vpn0")
    data = vm0["linkinfo"]["info_data"]
    assert vm0["linkinfo"]["info_kind"] == "tun" and data["type"] == "tap", vm0
    assert (data["user"], data["group"], data["vnet_hdr"], data["pi"], data["persist"]) == (
        4242, 4343, True, False, True), data
    assert vm0["master"] == "br0" and vm0.get("ifalias") == "netdecl:taps"
    assert vpn0["linkinfo"]["info_data"]["type"] == "tun", vpn0
    assert host.netdecl("plan", "--detailed-exitcode", path).returncode == 0  # no drift

    # traffic: the ARP request for a VM behind the bridge reaches the program on the tap; a
    # packet routed into the tun reaches the program on the tun
    assert attach(host, "vm0", IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, VNET_HDR_LEN, "10.90.0.2",
                  "arp") == "arp"
    assert attach(host, "vpn0", IFF_TUN | IFF_NO_PI, 0, "10.91.0.2", "ip") == "ip"

    # the kernel fixes the header when the device is made: a new one
    path = write(tmp_path, "false")
    plan = host.netdecl("plan", "--detailed-exitcode", path)
    assert plan.returncode == 2 and "-/+ link vm0" in plan.stdout, plan.stdout
    assert "vpn0" not in plan.stdout
    ok(host, "apply", path)
    again = link(host, "vm0")
    assert again["ifindex"] != vm0["ifindex"] and again["master"] == "br0"
    assert again["linkinfo"]["info_data"]["vnet_hdr"] is False

    ok(host, "destroy", path)
    assert host.snapshot() == before
