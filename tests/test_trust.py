"""Trust on a real host (issue 12): a state dir nobody else can turn, nothing read back trusted,
failing closed, bounded inputs, messages that name the real cause.

The hostile local user is uid 65534 (setpriv, no capabilities, no groups) inside the hermetic
host, whose state dir is a private tmpfs. Every test here failed on the code before issue 12.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from harness import STATE_DIR
from test_confirm import wait_until_waiting
from test_core_kernel import TWIN
from test_rollback import assert_same, popen_netdecl, state_files

from netdecl.engine.state.lock import lock_holders

BRIDGE = "topologies/docker-bridge.yaml"
NAT = "topologies/docker-nat.yaml"
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
JOURNAL = f"{STATE_DIR}/journal/docker-bridge.jsonl"
RECORD = f"{STATE_DIR}/topologies/docker-bridge.json"


def mode_of(host, path: str) -> str:
    return host.run(["stat", "-c", "%a", path]).stdout.strip()


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


# -- the state dir ------------------------------------------------------------------------------

def test_state_dir_and_its_files_are_private_whatever_the_umask(host):
    result = host.run(["sh", "-c", f"umask 000; exec {sys.executable} -m netdecl apply {BRIDGE}"],
                      env={"NETDECL_STATE_DIR": STATE_DIR})
    assert result.returncode == 0, result.stderr
    for directory in ("", "/topologies", "/journal", "/confirm"):
        assert mode_of(host, STATE_DIR + directory) == "700", directory
    assert mode_of(host, RECORD) == "600"
    assert mode_of(host, f"{STATE_DIR}/lock") == "600"


def test_a_local_user_plans_namespaces_that_do_not_exist_yet(host):
    # issue 29: `setns: Operation not permitted` for any topology with namespaces, though none
    # existed: setns back into the root namespace needs CAP_SYS_ADMIN too
    host.run(["sh", "-c", "mkdir -p /run/netdecl/user && chown 65534:65534 /run/netdecl/user"])
    plan = [*NOBODY, sys.executable, "-m", "netdecl", "--state-dir", "/run/netdecl/user/state",
            "plan", BRIDGE]
    result = host.run(plan, check=False)
    assert result.returncode == 0, result.stderr
    assert "+ namespace nginx-1" in result.stdout and "Plan: " in result.stdout
    # one that exists cannot be entered without root: one line naming it
    host.run(["ip", "netns", "add", "nginx-2"])
    result = host.run(plan, check=False)
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert "namespace nginx-2 (/run/netns/nginx-2)" in line and "root" in line, line
    assert host.netns_list() == ["nginx-2"]


def test_a_local_user_can_neither_take_the_lock_nor_plant_a_file(host):
    assert host.netdecl("apply", BRIDGE).returncode == 0
    # `flock -s` on a readable lock file would block every apply, destroy and rollback
    took = host.run([*NOBODY, "flock", "-s", "-n", f"{STATE_DIR}/lock", "true"], check=False)
    assert took.returncode != 0, "an unprivileged user could lock the host lock"
    assert "Permission denied" in took.stderr
    planted = host.run([*NOBODY, "sh", "-c", f"echo x > {STATE_DIR}/journal/evil.jsonl"],
                       check=False)
    assert planted.returncode != 0
    assert host.netdecl("destroy", "--lock-timeout", "1", BRIDGE).returncode == 0


@pytest.mark.parametrize("setup, culprit, fix", [
    (["chmod", "0777", STATE_DIR], STATE_DIR, "chmod go-w"),
    (["chmod", "1777", STATE_DIR], STATE_DIR, "chmod go-w"),  # sticky does not help the dir
    (["chown", "65534", STATE_DIR], STATE_DIR, "chown root"),
    (["sh", "-c", "mkdir -p /run/netdecl/open && chmod 0777 /run/netdecl/open"],
     "/run/netdecl/open", "chmod go-w"),
    (["sh", "-c", "mkdir -p /run/netdecl/theirs && chown 65534 /run/netdecl/theirs"],
     "/run/netdecl/theirs", "chown root"),
])
def test_a_state_dir_someone_else_can_turn_is_refused(host, setup, culprit, fix):
    host.run(setup)
    state = STATE_DIR if culprit == STATE_DIR else f"{culprit}/state"
    before = host.snapshot()
    for command in (["apply", BRIDGE], ["plan", BRIDGE], ["destroy", BRIDGE], ["rollback"]):
        result = host.netdecl(*command, env={"NETDECL_STATE_DIR": state})
        assert result.returncode == 1, (command, result.stderr)
        line = one_line(result.stderr)
        assert f"unsafe state dir: {culprit} " in line and fix in line, line
    assert_same(host.snapshot(), before)


def test_a_sticky_world_writable_parent_is_accepted_as_for_tmp(host):
    host.run(["sh", "-c", "mkdir -p /run/netdecl/tmp && chmod 1777 /run/netdecl/tmp"])
    state = "/run/netdecl/tmp/state"
    result = host.netdecl("apply", BRIDGE, env={"NETDECL_STATE_DIR": state})
    assert result.returncode == 0, result.stderr
    assert mode_of(host, state) == "700"


def test_planted_temp_symlinks_are_never_written_through(host, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    out = tmp_path / "saved.json"
    (tmp_path / "saved.json.tmp").symlink_to(victim)
    host.run(["mkdir", "-p", f"{STATE_DIR}/topologies"])
    host.run(["ln", "-s", str(victim), f"{RECORD}.tmp"])
    result = host.netdecl("plan", "--out", str(out), BRIDGE)
    assert result.returncode == 0, result.stderr
    assert host.netdecl("apply", BRIDGE).returncode == 0
    assert victim.read_text() == "precious\n"
    assert json.loads(out.read_text())["format"] == "netdecl-plan/1"
    assert mode_of(host, str(out)) == "600"
    assert json.loads(host.run(["cat", RECORD]).stdout)["topology"] == "docker-bridge"


def test_a_permission_error_in_the_state_dir_names_the_state_dir(host):
    assert host.netdecl("apply", BRIDGE).returncode == 0
    result = host.run([*NOBODY, sys.executable, "-m", "netdecl", "plan", BRIDGE],
                      env={"NETDECL_STATE_DIR": STATE_DIR}, check=False)
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert f"permission denied on the state dir {STATE_DIR}" in line, line
    assert "network namespaces" not in line


HOLD_LOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
os.pwrite(fd, b"999999\\n", 0)  # a stale PID, as a dead holder would leave
fcntl.flock(fd, fcntl.LOCK_SH)
print("locked", flush=True)
sys.stdin.read()
"""


def test_a_lock_held_by_another_program_names_that_process(host):
    assert host.netdecl("apply", BRIDGE).returncode == 0  # the lock file exists
    holder = subprocess.Popen(host._argv([sys.executable, "-c", HOLD_LOCK, f"{STATE_DIR}/lock"],
                                         None), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = host.netdecl("destroy", "--lock-timeout", "0.1", BRIDGE)
        assert result.returncode == 1
        line = one_line(result.stderr)
        assert f"process {holder.pid} holds the lock {STATE_DIR}/lock" in line, line
        assert "999999" not in line
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)


def test_lock_holders_reads_proc_locks():
    info = os.stat_result((0o100600, 5678, os.makedev(0, 0x1f), 1, 0, 0, 0, 0, 0, 0))
    text = ("1: FLOCK  ADVISORY  WRITE 1234 00:1f:5678 0 EOF\n"
            "1: -> FLOCK  ADVISORY  WRITE 4321 00:1f:5678 0 EOF\n"
            "2: POSIX  ADVISORY  READ 77 00:1f:9999 0 EOF\n"
            "3: FLOCK  ADVISORY  READ 55 00:1f:5678 0 EOF\n")
    assert lock_holders(info, text) == [1234, 55]


# -- nothing read back is trusted ---------------------------------------------------------------

def planted_journal(topology: str, victim: Path, other: Path) -> str:
    """A journal that would make root write ``victim`` (a sysctl) and unlink ``other`` (a
    namespace placeholder) if its names were trusted."""
    sysctl = f"../..{victim}"
    namespace = f"../..{other}"
    header = {"journal": 1, "topology": topology, "pid": 1,
              "snapshot": [{"object_type": "sysctl", "namespace": "", "name": sysctl,
                            "value": "pwned"}],
              "record_before": {"format": 1, "topology": topology, "namespaces": [namespace],
                                "objects": [], "sysctl_originals": [["", sysctl, "pwned"]],
                                "nat_namespaces": []}}
    return json.dumps(header) + "\n"


def plant(host, path: str, text: str) -> None:
    host.run(["mkdir", "-p", os.path.dirname(path)])
    host.run(["sh", "-c", f"cat > {path}"], input=text)


@pytest.mark.parametrize("topology", ["docker-bridge", "evil"])
def test_names_in_a_planted_journal_never_reach_a_path(host, tmp_path, topology):
    victim, other = tmp_path / "victim", tmp_path / "other"
    victim.write_text("precious\n")
    other.write_text("keep me\n")
    plant(host, f"{STATE_DIR}/journal/{topology}.jsonl",
          planted_journal(topology, victim, other))
    results = [host.netdecl("apply", BRIDGE), host.netdecl("rollback"),
               host.netdecl("rollback", "--name", topology)]
    assert victim.read_text() == "precious\n" and other.read_text() == "keep me\n"
    apply, *rollbacks = results
    if topology == "evil":  # another topology's journal: not replayed by this apply
        assert apply.returncode == 0, apply.stderr
        assert "`netdecl rollback --name evil` rolls it back" in apply.stderr
    else:
        assert apply.returncode == 1
        assert JOURNAL in one_line(apply.stderr)
    for result in rollbacks:
        assert result.returncode == 1
        line = one_line(result.stderr)
        assert f"{STATE_DIR}/journal/{topology}.jsonl is damaged or not netdecl's" in line
        assert "could leave /proc/sys" in line or "not a valid sysctl name" in line, line


def test_a_record_entry_cannot_make_plan_print_a_root_only_file(host, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("TOP-SECRET\n")
    secret.chmod(0o600)
    record = {"format": 1, "topology": "docker-bridge", "namespaces": [], "objects": [],
              "sysctl_originals": [["", f"../..{secret}", "0"]], "nat_namespaces": []}
    plant(host, RECORD, json.dumps(record))
    result = host.netdecl("plan", BRIDGE)
    assert result.returncode == 1
    assert "TOP-SECRET" not in result.stdout + result.stderr
    assert RECORD in one_line(result.stderr)


# -- damaged files: one line, exit 1, never a traceback, never blocking another topology ---------

def leave_a_journal(host) -> None:
    """A real journal left behind: an apply whose rollback failed (exit 4 keeps it)."""
    result = host.netdecl("apply", BRIDGE, env={"NETDECL_FAIL_AT": "8",
                                                "NETDECL_FAIL_ROLLBACK_AT": "1"})
    assert result.returncode == 4, result.stderr


def _lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True)


def _cut(data: bytes) -> bytes:
    """Half a line in the middle, the lines after it whole: not the torn last line a crash
    leaves (that one is discarded, see test_recovery_kernel.py) but a file spliced or edited."""
    middle = len(data) // 2
    while data[middle - 1:middle] == b"\n":
        middle += 1
    return data[:middle] + b"\n" + _lines(data)[-1]


JOURNAL_DAMAGE = {
    "garbage line": lambda d: b"".join(_lines(d)[:2] + [b"this is not json\n"] + _lines(d)[2:]),
    "binary": lambda d: d[:200] + b"\xff\x00\x01\x02\n",
    "bad header": lambda d: b'{"journal": 1}\n' + b"".join(_lines(d)[1:]),
    "wrong shape": lambda d: b"[1, 2, 3]\n" + b"".join(_lines(d)[1:]),
    "empty": lambda d: b"",
    "cut mid-file": _cut,
    "wrong entry": lambda d: d + b'{"start": "x", "action": 5}\n',
}

RECORD_DAMAGE = {
    "empty": lambda d: b"",
    "truncated": lambda d: d[: len(d) // 2],
    "wrong JSON": lambda d: d.replace(b'"format"', b"format", 1),
    "wrong shape": lambda d: json.dumps({"format": 1, "topology": "docker-bridge",
                                         "namespaces": "nginx-1"}).encode(),
    "binary": lambda d: b"\x00\x01\x02\xfe",
}

WRITE_B64 = "import base64, sys; open(sys.argv[1], 'wb').write(base64.b64decode(sys.argv[2]))"
READ_B64 = "import base64, sys; print(base64.b64encode(open(sys.argv[1], 'rb').read()).decode())"


def damage(host, path: str, how) -> None:
    data = base64.b64decode(host.run([sys.executable, "-c", READ_B64, path]).stdout)
    host.run([sys.executable, "-c", WRITE_B64, path, base64.b64encode(how(data)).decode()])


def check_damage_is_contained(host, tmp_path, path: str, commands: list[list[str]]) -> None:
    # (link-local addresses left out: a half-applied host's still come and go by themselves)
    before = host.snapshot(link_local=False)
    for command in commands:
        result = host.netdecl(*command)
        assert result.returncode == 1, (command, result.stdout, result.stderr)
        line = one_line(result.stderr)
        assert f"{path} is damaged or not netdecl's" in line, (command, line)
    assert_same(host.snapshot(link_local=False), before, "after commands refused for damage")
    # topology B is unaffected by the damage in A's files
    twin = tmp_path / "twin.yaml"
    twin.write_text(TWIN)
    for command in (["apply", str(twin)], ["plan", "--detailed-exitcode", str(twin)],
                    ["destroy", str(twin)]):
        result = host.netdecl(*command)
        assert result.returncode == 0, (command, result.stderr)
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize("kind", sorted(JOURNAL_DAMAGE))
def test_a_damaged_journal_is_one_line_and_blocks_only_its_topology(host, tmp_path, kind):
    leave_a_journal(host)
    damage(host, JOURNAL, JOURNAL_DAMAGE[kind])
    check_damage_is_contained(host, tmp_path, JOURNAL, [
        ["rollback"], ["rollback", "--name", "docker-bridge"], ["rollback", BRIDGE],
        ["apply", BRIDGE], ["destroy", BRIDGE]])
    result = host.netdecl("plan", BRIDGE)  # plan reads no journal: it shows what is there
    assert result.returncode in (0, 1) and "Traceback" not in result.stderr
    assert JOURNAL in state_files(host)  # kept for whoever repairs the host


@pytest.mark.parametrize("kind", sorted(RECORD_DAMAGE))
def test_a_damaged_record_is_one_line_and_blocks_only_its_topology(host, tmp_path, kind):
    assert host.netdecl("apply", BRIDGE).returncode == 0
    damage(host, RECORD, RECORD_DAMAGE[kind])
    check_damage_is_contained(host, tmp_path, RECORD, [
        ["plan", BRIDGE], ["apply", BRIDGE], ["destroy", BRIDGE]])


def test_a_journal_cut_mid_file_never_makes_rollback_report_success(host):
    before = host.snapshot(link_local=False)
    leave_a_journal(host)
    left = host.snapshot(link_local=False)
    assert left != before  # the failed rollback really left something
    damage(host, JOURNAL, JOURNAL_DAMAGE["cut mid-file"])
    result = host.netdecl("rollback")
    assert result.returncode == 1 and "rolled back 'docker-bridge'" not in result.stderr
    assert "Nothing to roll back" not in result.stdout
    assert_same(host.snapshot(link_local=False), left)


# -- signals, and nft vanishing -----------------------------------------------------------------

FAKE_NFT = """#!/bin/sh
case "$*" in *" ip6 "*) rm -f "$0";; esac
exec {real} "$@"
"""


def test_nft_vanishing_mid_apply_exits_4_with_the_journal_kept(host, tmp_path):
    # nft answers the observation (which lists the ip table, then the ip6 one) and is gone
    # for the NAT action: hide the real one with /dev/null (not executable) and put a copy
    # on PATH that removes itself when it lists the ip6 table
    real = tmp_path / "nft-real"
    real.write_bytes(Path("/usr/sbin/nft").read_bytes())
    real.chmod(0o755)
    (tmp_path / "nft").write_text(FAKE_NFT.format(real=real))
    (tmp_path / "nft").chmod(0o755)
    before = host.snapshot()
    host.run(["mount", "--bind", "/dev/null", "/usr/sbin/nft"])
    env = {"PATH": f"{tmp_path}:{os.environ['PATH']}"}
    result = host.netdecl("apply", NAT, env=env)
    assert result.returncode == 4, result.stderr
    assert "nft not found" in result.stderr and "journal is kept" in result.stderr
    assert "NAT tables not checked nor restored" in result.stderr
    assert "Traceback" not in result.stderr
    assert f"{STATE_DIR}/journal/docker-nat.jsonl" in state_files(host)
    host.run(["umount", "/usr/sbin/nft"])
    # the rollback without nft still removed everything else the apply made (its NAT table
    # was never made: the NAT action was the one that failed)
    assert_same(host.snapshot(), before)
    result = host.netdecl("rollback")
    assert result.returncode == 0, result.stderr
    assert_same(host.snapshot(), before)
    assert state_files(host) == []


def test_a_vanished_pending_marker_is_not_a_confirmation(host):
    before = host.snapshot()
    proc = popen_netdecl(host, "apply", "--confirm-timeout", "3", BRIDGE)
    wait_until_waiting(host, proc)
    host.run(["rm", f"{STATE_DIR}/confirm/docker-bridge.pending"])
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert "not confirmed within 3s" in err and "Confirmed" not in err
    assert_same(host.snapshot(), before)
    assert state_files(host) == []


def test_sigterm_during_verification_rolls_back(host, tmp_path):
    # the first `nft list table` of the verification (after every action) signals netdecl
    real = "/usr/sbin/nft"
    script = tmp_path / "nft"
    script.write_text(f"""#!/bin/sh
case " $* " in *" list "*) [ -e {tmp_path}/verifying ] && kill -TERM $PPID;; esac
case " $* " in *" -f "*) touch {tmp_path}/verifying;; esac
exec {real} "$@"
""")
    script.chmod(0o755)
    before = host.snapshot()
    result = host.netdecl("apply", NAT, env={"PATH": f"{tmp_path}:{os.environ['PATH']}"})
    assert result.returncode == 1, result.stderr
    assert "interrupted by SIGTERM" in result.stderr and "Verified" not in result.stdout
    assert_same(host.snapshot(), before)
    assert state_files(host) == []


# -- inputs --------------------------------------------------------------------------------------

def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netdecl", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_a_fifo_given_as_a_plan_does_not_hang_apply(tmp_path):
    fifo = tmp_path / "plan.json"
    os.mkfifo(fifo)
    result = run_cli("apply", str(fifo), timeout=30)
    assert result.returncode == 3
    assert "is not a regular file" in result.stderr and "Traceback" not in result.stderr


def test_a_deeply_nested_plan_is_one_line(tmp_path):
    plan = tmp_path / "plan.json"
    plan.write_text('{"format": "netdecl-plan/1", "actions": ' + "[" * 200_000)
    result = run_cli("apply", str(plan))
    assert result.returncode == 1
    assert "nested too deeply" in one_line(result.stderr)
    plan.write_text('{"format": "netdecl-plan/1", "actions": ' + "[" * 100 + "]" * 100 + "}")
    result = run_cli("apply", str(plan))
    assert result.returncode == 1
    assert "nested more than 32 levels deep" in one_line(result.stderr)


def test_a_plan_over_64_mib_is_refused_unread(tmp_path):
    plan = tmp_path / "plan.json"
    with open(plan, "w") as fh:
        fh.write("{")
        fh.truncate(65 * 1024 * 1024)  # sparse: costs no disk
    result = run_cli("apply", str(plan))
    assert result.returncode == 1
    assert "a saved plan is at most 67108864 bytes" in one_line(result.stderr)


def test_the_nft_pre_check_finds_nft_in_sbin_like_the_backend(tmp_path, monkeypatch):
    from fakehost import FakeHost

    from netdecl.backends import nftables
    from netdecl.engine import service
    from netdecl.topology.loader import load_topology

    if not Path("/usr/sbin/nft").exists():
        pytest.skip("no /usr/sbin/nft on this machine")
    monkeypatch.setenv("PATH", str(tmp_path))  # cron's PATH has no sbin
    assert nftables.find_nft() == "/usr/sbin/nft"
    topo = load_topology(Path(__file__).resolve().parent.parent / NAT)
    plan = service.plan(topo, tmp_path / "state", host=FakeHost())
    assert plan.actions


ADDRESSES = """\
version: 1
name: promo
links:
  - name: br-promo
    kind: bridge
    addresses: [{addresses}]
"""


def test_removing_a_primary_address_with_secondaries_converges(host, tmp_path):
    path = tmp_path / "promo.yaml"
    path.write_text(ADDRESSES.format(addresses="10.9.0.1/24, 10.9.0.2/24, 10.9.0.3/24"))
    assert host.netdecl("apply", str(path)).returncode == 0
    path.write_text(ADDRESSES.format(addresses="10.9.0.2/24, 10.9.0.3/24"))
    result = host.netdecl("apply", str(path))
    assert result.returncode == 0, result.stderr
    assert host.netdecl("plan", "--detailed-exitcode", str(path)).returncode == 0
    info = host.ip_json("addr", "show", "dev", "br-promo")[0]["addr_info"]
    assert sorted(a["local"] for a in info if a["family"] == "inet") == ["10.9.0.2", "10.9.0.3"]


def test_a_port_with_a_trailing_newline_is_invalid(tmp_path):
    # (a name with one: tests/test_loader_fuzz.py)
    path = tmp_path / "t.yaml"
    path.write_text('version: 1\nname: nl\nnat:\n  port_forwards:\n'
                    '    - {proto: tcp, port: "8080\\n", to: "10.0.0.2:80"}\n')
    result = run_cli("validate", str(path))
    assert result.returncode == 3, result.stdout + result.stderr
    assert "Traceback" not in result.stderr

