"""Ownership by identity (issue 12, item 1), on the kernel: nothing foreign is ever adopted,
changed or deleted, whatever its name or mark.

Races are made deterministic with the NETDECL_TEST_PAUSE_BEFORE hook: apply waits before an
action until the test, having created the foreign object, writes a line to a FIFO. Foreign
objects are checked with `ip -j` and `nft -j` (same ifindex, address, ports, handle).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from harness import REPO_ROOT, STATE_DIR
from test_rollback import BRIDGE, plan_actions, popen_netdecl, state_files

SMALL = """version: 1
name: small
namespaces:
  s0: {}
  s1: {}
links:
  - name: sbr0
    kind: bridge
    addresses: [10.61.0.1/24]
  - name: sv0
    kind: veth
    master: sbr0
    peer: {name: eth0, namespace: s0, addresses: [10.61.0.2/24]}
  - name: sv1
    kind: veth
    master: sbr0
    peer: {name: eth0, namespace: s1, addresses: [10.61.0.3/24]}
"""


# -- helpers -------------------------------------------------------------------------------------

def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def action_number(host, path: str, op: str, obj: str) -> int:
    """1-based position of the action ``op obj`` in the plan for ``path``."""
    for number, action in enumerate(plan_actions(host, path), start=1):
        if action["op"] == op and action["object"] == obj:
            return number
    raise AssertionError(f"no {op} {obj} in the plan of {path}")


class Paused:
    """netdecl COMMAND running in the host, held just before its N-th action."""

    def __init__(self, host, tmp_path: Path, before: int, *args: str):
        self.fifo = tmp_path / f"pause-{before}"
        os.mkfifo(self.fifo)
        self.proc = popen_netdecl(host, *args, env={
            "NETDECL_TEST_PAUSE_BEFORE": str(before), "NETDECL_TEST_PAUSE_FIFO": str(self.fifo)})
        # netdecl opens the FIFO for reading only when it reaches the pause: until then a
        # non-blocking open for writing fails with ENXIO
        deadline = time.monotonic() + 60
        while True:
            try:
                self.writer = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError:
                assert self.proc.poll() is None, f"netdecl ended early: {self.proc.communicate()}"
                assert time.monotonic() < deadline, "netdecl never reached the pause"
                time.sleep(0.01)

    def resume(self) -> tuple[int, str, str]:
        os.write(self.writer, b"go\n")
        os.close(self.writer)
        out, err = self.proc.communicate(timeout=120)
        return self.proc.returncode, out, err

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.communicate(timeout=30)
        os.close(self.writer)


def link(host, name: str, ns: str | None = None) -> dict[str, Any] | None:
    """What `ip -j -d addr` says about a link: ifindex, MAC, master, alias, addresses."""
    for entry in host.ip_json("-d", "addr", "show", ns=ns):
        if entry["ifname"] == name:
            return {"ifindex": entry["ifindex"], "mac": entry.get("address"),
                    "master": entry.get("master"), "alias": entry.get("ifalias"),
                    "kind": entry.get("linkinfo", {}).get("info_kind"),
                    "addresses": sorted(f"{a['local']}/{a['prefixlen']}"
                                        for a in entry.get("addr_info", [])
                                        if a.get("family") == "inet")}
    return None


def netdecl_links(host) -> list[str]:
    """Links anywhere on the host that carry a netdecl mark."""
    found = []
    for ns in [None, *host.netns_list()]:
        found += [f"{ns or ''}/{entry['ifname']}" for entry in host.ip_json("link", ns=ns)
                  if str(entry.get("ifalias", "")).startswith("netdecl:")]
    return found


def nft_table(host, name: str) -> dict[str, Any] | None:
    """The table ``ip NAME`` of the root namespace: its handle and everything in it."""
    proc = host.run(["nft", "-j", "list", "table", "ip", name], check=False)
    if proc.returncode != 0:
        return None
    objects = [o for o in json.loads(proc.stdout)["nftables"] if "metainfo" not in o]
    return {"handle": objects[0]["table"]["handle"], "objects": objects}


# -- races ---------------------------------------------------------------------------------------

def test_a_bridge_someone_creates_just_before_ours_survives_the_rollback(host, tmp_path):
    # Before: the EEXIST of netdecl's create made the rollback take the foreign bridge for its
    # own half-made one (any unmarked link of that name and kind was "ours") and delete it.
    path = write(tmp_path, "small.yaml", SMALL)
    number = action_number(host, path, "create", "link sbr0")
    paused = Paused(host, tmp_path, number, "apply", path)
    host.run(["ip", "link", "add", "sbr0", "type", "bridge"])
    host.run(["ip", "addr", "add", "10.62.0.1/24", "dev", "sbr0"])
    host.run(["ip", "link", "add", "fport", "type", "veth", "peer", "name", "fpeer"])
    host.run(["ip", "link", "set", "fport", "master", "sbr0"])
    theirs = link(host, "sbr0"), link(host, "fport"), link(host, "fpeer")
    rc, _, err = paused.resume()
    assert rc == 1, err
    assert "create link sbr0" in err and "File exists" in err and "rolled back" in err
    assert (link(host, "sbr0"), link(host, "fport"), link(host, "fpeer")) == theirs
    assert theirs[0]["addresses"] == ["10.62.0.1/24"] and theirs[1]["master"] == "sbr0"
    assert host.netns_list() == [] and netdecl_links(host) == []
    assert state_files(host) == []
    assert host.run(["ls", "-A", "/run/netns"]).stdout.split() == []


def test_a_veth_end_someone_creates_in_a_namespace_survives_the_rollback(host, tmp_path):
    assert host.netdecl("apply", BRIDGE).returncode == 0
    before = host.snapshot()
    text = (REPO_ROOT / BRIDGE).read_text().replace("routes:", """  - name: veth-n3
    kind: veth
    master: docker0
    peer: {name: eth1, namespace: nginx-1, addresses: [172.17.0.9/16]}

routes:""")
    path = write(tmp_path, "more.yaml", text)
    number = action_number(host, path, "create", "link veth-n3")
    paused = Paused(host, tmp_path, number, "apply", path)
    host.run(["ip", "-n", "nginx-1", "link", "add", "eth1", "type", "veth", "peer", "name",
              "theirs"])
    host.run(["ip", "-n", "nginx-1", "addr", "add", "192.0.2.7/24", "dev", "eth1"])
    theirs = link(host, "eth1", "nginx-1"), link(host, "theirs", "nginx-1")
    rc, _, err = paused.resume()
    assert rc == 1, err  # not 4: the host is as before, plus what someone else made
    assert "File exists" in err and "rolled back" in err
    assert (link(host, "eth1", "nginx-1"), link(host, "theirs", "nginx-1")) == theirs
    assert link(host, "veth-n3") is None
    host.run(["ip", "-n", "nginx-1", "link", "del", "eth1"])
    assert host.snapshot() == before
    assert host.netdecl("plan", "--detailed-exitcode", BRIDGE).returncode == 0


# -- namespaces ----------------------------------------------------------------------------------

def test_a_namespace_deleted_and_made_again_by_someone_else_is_not_reused(host, tmp_path):
    # Before: the record named nginx-2, so the new namespace was adopted, filled and deleted.
    assert host.netdecl("apply", BRIDGE).returncode == 0
    host.run(["ip", "netns", "del", "nginx-2"])
    host.run(["ip", "netns", "add", "nginx-2"])
    host.run(["ip", "-n", "nginx-2", "link", "add", "mine", "type", "bridge"])
    theirs = host.ip_json("-d", "link", ns="nginx-2")
    result = host.netdecl("plan", BRIDGE)
    assert result.returncode == 1
    assert "namespace nginx-2 already exists and was not created by topology docker-bridge" in \
        result.stdout + result.stderr
    result = host.netdecl("apply", BRIDGE)
    assert result.returncode == 1 and "apply refused: nothing was changed" in result.stderr
    assert host.ip_json("-d", "link", ns="nginx-2") == theirs
    result = host.netdecl("destroy", BRIDGE)
    assert result.returncode == 0, result.stderr
    assert host.netns_list() == ["nginx-2"]
    assert host.ip_json("-d", "link", ns="nginx-2") == theirs
    assert state_files(host) == []


def test_a_destroy_killed_after_deleting_a_namespace_never_touches_its_successor(host,
                                                                                 tmp_path):
    # Before: the journal's claims named s0, so the foreign s0 was adopted, filled by the
    # recovery and deleted by the destroy.
    path = write(tmp_path, "small.yaml", SMALL)
    assert host.netdecl("apply", path).returncode == 0
    empty = write(tmp_path, "empty.yaml", "version: 1\nname: small\n")
    number = action_number(host, empty, "delete", "namespace s0")
    paused = Paused(host, tmp_path, number + 1, "destroy", path)
    paused.kill()
    assert "s0" not in host.netns_list()
    host.run(["ip", "netns", "add", "s0"])
    host.run(["ip", "-n", "s0", "link", "add", "mine", "type", "bridge"])
    theirs = host.ip_json("-d", "addr", ns="s0")
    result = host.netdecl("destroy", path)
    # the killed destroy cannot be rolled back: its s0 is gone and someone else's took the
    # name; that is said (exit 4, the journal kept) and the foreign s0 is left exactly alone
    assert result.returncode == 4, result.stderr
    assert "namespace s0" in result.stderr
    assert host.ip_json("-d", "addr", ns="s0") == theirs
    # once its owner removes it, the rollback completes and the destroy goes through
    host.run(["ip", "netns", "del", "s0"])
    assert host.netdecl("rollback").returncode == 0
    assert host.netdecl("destroy", path).returncode == 0
    assert host.netns_list() == [] and netdecl_links(host) == [] and state_files(host) == []


def test_a_claim_does_not_outlive_its_namespace(host, tmp_path):
    # Before: destroy exited 0 but the record kept s0; a later destroy deleted the s0 someone
    # else made in the meantime.
    path = write(tmp_path, "small.yaml", SMALL)
    assert host.netdecl("apply", path).returncode == 0
    host.run(["ip", "netns", "del", "s0"])
    assert host.netdecl("destroy", path).returncode == 0
    assert state_files(host) == []  # nothing is claimed any more
    host.run(["ip", "netns", "add", "s0"])
    host.run(["ip", "-n", "s0", "link", "add", "mine", "type", "bridge"])
    theirs = host.ip_json("-d", "addr", ns="s0")
    assert host.netdecl("destroy", path).returncode == 0
    assert host.netns_list() == ["s0"]
    assert host.ip_json("-d", "addr", ns="s0") == theirs


def test_a_plain_file_at_a_namespace_path_is_never_removed(host, tmp_path):
    # Before: the failed create was rolled back by removing /run/netns/s0, whatever it was.
    host.run(["sh", "-c", "echo theirs > /run/netns/s0"])
    path = write(tmp_path, "small.yaml", SMALL)
    result = host.netdecl("apply", path)
    assert result.returncode == 1, result.stderr
    assert "create namespace s0" in result.stderr and "File exists" in result.stderr
    assert host.run(["cat", "/run/netns/s0"]).stdout == "theirs\n"
    assert host.run(["ls", "-A", "/run/netns"]).stdout.split() == ["s0"]
    assert state_files(host) == []


# -- marks and tables ----------------------------------------------------------------------------

def test_a_foreign_link_with_a_forged_mark_is_not_pruned(host, tmp_path):
    # Before: a link carrying `netdecl:docker-bridge` was taken for the topology's and pruned.
    assert host.netdecl("apply", BRIDGE).returncode == 0
    host.run(["ip", "link", "add", "forged0", "type", "bridge"])
    host.run(["ip", "link", "set", "forged0", "alias", "netdecl:docker-bridge"])
    host.run(["ip", "addr", "add", "192.0.2.9/24", "dev", "forged0"])
    theirs = link(host, "forged0")
    assert host.netdecl("plan", "--detailed-exitcode", BRIDGE).returncode == 0
    assert host.netdecl("apply", BRIDGE).returncode == 0
    assert host.netdecl("destroy", BRIDGE).returncode == 0
    assert link(host, "forged0") == theirs
    assert host.netns_list() == [] and netdecl_links(host) == ["/forged0"]


def test_a_forged_mark_at_a_declared_name_is_a_conflict(host, tmp_path):
    assert host.netdecl("apply", BRIDGE).returncode == 0
    host.run(["ip", "link", "del", "docker0"])
    host.run(["ip", "link", "add", "docker0", "type", "bridge"])
    host.run(["ip", "link", "set", "docker0", "alias", "netdecl:docker-bridge"])
    theirs = link(host, "docker0")
    result = host.netdecl("apply", BRIDGE)
    assert result.returncode == 1
    assert "it carries topology docker-bridge's mark, but it is not the link" in \
        result.stdout + result.stderr
    assert link(host, "docker0") == theirs


def test_a_hand_made_nat_table_of_the_topologys_name_is_not_rewritten(host, tmp_path):
    # Before: the table was read as netdecl's (edited by hand) and replaced.
    nat = """version: 1
name: natty
links:
  - {name: nbr0, kind: bridge, addresses: [10.63.0.1/24]}
nat:
  masquerade:
    - {source: 10.63.0.0/24, not_out: nbr0}
"""
    path = write(tmp_path, "natty.yaml", nat)
    host.run(["nft", "add", "table", "ip", "netdecl-natty"])
    host.run(["nft", "add", "chain", "ip", "netdecl-natty", "theirs"])
    host.run(["nft", "add", "rule", "ip", "netdecl-natty", "theirs", "counter"])
    theirs = nft_table(host, "netdecl-natty")
    result = host.netdecl("apply", path)
    assert result.returncode == 1
    assert "was not made by netdecl for topology natty" in result.stdout + result.stderr
    assert nft_table(host, "netdecl-natty") == theirs
    # and after netdecl made its own: deleted and made again by hand, it is someone else's
    host.run(["nft", "delete", "table", "ip", "netdecl-natty"])
    assert host.netdecl("apply", path).returncode == 0
    host.run(["nft", "delete", "table", "ip", "netdecl-natty"])
    host.run(["nft", "add", "table", "ip", "netdecl-natty"])
    theirs = nft_table(host, "netdecl-natty")
    assert host.netdecl("apply", path).returncode == 1
    assert host.netdecl("destroy", path).returncode == 0
    assert nft_table(host, "netdecl-natty") == theirs


# -- routes --------------------------------------------------------------------------------------

ROUTED = """version: 1
name: {name}
links:
  - {{name: {bridge}, kind: bridge, addresses: [{address}]}}
routes:
  - {{to: 10.99.0.0/24, via: {via}}}
"""


def test_a_route_another_topology_made_at_a_stale_key_is_never_deleted(host, tmp_path):
    # Before: topology a's record kept the key of the route someone removed by hand, and a's
    # destroy deleted the route topology b had made there since (proto 211 and the key).
    a = write(tmp_path, "a.yaml", ROUTED.format(name="a", bridge="abr0",
                                                address="10.98.0.1/24", via="10.98.0.2"))
    b = write(tmp_path, "b.yaml", ROUTED.format(name="b", bridge="bbr0",
                                                address="10.97.0.1/24", via="10.97.0.2"))
    assert host.netdecl("apply", a).returncode == 0
    host.run(["ip", "route", "del", "10.99.0.0/24"])
    assert host.netdecl("apply", b).returncode == 0
    routes_before = host.ip_json("route", "show", "10.99.0.0/24")
    assert [r["gateway"] for r in routes_before] == ["10.97.0.2"]
    assert host.netdecl("destroy", a).returncode == 0
    assert host.ip_json("route", "show", "10.99.0.0/24") == routes_before
    assert host.netdecl("plan", "--detailed-exitcode", b).returncode == 0
    assert host.netdecl("destroy", b).returncode == 0
    assert host.ip_json("route", "show", "10.99.0.0/24") == []
    assert state_files(host) == []


def test_the_record_keeps_identities_and_links_are_never_unmarked(host, tmp_path):
    """The record names each object by what the kernel says it is."""
    path = write(tmp_path, "small.yaml", SMALL)
    assert host.netdecl("apply", path).returncode == 0
    record = json.loads(host.run(["cat", f"{STATE_DIR}/topologies/small.json"]).stdout)
    identities = {tuple(entry[:-1]): entry[-1] for entry in record["identities"]}
    s0 = host.run(["stat", "-L", "-c", "%d:%i", "/run/netns/s0"]).stdout.strip()
    assert identities[("namespace", "s0")] == f"nsfs:{s0}"
    eth0 = link(host, "eth0", "s0")
    assert identities[("link", "s0", "eth0")] == f"nsfs:{s0}/if{eth0['ifindex']}"
    root = host.run(["sh", "-c", "stat -L -c %d:%i /proc/$$/ns/net"]).stdout.strip()
    assert identities[("link", "", "sbr0")] == f"nsfs:{root}/if{link(host, 'sbr0')['ifindex']}"
    # links carry the mark from the request that gave them their name: never unmarked
    assert link(host, "sbr0")["alias"] == link(host, "eth0", "s0")["alias"] == "netdecl:small"



# Runs netdecl's command line with the NLM_F_ECHO flag taken off every request: what a kernel
# older than 6.3, which ignores it on links, answers (an acknowledgement, no description).
WITHOUT_ECHO = r"""
import sys
from netdecl import nlconst
from netdecl.backends import rtnl
call = rtnl.RtnlSocket.call
rtnl.RtnlSocket.call = lambda self, t, flags, body: call(self, t, flags & ~nlconst.NLM_F_ECHO, body)
from netdecl.cli import main
sys.argv = ["netdecl", *sys.argv[1:]]
sys.exit(main())
"""


@pytest.mark.parametrize("echo", [True, False], ids=["echoed", "looked-up"])
def test_links_made_record_the_ifindex_the_kernel_gave_them(host, tmp_path, echo):
    """A link's identity comes from the kernel's echo of the create request, or, from a kernel
    that sends none, from a look-up of its temporary name: the same in both cases, checked
    against `ip -j link` in each namespace."""
    path = write(tmp_path, "small.yaml", SMALL)
    if echo:
        result = host.netdecl("apply", path)
    else:
        result = host.run([sys.executable, "-c", WITHOUT_ECHO, "apply", path], check=False)
    assert result.returncode == 0, result.stderr
    record = json.loads(host.run(["cat", f"{STATE_DIR}/topologies/small.json"]).stdout)
    recorded = {tuple(entry[1:3]): int(entry[-1].rsplit("/if", 1)[1])
                for entry in record["identities"] if entry[0] == "link"}
    live = {}
    for ns in ("", "s0", "s1"):
        for link in host.ip_json("link", "show", ns=ns or None):
            if link["ifname"] != "lo":
                live[(ns, link["ifname"])] = link["ifindex"]
    assert recorded == live
    assert host.netdecl("plan", "--detailed-exitcode", path).returncode == 0
