"""The sd_notify client (netdecl/agent/notify.py) against a real AF_UNIX datagram socket, the
way systemd listens for it; and the agent under it: READY=1 only once its first reconcile is
done (the link is there when systemd hears it), WATCHDOG=1 pings while it idles."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
from agentproc import AgentProcess

from netdecl.agent.notify import Notifier

TOPOLOGY = """\
version: 1
name: ready
links:
  - {name: rdy0, kind: bridge}
"""


@pytest.fixture
def listener(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(30)
    yield sock
    sock.close()


def _receive(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.splitlines())


def test_ready_status_and_stopping_reach_the_socket(listener, tmp_path):
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify")})
    assert n.enabled and n.watchdog_interval is None
    assert n.ready("first reconcile done")
    assert _receive(listener) == {"READY": "1", "STATUS": "first reconcile done"}
    assert n.stopping()
    assert _receive(listener) == {"STOPPING": "1"}
    assert not n.watchdog()  # no WatchdogSec: nothing to ping


def test_an_abstract_socket_name_is_written_with_a_nul():
    name = f"netdecl-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).status("hello")
        assert _receive(sock) == {"STATUS": "hello"}


def test_the_watchdog_interval_is_half_the_timeout_and_only_for_this_process():
    assert Notifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "20000000"}
                    ).watchdog_interval == 10.0
    mine = str(os.getpid())
    assert Notifier({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": mine}).watchdog_interval == 2.0
    assert Notifier({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}).watchdog_interval is None
    assert Notifier({"WATCHDOG_USEC": "0"}).watchdog_interval is None


def test_without_a_socket_nothing_is_sent_and_nothing_fails(tmp_path):
    assert not Notifier({}).ready("x")
    # systemd gone (the socket's file left behind, or none): the agent must not fail
    assert not Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")}).ready("x")


def test_the_agent_is_ready_once_its_topology_is_applied_then_pings(host, listener, tmp_path):
    path = tmp_path / "ready.yaml"
    path.write_text(TOPOLOGY)
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "1000000"}
    with AgentProcess(host, str(path), env=env) as agent:
        # before READY only watchdog pings (the apply's actions ping too)
        early = []
        while "READY" not in (first := _receive(listener)):
            early.append(first)
        assert all(m == {"WATCHDOG": "1"} for m in early), early
        assert first["STATUS"] == "first reconcile done; watching for drift"
        # at that moment the bridge exists, as the kernel says (not netdecl's own reading)
        links = json.loads(host.run(["ip", "-j", "link", "show", "rdy0"]).stdout)
        assert links[0]["ifname"] == "rdy0"
        agent.wait_for("applied", timeout=5)
        # idle now: pings at half of WatchdogSec, without any event to wake it
        assert _receive(listener) == {"WATCHDOG": "1"}
        assert _receive(listener) == {"WATCHDOG": "1"}
        assert agent.stop() == 0
    messages = []
    listener.settimeout(0.5)
    try:
        while True:
            messages.append(_receive(listener))
    except TimeoutError:
        pass
    assert {"STOPPING": "1"} in messages


def test_the_agent_unit_file_tells_systemd_what_the_agent_does():
    unit = (Path(__file__).parent.parent / "contrib/systemd/netdecl-agent@.service").read_text()
    assert "Type=notify" in unit and "WatchdogSec=" in unit
    assert "StateDirectoryMode=0700" in unit
