"""Sysctls that govern links and addresses are in force before those are made.

Docker writes every container of an IPv6 network with `net.ipv6.conf.all.disable_ipv6: 1`
(every new link starts without IPv6) and `net.ipv6.conf.eth0.disable_ipv6: 0` (but eth0 has
it). The kernel honours that only in its own order: `all` before eth0 is made (set after, it
turns IPv6 off on eth0 too and drops its addresses), `eth0` after eth0 exists and before its
address is added. Proven with HTTP over IPv6 from the bridge's host into c1, and with
/proc/sys: eth0 and a second link of c1 that the file leaves alone.
"""

from __future__ import annotations

from pathlib import Path

TOPOLOGY = """\
version: 1
name: v6only
namespaces:
  c1:
    sysctls:
      net.ipv6.conf.all.disable_ipv6: 1
      net.ipv6.conf.eth0.disable_ipv6: 0
links:
  - name: br6
    kind: bridge
    addresses: ["fd00:18::1/64"]
  - name: veth-c1
    kind: veth
    master: br6
    peer: {name: eth0, namespace: c1, addresses: ["fd00:18::2/64"]}
  - name: veth-x
    kind: veth
    master: br6
    peer: {name: eth1, namespace: c1}
"""


def test_namespace_sysctls_precede_links_and_link_sysctls_precede_addresses(
        host, tmp_path: Path):
    path = tmp_path / "v6only.yaml"
    path.write_text(TOPOLOGY)
    result = host.netdecl("apply", str(path))
    assert result.returncode == 0, result.stdout + result.stderr

    # the independent eye: /proc/sys and `ip -j addr` in c1
    assert host.sysctl("net.ipv6.conf.all.disable_ipv6", ns="c1") == "1"
    assert host.sysctl("net.ipv6.conf.eth0.disable_ipv6", ns="c1") == "0"
    assert host.sysctl("net.ipv6.conf.eth1.disable_ipv6", ns="c1") == "1"  # made after `all`
    (eth0,) = host.ip_json("addr", "show", "dev", "eth0", ns="c1")
    assert "fd00:18::2" in {a["local"] for a in eth0["addr_info"]}

    server = host.start_server("c1", 80, address="fd00:18::2")
    answer = host.http_get(None, "fd00:18::2", 80)
    assert answer.ok, answer.error
    assert "ns=c1 client=fd00:18::1" in answer.body
    server.stop()

    again = host.netdecl("plan", "--detailed-exitcode", str(path))
    assert again.returncode == 0, again.stdout + again.stderr


def test_turning_ipv6_off_on_a_running_namespace_adds_the_kept_addresses_again(
        host, tmp_path: Path):
    """The same file applied to a c1 that already runs with IPv6 on: setting `all` drops
    eth0's address (and its routes) in the kernel, so the plan adds it again after eth0's own
    sysctl turned IPv6 back on, and the route through it."""
    sysctls = ("    sysctls:\n      net.ipv6.conf.all.disable_ipv6: 1\n"
               "      net.ipv6.conf.eth0.disable_ipv6: 0\n")
    route = 'routes:\n  - {namespace: c1, to: "fd00:99::/64", via: "fd00:18::1"}\n'
    without = tmp_path / "before.yaml"
    without.write_text(TOPOLOGY.replace("  c1:\n" + sysctls, "  c1: {}\n") + route)
    host.netdecl("apply", str(without), check=True)
    assert host.sysctl("net.ipv6.conf.all.disable_ipv6", ns="c1") == "0"

    with_sysctls = tmp_path / "after.yaml"
    with_sysctls.write_text(TOPOLOGY + route)
    plan = host.netdecl("plan", str(with_sysctls))
    assert "re-added" in plan.stdout, plan.stdout
    result = host.netdecl("apply", str(with_sysctls))
    assert result.returncode == 0, result.stdout + result.stderr
    assert host.sysctl("net.ipv6.conf.eth1.disable_ipv6", ns="c1") == "1"
    routes = host.ip_json("-6", "route", "show", "fd00:99::/64", ns="c1")
    assert [r["gateway"] for r in routes] == ["fd00:18::1"]
    server = host.start_server("c1", 80, address="fd00:18::2")
    answer = host.http_get(None, "fd00:18::2", 80)
    assert answer.ok, answer.error
    server.stop()
    again = host.netdecl("plan", "--detailed-exitcode", str(with_sysctls))
    assert again.returncode == 0, again.stdout + again.stderr


def test_eth0_made_again_gets_its_own_sysctl_again(host, tmp_path: Path):
    """A pair made again (its other end renamed) gives c1 a new eth0, which starts with the
    namespace's default (IPv6 off): eth0's own sysctl is written again before its address,
    though it read 0 on the old eth0."""
    path = tmp_path / "v6only.yaml"
    path.write_text(TOPOLOGY)
    host.netdecl("apply", str(path), check=True)
    path.write_text(TOPOLOGY.replace("name: veth-c1", "name: veth-c1b"))
    plan = host.netdecl("plan", str(path)).stdout
    assert "-/+ link veth-c1b <-> c1/eth0" in plan and \
        "sysctl net.ipv6.conf.eth0.disable_ipv6 in c1" in plan, plan
    result = host.netdecl("apply", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert host.sysctl("net.ipv6.conf.eth0.disable_ipv6", ns="c1") == "0"
    server = host.start_server("c1", 80, address="fd00:18::2")
    answer = host.http_get(None, "fd00:18::2", 80)
    assert answer.ok, answer.error
    server.stop()
