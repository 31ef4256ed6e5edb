"""The core path against the real kernel, each test in its own hermetic host.

Checked with netdecl's own plan and, independently, with `ip -j` and real TCP traffic.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

BRIDGE = "topologies/docker-bridge.yaml"


def apply_ok(host, path: str, *extra: str) -> str:
    result = host.netdecl("apply", *extra, path)
    assert result.returncode == 0, f"apply failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def plan_exit(host, path: str) -> tuple[int, str]:
    result = host.netdecl("plan", "--detailed-exitcode", path)
    return result.returncode, result.stdout + result.stderr


def links_by_name(host, ns: str | None = None) -> dict[str, dict]:
    return {link["ifname"]: link for link in host.ip_json("-d", "link", "show", ns=ns)}


def test_apply_from_empty_builds_the_seed_and_serves_http(host):
    out = apply_ok(host, BRIDGE)
    assert "Plan: 10 to add, 1 to change, 0 to destroy." in out
    assert host.netns_list() == ["nginx-1", "nginx-2"]
    root = links_by_name(host)
    assert root["docker0"]["linkinfo"]["info_kind"] == "bridge"
    for port in ("veth-n1", "veth-n2"):
        assert root[port]["master"] == "docker0"
        assert root[port]["linkinfo"]["info_kind"] == "veth"
        assert "UP" in root[port]["flags"]
        assert root[port]["ifalias"] == "netdecl:docker-bridge"
    addrs = {(a["ifname"], i["local"], i["prefixlen"]) for a in host.ip_json("addr")
             for i in a["addr_info"] if i["family"] == "inet"}
    assert ("docker0", "172.17.0.1", 16) in addrs
    for ns, ip in (("nginx-1", "172.17.0.2"), ("nginx-2", "172.17.0.3")):
        inner = links_by_name(host, ns)
        assert inner["lo"]["operstate"] == "UNKNOWN" and "UP" in inner["lo"]["flags"]
        eth0 = host.ip_json("addr", "show", "dev", "eth0", ns=ns)[0]
        assert [i["local"] for i in eth0["addr_info"] if i["family"] == "inet"] == [ip]
        routes = host.ip_json("route", "show", "default", ns=ns)
        assert routes == [{"dst": "default", "gateway": "172.17.0.1", "dev": "eth0",
                           "protocol": "211", "flags": []}] or \
            (routes[0]["gateway"] == "172.17.0.1" and routes[0]["dev"] == "eth0")
    assert host.sysctl("net.ipv4.ip_forward") == "1"

    server = host.start_server("nginx-1", 80)
    result = host.http_get("nginx-2", "172.17.0.2", 80)
    assert result.ok, result.error
    assert "ns=nginx-1" in result.body
    assert server.seen_sources() == ["172.17.0.3"]


def test_second_apply_does_nothing_and_plan_is_empty(host):
    apply_ok(host, BRIDGE)
    before = host.snapshot()
    out = apply_ok(host, BRIDGE)
    assert "No changes." in out
    code, text = plan_exit(host, BRIDGE)
    assert code == 0, text
    assert host.snapshot() == before


def test_drift_is_shown_and_repaired(host):
    apply_ok(host, BRIDGE)
    host.run(["ip", "link", "del", "veth-n1"])
    host.run(["ip", "addr", "add", "10.99.0.1/24", "dev", "docker0"])
    host.run(["ip", "route", "del", "default"], ns="nginx-2")
    code, text = plan_exit(host, BRIDGE)
    assert code == 2, text
    assert "+ link veth-n1 <-> nginx-1/eth0" in text
    assert "- address 10.99.0.1/24 on docker0" in text
    assert "+ route default in nginx-2" in text
    assert "+ address 172.17.0.2/16 on nginx-1/eth0" in text
    apply_ok(host, BRIDGE)
    code, text = plan_exit(host, BRIDGE)
    assert code == 0, text
    addrs = [i["local"] for i in host.ip_json("addr", "show", "dev", "docker0")[0]["addr_info"]
             if i["family"] == "inet"]
    assert addrs == ["172.17.0.1"]
    assert host.ip_json("route", "show", "default", ns="nginx-2")[0]["gateway"] == "172.17.0.1"
    host.start_server("nginx-1", 80)
    assert host.http_get("nginx-2", "172.17.0.2", 80).ok


def test_prune_removes_what_left_the_file(host, tmp_path: Path):
    apply_ok(host, BRIDGE)
    smaller = (Path(host.cwd) / BRIDGE).read_text()
    smaller = smaller.replace("  nginx-2: {}\n", "")
    start = smaller.index("  - name: veth-n2")
    end = smaller.index("routes:")
    smaller = smaller[:start] + "\n" + smaller[end:]
    smaller = smaller[: smaller.index("  - namespace: nginx-2")]
    path = tmp_path / "smaller.yaml"
    path.write_text(smaller)
    out = apply_ok(host, str(path))
    assert "- namespace nginx-2" in out and "- link veth-n2" in out
    assert host.netns_list() == ["nginx-1"]
    assert "veth-n2" not in links_by_name(host)
    code, text = plan_exit(host, str(path))
    assert code == 0, text


def test_ownership_conflict_is_refused_and_nothing_changes(host):
    host.run(["ip", "link", "add", "docker0", "type", "bridge"])
    before = host.snapshot()
    result = host.netdecl("plan", BRIDGE)
    assert result.returncode == 1
    assert "docker0 already exists" in result.stdout
    result = host.netdecl("apply", BRIDGE)
    assert result.returncode == 1
    assert "apply refused: nothing was changed" in result.stderr
    assert host.snapshot() == before


def test_a_refused_destroy_says_destroy_and_changes_nothing(host):
    apply_ok(host, BRIDGE)
    # a link netdecl did not make inside a namespace it owns: deleting the namespace would
    # delete that link too, so destroy must refuse
    host.run(["ip", "-n", "nginx-1", "link", "add", "foreign1", "type", "bridge"])
    before = host.snapshot()
    result = host.netdecl("destroy", BRIDGE)
    assert result.returncode == 1, result.stderr
    assert "destroy refused: nothing was changed" in result.stderr
    assert "apply refused" not in result.stderr
    assert host.snapshot() == before


def test_destroy_returns_to_exactly_the_state_before(host):
    # foreign objects that must survive: a link, a namespace, a route, a changed sysctl
    host.run(["ip", "link", "add", "foreign0", "type", "bridge"])
    host.run(["ip", "link", "set", "foreign0", "up"])
    host.run(["ip", "addr", "add", "192.0.2.1/24", "dev", "foreign0"])
    host.run(["ip", "route", "add", "198.51.100.0/24", "via", "192.0.2.254"])
    host.run(["ip", "netns", "add", "bystander"])
    before = host.snapshot()
    apply_ok(host, BRIDGE)
    assert host.sysctl("net.ipv4.ip_forward") == "1"
    result = host.netdecl("destroy", BRIDGE)
    assert result.returncode == 0, result.stderr
    assert host.snapshot() == before
    assert host.sysctl("net.ipv4.ip_forward") == "0"


TWIN = """\
version: 1
name: twin
namespaces:
  box-a: {}
links:
  - name: br-twin
    kind: bridge
    addresses: [10.50.0.1/24]
  - name: veth-a
    kind: veth
    master: br-twin
    peer: {name: eth0, namespace: box-a, addresses: [10.50.0.2/24]}
routes:
  - {namespace: box-a, to: default, via: 10.50.0.1}
"""


def test_two_topologies_live_side_by_side(host, tmp_path: Path):
    twin = tmp_path / "twin.yaml"
    twin.write_text(TWIN)
    apply_ok(host, BRIDGE)
    apply_ok(host, str(twin))
    assert plan_exit(host, BRIDGE)[0] == 0
    assert plan_exit(host, str(twin))[0] == 0
    assert host.netdecl("destroy", str(twin)).returncode == 0
    assert host.netns_list() == ["nginx-1", "nginx-2"]
    assert "br-twin" not in links_by_name(host)
    assert plan_exit(host, BRIDGE)[0] == 0
    host.start_server("nginx-1", 80)
    assert host.http_get("nginx-2", "172.17.0.2", 80).ok


def test_saved_plan_applies_and_a_stale_one_is_refused(host, tmp_path: Path):
    saved = tmp_path / "plan.json"
    result = host.netdecl("plan", "--out", str(saved), BRIDGE)
    assert result.returncode == 0, result.stderr
    assert json.loads(saved.read_text())["actions"]
    host.run(["ip", "link", "add", "sneaky0", "type", "bridge"])  # the host moves on
    before = host.snapshot()
    result = host.netdecl("apply", str(saved))
    assert result.returncode == 1
    assert "stale" in result.stderr
    assert host.snapshot() == before
    fresh = tmp_path / "fresh.json"
    assert host.netdecl("plan", "--out", str(fresh), BRIDGE).returncode == 0
    apply_ok(host, str(fresh))
    assert plan_exit(host, BRIDGE)[0] == 0


IPV6 = """\
version: 1
name: six
namespaces:
  v6box: {}
links:
  - name: br6
    kind: bridge
    addresses: [fd00:6::1/64, 10.60.0.1/24]
  - name: veth6
    kind: veth
    master: br6
    peer: {name: eth0, namespace: v6box, addresses: ["fd00:6::2/64", 10.60.0.2/24]}
routes:
  - {namespace: v6box, to: default, via: "fd00:6::1"}
  - {namespace: v6box, to: "2001:db8:1::/64", via: "fd00:6::1", metric: 100, table: 100}
  - {namespace: v6box, to: 203.0.113.0/24, via: 10.60.0.1, metric: 50}
"""


def test_ipv6_addresses_and_routes_with_metric_and_table(host, tmp_path: Path):
    path = tmp_path / "six.yaml"
    path.write_text(IPV6)
    apply_ok(host, str(path))
    routes = host.ip_json("-6", "route", "show", "table", "100", ns="v6box")
    assert [(r["dst"], r["gateway"], r["metric"]) for r in routes] == \
        [("2001:db8:1::/64", "fd00:6::1", 100)]
    v4 = host.ip_json("route", "show", "203.0.113.0/24", ns="v6box")
    assert v4[0]["metric"] == 50 and v4[0]["gateway"] == "10.60.0.1"
    addrs = {i["local"] for i in host.ip_json("addr", "show", "dev", "eth0", ns="v6box")[0][
        "addr_info"]}
    assert {"fd00:6::2", "10.60.0.2"} <= addrs
    assert plan_exit(host, str(path))[0] == 0
    host.start_server(None, 8080, address="::")
    result = host.http_get("v6box", "fd00:6::1", 8080)
    assert result.ok, result.error


@pytest.mark.parametrize("command", ["apply", "destroy"])
def test_invalid_file_changes_nothing(host, tmp_path: Path, command: str):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nname: bad\nlinks:\n  - name: x\n    knid: bridge\n")
    before = host.snapshot()
    result = host.netdecl(command, str(bad))
    assert result.returncode == 3
    assert f"{bad}:5:5:" in result.stderr
    assert host.snapshot() == before


def test_show_prints_live_state_as_a_topology_that_loads(host, tmp_path: Path):
    from netdecl.topology.loader import load_topology

    apply_ok(host, BRIDGE)
    host.run(["ip", "link", "add", "handmade0", "type", "bridge"])  # not ours: shown too
    result = host.netdecl("show", "--name", "imported")
    assert result.returncode == 0, result.stderr
    path = tmp_path / "shown.yaml"
    path.write_text(result.stdout)
    shown = load_topology(str(path))
    keys = set(shown.objects)
    assert ("link", "", "handmade0") in keys
    assert ("link", "nginx-1", "eth0") in keys
    assert ("address", "nginx-2", "eth0", "172.17.0.3/16") in keys
    assert ("route", "nginx-1", 254, "0.0.0.0/0", 0) in keys
    assert shown.get(("link", "", "veth-n1")).master == "docker0"


def test_without_privileges_apply_and_plan_say_so_in_one_line(host):
    import shutil
    import sys

    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv (util-linux) to drop capabilities")
    apply_ok(host, BRIDGE)
    before = host.snapshot()
    drop = ["setpriv", "--inh-caps=-all", "--bounding-set=-all", sys.executable, "-m",
            "netdecl"]
    env = {"NETDECL_STATE_DIR": "/var/lib/netdecl"}
    for command in ("apply", "destroy", "plan"):
        result = host.run([*drop, command, BRIDGE], check=False, env=env)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 1, result.stderr
        assert len(lines) == 1 and "root" in lines[0], result.stderr
    assert host.snapshot() == before


def test_an_edited_saved_plan_is_refused(host, tmp_path: Path):
    host.run(["ip", "link", "add", "precious0", "type", "bridge"])  # not ours
    saved = tmp_path / "plan.json"
    assert host.netdecl("plan", "--out", str(saved), BRIDGE).returncode == 0
    data = json.loads(saved.read_text())
    # an attacker (or a careless edit) appends a delete of a link netdecl does not own
    data["actions"].append({**data["actions"][0], "op": "delete", "symbol": "-",
                            "key": ["link", "", "precious0"], "before": {
                                "object_type": "link", "namespace": "", "name": "precious0",
                                "kind": "bridge"}, "after": None})
    saved.write_text(json.dumps(data))
    before = host.snapshot()
    result = host.netdecl("apply", str(saved))
    assert result.returncode == 1
    assert "not what its topology plans" in result.stderr
    assert host.snapshot() == before
    truncated = tmp_path / "truncated.json"
    truncated.write_text(json.dumps({"format": data["format"], "actions": []}))
    result = host.netdecl("apply", str(truncated))
    assert result.returncode == 1 and "not a complete saved plan" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_sysctl_two_topologies_declare_is_restored_only_when_the_last_lets_go(
        host, tmp_path: Path):
    twin = tmp_path / "twin.yaml"
    twin.write_text(TWIN.replace("namespaces:", "sysctls:\n  net.ipv4.ip_forward: 1\n"
                                 "namespaces:"))
    assert host.sysctl("net.ipv4.ip_forward") == "0"
    apply_ok(host, BRIDGE)  # sets it to 1
    apply_ok(host, str(twin))  # wants 1 too: nothing to change, but it now shares the key
    assert host.netdecl("destroy", BRIDGE).returncode == 0
    assert host.sysctl("net.ipv4.ip_forward") == "1"  # twin still needs it
    assert plan_exit(host, str(twin))[0] == 0
    assert host.netdecl("destroy", str(twin)).returncode == 0
    assert host.sysctl("net.ipv4.ip_forward") == "0"  # the value from before netdecl
