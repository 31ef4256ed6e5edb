"""apply --confirm-timeout: unconfirmed applies undo themselves; `netdecl confirm` keeps them.

stdin is /dev/null throughout (not a terminal): the confirmation comes from another process.
"""

from __future__ import annotations

import signal
import time

from harness import REPO_ROOT, STATE_DIR
from test_rollback import assert_same, popen_netdecl, state_files

BRIDGE = "topologies/docker-bridge.yaml"


def wait_until_waiting(host, proc, timeout: float = 60) -> None:
    """Until the apply announces it waits for confirmation (its .pending marker exists)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if host.run(["test", "-e", f"{STATE_DIR}/confirm/docker-bridge.pending"],
                    check=False).returncode == 0:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError("apply never started waiting for confirmation")


def test_unconfirmed_apply_rolls_back_by_itself(host):
    before = host.snapshot()
    start = time.monotonic()
    result = host.netdecl("apply", "--confirm-timeout", "1.5", BRIDGE)
    assert result.returncode == 1, result.stderr
    assert time.monotonic() - start >= 1.5
    assert "Waiting 1.5s for confirmation" in result.stderr
    assert "not confirmed within 1.5s" in result.stderr and "rolled back" in result.stderr
    assert_same(host.snapshot(), before)
    assert state_files(host) == []
    result = host.netdecl("confirm")  # nothing is waiting any more
    assert result.returncode == 1 and "nothing to confirm" in result.stderr


def test_confirmed_apply_stays_and_the_changes_were_live_while_waiting(host):
    proc = popen_netdecl(host, "apply", "--confirm-timeout", "60", BRIDGE)
    wait_until_waiting(host, proc)
    # while waiting, the new state is already in place (and the journal still exists)
    assert host.netns_list() == ["nginx-1", "nginx-2"]
    assert f"{STATE_DIR}/journal/docker-bridge.jsonl" in state_files(host)
    # the waiting apply holds the lock, but confirm needs none
    locked = host.netdecl("destroy", "--lock-timeout", "0.1", BRIDGE)
    assert locked.returncode == 1 and f"process {proc.pid}" in locked.stderr
    result = host.netdecl("confirm", "--name", "docker-bridge")
    assert result.returncode == 0, result.stderr
    assert "Confirmed the apply of docker-bridge" in result.stdout
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Confirmed: keeping the changes." in err
    assert state_files(host) == [f"{STATE_DIR}/topologies/docker-bridge.json"]
    assert host.netdecl("plan", "--detailed-exitcode", BRIDGE).returncode == 0
    host.start_server("nginx-1", 80)
    assert host.http_get("nginx-2", "172.17.0.2", 80).ok


def test_confirmed_modify_is_kept_and_unconfirmed_modify_reverts(host, tmp_path):
    assert host.netdecl("apply", BRIDGE).returncode == 0
    before = host.snapshot()
    changed = tmp_path / "changed.yaml"
    changed.write_text((REPO_ROOT / BRIDGE).read_text().replace("172.17.0.3/16",
                                                               "172.17.0.9/16"))
    result = host.netdecl("apply", "--confirm-timeout", "0.5", str(changed))
    assert result.returncode == 1 and "not confirmed" in result.stderr
    assert_same(host.snapshot(), before)
    proc = popen_netdecl(host, "apply", "--confirm-timeout", "60", str(changed))
    wait_until_waiting(host, proc)
    assert host.netdecl("confirm").returncode == 0  # the only one waiting: no --name needed
    assert proc.wait(timeout=30) == 0
    addrs = host.ip_json("addr", "show", "dev", "eth0", ns="nginx-2")[0]["addr_info"]
    assert [a["local"] for a in addrs if a["family"] == "inet"] == ["172.17.0.9"]


def test_sigterm_while_waiting_rolls_back(host):
    before = host.snapshot()
    proc = popen_netdecl(host, "apply", "--confirm-timeout", "60", BRIDGE)
    wait_until_waiting(host, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err
    assert "interrupted by SIGTERM" in err
    assert_same(host.snapshot(), before)
    assert state_files(host) == []


def test_crash_while_waiting_is_recovered(host):
    before = host.snapshot()
    proc = popen_netdecl(host, "apply", "--confirm-timeout", "60", BRIDGE)
    wait_until_waiting(host, proc)
    proc.kill()
    proc.wait(timeout=10)
    result = host.netdecl("confirm")
    assert result.returncode == 1 and "is gone" in result.stderr
    result = host.netdecl("rollback")
    assert result.returncode == 0 and "rolled back 'docker-bridge'" in result.stderr
    assert_same(host.snapshot(), before)
    assert state_files(host) == []


def test_enter_on_a_terminal_confirms(host):
    """stdin a pseudo-terminal: pressing Enter is the confirmation."""
    import os
    import pty
    import subprocess
    import sys

    master, slave = pty.openpty()
    argv = host._argv([sys.executable, "-m", "netdecl", "apply", "--confirm-timeout", "60",
                       BRIDGE], None)
    env = host._env({"NETDECL_STATE_DIR": STATE_DIR})
    proc = subprocess.Popen(argv, env=env, stdin=slave, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    os.close(slave)
    try:
        wait_until_waiting(host, proc)
        os.write(master, b"\n")
        _, err = proc.communicate(timeout=30)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "press Enter" in err and "Confirmed: keeping the changes." in err
    assert host.netns_list() == ["nginx-1", "nginx-2"]
    assert state_files(host) == [f"{STATE_DIR}/topologies/docker-bridge.json"]
