"""The Python API against a kernel: load, plan, apply, destroy in a throwaway host, each run as
a small script inside it (as the Ansible module or the agent would call netdecl), and the
results checked against `ip -j`."""

from __future__ import annotations

import json
import sys
import textwrap

from harness import STATE_DIR, HermeticHost
from test_rollback import assert_same, state_files

BRIDGE = "topologies/docker-bridge.yaml"

PRELUDE = f"""\
import json, signal, sys
import netdecl
STATE = {STATE_DIR!r}
"""


def py(host: HermeticHost, code: str) -> dict:
    """Run the script in the hermetic host; it prints one JSON document, and nothing else
    (the API itself must not write to stdout or stderr)."""
    result = host.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code)], check=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    return json.loads(result.stdout)


def test_load_plan_apply_destroy(host):
    before = host.snapshot()
    out = py(host, f"""
        topology = netdecl.load({BRIDGE!r})
        plan = netdecl.plan(topology, state_dir=STATE)
        steps = []
        mine = lambda signum, frame: None
        signal.signal(signal.SIGTERM, mine)
        result = netdecl.apply(plan, state_dir=STATE, events=netdecl.Events(
            progress=lambda n, total, action: steps.append([n, total, action.op, action.kind])))
        again = netdecl.plan(topology, state_dir=STATE)
        print(json.dumps({{
            "actions": [[a.op, a.kind, list(a.key), a.object, a.why] for a in plan.actions],
            "counts": plan.counts(), "steps": steps,
            "executed": len(result.executed), "result_counts": result.counts(),
            "handler_restored": signal.getsignal(signal.SIGTERM) is mine,
            "again": [again.has_changes, len(again.conflicts)],
            "json_actions": len(plan.to_json()["actions"]),
        }}))
    """)
    actions = out["actions"]
    by_kind = {(a[0], a[1]) for a in actions}
    assert {("create", "namespace"), ("create", "link"), ("create", "address"),
            ("create", "route"), ("modify", "sysctl")} == by_kind
    assert ["create", "link", ["link", "", "veth-n1"], "link veth-n1", "none"] in actions
    assert ["create", "namespace", ["namespace", "nginx-1"], "namespace nginx-1", "none"] \
        in actions
    total = len(actions)
    assert out["steps"] == [[n, total, a[0], a[1]] for n, a in enumerate(actions, start=1)]
    assert out["executed"] == total == out["json_actions"]
    assert out["counts"] == out["result_counts"] == [total - 1, 1, 0]  # ip_forward: modify
    assert out["handler_restored"]
    assert out["again"] == [False, 0]
    # what the kernel has now
    assert host.netns_list() == ["nginx-1", "nginx-2"]
    docker0 = host.ip_json("-d", "link", "show", "docker0")[0]
    assert docker0["ifalias"] == "netdecl:docker-bridge"
    addrs = host.ip_json("addr", "show", "dev", "eth0", ns="nginx-1")[0]["addr_info"]
    assert [a["local"] for a in addrs if a["family"] == "inet"] == ["172.17.0.2"]
    routes = host.ip_json("route", "show", "default", ns="nginx-2")
    assert [r.get("gateway") for r in routes] == ["172.17.0.1"]

    out = py(host, f"""
        result = netdecl.destroy("docker-bridge", state_dir=STATE)
        nothing = netdecl.destroy(netdecl.load({BRIDGE!r}), state_dir=STATE)
        print(json.dumps({{"counts": result.counts(), "ops": sorted({{a.op for a in
                          result.executed}}), "then": nothing.has_changes}}))
    """)
    assert out["counts"][0] == 0 and out["counts"][2] > 0
    assert out["ops"] == ["delete", "modify"]  # and ip_forward back to what it was
    assert out["then"] is False
    assert host.netns_list() == []
    assert "docker0" not in {link["ifname"] for link in host.ip_json("link")}
    assert_same(host.snapshot(), before)
    assert state_files(host) == []


def test_conflicts_and_a_stale_plan_are_errors_that_change_nothing(host):
    host.run(["ip", "link", "add", "docker0", "type", "bridge"])  # someone else's
    before = host.snapshot()
    out = py(host, f"""
        topology = netdecl.load({BRIDGE!r})
        plan = netdecl.plan(topology, state_dir=STATE)
        try:
            netdecl.apply(topology, state_dir=STATE)
        except netdecl.PlanConflicts as exc:
            refused = [exc.status, [c.message for c in exc.plan.conflicts],
                       isinstance(exc, netdecl.NetdeclError)]
        print(json.dumps({{"conflicts": [c.message for c in plan.conflicts],
                          "refused": refused}}))
    """)
    assert len(out["conflicts"]) == 1 and "docker0" in out["conflicts"][0]
    assert out["refused"] == [1, out["conflicts"], True]
    assert_same(host.snapshot(), before)

    host.run(["ip", "link", "del", "docker0"])
    before = host.snapshot()
    out = py(host, f"""
        import subprocess
        plan = netdecl.plan(netdecl.load({BRIDGE!r}), state_dir=STATE)
        subprocess.run(["ip", "netns", "add", "nginx-2"], check=True)  # the host changes
        try:
            netdecl.apply(plan, state_dir=STATE)
            print(json.dumps("applied"))
        except netdecl.StalePlan as exc:
            print(json.dumps([exc.status, str(exc)]))
    """)
    assert out[0] == 1 and "stale" in out[1]
    assert host.netns_list() == ["nginx-2"]  # only what the script itself added
    host.run(["ip", "netns", "del", "nginx-2"])
    assert_same(host.snapshot(), before)
    assert state_files(host) == []


def test_the_readme_example_runs(host, repo_root):
    readme = (repo_root / "README.md").read_text()
    section = readme[readme.index("\n## Python API\n"):]
    start = section.index("```python\n") + len("```python\n")
    example = section[start:section.index("```\n", start)]
    before = host.snapshot()
    result = host.run([sys.executable, "-c", example], env={"NETDECL_STATE_DIR": STATE_DIR},
                      check=False)
    assert result.returncode == 0, result.stderr
    printed = result.stdout.splitlines()
    assert "create namespace ('namespace', 'nginx-1') {}" in printed
    assert printed[-1] == "(10, 1, 0)"  # the counts of the apply
    assert_same(host.snapshot(), before)  # it ends with destroy
