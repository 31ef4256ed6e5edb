"""What netdecl says: every command and option explained in --help and in the README, hints
that name commands which exist, warnings once, counts in the right number."""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
from pathlib import Path

import pytest
from test_cli_generated import HIDDEN, commands, options

from netdecl.cli import PRIVILEGED_USAGE, build_parser, main
from netdecl.exitcodes import ExitStatus

REPO_ROOT = Path(__file__).resolve().parent.parent
BRIDGE = "topologies/docker-bridge.yaml"


def readme_commands_section() -> str:
    text = (REPO_ROOT / "README.md").read_text()
    start = text.index("\n## Commands\n")
    return text[start:text.index("\n## ", start + 1)]


def test_every_command_and_argument_has_a_help_text():
    parser = build_parser()
    for name, sub in {"": parser, **commands(parser)}.items():
        assert sub.description, f"netdecl {name}: no description"
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction):
                # every subcommand is listed, with its one-line help, in its parent's --help
                listed = {a.dest for a in action._choices_actions}
                assert listed == set(action.choices) - HIDDEN, f"netdecl {name}: unlisted"
                assert all(a.help for a in action._choices_actions)
                continue
            assert action.help, f"netdecl {name} {action.option_strings or action.dest}: no help"


def test_readme_commands_section_lists_every_command_and_option():
    section = readme_commands_section()
    for name, sub in commands(build_parser()).items():
        assert f"`netdecl {name}" in section, f"netdecl {name} not in the README's Commands"
        lines = section.splitlines()
        row = next((line for line in lines if line.startswith(f"| `netdecl {name}")),
                   next(line for line in lines if f"`netdecl {name}" in line))
        for option in options(sub):
            assert option in row, f"netdecl {name} {option} not in its README row"
    for option in options(build_parser()):
        assert f"`{option}" in section, f"{option} not in the README's Commands"


@pytest.mark.parametrize("command", sorted(PRIVILEGED_USAGE))
def test_privilege_hints_name_real_invocations(command):
    usage = shlex.split(PRIVILEGED_USAGE[command])
    assert usage[0] == command
    args = build_parser().parse_args(usage)  # a usage error would raise SystemExit
    assert args.command == command
    assert build_parser().parse_args(["--sandbox", "demo", *usage]).sandbox == "demo"


def test_without_privileges_each_command_names_a_real_command(host):
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv (util-linux) to drop capabilities")
    drop = ["setpriv", "--inh-caps=-all", "--bounding-set=-all", sys.executable, "-m",
            "netdecl"]
    invocations = {"apply": ["apply", BRIDGE], "destroy": ["destroy", BRIDGE],
                   "rollback": ["rollback"], "verify": ["verify", BRIDGE],
                   "explain": ["explain", "--from", "root", "127.0.0.1"],
                   "agent": ["agent", BRIDGE], "boot": ["boot", str(Path(BRIDGE).parent)]}
    assert set(invocations) == set(PRIVILEGED_USAGE)
    before = host.snapshot()
    for command, argv in invocations.items():
        result = host.run([*drop, *argv], check=False)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 1, result.stderr
        assert len(lines) == 1 and "needs root" in lines[0], result.stderr
        assert f"sudo netdecl {PRIVILEGED_USAGE[command]}" in lines[0]
        sandboxed = f"sudo netdecl --sandbox demo {PRIVILEGED_USAGE[command]}"
        assert (sandboxed in lines[0]) == (command != "rollback"), lines[0]
    assert host.snapshot() == before


NAT_WITHOUT_FORWARDING = """\
version: 1
name: w
namespaces:
  a: {}
nat:
  masquerade:
    - {source: 10.0.0.0/24}
    - {source: 10.0.1.0/24}
"""


def test_validate_prints_each_warning_once_and_counts_in_the_singular(tmp_path, capsys):
    topo = tmp_path / "w.yaml"
    topo.write_text(NAT_WITHOUT_FORWARDING)
    assert main(["validate", str(topo)]) == ExitStatus.OK
    out, err = capsys.readouterr()
    warnings = err.splitlines()
    assert len(warnings) == 1 and warnings[0].startswith(f"{topo}:7:7: warning: nat rules")
    assert out == f"{topo}: valid topology 'w' (2 objects, 1 namespace)\n"


def test_validate_counts_in_the_plural(capsys):
    assert main(["validate", BRIDGE]) == ExitStatus.OK
    assert capsys.readouterr().out.endswith("objects, 2 namespaces)\n")


@pytest.mark.parametrize("passed, failed, summary", [
    (1, 0, "1 probe: 1 passed, 0 failed"),
    (1, 1, "2 probes: 1 passed, 1 failed"),
])
def test_verify_counts_probes_in_the_right_number(passed, failed, summary):
    from netdecl.model import Probe
    from netdecl.tools.verify import ProbeResult, render_table

    results = [ProbeResult(Probe("a", "10.0.0.1", 80), None, True, "reachable", "")] * passed
    results += [ProbeResult(Probe("a", "10.0.0.2", 80), None, False, "error", "refused")] * failed
    assert render_table(results).splitlines()[-1] == summary
