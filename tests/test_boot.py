"""`netdecl boot DIR` and `--wait-for-links` (issue 28) in a hermetic host: each file of the
directory stands alone, a NIC that never appears is named after the wait, one that appears
during the wait is used. Judged with `ip -j`, not netdecl's own reading."""

from __future__ import annotations

import pytest
from test_rollback import popen_netdecl

from netdecl.agent.boot import parse_duration

GOOD = """\
version: 1
name: good
links:
  - {name: good0, kind: bridge, addresses: [10.50.0.1/24]}
"""
# line 5 col 11: the schema refuses the kind
BAD = """\
version: 1
name: bad
links:
  - name: bad0
    kind: nonsense
"""
NEEDS_NIC = """\
version: 1
name: nic
links:
  - {name: uplink9, kind: external}
  - {name: nicbr0, kind: bridge}
routes:
  - {to: 10.77.0.0/16, dev: uplink9}
"""


def _links(host) -> set[str]:
    return {link["ifname"] for link in host.ip_json("link", "show")}


def test_each_file_stands_alone_and_the_journal_names_the_bad_ones(host, tmp_path):
    etc = tmp_path / "netdecl"
    etc.mkdir()
    (etc / "10-good.yaml").write_text(GOOD)
    (etc / "20-bad.yaml").write_text(BAD)
    (etc / "30-nic.yaml").write_text(NEEDS_NIC)
    (etc / "notes.txt").write_text("not a topology")
    before = _links(host)
    result = host.netdecl("boot", "--wait-for-links", "300ms", str(etc))
    # the worst of the three: an invalid file (3) beats a missing NIC (1)
    assert result.returncode == 3, result.stderr
    lines = result.stderr.splitlines()
    assert any(line.startswith(f"{etc}/20-bad.yaml:5:") for line in lines), result.stderr
    assert f"{etc}/20-bad.yaml: skipped (invalid); the other files are applied" in lines
    missing = [line for line in lines if line.startswith(f"{etc}/30-nic.yaml: not applied")]
    assert missing and "uplink9 did not appear within 0.3s" in missing[0], result.stderr
    assert "boot: 1 of 3 topology files" in result.stderr
    # the good one is applied, the others left nothing behind
    assert _links(host) == before | {"good0"}
    addresses = host.ip_json("addr", "show", "good0")[0]["addr_info"]
    assert [(a["local"], a["prefixlen"]) for a in addresses if a["family"] == "inet"] == \
        [("10.50.0.1", 24)]
    # a second boot changes nothing and says so
    again = host.netdecl("boot", str(etc / "10-good.yaml").rsplit("/", 1)[0])
    assert "topology good already matches the host" in again.stderr


def test_a_nic_that_appears_during_the_wait_is_used(host, tmp_path):
    etc = tmp_path / "netdecl"
    etc.mkdir()
    (etc / "nic.yaml").write_text(NEEDS_NIC)
    proc = popen_netdecl(host, "boot", "--wait-for-links", "60s", str(etc))
    try:
        # the NIC arrives (as udev would rename one): before or during the wait, it is used
        host.run(["ip", "link", "add", "uplink9", "type", "veth", "peer", "name", "other9"])
        host.run(["ip", "link", "set", "uplink9", "up"])
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    routes = host.ip_json("route", "show", "10.77.0.0/16")
    assert [r["dev"] for r in routes] == ["uplink9"]


def test_apply_waits_for_links_too_and_names_the_missing_one(host, tmp_path):
    path = tmp_path / "nic.yaml"
    path.write_text(NEEDS_NIC)
    result = host.netdecl("apply", "--wait-for-links", "0.2", str(path))
    assert result.returncode == 1
    assert "external link uplink9 did not appear within 0.2s" in result.stderr
    assert "nicbr0" not in _links(host)


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("2m", 120), ("500ms", 0.5),
                                               ("1.5", 1.5), ("5min", 300)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "s", "-1s", "3h", "1 2"])
def test_bad_durations(text):
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)
