"""The Python API against a kernel: load, plan, apply, destroy in a throwaway host, each run as
a small script inside it (as the Ansible module or the agent would call netdecl), and the
results checked against `ip -j`."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

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


NAT = "topologies/docker-nat.yaml"

GATED = """
        def gated(topology):
            def gate():
                result = netdecl.verify(topology, timeout=1)
                if not result.ok:
                    raise netdecl.VerificationFailed(f"{len(result.failed())} probe(s) failed")
            try:
                return netdecl.apply(topology, state_dir=STATE, gate=gate).counts()
            except netdecl.ApplyFailed as exc:
                return str(exc)
"""


def test_verify_as_an_apply_gate_keeps_only_what_passes(host, tmp_path):
    # a probe that cannot pass (it expects blocked what the topology lets through) fails the
    # gate, and the whole apply is rolled back; with the shipped probes the apply is kept
    text = Path(NAT).read_text()
    failing = tmp_path / "docker-nat.yaml"
    failing.write_text(text[: text.index("\nprobes:")] + "\nprobes:\n"
                       "  - {from: nginx-2, to: nginx-1, port: 80, expect: blocked}\n")
    before = host.snapshot()
    out = py(host, GATED + f"""
        print(json.dumps(gated(netdecl.load({str(failing)!r}))))
    """)
    assert "1 probe(s) failed" in out and "rolled back" in out
    assert_same(host.snapshot(), before)
    assert state_files(host) == []

    out = py(host, GATED + f"""
        print(json.dumps(gated(netdecl.load({NAT!r}))))
    """)
    assert isinstance(out, list) and out[0] > 0  # (added, changed, destroyed): kept
    assert host.netns_list() == ["ext", "nginx-1", "nginx-2"]


def test_verify_runs_the_probes_with_real_traffic(host):
    out = py(host, f"""
        topology = netdecl.load({NAT!r})
        netdecl.apply(topology, state_dir=STATE)
        passed = netdecl.verify(topology, timeout=2)
        print(json.dumps({{"ok": passed.ok, "n": len(passed.probes), "json": passed.to_json(),
                          "text": passed.text()}}))
    """)
    assert out["ok"] is True and out["n"] == 6
    assert (out["json"]["topology"], out["json"]["passed"], out["json"]["failed"]) == \
        ("docker-nat", 6, 0)
    assert out["text"].splitlines()[-1] == "6 probes: 6 passed, 0 failed"

    # without the masquerade the probe that needs it fails, saying which source arrived
    host.run(["nft", "flush", "table", "ip", "netdecl-docker-nat"])
    out = py(host, f"""
        failed = netdecl.verify(netdecl.load({NAT!r}), timeout=1)
        print(json.dumps({{"ok": failed.ok, "failed": [r.to_json() for r in failed.failed()],
                          "types": sorted({{type(r).__name__ for r in failed.probes}})}}))
    """)
    assert out["ok"] is False and out["types"] == ["ProbeResult"]
    masq = next(p for p in out["failed"] if p["to"] == "10.168.0.3")
    assert masq["seen_source"] == "172.17.0.2"  # not masqueraded as 10.168.0.1


def test_sandbox_enter_list_remove(host):
    # an apply inside a sandbox leaves the host's network alone and stays in the sandbox for
    # the next process that enters it; removing the sandbox frees everything made in it
    before = host.snapshot()
    try:
        out = py(host, f"""
            netdecl.enter_sandbox("api-t")
            result = netdecl.apply(netdecl.load({BRIDGE!r}), state_dir=STATE)
            print(json.dumps({{"added": result.counts()[0], "inside": netdecl.sandboxes()}}))
        """)
        assert out["added"] > 0
        assert out["inside"] == []  # the sandbox sees no sandboxes: its /run/netdecl is its own
        assert_same(host.snapshot(), before)  # the host has none of it
        assert py(host, "print(json.dumps(netdecl.sandboxes()))") == ["api-t"]

        out = py(host, """
            import subprocess
            netdecl.enter_sandbox("api-t", create=False)
            names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
            again = netdecl.plan(netdecl.load("topologies/docker-bridge.yaml"), state_dir=STATE)
            print(json.dumps({"netns": sorted(line.split()[0] for line in
                                              names.stdout.splitlines()),
                              "again": again.has_changes}))
        """)
        assert out == {"netns": ["nginx-1", "nginx-2"], "again": False}
    finally:
        py(host, """
            for name in netdecl.sandboxes():
                netdecl.remove_sandbox(name)
            print(json.dumps(netdecl.sandboxes()))
        """)
    out = py(host, """
        try:
            netdecl.enter_sandbox("api-t", create=False)
            print(json.dumps("entered"))
        except netdecl.EnvironmentProblem as exc:
            print(json.dumps([exc.status, str(exc)]))
    """)
    assert out == [1, "no sandbox named api-t"]
    assert_same(host.snapshot(), before)
