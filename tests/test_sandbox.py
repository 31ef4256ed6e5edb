"""netdecl.tools.sandbox: persistent private namespaces.

Sandboxes are created, entered and removed only *inside* a hermetic host (by child processes):
the pytest process never unshares, setns-es or mounts anything, and the real /run/netdecl is
never written.
"""

from __future__ import annotations

import json
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest
from harness import REPO_ROOT, HermeticHost, real_host_state

from netdecl.errors import EnvironmentProblem, NetdeclError
from netdecl.tools import sandbox

PRELUDE = """\
import json, os, subprocess, sys
from netdecl.tools import sandbox
from netdecl.errors import NetdeclError
"""


def py(host: HermeticHost, code: str, *, check: bool = True) -> str:
    """Run Python code (importing the installed netdecl) in a child process inside the hermetic
    host; returns its stdout."""
    result = host.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code)], check=check)
    return result.stdout


def in_sandbox(host: HermeticHost, name: str, argv: list[str]) -> str:
    """Run argv inside sandbox `name` (entered by a fresh child process, never by pytest)."""
    return py(host, f"""
        sandbox.enter({name!r}, create_if_missing=False)
        r = subprocess.run({argv!r}, capture_output=True, text=True)
        sys.stderr.write(r.stderr)
        print(r.stdout)
        sys.exit(r.returncode)
    """)


@pytest.fixture
def sandboxed(host: HermeticHost) -> Iterator[HermeticHost]:
    """The host, plus removal of every sandbox a test made (even if it failed)."""
    before = real_host_state()
    try:
        yield host
    finally:
        py(host, """
            for name in sandbox.list_sandboxes():
                sandbox.remove(name)
        """, check=False)
        assert real_host_state() == before


def link_names(links: list[dict[str, object]]) -> list[str]:
    return sorted(str(link["ifname"]) for link in links)


def test_create_enter_list_remove(sandboxed: HermeticHost) -> None:
    host = sandboxed
    py(host, "sandbox.create('t1')")
    assert py(host, "print(json.dumps(sandbox.list_sandboxes()))").strip() == '["t1"]'

    in_sandbox(host, "t1", ["ip", "link", "add", "foo", "type", "bridge"])
    in_sandbox(host, "t1", ["ip", "netns", "add", "inner"])
    in_sandbox(host, "t1", ["touch", "/var/lib/netdecl/state-file"])

    # The sandbox has it (and keeps it between entries), its host does not.
    inside = json.loads(in_sandbox(host, "t1", ["ip", "-j", "link"]))
    assert link_names(inside) == ["foo", "lo"]
    lo = next(link for link in inside if link["ifname"] == "lo")
    assert "UP" in lo["flags"]
    assert link_names(host.ip_json("link")) == ["lo"]
    assert in_sandbox(host, "t1", ["ip", "netns", "list"]).split()[0] == "inner"
    assert host.netns_list() == []
    assert in_sandbox(host, "t1", ["ls", "/var/lib/netdecl"]).split() == ["state-file"]
    assert host.run(["ls", "-A", "/var/lib/netdecl"]).stdout == ""
    # /sys is remounted for the sandbox's network namespace, like `ip netns exec` does.
    assert sorted(in_sandbox(host, "t1", ["ls", "/sys/class/net"]).split()) == ["foo", "lo"]
    # The sandbox doesn't see the sandbox directory (nor keep other sandboxes alive).
    assert in_sandbox(host, "t1", ["ls", "-A", "/run/netdecl"]).strip() == ""

    py(host, "sandbox.remove('t1')")
    assert py(host, "print(json.dumps(sandbox.list_sandboxes()))").strip() == "[]"
    assert host.run(["ls", "-A", sandbox.SANDBOX_DIR]).stdout == ""


def test_enter_keeps_working_directory(sandboxed: HermeticHost) -> None:
    out = py(sandboxed, """
        sandbox.enter("cwd", create_if_missing=True)
        print(os.getcwd())
    """)
    assert out.strip() == str(sandboxed.cwd)


def test_remove_frees_everything_inside(sandboxed: HermeticHost) -> None:
    """A veth with one end in the sandbox and one in the host dies only when the sandbox's
    network namespace is really destroyed - proof that nothing keeps it alive."""
    host = sandboxed
    py(host, "sandbox.create('gone')")
    in_sandbox(host, "gone", ["ip", "link", "add", "sbx0", "type", "veth", "peer", "name",
                              "outer0", "netns", str(host.pid)])
    assert "outer0" in link_names(host.ip_json("link"))
    py(host, "sandbox.remove('gone')")
    deadline = time.monotonic() + 10  # namespaces are destroyed by a kernel worker, async
    while "outer0" in link_names(host.ip_json("link")):
        assert time.monotonic() < deadline, "sandbox namespace still alive after remove"
        time.sleep(0.1)


def test_two_sandboxes_are_independent(sandboxed: HermeticHost) -> None:
    host = sandboxed
    py(host, "sandbox.create('one'); sandbox.create('two')")
    in_sandbox(host, "one", ["ip", "link", "add", "only-one", "type", "bridge"])
    assert link_names(json.loads(in_sandbox(host, "two", ["ip", "-j", "link"]))) == ["lo"]
    py(host, "sandbox.remove('one')")
    assert py(host, "print(sandbox.list_sandboxes())").strip() == "['two']"
    assert link_names(json.loads(in_sandbox(host, "two", ["ip", "-j", "link"]))) == ["lo"]


def test_errors_are_one_line_and_clear(sandboxed: HermeticHost) -> None:
    out = py(sandboxed, """
        def attempt(fn, *args, **kw):
            try:
                fn(*args, **kw)
                print("no error")
            except NetdeclError as exc:
                print(type(exc).__name__, exc)
        sandbox.create("dup")
        attempt(sandbox.create, "dup")
        attempt(sandbox.remove, "nope")
        attempt(sandbox.enter, "nope", create_if_missing=False)
    """)
    lines = out.splitlines()
    assert lines[0].startswith("EnvironmentProblem sandbox dup already exists")
    assert lines[1] == "EnvironmentProblem no sandbox named nope"
    assert lines[2] == "EnvironmentProblem no sandbox named nope"


def test_not_root_is_a_clear_error(sandboxed: HermeticHost) -> None:
    out = py(sandboxed, """
        os.setgroups([]); os.setgid(65534); os.setuid(65534)
        for fn in (sandbox.create, sandbox.remove, sandbox.enter):
            try:
                fn("x")
            except NetdeclError as exc:
                print(type(exc).__name__, exc)
    """)
    lines = out.splitlines()
    assert len(lines) == 3
    assert all(line.startswith("EnvironmentProblem") and "needs root" in line
               for line in lines)


@pytest.mark.parametrize("name", ["", "../etc", "a/b", "UPPER", "x" * 33, "dot.ted", "-" * 40])
def test_names_cannot_escape_the_directory(name: str) -> None:
    # Validation comes before any privilege check or system call: safe to run anywhere.
    for fn in (sandbox.create, sandbox.remove, sandbox.exists, sandbox.enter):
        with pytest.raises(NetdeclError, match="invalid sandbox name"):
            fn(name)
    assert not issubclass(NetdeclError, EnvironmentProblem)


def test_cli_sandbox_leaves_its_host_alone(sandboxed: HermeticHost) -> None:
    """`netdecl --sandbox demo apply` changes the sandbox, not the (hermetic) host it runs on."""
    topology = REPO_ROOT / "topologies" / "docker-bridge.yaml"
    if not (REPO_ROOT / "netdecl" / "cli.py").exists() or not topology.exists():
        pytest.skip("CLI or example topology not there yet")
    host = sandboxed
    before = host.snapshot()
    applied = host.netdecl("--sandbox", "demo", "apply", str(topology))
    assert applied.returncode == 0, applied.stderr
    assert host.snapshot() == before
    assert "docker0" in in_sandbox(host, "demo", ["ip", "-o", "link"])
    listed = host.netdecl("sandbox", "list")
    assert listed.returncode == 0 and listed.stdout.split() == ["demo"]
    removed = host.netdecl("sandbox", "rm", "demo")
    assert removed.returncode == 0, removed.stderr
    assert py(host, "print(sandbox.list_sandboxes())").strip() == "[]"


def test_many_creates_in_a_row(sandboxed: HermeticHost) -> None:
    """Regression: on Linux 6.18 mount namespace ids aren't monotonic, so binding a new mount
    namespace from a non-initial one fails with EINVAL about half the time unless create()
    retries on another CPU (see sandbox._populate)."""
    out = py(sandboxed, """
        for i in range(12):
            sandbox.create(f"m{i}")
        print(len(sandbox.list_sandboxes()))
    """)
    assert out.strip() == "12"
