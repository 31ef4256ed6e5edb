"""CLI behaviour that needs no kernel: in-process main(), captured output, exit codes."""

from __future__ import annotations

import pytest

from netdecl.cli import main
from netdecl.exitcodes import ExitStatus


def test_help_explains_commands_and_exit_codes(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("validate", "plan", "apply", "destroy", "show", "rollback", "sandbox"):
        assert command in out
    assert "3 invalid topology" in out


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
