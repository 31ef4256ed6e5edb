"""NAT through the whole pipeline on topologies/docker-nat.yaml, proven with real traffic.

Each test gets its own hermetic host; traffic flows only between namespaces it created.
"""

from __future__ import annotations

import copy
import os
import shutil

NAT = "topologies/docker-nat.yaml"
TABLE = "netdecl-docker-nat"


def apply_ok(host, path: str = NAT) -> str:
    result = host.netdecl("apply", path)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    return result.stdout


def tables(ruleset: dict) -> list[tuple[str, str]]:
    return sorted((e["table"]["family"], e["table"]["name"])
                  for e in ruleset["nftables"] if "table" in e)


def without_handles(ruleset: dict) -> list:
    out = []
    for entry in ruleset["nftables"]:
        if "metainfo" in entry:
            continue
        entry = copy.deepcopy(entry)
        for body in entry.values():
            if isinstance(body, dict):
                body.pop("handle", None)
        out.append(entry)
    return out


def foreign_entries(ruleset: dict) -> list:
    """Everything in the ruleset that is not netdecl's table."""
    return [e for e in without_handles(ruleset)
            if next(iter(e.values())).get("table", next(iter(e.values())).get("name")) != TABLE]


def test_masquerade_bridge_and_port_forwards_from_every_direction(host):
    apply_ok(host)
    assert ("ip", TABLE) in tables(host.nft_json())
    ext_server = host.start_server("ext", 80)
    web = host.start_server("nginx-1", 80)

    # outbound: the other host sees the host's uplink address (masquerade)
    result = host.http_get("nginx-1", "10.168.0.3", 80)
    assert result.ok, result.error
    assert ext_server.seen_sources() == ["10.168.0.1"]

    # container to container on the bridge: not masqueraded
    assert host.http_get("nginx-2", "172.17.0.2", 80).ok
    assert web.seen_sources()[-1] == "172.17.0.3"

    # port forward from the other host
    result = host.http_get("ext", "10.168.0.1", 8080)
    assert result.ok and "ns=nginx-1" in result.body, result.error
    assert web.seen_sources()[-1] == "10.168.0.3"

    # from another container on the bridge, to the host's address
    result = host.http_get("nginx-2", "10.168.0.1", 8080)
    assert result.ok and "ns=nginx-1" in result.body, result.error

    # hairpin: the target container reaches its own published port through the host
    result = host.http_get("nginx-1", "10.168.0.1", 8080)
    assert result.ok and "ns=nginx-1" in result.body, result.error

    # from the host itself: its own address, and loopback (route_localnet)
    for address in ("10.168.0.1", "127.0.0.1"):
        result = host.http_get(None, address, 8080)
        assert result.ok and "ns=nginx-1" in result.body, (address, result.error)

    plan = host.netdecl("plan", "--detailed-exitcode", NAT)
    assert plan.returncode == 0, plan.stdout + plan.stderr


def test_flushed_table_is_drift_that_apply_repairs(host):
    apply_ok(host)
    host.run(["nft", "flush", "table", "ip", TABLE])
    plan = host.netdecl("plan", "--detailed-exitcode", NAT)
    assert plan.returncode == 2, plan.stdout + plan.stderr
    assert "~ nat table in root" in plan.stdout
    assert "+ masquerade source=172.17.0.0/16 not_out=docker0" in plan.stdout
    assert "+ dnat proto=tcp port=8080 to=172.17.0.2:80" in plan.stdout
    apply_ok(host)
    assert host.netdecl("plan", "--detailed-exitcode", NAT).returncode == 0
    server = host.start_server("ext", 80)
    assert host.http_get("nginx-1", "10.168.0.3", 80).ok
    assert server.seen_sources() == ["10.168.0.1"]


def test_hand_edited_rule_is_drift(host):
    apply_ok(host)
    ruleset = host.nft_json()
    handles = [e["rule"]["handle"] for e in ruleset["nftables"]
               if "rule" in e and e["rule"]["table"] == TABLE
               and e["rule"]["chain"] == "postrouting"]
    assert handles
    host.run(["nft", "delete", "rule", "ip", TABLE, "postrouting", "handle", str(handles[0])])
    plan = host.netdecl("plan", "--detailed-exitcode", NAT)
    assert plan.returncode == 2, plan.stdout + plan.stderr
    apply_ok(host)
    assert host.netdecl("plan", "--detailed-exitcode", NAT).returncode == 0


def test_foreign_tables_are_never_touched(host):
    host.run(["nft", "-f", "-"], input=(
        "table ip nat {\n"
        "  chain POSTROUTING { type nat hook postrouting priority srcnat; policy accept;\n"
        "    ip saddr 192.168.99.0/24 oifname \"eth9\" masquerade\n  }\n}\n"
        "table inet filter {\n"
        "  chain input { type filter hook input priority filter; policy accept;\n"
        "    tcp dport 22 counter accept\n  }\n}\n"))
    before = without_handles(host.nft_json())
    apply_ok(host)
    during = host.nft_json()
    assert ("ip", TABLE) in tables(during)
    assert foreign_entries(during) == before
    assert host.netdecl("destroy", NAT).returncode == 0
    assert without_handles(host.nft_json()) == before


def test_destroy_leaves_the_ruleset_exactly_as_it_was(host):
    before_snapshot = host.snapshot()
    before = host.nft_json()
    apply_ok(host)
    assert host.netdecl("destroy", NAT).returncode == 0
    assert without_handles(host.nft_json()) == without_handles(before)
    assert host.snapshot() == before_snapshot


def test_nat_without_nft_fails_in_plan_with_one_line(host, tmp_path):
    # a PATH with only what the harness itself needs, without nft: the plan must say what to
    # install, in one line, and exit 1
    for tool in ("nsenter", "ip"):
        (tmp_path / tool).symlink_to(shutil.which(tool))
    # netdecl also looks in the sbin directories (cron's PATH lacks them): hide nft there too
    for sbin in ("/usr/local/sbin/nft", "/usr/sbin/nft", "/sbin/nft"):
        if os.path.exists(sbin):
            host.run(["mount", "--bind", "/dev/null", sbin])
    result = host.netdecl("plan", NAT, env={"PATH": str(tmp_path)})
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "nftables" in lines[0], result.stderr


def test_plan_notes_ipv6_nat_while_the_kernel_does_not_forward_ipv6(host, tmp_path):
    # docker-networks.yaml masquerades IPv6 too; without its IPv6 forwarding switch, the plan
    # says what the kernel has (the note reads the live sysctl), and stops once it is on
    text = open("topologies/docker-networks.yaml").read()
    assert "  net.ipv6.conf.all.forwarding: 1\n" in text
    path = tmp_path / "no-v6-forwarding.yaml"
    path.write_text(text.replace("  net.ipv6.conf.all.forwarding: 1\n", ""))
    note = "note: nat in root: net.ipv6.conf.all.forwarding is 0"
    assert note in host.netdecl("plan", str(path)).stdout
    host.run(["sysctl", "-w", "net.ipv6.conf.all.forwarding=1"])
    assert host.run(["sysctl", "-n", "net.ipv6.conf.all.forwarding"]).stdout.strip() == "1"
    result = host.netdecl("plan", str(path))
    assert result.returncode == 0, result.stderr
    assert "net.ipv6.conf.all.forwarding is" not in result.stdout
    assert "net.ipv4.ip_forward: value 0 -> 1" in result.stdout  # the IPv4 half is declared
