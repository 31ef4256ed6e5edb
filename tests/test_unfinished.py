"""An interrupted apply is never hidden (issue 16): after a SIGKILL mid-way or after the last
step, `plan` says which apply, how far it got and to run `netdecl rollback` (exit 1) instead
of a conflict list or "No changes"; `show` warns; apply and rollback say how far it got.

The kills are exact, not timed: the apply runs in a script through the Python API and kills
itself (SIGKILL, so nothing of netdecl's runs after it) from its progress callback before
action K+1, or in place of the verification that follows the last action.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys

from harness import STATE_DIR
from test_rollback import (
    BRIDGE,
    assert_same,
    journal_steps,
    many_namespaces,
    plan_actions,
    state_files,
)

KILLED_APPLY = f"""
import os, signal, sys
import netdecl
from netdecl.engine.applier import Applier

path, when = sys.argv[1], sys.argv[2]

def die(*_):
    os.kill(os.getpid(), signal.SIGKILL)

if when == "last":  # every action done and the record saved; killed instead of verifying
    Applier.verify = die
    progress = None
else:  # killed after exactly `when` actions
    progress = lambda number, total, action: die() if number == int(when) + 1 else None
netdecl.apply(netdecl.load(path), state_dir={STATE_DIR!r},
              events=netdecl.Events(progress=progress))
"""

PAUSED_APPLY = f"""
import sys
import netdecl

path, after = sys.argv[1], int(sys.argv[2])

def pause(number, total, action):
    if number == after + 1:
        print("paused", flush=True)
        sys.stdin.readline()

netdecl.apply(netdecl.load(path), state_dir={STATE_DIR!r},
              events=netdecl.Events(progress=pause))
"""


def kill_apply(host, path: str, when: str) -> None:
    result = host.run([sys.executable, "-c", KILLED_APPLY, path, when], check=False)
    assert result.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL), result.stderr


def many(tmp_path, n: int = 15) -> str:
    path = tmp_path / "many.yaml"
    path.write_text(many_namespaces(n))
    return str(path)


def test_plan_after_a_sigkill_mid_apply_says_how_far_and_to_roll_back(host, tmp_path):
    path = many(tmp_path)
    before = host.snapshot()
    total = len(plan_actions(host, path))
    done = total // 2
    kill_apply(host, path, str(done))
    assert journal_steps(host, "many") == done
    assert host.netns_list(), "the apply did nothing before it was killed"

    for flags in ([], ["--detailed-exitcode"], ["--json"]):
        result = host.netdecl("plan", *flags, path)
        assert result.returncode == 1, result.stderr
        assert result.stdout == ""
        lines = result.stderr.splitlines()
        assert len(lines) == 2, result.stderr
        assert lines[0].startswith(f"netdecl: an apply of 'many' was interrupted after step "
                                   f"{done} of {total}: the host is half-changed")
        assert "Run `netdecl rollback`" in lines[1]
        assert "conflict" not in result.stderr

    # show: the half-changed state, with a warning line on stderr
    result = host.netdecl("show")
    assert result.returncode == 0 and "namespaces:" in result.stdout
    assert result.stderr.splitlines() == [
        f"netdecl: warning: an apply of 'many' was interrupted after step {done} of {total}: "
        f"what follows is a half-changed host; `netdecl rollback` restores the state before it"]

    # the API says the same, as data
    result = host.run([sys.executable, "-c", "import json, netdecl; print(json.dumps([["
                       "p.topology, p.steps_done, p.total, p.interrupted] for p in "
                       f"netdecl.unfinished(state_dir={STATE_DIR!r})]))"])
    assert json.loads(result.stdout) == [["many", done, total, True]]

    # another topology's plan works, and notes the interrupted apply and how to roll it back
    # (only operations on 'many' itself replay its journal)
    result = host.netdecl("plan", BRIDGE)
    assert result.returncode == 0, result.stderr
    assert (f"note: an apply of 'many' was interrupted after step {done} of {total}; "
            f"`netdecl rollback --name many` rolls it back") in result.stdout

    result = host.netdecl("rollback", "-v")
    assert result.returncode == 0, result.stderr
    assert (f"an earlier apply of 'many' did not finish (it stopped after step {done} of "
            f"{total}); rolling it back") in result.stderr
    steps = [line for line in result.stderr.splitlines() if " rolling back: " in line]
    assert steps and steps[0].startswith(f"[1/{len(steps)}] rolling back: - ")
    assert_same(host.snapshot(), before)
    assert state_files(host) == []
    assert host.netdecl("plan", "--detailed-exitcode", path).returncode == 2


def test_plan_after_a_sigkill_after_the_last_step_is_not_no_changes(host, tmp_path):
    path = many(tmp_path, 5)
    before = host.snapshot()
    total = len(plan_actions(host, path))
    kill_apply(host, path, "last")
    assert journal_steps(host, "many") == total
    # every object exists and the record is written: without the journal this plan would say
    # "No changes" (exit 0), and `netdecl rollback` would then remove all of it
    result = host.netdecl("plan", "--detailed-exitcode", path)
    assert result.returncode == 1, result.stdout
    assert "No changes" not in result.stdout + result.stderr
    assert (f"an apply of 'many' was interrupted after its last step ({total} of {total}), "
            f"before it finished") in result.stderr

    result = host.netdecl("apply", path)  # rolls back first, says how far it got, applies
    assert result.returncode == 0, result.stderr
    assert (f"an earlier apply of 'many' did not finish (it stopped after its last step "
            f"({total} of {total}), before it finished); rolling it back first") in result.stderr
    assert host.netdecl("plan", "--detailed-exitcode", path).returncode == 0
    assert host.netdecl("destroy", path).returncode == 0
    assert_same(host.snapshot(), before)


def test_plan_while_the_apply_still_runs_says_so(host, tmp_path):
    path = many(tmp_path, 5)
    total = len(plan_actions(host, path))
    argv = host._argv([sys.executable, "-c", PAUSED_APPLY, path, "3"], None)
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline() == "paused\n", proc.communicate()
        result = host.netdecl("plan", path)
        assert result.returncode == 1
        assert result.stderr == (f"netdecl: an apply of 'many' is running right now (process "
                                 f"{proc.pid}, 3 of {total} steps done); plan again once it "
                                 f"has finished\n")
        proc.stdin.write("\n")
        proc.stdin.flush()
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
    result = host.netdecl("plan", "--detailed-exitcode", path)
    assert result.returncode == 0 and "No changes" in result.stdout
