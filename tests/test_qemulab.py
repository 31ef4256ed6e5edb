"""The qemu lab itself (tests/qemulab.py), on what it exists for: wireguard, which neither this
machine's kernel nor the UML lab has. One boot for the module, everything made by hand with
`ip` and `wg` (netdecl's wireguard kind is tested elsewhere, against this lab):

- a wireguard link, as `ip -j -d link` and `wg show` see it;
- two namespaces joined by a veth (the underlay), a wireguard link in each, keyed with `wg set`:
  before the far side knows the near side's key a ping over the tunnel fails; once both do,
  pings cross, `wg show` counts a handshake and bytes both ways, and a capture on the underlay
  sees only UDP between the endpoints, never the ICMP inside;
- a failing step's exit code and stderr come back, the steps ran in the lab's kernel with the
  test's files; a lab out of time is killed with everything of it, leaving no file behind.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import qemulab
from harness import PING
from kernellab import LabRun, LabTimeout, Step
from qemulab import QemuLab, unavailable

MODULES = ["wireguard", "veth"]


def keypair() -> tuple[str, str]:
    """A fresh wireguard key pair (private, public), made outside the lab by `wg`."""
    private = subprocess.run(["wg", "genkey"], capture_output=True, text=True, check=True,
                             timeout=30).stdout.strip()
    public = subprocess.run(["wg", "pubkey"], input=private, capture_output=True, text=True,
                            check=True, timeout=30).stdout.strip()
    return private, public


KEYS = {}  # name -> (private, public), filled by the run fixture

LINK = r"""set -e
ip link add wg0 type wireguard
wg set wg0 private-key ./one.key listen-port 51000
ip -j -d link show wg0 > "$OUT/link.json"
wg show wg0
"""

# the underlay: a veth between namespaces a (192.0.2.1) and b (192.0.2.2); the tunnel: wga in
# a (10.9.0.1), wgb in b (10.9.0.2). a knows b as its peer; b does not know a yet.
PAIR = r"""set -e
ip netns add a
ip netns add b
ip link add va netns a type veth peer vb netns b
ip -n a addr add 192.0.2.1/24 dev va
ip -n b addr add 192.0.2.2/24 dev vb
ip -n a link add wga type wireguard
ip -n b link add wgb type wireguard
ip netns exec a wg set wga private-key ./a.key listen-port 51820 \
    peer "$(cat b.pub)" endpoint 192.0.2.2:51820 allowed-ips 10.9.0.2/32
ip netns exec b wg set wgb private-key ./b.key listen-port 51820
ip -n a addr add 10.9.0.1/24 dev wga
ip -n b addr add 10.9.0.2/24 dev wgb
for ns in a b; do ip -n $ns link set lo up; done
ip -n a link set va up
ip -n b link set vb up
ip -n a link set wga up
ip -n b link set wgb up
"""

# b refuses a's handshake: a ping over the tunnel gets no answer
REFUSED = r"""ip netns exec a "$PYTHON" ping.py 10.9.0.2 2 2"""

# a capture on the underlay (b's end of the veth) while pings cross both ways; the capture is
# waited for by its own word (tcpdump says "listening on" once it captures), not by a sleep
TRAFFIC = r"""set -e
ip netns exec b wg set wgb peer "$(cat a.pub)" endpoint 192.0.2.1:51820 allowed-ips 10.9.0.1/32
ip netns exec b tcpdump -i vb -n -l -q ip > /tmp/capture 2> /tmp/tcpdump.err &
tcpdump=$!
for _ in $(seq 300); do grep -q "listening on" /tmp/tcpdump.err && break; sleep 0.1; done
grep -q "listening on" /tmp/tcpdump.err
echo "b->a $(ip netns exec b "$PYTHON" ping.py 10.9.0.1 5 2)"
echo "a->b $(ip netns exec a "$PYTHON" ping.py 10.9.0.2 5 2)"
kill -INT $tcpdump
wait $tcpdump || true
"""

SHOW = r"""set -e
ip netns exec a wg show wga dump
ip netns exec b wg show wgb dump
echo ---
ip netns exec a wg show wga
ip -n a -j -d link show wga > "$OUT/wga.json"
"""

CAPTURE = "cat /tmp/capture"  # the lab's /tmp lives as long as the boot


@pytest.fixture(scope="module")
def run() -> LabRun:
    reason = unavailable(MODULES)
    if reason:
        pytest.skip(reason)
    for name in ("one", "a", "b"):
        KEYS[name] = keypair()
    files: dict[str, str | bytes] = {"ping.py": PING}
    for name, (private, public) in KEYS.items():
        files[f"{name}.key"] = private + "\n"
        files[f"{name}.pub"] = public + "\n"
    return QemuLab(MODULES).run([
        Step("kernel", "uname -r; pwd"),
        Step("link", LINK),
        Step("pair", PAIR),
        Step("refused", REFUSED),
        Step("traffic", TRAFFIC),
        Step("show", SHOW),
        Step("capture", CAPTURE),
        Step("fails", "echo partial\necho 'frobnicate: no such thing' >&2\nexit 3"),
    ], files=files)


@pytest.mark.kernel
def test_steps_run_in_the_lab_kernel_and_a_failure_comes_back(run: LabRun) -> None:
    release, cwd = run["kernel"].ok().split()
    assert release == qemulab.kernel_version() != os.uname().release
    assert cwd.endswith("/work") and not os.path.exists(cwd)  # the boot's directory, removed
    failed = run["fails"]
    assert (failed.returncode, failed.stdout, failed.stderr) == (
        3, "partial\n", "frobnicate: no such thing\n")
    with pytest.raises(AssertionError, match="exit code 3(.|\n)*frobnicate: no such thing"):
        failed.ok()


@pytest.mark.kernel
def test_a_wireguard_link_made_by_hand(run: LabRun) -> None:
    out = run["link"].ok()
    link = run["link"].json["link"][0]
    assert (link["ifname"], link["linkinfo"]["info_kind"]) == ("wg0", "wireguard")
    # `wg` reads the key back from the kernel: the public half of what was set
    assert "interface: wg0" in out, out
    assert f"public key: {KEYS['one'][1]}" in out, out
    assert "listening port: 51000" in out, out
    assert KEYS["one"][0] not in out  # wg show hides the private key


@pytest.mark.kernel
def test_a_tunnel_refuses_a_peer_it_does_not_know(run: LabRun) -> None:
    run["pair"].ok()
    assert run["refused"].stdout.strip() == "fail", run["refused"]


@pytest.mark.kernel
def test_pings_cross_a_wireguard_pair_keyed_by_hand(run: LabRun) -> None:
    out = run["traffic"].ok()
    assert out.splitlines() == ["b->a ok", "a->b ok"], out
    dump = run["show"].ok().split("---")[0].splitlines()
    # wg show dump: the interface's line (private, public, port, fwmark), then one per peer
    # (public, preshared, endpoint, allowed ips, latest handshake, rx, tx, keepalive)
    a_peer, b_peer = dump[1].split("\t"), dump[3].split("\t")
    assert dump[0].split("\t")[1] == KEYS["a"][1] and dump[2].split("\t")[1] == KEYS["b"][1]
    assert a_peer[:4] == [KEYS["b"][1], "(none)", "192.0.2.2:51820", "10.9.0.2/32"]
    assert b_peer[:4] == [KEYS["a"][1], "(none)", "192.0.2.1:51820", "10.9.0.1/32"]
    for peer in (a_peer, b_peer):
        handshake, rx, tx = int(peer[4]), int(peer[5]), int(peer[6])
        assert handshake > 0 and rx > 0 and tx > 0, peer
    human = run["show"].stdout.split("---")[1]
    assert "latest handshake:" in human and "transfer:" in human, human
    wga = run["show"].json["wga"][0]
    assert wga["linkinfo"]["info_kind"] == "wireguard" and "UP" in wga["flags"]


@pytest.mark.kernel
def test_the_underlay_carries_only_udp_between_the_endpoints(run: LabRun) -> None:
    capture = run["capture"].ok().splitlines()
    udp = [line for line in capture if re.search(
        r" IP 192\.0\.2\.[12]\.51820 > 192\.0\.2\.[12]\.51820: UDP, length \d+$", line)]
    # the handshake (initiation, response) and the pings' packets, both ways
    assert len(udp) >= 4, capture
    assert any("192.0.2.1.51820 > 192.0.2.2" in line for line in udp), capture
    assert any("192.0.2.2.51820 > 192.0.2.1" in line for line in udp), capture
    # nothing of what the tunnel carries is seen in the clear
    assert not [line for line in capture if "ICMP" in line or "10.9.0." in line], capture


def lab_processes(where: str) -> list[int]:
    """Processes of this machine whose command line names the lab's directory."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if where.encode() in f.read():
                        found.append(int(entry))
            except OSError:
                continue
    return found


@pytest.mark.kernel
def test_a_lab_out_of_time_is_killed_leaving_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    made: list[Path] = []
    prepare = QemuLab._prepare

    def noted(self: QemuLab, lab: Path, *args: object, **kwargs: object
              ) -> tuple[list[str], dict[str, str]]:
        made.append(lab)
        return prepare(self, lab, *args, **kwargs)

    monkeypatch.setattr(QemuLab, "_prepare", noted)
    started = time.monotonic()
    # far too little time for an emulated boot: killed while booting
    with pytest.raises(LabTimeout, match="ran out of time to boot; it was killed"):
        QemuLab(boot_timeout=1.0).run([Step("never", "true")])
    assert time.monotonic() - started < 30
    assert made and lab_processes(str(made[0])) == []
    assert not made[0].exists()


def test_unavailable_says_what_is_missing(monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path) -> None:
    which = shutil.which
    monkeypatch.setattr(qemulab.os, "geteuid", lambda: 1000)
    assert unavailable() == "needs root: the qemu lab runs in a PID namespace of its own"
    monkeypatch.setattr(qemulab.os, "geteuid", lambda: 0)
    monkeypatch.setattr(qemulab.shutil, "which",
                        lambda tool: None if tool == qemulab.QEMU else which(tool))
    assert unavailable(["wireguard"]) == (
        "needs qemu-system-x86_64 (Debian package qemu-system-x86; bash .ci/setup installs it)")
    monkeypatch.setattr(qemulab.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    monkeypatch.setattr(qemulab, "BUSYBOX", tmp_path / "busybox")
    assert unavailable() == (f"needs {tmp_path / 'busybox'} (Debian package busybox-static; "
                             "bash .ci/setup installs it)")
    (tmp_path / "busybox").write_bytes(b"")
    monkeypatch.setattr(qemulab, "CACHE", tmp_path / "cache")
    assert unavailable() == (f"needs Debian's kernel extracted into {tmp_path / 'cache'} "
                             "(bash .ci/setup extracts linux-image-amd64's kernel there)")
    modules = tmp_path / "cache" / "6.1.0-9-amd64" / "lib" / "modules" / "6.1.0-9-amd64"
    modules.mkdir(parents=True)
    (modules.parent.parent.parent / "boot").mkdir()
    (modules.parent.parent.parent / "boot" / "vmlinuz-6.1.0-9-amd64").write_bytes(b"")
    (modules / "modules.dep").write_text(
        "kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio.ko\n"
        "kernel/drivers/virtio/virtio.ko:\nkernel/net/9p/9pnet_virtio.ko:\n"
        "kernel/fs/9p/9p.ko:\n")
    assert unavailable(["wireguard"]) == ("needs kernel module wireguard (not among the "
                                          "modules of the qemu lab kernel 6.1.0-9-amd64)")
    assert unavailable() is None
    assert qemulab._dependencies(modules, ["virtio_pci", "9p"]) == [
        "kernel/drivers/virtio/virtio.ko", "kernel/drivers/virtio/virtio_pci.ko",
        "kernel/fs/9p/9p.ko"]
