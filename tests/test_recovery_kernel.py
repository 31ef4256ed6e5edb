"""Recovery that never strands the host (issue 29), on a real kernel: a journal whose last line
a crash tore, a namespace file a killed removal left, a state dir that runs out of space.

Kills land at exact points through test hooks (NETDECL_TEST_PAUSE_*, NETDECL_TEST_KILL_AT):
no sleeps decide what happened when.
"""

from __future__ import annotations

import os
import signal

from harness import STATE_DIR
from test_rollback import assert_same, many_namespaces, popen_netdecl, state_files

STAR = "many"
JOURNAL = f"{STATE_DIR}/journal/{STAR}.jsonl"


def pause_and_kill(host, tmp_path, args: list[str], before: int) -> None:
    """Run `netdecl ARGS`, wait (a FIFO, not a sleep) until it is about to run its
    ``before``-th action, and SIGKILL it there."""
    fifo = tmp_path / "pause"
    os.mkfifo(fifo)
    proc = popen_netdecl(host, *args, env={"NETDECL_TEST_PAUSE_BEFORE": str(before),
                                           "NETDECL_TEST_PAUSE_FIFO": str(fifo)})
    # the open returns once netdecl opened the FIFO to wait on it: it is paused there
    with open(fifo, "w"):
        proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    fifo.unlink()


def tear_the_journal(host) -> int:
    """Append half a line, as a crash or a full disk during a write leaves; returns the number
    of that line."""
    complete = host.run(["sh", "-c", f"wc -l < {JOURNAL}"]).stdout.strip()
    host.run(["sh", "-c", f"printf '%s' '{{\"start\": 99, \"action\": {{\"op\": \"cr' >> "
                          f"{JOURNAL}"])
    return int(complete) + 1


def test_a_torn_last_line_is_discarded_and_every_command_works(host, tmp_path):
    star = tmp_path / "star.yaml"
    star.write_text(many_namespaces(12, STAR))
    before = host.snapshot(link_local=False)
    pause_and_kill(host, tmp_path, ["apply", str(star)], before=30)
    assert host.netns_list(), "the kill came too early to test anything"
    torn = tear_the_journal(host)

    # plan: not "damaged" but the interrupted apply, and advice that works
    result = host.netdecl("plan", str(star))
    assert result.returncode == 1
    assert "damaged" not in result.stderr and "was interrupted after step" in result.stderr
    assert "`netdecl rollback`" in result.stderr

    result = host.netdecl("rollback")
    assert result.returncode == 0, result.stderr
    assert f"{JOURNAL}: line {torn} was cut short" in result.stderr
    assert "rolled back 'many'" in result.stderr
    assert_same(host.snapshot(link_local=False), before, "after rolling back a torn journal")
    assert host.run(["ls", "-A", "/run/netns"]).stdout.split() == []
    assert state_files(host) == []

    # destroy and apply after a torn journal: each rolls it back first, then does its work
    for command in ("destroy", "apply"):
        pause_and_kill(host, tmp_path, ["apply", str(star)], before=20)
        tear_the_journal(host)
        result = host.netdecl(command, str(star))
        assert result.returncode == 0, (command, result.stderr)
        assert "was cut short" in result.stderr and "rolled back 'many'" in result.stderr
    # the apply that followed works for real: traffic across the star's bridge
    assert host.ping("c0", "10.77.1.13")
    assert host.netdecl("plan", "--detailed-exitcode", str(star)).returncode == 0
    assert host.netdecl("destroy", str(star)).returncode == 0
    assert_same(host.snapshot(link_local=False), before, "after destroy")





def test_a_journal_damaged_in_the_middle_is_salvaged_after_showing_the_plan(host, tmp_path):
    star = tmp_path / "star.yaml"
    star.write_text(many_namespaces(12, STAR))
    before = host.snapshot(link_local=False)
    pause_and_kill(host, tmp_path, ["apply", str(star)], before=30)
    left = host.snapshot(link_local=False)
    host.run(["sed", "-i", "3s/.*/garbage/", JOURNAL])  # a line in the middle destroyed

    refused = host.netdecl("rollback")
    assert refused.returncode == 1
    assert f"{JOURNAL} is damaged or not netdecl's (line 3: not JSON)" in refused.stderr
    # the advice, in its order: plan works (read-only), then --salvage
    result = host.netdecl("plan", str(star))
    assert "Traceback" not in result.stderr and "is damaged" in result.stdout + result.stderr
    assert "rollback --salvage --name many" in result.stdout + result.stderr

    # without a terminal and without --yes: the plan, and nothing done
    result = host.netdecl("rollback", "--salvage", "--name", STAR)
    assert result.returncode == 1 and "--yes" in result.stderr
    assert "- namespace c0" in result.stderr  # the plan was shown first
    assert_same(host.snapshot(link_local=False), left, "after a salvage not confirmed")

    result = host.netdecl("rollback", "--salvage", "--yes", str(star))
    assert result.returncode == 0, result.stderr
    assert "kept: line 3 (not JSON) could not be read" in result.stderr
    assert_same(host.snapshot(link_local=False), before, "after the salvage")
    assert state_files(host) == [f"{JOURNAL}.salvaged"]
    assert host.netdecl("apply", str(star)).returncode == 0  # nothing in its way any more
    assert host.ping("c0", "10.77.1.13")


# -- a namespace removal killed between its unmount and its unlink ------------------------------

BRIDGE = "topologies/docker-bridge.yaml"
KILL_AFTER_UMOUNT = "NETDECL_TEST_KILL_AFTER_UMOUNT"


def netns_files(host) -> list[str]:
    return host.run(["ls", "-A", "/run/netns"]).stdout.split()


def is_plain_file(host, name: str) -> bool:
    """/run/netns/NAME exists and holds no namespace (no mount: `mountpoint` says no)."""
    path = f"/run/netns/{name}"
    exists = host.run(["test", "-f", path], check=False).returncode == 0
    mounted = host.run(["mountpoint", "-q", path], check=False).returncode == 0
    return exists and not mounted


def test_a_destroy_killed_mid_removal_is_finished_by_the_next_one(host):
    before = host.snapshot(link_local=False)
    assert host.netdecl("apply", BRIDGE).returncode == 0
    killed = host.netdecl("destroy", BRIDGE, env={KILL_AFTER_UMOUNT: "nginx-1"})
    assert killed.returncode == -9
    assert is_plain_file(host, "nginx-1")  # what the kill left: a file, no namespace

    result = host.netdecl("destroy", BRIDGE)
    assert result.returncode == 0, result.stderr
    assert "File exists" not in result.stderr
    assert "rolled back 'docker-bridge'" in result.stderr and "Destroy complete" in result.stdout
    assert netns_files(host) == []
    assert_same(host.snapshot(link_local=False), before, "after the second destroy")
    assert state_files(host) == []


def test_a_rollback_killed_mid_removal_is_finished_and_not_called_done_before(host, tmp_path):
    star = tmp_path / "star.yaml"
    star.write_text(many_namespaces(6, STAR))
    before = host.snapshot(link_local=False)
    pause_and_kill(host, tmp_path, ["apply", str(star)], before=16)
    killed = host.netdecl("rollback", env={KILL_AFTER_UMOUNT: "c0"})
    assert killed.returncode == -9
    assert is_plain_file(host, "c0")

    result = host.netdecl("rollback")
    assert result.returncode == 0, result.stderr
    assert "rolled back 'many'" in result.stderr
    assert netns_files(host) == []  # the file is gone, not only the namespace
    assert_same(host.snapshot(link_local=False), before, "after the second rollback")
    # and the next apply is not stopped by it (File exists)
    assert host.netdecl("apply", str(star)).returncode == 0
    assert host.ping("c0", "10.77.1.7")


def test_a_plain_file_that_is_not_empty_is_never_removed_and_is_reported(host):
    assert host.netdecl("apply", BRIDGE).returncode == 0
    assert host.netdecl("destroy", BRIDGE, env={KILL_AFTER_UMOUNT: "nginx-1"}).returncode == -9
    # someone put data in the file meanwhile: not what netdecl's removal leaves
    host.run(["sh", "-c", "echo theirs > /run/netns/nginx-1"])
    result = host.netdecl("rollback")
    assert result.returncode == 4, result.stderr
    assert "/run/netns/nginx-1 holds no namespace but is not the empty file" in result.stderr
    assert "rolled back 'docker-bridge'" not in result.stderr
    assert host.run(["cat", "/run/netns/nginx-1"]).stdout == "theirs\n"


# -- a full disk --------------------------------------------------------------------------------

def tiny_state_dir(host) -> None:
    """The state dir on a 64 KiB tmpfs of its own (inside the host's mount namespace)."""
    host.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", STATE_DIR])


def adoptable_bridge(host) -> None:
    """The star's bridge and a route through it, made by hand before netdecl adopts them."""
    host.run(["ip", "link", "add", "brm", "type", "bridge"])
    host.run(["ip", "link", "set", "brm", "alias", "made by hand", "up"])
    host.run(["ip", "addr", "add", "10.77.0.1/16", "dev", "brm"])
    host.run(["ip", "route", "add", "10.78.0.0/16", "via", "10.77.1.2", "proto", "static"])


def star_with_route(n: int) -> str:
    return many_namespaces(n, STAR).replace(
        "routes:\n", "routes:\n  - {to: 10.78.0.0/16, via: 10.77.1.2}\n", 1)


def test_a_full_disk_mid_apply_rolls_back_everything_and_marks_nothing(host, tmp_path):
    tiny_state_dir(host)
    adoptable_bridge(host)
    star = tmp_path / "star.yaml"
    star.write_text(star_with_route(40))
    before = host.snapshot(link_local=False)

    result = host.netdecl("apply", "--adopt", str(star))
    assert result.returncode == 1, result.stderr  # apply failed, rolled back (not 4)
    assert "No space left on device" in result.stderr or "no room left" in result.stderr
    done = int(result.stderr.split("rolled back: the ")[1].split(" action")[0])
    assert done > 10, "the disk filled before the apply got going: nothing tested mid-apply"
    assert_same(host.snapshot(link_local=False), before, "after a full disk mid-apply")
    # the adopted bridge and route are nobody's again: no mark, their own protocol
    brm = host.ip_json("-d", "link", "show", "brm")[0]
    assert brm.get("ifalias") == "made by hand"
    route = host.ip_json("route", "show", "10.78.0.0/16")[0]
    assert route.get("protocol") == "static"
    assert state_files(host) == []
    assert netns_files(host) == []


def test_a_rollback_needs_no_free_space_it_did_not_keep(host, tmp_path):
    tiny_state_dir(host)
    adoptable_bridge(host)
    star = tmp_path / "star.yaml"
    star.write_text(star_with_route(4))
    before = host.snapshot(link_local=False)
    pause_and_kill(host, tmp_path, ["apply", "--adopt", str(star)], before=15)
    assert host.ip_json("-d", "link", "show", "brm")[0].get("ifalias") != "made by hand"
    # someone fills the state dir's filesystem to the last byte
    filled = host.run(["sh", "-c", f"cat /dev/zero > {STATE_DIR}/filler"], check=False)
    assert "No space left" in filled.stderr

    result = host.netdecl("rollback")
    assert result.returncode == 0, result.stderr
    assert "rolled back 'many'" in result.stderr
    assert_same(host.snapshot(link_local=False), before, "after a rollback on a full disk")
    assert host.ip_json("-d", "link", "show", "brm")[0].get("ifalias") == "made by hand"
    assert host.ip_json("route", "show", "10.78.0.0/16")[0].get("protocol") == "static"
    assert state_files(host) == [f"{STATE_DIR}/filler"]

    # with the disk still full (but for the room the finished journal gave back), an apply
    # fails and undoes what it did
    result = host.netdecl("apply", "--adopt", str(star))
    assert result.returncode == 1 and "no room left in" in result.stderr, result.stderr
    assert_same(host.snapshot(link_local=False), before, "after an apply with no room")
    # once there is room, it goes through
    host.run(["rm", f"{STATE_DIR}/filler"])
    assert host.netdecl("apply", "--adopt", str(star)).returncode == 0
    assert host.ping("c0", "10.77.1.5")
