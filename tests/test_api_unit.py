"""The Python API without a kernel: what `import netdecl` costs, what it exports, how load()
tells a path from text, and that every error is a NetdeclError with an exit status."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import netdecl
from netdecl import api
from netdecl.exitcodes import ExitStatus
from netdecl.topology.loader import load_topology

REPO_ROOT = Path(__file__).resolve().parent.parent
BRIDGE = REPO_ROOT / "topologies/docker-bridge.yaml"


def test_import_netdecl_loads_no_engine_until_the_api_is_used():
    # `netdecl validate` is load(): it must not pay for the engine, the kernel backends or the
    # tools it does not use; the service comes with the first name that needs it
    code = ("import json, sys, netdecl\n"
            "def loaded():\n"
            "    return sorted(m for m in sys.modules if m.startswith(('netdecl.', 'yaml',\n"
            "                                                          'pyroute2')))\n"
            "before = loaded()\n"
            f"netdecl.load({str(BRIDGE)!r}), netdecl.plan, netdecl.apply, netdecl.Topology\n"
            "loading = loaded()\n"
            "netdecl.Events\n"
            "print(json.dumps([before, loading, loaded()]))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=REPO_ROOT)
    before, loading, events = json.loads(result.stdout)
    assert before == []
    assert "netdecl.api" in loading and "netdecl.topology.loader" in loading
    assert [m for m in loading if m.startswith(("netdecl.engine", "netdecl.backends",
                                                "netdecl.tools", "pyroute2"))] == []
    assert "netdecl.engine.service" in events


def test_netdecl_exports_exactly_the_api():
    assert set(netdecl.__all__) - {"__version__"} == set(api.__all__)
    for name in api.__all__:
        assert getattr(netdecl, name) is getattr(api, name)
    assert set(api.__all__) <= set(dir(netdecl))
    with pytest.raises(AttributeError, match="no attribute 'nonesuch'"):
        netdecl.nonesuch  # noqa: B018


def test_every_exported_error_is_a_netdecl_error_with_an_exit_status():
    errors = [getattr(api, n) for n in api.__all__
              if isinstance(getattr(api, n), type) and issubclass(getattr(api, n), Exception)]
    assert len(errors) >= 10
    for error in errors:
        assert issubclass(error, api.NetdeclError), error
        assert isinstance(error.status, ExitStatus), error
    assert api.InvalidTopology.status == 3 and api.RollbackFailed.status == 4
    assert api.UnfinishedApply.status == api.PlanConflicts.status == 1


def test_load_a_path_or_text_and_nothing_else():
    text = BRIDGE.read_text()
    from_path = netdecl.load(BRIDGE)
    assert from_path == load_topology(BRIDGE) == netdecl.load(str(BRIDGE))
    assert netdecl.load(text=text, name="x.yaml").objects == from_path.objects
    assert netdecl.load(text=text.encode()).name == "docker-bridge"
    with pytest.raises(TypeError, match="exactly one"):
        netdecl.load()
    with pytest.raises(TypeError, match="exactly one"):
        netdecl.load(BRIDGE, text=text)
    # a string is a path, never YAML: the file does not exist, and says so
    with pytest.raises(netdecl.InvalidTopology) as exc:
        netdecl.load("version: 1\nname: x\n")
    assert exc.value.diagnostics[0].message == "no such file"


def test_invalid_text_carries_every_diagnostic_with_its_position():
    with pytest.raises(netdecl.InvalidTopology) as exc:
        netdecl.load(text="version: 1\nname: Bad\nlinks:\n  - name: x\n    knid: bridge\n",
                     name="mine.yaml")
    where = [(d.file, d.line, d.col) for d in exc.value.diagnostics]
    assert ("mine.yaml", 2, 7) in where  # the name
    assert ("mine.yaml", 5, 5) in where  # the misspelt key
    assert len(where) >= 2 and exc.value.status == ExitStatus.INVALID_TOPOLOGY
    assert str(exc.value).splitlines()[0].startswith("mine.yaml:")


def test_apply_and_destroy_refuse_a_path_instead_of_guessing(tmp_path):
    with pytest.raises(TypeError, match="apply\\(load\\(path\\)\\)"):
        netdecl.apply(str(BRIDGE), state_dir=tmp_path)
    with pytest.raises(TypeError, match="destroy\\(load\\(path\\)\\)"):
        netdecl.destroy("topologies/docker-bridge.yaml", state_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []  # not even the lock file was made


def test_read_plan_of_a_topology_file_is_none():
    assert netdecl.read_plan(BRIDGE) is None


def test_nothing_unfinished_in_an_empty_state_dir(tmp_path):
    assert netdecl.unfinished(state_dir=tmp_path) == ()


@pytest.mark.parametrize("done, total, text", [
    (328, 1202, "after step 328 of 1202"),
    (1202, 1202, "after its last step (1202 of 1202), before it finished"),
    (0, 40, "before it completed any of its 40 steps"),
    (1, None, "after 1 step"),
    (7, None, "after 7 steps"),
])
def test_how_far_an_unfinished_apply_got(done, total, text):
    assert api.PendingApply("t", done, total).how_far() == text


def test_the_readme_spells_every_api_call_as_the_code_does():
    # issue 29: the README had rollback(topology_or_name=None, ...), the code rollback(topology)
    import inspect
    import re

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    calls = re.findall(r"^\| `(\w+)\(([^`]*)\)`", section, re.MULTILINE)
    assert len(calls) >= 13, calls
    for name, spelled in calls:
        if name not in api.__all__:
            continue
        parameters = inspect.signature(getattr(api, name)).parameters
        written = [p.split("=")[0].strip() for p in spelled.split(",") if p.strip()]
        written = [p for p in written if p not in ("*", "...")]
        assert written == [p for p in parameters if p in written], (name, written)
        assert set(written) <= set(parameters), (name, set(written) - set(parameters))
        # every required parameter is written
        required = [p.name for p in parameters.values() if p.default is p.empty
                    and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        assert set(required) <= set(written), (name, required)
