"""CLI behaviour that needs no kernel: in-process main(), captured output, exit codes."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import netdecl
from netdecl.cli import main
from netdecl.exitcodes import MEANING, ExitStatus

REPO_ROOT = Path(__file__).resolve().parent.parent


def run_netdecl(*args: str) -> subprocess.CompletedProcess[str]:
    """The real process, for its real exit status (argparse exits through SystemExit)."""
    return subprocess.run([sys.executable, "-m", "netdecl", *args], capture_output=True,
                          text=True, timeout=60, cwd=REPO_ROOT)


def test_help_explains_commands_and_exit_codes(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("validate", "plan", "apply", "destroy", "show", "rollback", "sandbox"):
        assert command in out
    for line in ("0  success", "1  failure", "also a usage error", "2  changes pending",
                 "3  invalid topology", "4  an apply failed"):
        assert line in out
    assert set(MEANING) == set(ExitStatus)  # the help has a line for every status


def test_validate_ok(capsys):
    assert main(["validate", "topologies/docker-bridge.yaml"]) == ExitStatus.OK
    assert "valid topology 'docker-bridge'" in capsys.readouterr().out


def test_invalid_file_exit_3_with_position_and_no_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nname: bad\nlinks:\n  - name: x\n    knid: bridge\n")
    assert main(["validate", str(bad)]) == ExitStatus.INVALID_TOPOLOGY
    err = capsys.readouterr().err
    assert f"{bad}:5:5:" in err and "kind" in err
    assert "Traceback" not in err


def test_missing_file_is_one_clear_line(tmp_path, capsys):
    code = main(["validate", str(tmp_path / "nope.yaml")])
    assert code == ExitStatus.INVALID_TOPOLOGY
    err = capsys.readouterr().err.strip().splitlines()
    assert "nope.yaml" in err[0] and "Traceback" not in "\n".join(err)


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == ExitStatus.FAILURE
    assert "usage:" in capsys.readouterr().out


def test_version_is_the_installed_distributions():
    result = run_netdecl("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"netdecl {metadata.version('netdecl')}\n"
    # one source: pyproject.toml reads the version from netdecl/__init__.py
    assert metadata.version("netdecl") == netdecl.__version__


def test_version_falls_back_to_the_source_without_metadata(monkeypatch, capsys):
    def not_installed(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", not_installed)
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out == f"netdecl {netdecl.__version__}\n"


@pytest.mark.parametrize("argv, message", [
    (["bogus"], "invalid choice: 'bogus'"),
    (["plan"], "the following arguments are required: FILE"),
    (["plan", "--detailed-exitcod3", "topologies/docker-bridge.yaml"],
     "unrecognized arguments: --detailed-exitcod3"),
    (["graph", "--format", "png", "topologies/docker-bridge.yaml"], "invalid choice: 'png'"),
    (["apply", "--lock-timeout", "soon", "topologies/docker-bridge.yaml"],
     "invalid float value: 'soon'"),
    (["sandbox"], "the following arguments are required: ACTION"),
    (["completion", "csh"], "invalid choice: 'csh'"),
])
def test_usage_errors_exit_1_never_2(argv, message):
    """2 is plan --detailed-exitcode's "changes pending": a typo must not read as drift."""
    result = run_netdecl(*argv)
    assert result.returncode == ExitStatus.FAILURE == 1, result.stderr
    assert message in result.stderr
    assert result.stderr.startswith("usage: netdecl")
    assert result.stdout == "" and "Traceback" not in result.stderr


def test_no_command_exits_1_from_the_process_too():
    result = run_netdecl()
    assert result.returncode == 1
    assert result.stdout.startswith("usage: netdecl")


def test_every_command_that_reads_a_topology_file_takes_its_template_variables():
    """A templated file (vars without defaults) is only readable with --var: a command that
    takes FILE without it could not read such a file at all (explain lacked it)."""
    import argparse

    from netdecl.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    reading = {}
    for name, sub in commands.choices.items():
        dests = {a.dest for a in sub._actions}
        if "file" in dests:
            reading[name] = {"var", "var_file"} <= dests
    assert reading.get("explain") and reading.get("plan") and reading.get("graph")
    assert [name for name, ok in reading.items() if not ok] == []
