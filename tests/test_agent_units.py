"""The agent's pure parts: back-off arithmetic, hold_back, option parsing, the file watch, log
lines. No root needed."""

from __future__ import annotations

import errno
import io
import json
import os
import platform
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from fakehost import FakeHost

import netdecl
from netdecl import api
from netdecl.agent.backoff import Backoff, hold_back
from netdecl.agent.files import FileWatch
from netdecl.agent.log import AgentLog
from netdecl.agent.metrics import AgentMetrics, parse_listen
from netdecl.agent.runner import expand
from netdecl.engine import service
from netdecl.errors import EnvironmentProblem
from netdecl.links.veth import VethSpec
from netdecl.model import Address, Link, Namespace, Route, Topology

ROUTE = ("t", ("route", "a", 254, "0.0.0.0/0", 0))


def test_the_first_repair_is_free_then_the_delay_doubles_up_to_the_cap():
    b = Backoff(first=1, cap=8, forgive_after=30)
    now = 100.0
    delays = []
    for _ in range(7):
        delays.append(b.repaired(ROUTE, now))
        now += delays[-1] + 0.1  # drifts again right after each hold ends
    assert delays == [0, 1, 2, 4, 8, 8, 8]
    assert b.flapping(now) == [ROUTE]


def test_held_until_the_delay_has_passed_and_next_release_names_that_time():
    b = Backoff(first=1, cap=300, forgive_after=30)
    b.repaired(ROUTE, 10.0)
    assert b.held(10.5) == set()  # the first repair holds nothing back
    b.repaired(ROUTE, 11.0)
    assert b.held(11.5) == {ROUTE}
    assert b.next_release(11.5) == 12.0
    assert b.held(12.0) == set() and b.next_release(12.0) is None


def test_an_object_left_alone_long_enough_is_forgiven():
    b = Backoff(first=1, cap=300, forgive_after=30)
    b.repaired(ROUTE, 0.0)
    b.repaired(ROUTE, 1.0)
    assert b.flapping(2.0) == [ROUTE]
    assert b.repaired(ROUTE, 40.0) == 0  # > 30 s after the last repair: a fresh start
    assert b.flapping(41.0) == []
    b.repaired(ROUTE, 41.0)
    b.forget()
    assert b.held(41.5) == set() and b.flapping(41.5) == []


def _desired() -> Topology:
    t = Topology(name="t")
    t.extend([Namespace("a"), Link("", name="br", kind="bridge"),
              Link("", name="v", kind="veth", master="br", spec=VethSpec(peer=("a", "eth0"))),
              Link("a", name="eth0", kind="veth", spec=VethSpec(peer=("", "v"))),
              Address("a", link="eth0", cidr="10.0.0.2/24"),
              Route("a", to="0.0.0.0/0", via="10.0.0.1", dev="eth0"),
              Route("a", to="10.9.0.0/16", via="10.0.0.1")])
    return t


def _applied(tmp_path: Path) -> tuple[Topology, FakeHost]:
    """_desired() applied to an in-memory host (tests/fakehost.py), state dir in tmp_path."""
    host = FakeHost()
    desired = _desired()
    service.apply(desired, tmp_path, host=host)
    assert not service.plan(desired, tmp_path, host=host).actions
    return desired, host


def _plan(desired: Topology, tmp_path: Path, host: FakeHost) -> api.Plan:
    """What the agent gets from api.plan(), planned against the in-memory host (the API itself
    plans against the kernel)."""
    return api.Plan._of(service.plan(desired, tmp_path, host=host), desired)


ROUTE_DEFAULT = ("route", "a", 254, "0.0.0.0/0", 0)
ROUTE_OTHER = ("route", "a", 254, "10.9.0.0/16", 0)


def test_hold_back_leaves_a_missing_held_object_missing_and_repairs_the_rest(tmp_path):
    desired, host = _applied(tmp_path)
    for key in (ROUTE_DEFAULT, ROUTE_OTHER):
        host.delete(desired.objects[key], "t")
    plan = _plan(desired, tmp_path, host)
    assert {a.key for a in plan.actions} == {ROUTE_DEFAULT, ROUTE_OTHER}
    target = hold_back(desired, plan, {ROUTE_DEFAULT})
    assert [a.key for a in service.plan(target, tmp_path, host=host).actions] == [ROUTE_OTHER]


def test_hold_back_keeps_a_held_object_as_it_is_now_instead_of_changing_it(tmp_path):
    desired, host = _applied(tmp_path)
    bridge = ("link", "", "br")
    desired.add(Link("", name="br", kind="bridge", mtu=1400))
    plan = _plan(desired, tmp_path, host)
    assert [a.key for a in plan.actions] == [bridge]
    assert service.plan(hold_back(desired, plan, {bridge}), tmp_path, host=host).actions == []


def test_hold_back_drops_what_needs_a_missing_held_link(tmp_path):
    desired, host = _applied(tmp_path)
    veth = desired.objects[("link", "", "v")]
    host.delete(veth, "t", peer=desired.objects[("link", "a", "eth0")])
    plan = _plan(desired, tmp_path, host)
    target = hold_back(desired, plan, {("link", "", "v")})
    # the veth pair stays missing, and with it its address and the route through its device;
    # the route with no device is still desired (the kernel decides whether it can be added)
    assert set(desired.objects) - set(target.objects) == {
        ("link", "", "v"), ("link", "a", "eth0"), ("address", "a", "eth0", "10.0.0.2/24"),
        ROUTE_DEFAULT}


@pytest.mark.parametrize("text,expected", [("127.0.0.1:9464", ("127.0.0.1", 9464)),
                                           ("[::1]:80", ("::1", 80)),
                                           ("0.0.0.0:1", ("0.0.0.0", 1)),
                                           # issue 29: both were refused
                                           (":9464", ("", 9464)),
                                           ("localhost:9464", ("localhost", 9464))])
def test_parse_listen(text, expected):
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["9464", "localhost", "127.0.0.1:", "127.0.0.1:0",
                                  "127.0.0.1:70000", "::1:80", "no_host:80", "[nohost]:80"])
def test_parse_listen_refuses(text):
    with pytest.raises(ValueError):
        parse_listen(text)


def test_a_directory_stands_for_its_yaml_files(tmp_path):
    (tmp_path / "b.yaml").write_text("")
    (tmp_path / "a.yml").write_text("")
    (tmp_path / "notes.txt").write_text("")
    single = tmp_path / "single.yaml"
    files, dirs = expand([str(tmp_path), str(single)])
    assert files == [tmp_path / "a.yml", tmp_path / "b.yaml", single]
    assert dirs == [tmp_path]


@pytest.mark.parametrize("polling", [False, True])
def test_the_file_watch_sees_an_edit_and_a_rename_over_the_file(tmp_path, monkeypatch,
                                                                 polling):
    path = tmp_path / "t.yaml"
    path.write_text("one")
    if polling:
        import netdecl.agent.files as files

        monkeypatch.setattr(files, "_Inotify", _no_inotify)
    watch = FileWatch([path])
    assert watch.polling == polling
    assert watch.changed() == set()
    path.write_text("two, longer")
    assert _changed_soon(watch) == {path}
    replacement = tmp_path / "t.yaml.tmp"
    replacement.write_text("three")
    replacement.replace(path)
    assert _changed_soon(watch) == {path}
    (tmp_path / "other.yaml").write_text("x")
    assert watch.changed() == set()
    watch.close()


def _no_inotify() -> None:
    raise OSError(errno.ENOSYS, "Function not implemented")


def _changed_soon(watch: FileWatch) -> set[Path]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        found = watch.changed()
        if found:
            return found
        time.sleep(0.01)
    return set()


def test_log_lines_as_text_and_as_json():
    out = io.StringIO()
    AgentLog("json", out)("repaired", "fixed it", topology="t", ms=12)
    event = json.loads(out.getvalue())
    assert event["event"] == "repaired" and event["topology"] == "t" and event["ms"] == 12
    assert event["time"].endswith("Z")
    out = io.StringIO()
    AgentLog("text", out)("invalid", "bad", level="error")
    assert out.getvalue().split(" ", 1)[1] == "error invalid: bad\n"
    with pytest.raises(ValueError):
        AgentLog("xml")


def test_debug_lines_only_at_log_level_debug():
    for level, written in (("info", ["applied"]), ("debug", ["applied", "applied-actions"])):
        out = io.StringIO()
        log = AgentLog("json", out, level=level)
        log("applied", "t: applied 2 change(s)")
        log("applied-actions", "t: + namespace a; + link v", level="debug")
        assert [json.loads(line)["event"] for line in out.getvalue().splitlines()] == written
    with pytest.raises(ValueError):
        AgentLog("json", level="verbose")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, reply.headers["Content-Type"], reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def test_http_health_readiness_metrics_and_404():
    # issue 29: /healthz, /ready and /favicon.ico all returned the metrics page with 200
    metrics = AgentMetrics()
    port = free_port()
    metrics.serve(f"localhost:{port}")  # a name (issue 29: refused)
    assert metrics.server is not None
    bound = metrics.server.server_address[0]
    base = f"http://{'[' + bound + ']' if ':' in bound else bound}:{port}"
    try:
        assert get(f"{base}/healthz")[::2] == (200, "ok\n")
        assert get(f"{base}/ready")[0] == 503  # not started
        metrics.not_ready = {"b", "a"}
        assert get(f"{base}/ready")[::2] == (503, "waiting for the first reconcile of: a, b\n")
        metrics.not_ready -= {"a", "b"}
        assert get(f"{base}/ready")[::2] == (200, "ready\n")
        assert get(f"{base}/favicon.ico")[0] == 404
        assert get(f"{base}/metrics/x")[0] == 404
        status, kind, page = get(f"{base}/metrics")
        assert status == 200 and kind.startswith("text/plain; version=")
        assert f'netdecl_build_info{{python="{platform.python_version()}",version="' \
            f'{netdecl.__version__}"}} 1.0' in page
        assert "netdecl_invalid_files 0.0" in page and "netdecl_up 0.0" in page
        # no *_created series (they doubled each counter and histogram)
        assert "_created" not in page, [line for line in page.splitlines() if "_created" in line]
    finally:
        metrics.close()
    assert metrics.server is None


def test_a_port_in_use_names_the_address():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(EnvironmentProblem) as info:
            AgentMetrics().serve(f"127.0.0.1:{port}")
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in str(info.value)


def test_the_agent_module_is_importable_without_root():
    import netdecl.agent.runner as runner

    assert runner.DEBOUNCE < runner.DEBOUNCE_MAX < 1
    assert os.path.basename(runner.__file__) == "runner.py"


def test_a_long_repair_is_listed_up_to_ten_actions_and_counted():
    from netdecl.agent.runner import REPAIRS_LISTED, _listed

    lines = [f"+ address a{i}" for i in range(REPAIRS_LISTED + 3)]
    shown, more = _listed(lines)
    assert more == 3 and shown.endswith("+ address a9; and 3 more")
    assert "a10" not in shown
    assert _listed(lines[:2]) == ("+ address a0; + address a1", 0)
