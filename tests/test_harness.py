"""The hermetic host itself: traffic between namespaces, snapshots, and - above all - that the
real machine is never touched and everything vanishes even when a test fails."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness import HermeticHost, real_host_state

HARNESS_DIR = Path(__file__).resolve().parent


def gone(pid: int, timeout: float = 5.0) -> bool:
    """True once `pid` no longer exists (or is a zombie nobody reaped yet)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def make_pair(host: HermeticHost) -> None:
    """Namespaces a (10.0.0.1) and b (10.0.0.2) joined by a veth pair."""
    for ns in ("a", "b"):
        host.run(["ip", "netns", "add", ns])
        host.run(["ip", "link", "set", "lo", "up"], ns=ns)
    host.run(["ip", "link", "add", "va", "netns", "a", "type", "veth",
              "peer", "name", "vb", "netns", "b"])
    host.run(["ip", "addr", "add", "10.0.0.1/24", "dev", "va"], ns="a")
    host.run(["ip", "addr", "add", "10.0.0.2/24", "dev", "vb"], ns="b")
    host.run(["ip", "link", "set", "va", "up"], ns="a")
    host.run(["ip", "link", "set", "vb", "up"], ns="b")


def test_traffic_between_namespaces_stays_inside(host: HermeticHost) -> None:
    before = real_host_state()
    make_pair(host)
    assert host.netns_list() == ["a", "b"]

    server = host.start_server("a", 8080)
    result = host.http_get("b", "10.0.0.1", 8080)
    assert result.ok, result.error
    assert "ns=a" in result.body and "client=10.0.0.2" in result.body
    assert server.seen_sources() == ["10.0.0.2"]

    udp = host.start_server("b", 5353, proto="udp")
    assert host.udp_request("a", "10.0.0.2", 5353).ok
    assert udp.seen_sources() == ["10.0.0.1"]

    assert host.ping("b", "10.0.0.1")
    assert not host.ping("b", "10.0.0.99", timeout=0.3)
    # Nothing listens on 8081: a clean failure, not an exception.
    refused = host.http_get("b", "10.0.0.1", 8081, timeout=2)
    assert not refused.ok and refused.error

    # The root of the hermetic host is a fresh namespace, not the real one.
    assert [link["ifname"] for link in host.ip_json("link")] == ["lo"]
    assert host.run(["ls", "/sys/class/net"]).stdout.split() == ["lo"]
    assert real_host_state() == before


def test_root_of_hermetic_host_starts_empty(host: HermeticHost) -> None:
    assert host.netns_list() == []
    assert host.run(["ls", "-A", "/var/lib/netdecl", "/run/netdecl", "/run/netns"]).stdout \
        .split() == ["/run/netdecl:", "/run/netns:", "/var/lib/netdecl:"]
    if shutil.which("nft"):
        assert [item for item in host.nft_json()["nftables"] if "metainfo" not in item] == []
    link = host.ip_json("link", "show", "lo")[0]
    assert "UP" in link["flags"]


def test_snapshot_is_stable_and_sees_changes(host: HermeticHost) -> None:
    make_pair(host)
    first = host.snapshot()
    assert host.snapshot() == first
    assert set(first) == {"", "a", "b"}
    va = next(link for link in first["a"]["links"] if link["ifname"] == "va")
    assert va["kind"] == "veth" and va["peer"] == "b/vb" and va["up"]

    host.run(["ip", "route", "add", "192.0.2.0/24", "via", "10.0.0.2"], ns="a")
    second = host.snapshot()
    assert second != first
    assert second["b"] == first["b"]
    assert any(r.get("dst") == "192.0.2.0/24" for r in second["a"]["routes"])

    host.write_sysctl("net.ipv4.ip_forward", 1, ns="b")
    assert host.sysctl("net.ipv4.ip_forward", ns="b") == "1"
    assert host.sysctl("net.ipv4.ip_forward") == "0"  # per namespace
    assert host.snapshot()["b"]["sysctl"]["net.ipv4.ip_forward"] == "1"

    if shutil.which("nft"):
        host.run(["nft", "add", "table", "inet", "t"], ns="a")
        host.run(["nft", "add", "chain", "inet", "t", "c",
                  "{ type filter hook input priority 0; }"], ns="a")
        host.run(["nft", "add", "rule", "inet", "t", "c", "tcp", "dport", "22", "accept"],
                 ns="a")
        nft = host.snapshot()["a"]["nft"]
        assert [next(iter(item)) for item in nft] == ["table", "chain", "rule"]
        assert "handle" not in repr(nft)


def test_snapshot_options_drop_volatile_identity(host: HermeticHost) -> None:
    make_pair(host)
    snap = host.snapshot(link_local=False, macs=False)
    assert "fe80" not in repr(snap)
    assert all("address" not in link for ns in snap.values() for link in ns["links"])


def test_run_failure_reports_everything(host: HermeticHost) -> None:
    with pytest.raises(AssertionError) as info:
        host.run(["ip", "link", "show", "does-not-exist"])
    text = str(info.value)
    assert "does-not-exist" in text and "rc=1" in text and "stderr" in text
    assert host.run(["false"], check=False).returncode == 1
    # Commands run in the caller's directory (nsenter --mount alone would reset it to /).
    assert host.run(["pwd"]).stdout.strip() == str(host.cwd)


def test_netdecl_runs_this_checkout(host: HermeticHost) -> None:
    if not (Path(__file__).resolve().parent.parent / "netdecl" / "__main__.py").exists():
        pytest.skip("netdecl/__main__.py not written yet")
    result = host.netdecl("--help")
    assert result.returncode == 0, result.stderr


def test_cleanup_after_failing_body() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    before = real_host_state()
    with pytest.raises(RuntimeError, match="boom"), HermeticHost() as host:
        holder = host.pid
        make_pair(host)
        server = host.start_server("a", 8080)
        raise RuntimeError("boom")
    assert gone(holder), "holder still running after a failing test body"
    assert gone(server.proc.pid), "test server still running"
    assert real_host_state() == before


def test_holder_dies_with_killed_test_process() -> None:
    """PDEATHSIG: a test process killed outright (no __exit__, no atexit) takes the holder
    with it."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    script = (
        "import os, signal;"
        "from harness import HermeticHost;"
        "h = HermeticHost().start(); print(h.pid, flush=True);"
        "os.kill(os.getpid(), signal.SIGKILL)"
    )
    # `python -c` imports from its working directory: run it in the harness's
    proc = subprocess.run([sys.executable, "-c", script], cwd=HARNESS_DIR,
                          capture_output=True, text=True, timeout=30)
    holder = int(proc.stdout.split()[0])
    assert gone(holder)


def test_stop_kills_processes_left_inside() -> None:
    """A daemon a test left behind would keep its namespace (and links) alive: stop() kills
    whatever still runs in the host's namespaces."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    spawn = ("import subprocess, sys;"
             "p = subprocess.Popen(['sleep', '1000'], start_new_session=True, "
             "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); print(p.pid)")
    with HermeticHost() as host:
        host.run(["ip", "netns", "add", "d"])
        in_root = int(host.run([sys.executable, "-c", spawn]).stdout)
        in_ns = int(host.run([sys.executable, "-c", spawn], ns="d").stdout)
        assert not gone(in_root, timeout=0.2) and not gone(in_ns, timeout=0.2)
    assert gone(in_root) and gone(in_ns)
