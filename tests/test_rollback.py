"""Safe apply (issue 4): any failure, signal or crash mid-apply leaves the host exactly as before.

"Exactly" is host.snapshot(): ip -j link/addr/route (all tables) per namespace, sysctls and the
nft ruleset, MAC addresses included. The NETDECL_FAIL_AT loops run inside one hermetic host per
scenario: after every N the host must be back at the baseline, so the next N starts from it.
"""

from __future__ import annotations

import difflib
import json
import pprint
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness import REPO_ROOT, STATE_DIR
from test_core_kernel import TWIN  # a second, small topology

BRIDGE = "topologies/docker-bridge.yaml"
NAT = "topologies/docker-nat.yaml"


# -- helpers ---------------------------------------------------------------------------------

def assert_same(after: dict, before: dict, context: str = "") -> None:
    if after == before:
        return
    diff = difflib.unified_diff(pprint.pformat(before).splitlines(),
                                pprint.pformat(after).splitlines(), "before", "after",
                                lineterm="", n=4)
    pytest.fail(f"host differs from before {context}:\n" + "\n".join(list(diff)[:120]))


def state_files(host) -> list[str]:
    """Everything netdecl keeps in its state dir except the lock file."""
    out = host.run(["find", STATE_DIR, "-type", "f"]).stdout.split()
    return sorted(p for p in out if not p.endswith("/lock"))


def records(host) -> dict[str, str]:
    """Every state file (records, journals, confirm markers) with its content."""
    return {path: host.run(["cat", path]).stdout for path in state_files(host)}


def records_but_identities(host) -> dict[str, object]:
    """records(), with the value of each recorded identity blanked: an object a rollback made
    again (same name, attributes and MAC) is a new kernel object with a new ifindex or inode.
    That the identities kept are the live ones shows in the next plan: a wrong one would be a
    conflict."""
    out: dict[str, object] = {}
    for path, text in records(host).items():
        data = json.loads(text) if path.endswith(".json") else text
        if isinstance(data, dict) and "identities" in data:
            data["identities"] = [[*entry[:-1], "*"] for entry in data["identities"]]
        out[path] = data
    return out


def plan_actions(host, path: str) -> list[dict]:
    result = host.netdecl("plan", "--json", path)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["actions"]


def popen_netdecl(host, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """netdecl in the background inside the host. nsenter execs (no fork for net+mnt), so the
    Popen's pid is netdecl's own: signals reach it directly."""
    argv = host._argv([sys.executable, "-m", "netdecl", *args], None)
    full_env = host._env({"NETDECL_STATE_DIR": STATE_DIR,
                          **(env or {})})
    return subprocess.Popen(argv, env=full_env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def journal_steps(host, topology: str) -> int:
    out = host.run(["sh", "-c", f"cat {STATE_DIR}/journal/{topology}.jsonl 2>/dev/null"],
                   check=False).stdout
    return sum('"step"' in line for line in out.splitlines())


def wait_for_steps(host, proc: subprocess.Popen, topology: str, steps: int,
                   timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = journal_steps(host, topology)
        if done >= steps:
            return done
        assert proc.poll() is None, f"apply ended early: {proc.communicate()}"
        time.sleep(0.01)
    raise AssertionError(f"journal of {topology} never reached {steps} steps")


def many_namespaces(n: int = 40, name: str = "many") -> str:
    """A topology with n namespaces, each a veth on one bridge with an address and a route."""
    lines = ["version: 1", f"name: {name}", "namespaces:"]
    lines += [f"  c{i}: {{}}" for i in range(n)]
    lines += ["links:", "  - name: brm", "    kind: bridge", "    addresses: [10.77.0.1/16]"]
    for i in range(n):
        lines += [f"  - name: vm{i}", "    kind: veth", "    master: brm",
                  f"    peer: {{name: eth0, namespace: c{i}, "
                  f"addresses: [10.77.1.{i + 2}/16]}}"]
    lines += ["routes:"]
    lines += [f"  - {{namespace: c{i}, to: default, via: 10.77.0.1}}" for i in range(n)]
    return "\n".join(lines) + "\n"


def bridge_plus_nat(tmp_path: Path) -> str:
    """docker-nat's content under docker-bridge's name: a modify plan that adds a namespace,
    a veth pair, hairpin on the existing ports, a sysctl and the NAT table."""
    text = (REPO_ROOT / NAT).read_text()
    lines = [("name: docker-bridge" if line.startswith("name:") else line)
             for line in text.splitlines()]
    path = tmp_path / "bridge-plus-nat.yaml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def bridge_shrunk(tmp_path: Path) -> str:
    """docker-bridge without nginx-2 (namespace, veth, route) and with changed addresses."""
    text = (REPO_ROOT / BRIDGE).read_text()
    text = text.replace("  nginx-2: {}\n", "")
    text = text[:text.index("  - name: veth-n2")] + "\n" + text[text.index("routes:"):]
    text = text[: text.index("  - namespace: nginx-2")]
    text = text.replace("172.17.0.2/16", "172.17.0.5/16")
    text = text.replace("[172.17.0.1/16]", "[172.17.0.1/16, 172.18.0.1/24]")
    path = tmp_path / "bridge-shrunk.yaml"
    path.write_text(text)
    return str(path)


def fail_at_every_action(host, path: str, base: str | None) -> int:
    """Apply `path` with NETDECL_FAIL_AT=N for every N of its plan: each must exit 1 naming the
    N-th action and leave the host (and netdecl's own view of it) as it was."""
    if base:
        assert host.netdecl("apply", base).returncode == 0
    before = host.snapshot()
    records_before = records_but_identities(host)
    actions = plan_actions(host, path)
    assert actions
    for number, action in enumerate(actions, start=1):
        result = host.netdecl("apply", path, env={"NETDECL_FAIL_AT": str(number)})
        assert result.returncode == 1, (number, result.stdout, result.stderr)
        label = f"{action['op']} {action['object']}"
        assert f"apply failed: {label}: injected failure" in result.stderr, (number, label,
                                                                             result.stderr)
        assert f"the {number - 1} action(s) done before the failure were undone" in \
            result.stderr
        assert_same(host.snapshot(), before, f"after NETDECL_FAIL_AT={number} ({label})")
        # the ownership record is restored (identities: those of the objects now) and the
        # journal is gone
        assert records_but_identities(host) == records_before, \
            f"record differs after FAIL_AT={number}"
    # netdecl's own view agrees: the base still matches, the plan is the same as at first
    if base:
        assert host.netdecl("plan", "--detailed-exitcode", base).returncode == 0
    assert [a["object"] for a in plan_actions(host, path)] == [a["object"] for a in actions]
    return len(actions)


# -- NETDECL_FAIL_AT loops ---------------------------------------------------------------------

def test_fail_at_every_action_of_a_cold_nat_apply(host):
    assert fail_at_every_action(host, NAT, None) >= 15
    assert state_files(host) == []  # no record: nothing is owned
    assert host.netdecl("apply", NAT).returncode == 0  # and the real apply still works


def test_fail_at_every_action_of_a_modify_that_adds_nat_and_a_namespace(host, tmp_path):
    path = bridge_plus_nat(tmp_path)
    assert fail_at_every_action(host, path, BRIDGE) >= 7
    host.start_server("nginx-1", 80)
    assert host.http_get("nginx-2", "172.17.0.2", 80).ok  # the base still works


def test_fail_at_every_action_of_a_prune_and_readdress(host, tmp_path):
    # deleting nginx-2 must bring it back with its veth (same MACs), address and route
    path = bridge_shrunk(tmp_path)
    assert fail_at_every_action(host, path, BRIDGE) >= 5
    host.start_server("nginx-2", 80)
    assert host.http_get("nginx-1", "172.17.0.3", 80).ok


# -- failures the kernel produces by itself ----------------------------------------------------

def test_a_sysctl_the_kernel_refuses_rolls_back(host, tmp_path):
    text = (REPO_ROOT / BRIDGE).read_text().replace(
        "  nginx-2: {}\n",
        "  nginx-2:\n    sysctls:\n      net.ipv4.conf.nonexistent0.forwarding: 1\n")
    path = tmp_path / "bad-sysctl.yaml"
    path.write_text(text)
    before = host.snapshot()
    result = host.netdecl("apply", str(path))
    assert result.returncode == 1, result.stderr
    assert "net.ipv4.conf.nonexistent0.forwarding" in result.stderr
    assert "no such key" in result.stderr
    assert "rolled back" in result.stderr
    assert_same(host.snapshot(), before)
    assert state_files(host) == []


CRASH_INSIDE_LINK_CREATE = """
import sys
from pathlib import Path
from netdecl.engine.claims import Ticket
from netdecl.engine.state.journal import Journal
from netdecl.model import Link, Namespace, Topology
from netdecl.engine.planner.plan import CREATE, Action
from netdecl.engine.state.record import OwnershipRecord
topo = Topology(name="crashy")
journal = Journal.begin(Path(sys.argv[1]), "crashy", topo, OwnershipRecord("crashy"))
journal.intend(1, Action(CREATE, ("link", "", "br-half"),
                         after=Link(namespace="", name="br-half", kind="bridge")),
               Ticket(secret=sys.argv[2], stamp=1))
"""


def test_crash_inside_link_create_is_cleaned_up_and_only_what_it_made(host):
    # The journal says "creating br-half" under secret S, and the kernel has the bridge
    # netdecl makes first, under the secret name nd<S>0 (not yet renamed and marked): what a
    # SIGKILL inside the create leaves. Rollback deletes it: only that apply knew the name.
    before = host.snapshot()
    secret = "0123456789ab"
    host.run([sys.executable, "-c", CRASH_INSIDE_LINK_CREATE, STATE_DIR, secret])
    host.run(["ip", "link", "add", f"nd{secret}0", "type", "bridge"])
    result = host.netdecl("rollback")
    assert result.returncode == 0, result.stderr
    assert "rolled back 'crashy'" in result.stderr
    assert_same(host.snapshot(), before)
    assert state_files(host) == []
    # a br-half at the real name, which the journal names but no identity proves, is someone
    # else's (before, an unmarked link of that name and kind was taken for netdecl's) and stays
    host.run([sys.executable, "-c", CRASH_INSIDE_LINK_CREATE, STATE_DIR, secret])
    host.run(["ip", "link", "add", "br-half", "type", "bridge"])
    index = link_index(host, "br-half")
    result = host.netdecl("rollback")
    assert result.returncode == 0, result.stderr
    assert link_index(host, "br-half") == index
    # a link that no journal mentions is foreign and stays
    assert host.netdecl("rollback").returncode == 0
    assert link_index(host, "br-half") == index


def link_index(host, name: str, ns: str | None = None) -> int | None:
    return next((link["ifindex"] for link in host.ip_json("link", ns=ns)
                 if link["ifname"] == name), None)


# -- signals and crashes -----------------------------------------------------------------------

def test_sigterm_mid_apply_rolls_back(host, tmp_path):
    path = tmp_path / "many.yaml"
    path.write_text(many_namespaces(40))
    before = host.snapshot()
    proc = popen_netdecl(host, "apply", str(path))
    wait_for_steps(host, proc, "many", 30)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert "interrupted by SIGTERM" in err and "rolled back" in err
    assert_same(host.snapshot(), before)
    assert host.netns_list() == []
    assert state_files(host) == []


def test_sigkill_mid_apply_then_rollback_restores_everything(host, tmp_path):
    path = tmp_path / "many.yaml"
    path.write_text(many_namespaces(40))
    before = host.snapshot()
    for steps in (5, 40, 90):  # inside the namespace, link and address phases
        proc = popen_netdecl(host, "apply", str(path))
        wait_for_steps(host, proc, "many", steps)
        proc.kill()
        proc.communicate(timeout=30)
        assert host.netns_list(), "the kill came too late to test anything"
        assert any("/journal/many.jsonl" in f for f in state_files(host))
        result = host.netdecl("rollback")
        assert result.returncode == 0, result.stderr
        assert "did not finish" in result.stderr and "rolled back 'many'" in result.stderr
        assert_same(host.snapshot(), before, f"after SIGKILL at >= {steps} steps")
        assert host.netns_list() == []
        assert host.run(["ls", "-A", "/run/netns"]).stdout.split() == []
        assert state_files(host) == []
    result = host.netdecl("rollback")
    assert result.returncode == 0 and "Nothing to roll back" in result.stdout


def test_next_apply_after_sigkill_rolls_back_first_and_says_so(host, tmp_path):
    path = tmp_path / "many.yaml"
    path.write_text(many_namespaces(40))
    before = host.snapshot()
    proc = popen_netdecl(host, "apply", str(path))
    wait_for_steps(host, proc, "many", 50)
    proc.kill()
    proc.communicate(timeout=30)
    # another topology's apply leaves 'many's journal alone (issue 12) and says it is there
    result = host.netdecl("apply", BRIDGE)
    assert result.returncode == 0, result.stderr
    assert "did not finish" not in result.stderr
    assert "`netdecl rollback --name many` rolls it back" in result.stderr
    assert "c0" in host.netns_list()
    # the next operation on 'many' itself rolls it back first, and says so
    result = host.netdecl("destroy", str(path))
    assert result.returncode == 0, result.stderr
    assert "an earlier apply of 'many' did not finish" in result.stderr
    assert "rolled back 'many' to the state before that apply" in result.stderr
    assert host.netns_list() == ["nginx-1", "nginx-2"]
    assert host.netdecl("plan", "--detailed-exitcode", str(path)).returncode == 2
    assert host.netdecl("destroy", BRIDGE).returncode == 0
    assert_same(host.snapshot(), before)


# -- one at a time -------------------------------------------------------------------------------



def test_two_applies_at_once_take_turns(host, tmp_path):
    twin = tmp_path / "twin.yaml"
    twin.write_text(TWIN)
    many = tmp_path / "many.yaml"
    many.write_text(many_namespaces(20))
    first = popen_netdecl(host, "apply", "--lock-timeout", "60", str(many))
    wait_for_steps(host, first, "many", 1)  # it holds the lock now
    second = popen_netdecl(host, "apply", "--lock-timeout", "60", str(twin))
    finished: dict[str, float] = {}
    most_journals = 0
    while len(finished) < 2:  # watch the journals: never two applies in flight at once
        listing = host.run(["ls", f"{STATE_DIR}/journal"], check=False).stdout.split()
        most_journals = max(most_journals, sum(n.endswith(".jsonl") for n in listing))
        for label, proc in (("first", first), ("second", second)):
            if label not in finished and proc.poll() is not None:
                finished[label] = time.monotonic()
        time.sleep(0.01)
    out1, err1 = first.communicate(timeout=10)
    out2, err2 = second.communicate(timeout=10)
    assert first.returncode == 0, err1
    assert second.returncode == 0, err2
    assert "Apply complete" in out1 and "Apply complete" in out2
    assert most_journals == 1
    assert finished["first"] <= finished["second"]
    for path in (many, twin):
        assert host.netdecl("plan", "--detailed-exitcode", str(path)).returncode == 0
    assert state_files(host) == [f"{STATE_DIR}/topologies/many.json",
                                 f"{STATE_DIR}/topologies/twin.json"]


def test_lock_timeout_names_the_lock_and_its_holder(host, tmp_path):
    many = tmp_path / "many.yaml"
    many.write_text(many_namespaces(3))
    # an apply waiting for confirmation holds the lock for as long as we need, however fast
    # the apply itself is: no race with the commands below
    holder = popen_netdecl(host, "apply", "--confirm-timeout", "120", str(many))
    pending = f"{STATE_DIR}/confirm/many.pending"
    deadline = time.monotonic() + 60
    while host.run(["test", "-e", pending], check=False).returncode != 0:
        assert holder.poll() is None, f"apply ended early: {holder.communicate()}"
        assert time.monotonic() < deadline, "the apply never started waiting for confirmation"
        time.sleep(0.05)
    start = time.monotonic()
    result = host.netdecl("apply", "--lock-timeout", "0.1", BRIDGE)
    assert result.returncode == 1
    assert time.monotonic() - start < 30
    assert f"{STATE_DIR}/lock" in result.stderr
    assert f"process {holder.pid} holds the lock" in result.stderr
    for command in (["destroy", "--lock-timeout", "0.1", BRIDGE],
                    ["rollback", "--lock-timeout", "0.1"]):
        result = host.netdecl(*command)
        assert result.returncode == 1 and f"process {holder.pid}" in result.stderr
    # plan needs no lock
    assert host.netdecl("plan", BRIDGE).returncode == 0
    assert host.netdecl("confirm", "--name", "many").returncode == 0
    _, err = holder.communicate(timeout=120)
    assert holder.returncode == 0, err
    assert "nginx-1" not in host.netns_list()  # the refused apply changed nothing


def test_a_failed_rollback_exits_4_says_what_is_left_and_rollback_finishes_it(host):
    before = host.snapshot()
    result = host.netdecl("apply", NAT, env={"NETDECL_FAIL_AT": "6",
                                             "NETDECL_FAIL_ROLLBACK_AT": "1"})
    assert result.returncode == 4, result.stderr
    assert "rollback could not restore everything" in result.stderr
    assert "injected failure (NETDECL_FAIL_ROLLBACK_AT=1)" in result.stderr
    assert "not restored:" in result.stderr
    assert host.snapshot() != before  # something really was left behind
    result = host.netdecl("rollback")
    assert result.returncode == 0, result.stderr
    assert "rolled back" in result.stderr
    assert_same(host.snapshot(), before, "after netdecl rollback")
    assert state_files(host) == []
