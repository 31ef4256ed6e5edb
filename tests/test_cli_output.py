"""Output for people and for logs (issue 16): counted lines on and off a terminal.

Off a terminal (pipes: a log, CI) apply and destroy print the plan and a summary, nothing per
action unless -v; -q prints the summary alone. On a terminal (a pseudo-terminal here) long work
shows one progress line rewritten in place with \\r and cleared at the end, so what stays on
the screen is the plan and the summary; the symbols are coloured unless NO_COLOR is set.
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time

from harness import STATE_DIR
from test_rollback import many_namespaces, plan_actions
from test_unfinished import kill_apply

ANSI = re.compile(r"\x1b\[[0-9;]*m")
# the environment of a colour terminal; NO_COLOR="" counts as unset (no-color.org)
TERMINAL = {"TERM": "xterm", "NO_COLOR": ""}


def on_terminal(host, *args: str, env: dict[str, str] | None = None,
                timeout: float = 120) -> tuple[int, str]:
    """netdecl with stdout and stderr on one pseudo-terminal: (exit status, all it wrote)."""
    master, slave = pty.openpty()
    argv = host._argv([sys.executable, "-m", "netdecl", *args], None)
    full_env = host._env({"NETDECL_STATE_DIR": STATE_DIR, **TERMINAL, **(env or {})})
    proc = subprocess.Popen(argv, env=full_env, stdin=subprocess.DEVNULL, stdout=slave,
                            stderr=slave)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], deadline - time.monotonic())
            if not ready:
                break
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the last writer closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        if proc.poll() is None and time.monotonic() >= deadline:
            proc.kill()
    return proc.wait(timeout=30), b"".join(chunks).decode()


def screen(raw: str) -> list[str]:
    """The rows a terminal shows for ``raw``: a carriage return goes back to the start of
    the row and what follows overwrites it (colour codes dropped, trailing blanks too)."""
    rows: list[str] = []
    row: list[str] = []
    col = 0
    for ch in ANSI.sub("", raw):
        if ch == "\r":
            col = 0
        elif ch == "\n":
            rows.append("".join(row).rstrip())
            row, col = [], 0
        else:
            if col < len(row):
                row[col] = ch
            else:
                row.append(ch)
            col += 1
    if row:
        rows.append("".join(row).rstrip())
    return rows


def lines(text: str) -> list[str]:
    return text.splitlines()


def big_topology(tmp_path) -> str:
    path = tmp_path / "many.yaml"
    path.write_text(many_namespaces(15))
    return str(path)


def test_off_a_terminal_plan_and_summary_only_v_per_action_q_summary_alone(host, tmp_path):
    path = big_topology(tmp_path)
    total = len(plan_actions(host, path))
    assert total >= 50

    result = host.netdecl("apply", path)
    assert result.returncode == 0, result.stderr
    out = lines(result.stdout)
    assert len(out) == total + 3  # the actions, a blank line, "Plan: ...", the summary
    assert out[-2] == f"Plan: {total} to add, 0 to change, 0 to destroy."
    assert out[-1] == f"Apply complete: {total} added, 0 changed, 0 destroyed. Verified."
    assert result.stderr == ""  # no progress lines in a log
    assert "\x1b[" not in result.stdout

    result = host.netdecl("destroy", "-q", path)
    assert result.returncode == 0, result.stderr
    summary = re.fullmatch(r"Destroy complete: (\d+) destroyed, 0 restored\. Verified\.\n",
                           result.stdout)
    assert summary, result.stdout
    destroyed = int(summary[1])  # fewer than created: a namespace takes its contents along
    assert result.stderr == ""

    result = host.netdecl("apply", "--verbose", path)
    assert result.returncode == 0, result.stderr
    assert len(lines(result.stdout)) == total + 3
    progress = lines(result.stderr)
    assert len(progress) == total
    assert all(line.startswith(f"[{n}/{total}] ") for n, line in enumerate(progress, 1))
    assert progress[0] == f"[1/{total}] + namespace c0"

    result = host.netdecl("destroy", "-v", path)
    assert result.returncode == 0, result.stderr
    assert len(lines(result.stderr)) == destroyed and len(lines(result.stdout)) == destroyed + 3
    assert all(line.startswith(f"[{n}/{destroyed}] - ")
               for n, line in enumerate(lines(result.stderr), 1))

    result = host.netdecl("apply", "--quiet", path)
    assert result.returncode == 0, result.stderr
    assert lines(result.stdout) == [f"Apply complete: {total} added, 0 changed, "
                                    f"0 destroyed. Verified."]
    assert result.stderr == ""
    # -v and -q together make no sense: a usage error (exit 1)
    result = host.netdecl("destroy", "-v", "-q", path)
    assert result.returncode == 1 and "not allowed with argument" in result.stderr


def test_on_a_terminal_one_progress_line_cleared_at_the_end_and_colour(host, tmp_path):
    path = big_topology(tmp_path)
    total = len(plan_actions(host, path))
    assert total >= 50

    status, raw = on_terminal(host, "apply", path)
    assert status == 0, raw
    rows = screen(raw)
    assert len(rows) == total + 3, rows  # the plan and the summary: the progress is gone
    assert rows[-1].startswith("Apply complete: ")
    assert not any(row.startswith("[") for row in rows)
    # ... yet it was drawn: every action on the same row, rewritten with \r, never a newline
    assert f"\r[1/{total}] + namespace c0" in raw and f"\r[{total}/{total}] " in raw
    assert raw.count("\n") == total + 3
    assert "\x1b[32m+\x1b[0m namespace c0" in raw  # + in green

    status, raw = on_terminal(host, "destroy", path, env={"NO_COLOR": "1"})
    assert status == 0, raw
    assert "\x1b[" not in raw  # NO_COLOR: not one escape sequence
    rows = screen(raw)
    destroyed = int(re.fullmatch(r"Plan: 0 to add, 0 to change, (\d+) to destroy\.",
                                 rows[-2])[1])
    assert len(rows) == destroyed + 3 and rows[-1].startswith("Destroy complete: ")
    assert f"\r[1/{destroyed}] - " in raw and f"\r[{destroyed}/{destroyed}] - " in raw

    status, raw = on_terminal(host, "apply", "-v", path)
    assert status == 0, raw
    rows = screen(raw)
    assert len(rows) == 2 * total + 3  # -v: a row per action as well, kept
    assert sum(row.startswith("[") for row in rows) == total

    status, raw = on_terminal(host, "destroy", "-q", path)
    assert status == 0, raw
    assert screen(raw) == [f"Destroy complete: {destroyed} destroyed, 0 restored. Verified."]


def test_a_rollback_shows_progress_on_a_terminal_too(host, tmp_path):
    path = big_topology(tmp_path)
    total = len(plan_actions(host, path))
    kill_apply(host, path, str(total - 10))
    status, raw = on_terminal(host, "rollback")
    assert status == 0, raw
    assert "\r[1/" in raw and " rolling back: - " in raw
    assert screen(raw) == [
        f"netdecl: an earlier apply of 'many' did not finish (it stopped after step "
        f"{total - 10} of {total}); rolling it back",
        "netdecl: rolled back 'many' to the state before that apply"]
    assert host.netns_list() == []
