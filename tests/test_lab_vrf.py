"""kind: vrf on a kernel that has it: the kernel lab (tests/kernellab.py; this machine's kernel
has no vrf module). One boot for the module.

topologies/vrf-tenants.yaml is applied as shipped: two tenants, each in a VRF of its own with
the same client network (10.0.0.0/24), the same host addresses and the same published
service address (203.0.113.1) behind its own gateway. The steps leave what `ip -j -d link`,
`ip -j rule` and `ip -j route show table N` say, the traffic's outcome and netdecl's exit
codes; the tests here judge them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from harness import HTTP_CLIENT, PING, SERVER
from kernellab import KernelLab, LabRun, Step

pytestmark = pytest.mark.lab("vrf", "veth", "nf_tables")  # nf_tables: explain reads it

TOPOLOGY = (Path(__file__).resolve().parent.parent / "topologies" / "vrf-tenants.yaml"
            ).read_text()
MARK = "netdecl:vrf-tenants"
L3MDEV_PRIORITY = 1000  # where the kernel puts its l3mdev rule

# `serve NS ADDRESS NAME`: an HTTP server on ADDRESS:80 in NS until the step ends; `get
# CLIENT_NS ADDRESS NAME`: one GET, its outcome in $OUT/NAME.json
HTTP = r"""
serve() {
    ip netns exec "$1" "$PYTHON" server.py "$1" "$2" 80 tcp > "/tmp/$3.server" &
    for _ in $(seq 100); do grep -q ready "/tmp/$3.server" && break; sleep 0.1; done
}
get() { ip netns exec "$1" "$PYTHON" client.py "$2" 80 5 > "$OUT/$3.json"; }
ping() { ip netns exec "$1" "$PYTHON" ping.py "$2" 3 "$3"; }
"""

# `ip -j route show table N` of a table that does not exist prints a lone "[" and an error
STATE = """set -e
ip -j -d link show > "$OUT/links.json"
ip -j addr show > "$OUT/addresses.json"
ip -j rule show > "$OUT/rules.json"
for table in 10 20; do
    ip -j route show table $table > "$OUT/table$table.json" 2> /dev/null || echo "[]" > \
        "$OUT/table$table.json"
done
"""

STEPS = [
    Step("before", STATE),
    Step("apply", "netdecl apply topo.yaml"),
    Step("applied", STATE),
    Step("traffic", HTTP + """set -e
serve a-gw 203.0.113.1 a
serve b-gw 203.0.113.1 b
get a-client 203.0.113.1 a_to_service
get b-client 203.0.113.1 b_to_service
own_a=$(ping a-client 198.51.100.10 1)
own_b=$(ping b-client 198.51.100.20 1)
a_to_b=$(ping a-client 198.51.100.20 0.5)
b_to_a=$(ping b-client 198.51.100.10 0.5)
# the root's main table knows neither tenant: the host itself does not reach them
main=$("$PYTHON" ping.py 10.0.0.2 2 0.5 2> /dev/null || echo unreachable)
printf '{"own_a": "%s", "own_b": "%s", "a_to_b": "%s", "b_to_a": "%s", "main": "%s"}' \\
    "$own_a" "$own_b" "$a_to_b" "$b_to_a" "$main" > "$OUT/pings.json"
"""),
    Step("verify", "netdecl verify topo.yaml"),
    Step("explain", "netdecl explain --from a-client 203.0.113.1:80 topo.yaml; "
                    "netdecl explain --from b-client 203.0.113.1:80 topo.yaml"),
    Step("plan", "netdecl plan --detailed-exitcode topo.yaml"),
    Step("show", """set -e
netdecl show --name shown > shown.yaml
netdecl validate shown.yaml >&2
cat shown.yaml
"""),
    Step("destroy", "netdecl destroy topo.yaml"),
    Step("destroyed", STATE),
    # a VRF made by hand at a declared name: a conflict, then taken over by --adopt
    Step("handmade", """set -e
ip link add tenant-a type vrf table 10
ip -j -d link show tenant-a > "$OUT/link.json"
"""),
    Step("plan_handmade", "netdecl plan topo.yaml"),
    Step("adopt", "netdecl apply --adopt topo.yaml"),
    Step("adopted", 'ip -j -d link show tenant-a > "$OUT/link.json"'),
    Step("destroy_adopted", """set -e
netdecl destroy topo.yaml
ip -j link show > "$OUT/links.json"
"""),
    # verify from a namespace holding a VRF: a probe bound to it, and one that is not
    Step("probe_vrf", "set -e\nnetdecl apply probe.yaml\nnetdecl verify probe.yaml\n"
                      "netdecl destroy probe.yaml"),
]

PROBE = """\
version: 1
name: vrf-probe
namespaces: {r1: {}, far: {}}
links:
  - {name: blue, namespace: r1, kind: vrf, vrf: {table: 10}}
  - name: p0
    namespace: r1
    kind: veth
    master: blue
    addresses: [192.0.2.1/24]
    peer: {name: eth0, namespace: far, addresses: [192.0.2.2/24]}
probes:
  - {from: r1, in_vrf: blue, to: far, port: 80, source: 192.0.2.1}
  - {from: r1, in_vrf: blue, to: far}
  - {from: r1, to: far, expect: blocked}   # r1's main table knows nothing of blue's
"""


@pytest.fixture(scope="module")
def run(module_lab: KernelLab) -> LabRun:
    """One boot for the whole module: every test below reads its own part of it."""
    return module_lab.run(STEPS, files={"topo.yaml": TOPOLOGY, "probe.yaml": PROBE,
                                        "ping.py": PING,
                                        "server.py": SERVER, "client.py": HTTP_CLIENT})


def by_name(links: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {link["ifname"]: link for link in links}


def l3mdev_rules(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The kernel's l3mdev rules (`ip -j rule` writes the flag as "l3mdev": null)."""
    return [r for r in rules if "l3mdev" in r]


def test_the_vrfs_have_their_tables_and_their_ports(run: LabRun) -> None:
    run["apply"].ok()
    links = by_name(run["applied"].json["links"])
    for vrf, table, ports in (("tenant-a", 10, ("veth-a", "up-a")),
                              ("tenant-b", 20, ("veth-b", "up-b"))):
        info = links[vrf]["linkinfo"]
        assert (info["info_kind"], info["info_data"]["table"]) == ("vrf", table)
        assert links[vrf].get("ifalias") == MARK
        for port in ports:
            assert links[port]["master"] == vrf, port
            assert links[port]["linkinfo"]["info_slave_kind"] == "vrf", port


def test_routes_named_by_the_vrf_land_in_its_table(run: LabRun) -> None:
    applied = run["applied"].json
    for table, gateway, port in (("table10", "198.51.100.10", "up-a"),
                                 ("table20", "198.51.100.20", "up-b")):
        routes = {r["dst"]: r for r in applied[table]}
        service = routes["203.0.113.0/24"]
        assert (service["gateway"], service["dev"], service["protocol"]) == (gateway, port,
                                                                             "211"), table
        # the kernel's own connected routes moved into the VRF's table with the ports
        assert routes["10.0.0.0/24"]["protocol"] == "kernel", table


def test_the_kernels_l3mdev_rule_is_left_to_the_kernel(run: LabRun) -> None:
    assert l3mdev_rules(run["before"].json["rules"]) == []
    made = l3mdev_rules(run["applied"].json["rules"])
    assert [r["priority"] for r in made] == [L3MDEV_PRIORITY]
    assert "No changes" in run["plan"].ok()  # not drift, not netdecl's to delete
    # destroy deletes what netdecl made, never the kernel's rule
    assert l3mdev_rules(run["destroyed"].json["rules"]) == made


def test_each_tenant_reaches_its_own_gateway_and_never_the_others(run: LabRun) -> None:
    traffic = run["traffic"]
    traffic.ok()
    a, b = traffic.json["a_to_service"], traffic.json["b_to_service"]
    # the same address, 203.0.113.1, answered by each tenant's own gateway
    assert a["ok"] and "ns=a-gw client=10.0.0.2" in a["body"], a
    assert b["ok"] and "ns=b-gw client=10.0.0.2" in b["body"], b
    pings = traffic.json["pings"]
    assert (pings["own_a"], pings["own_b"]) == ("ok", "ok")
    assert (pings["a_to_b"], pings["b_to_a"]) == ("fail", "fail")
    assert pings["main"] == "unreachable"


def test_verify_runs_the_shipped_probes_the_blocked_ones_included(run: LabRun) -> None:
    out = run["verify"].ok()
    assert "4 probes: 4 passed, 0 failed" in out, out


def test_explain_follows_each_tenant_through_its_own_vrf(run: LabRun) -> None:
    out = run["explain"].ok()
    for tenant, port, gateway in (("a", "up-a", "198.51.100.10"), ("b", "up-b", "198.51.100.20")):
        assert f"route 203.0.113.1 via {gateway} dev {port} table of VRF tenant-{tenant}" \
            in out, out
        assert f"delivered: to {tenant}-gw (203.0.113.1); source seen there: 10.0.0.2" in out


def test_a_probe_bound_to_a_vrf_is_routed_in_its_table(run: LabRun) -> None:
    out = run["probe_vrf"].ok()
    assert "3 probes: 3 passed, 0 failed" in out, out
    assert "r1 vrf blue" in out, out


def test_show_writes_the_vrfs_back_as_a_valid_file(run: LabRun) -> None:
    run["show"].ok()
    shown = run["show"].stdout
    assert "kind: vrf" in shown
    assert "table: tenant-a" in shown and "master: tenant-a" in shown


def test_a_handmade_vrf_is_a_conflict_until_adopted_as_itself(run: LabRun) -> None:
    run["handmade"].ok()
    refused = run["plan_handmade"]
    assert refused.returncode == 1 and "tenant-a already exists" in refused.stdout + \
        refused.stderr, refused.stdout + refused.stderr
    assert "= adopt link tenant-a" in run["adopt"].ok()
    (made,), (adopted,) = run["handmade"].json["link"], run["adopted"].json["link"]
    assert adopted["ifindex"] == made["ifindex"]  # the very link, now netdecl's
    assert adopted["ifalias"] == MARK
    run["destroy_adopted"].ok()
    assert "tenant-a" not in {link["ifname"] for link in run["destroy_adopted"].json["links"]}


def test_destroy_leaves_the_host_as_it_was(run: LabRun) -> None:
    run["destroy"].ok()
    before, after = run["before"].json, run["destroyed"].json
    assert set(by_name(after["links"])) == set(by_name(before["links"]))
    assert after["table10"] == [] and after["table20"] == []
