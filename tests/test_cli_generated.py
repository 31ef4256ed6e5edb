"""Shell completion and the man page, both generated from the argparse parser: they parse in
their own tools and know every command and option the parser has."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from netdecl.cli import FILE_COMPLETION, build_parser

REPO_ROOT = Path(__file__).resolve().parent.parent


def netdecl_stdout(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "netdecl", *args], capture_output=True,
                            text=True, timeout=60, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    return result.stdout


# left out of `--help`'s list on purpose, and so out of shtab's (issue 29: manpage was, and
# nobody found it)
HIDDEN: set[str] = set()


def commands(parser: argparse.ArgumentParser,
             prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """Every subcommand, nested ones as "sandbox rm", with its parser."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found[prefix + name] = child
                found.update(commands(child, f"{prefix}{name} "))
    return found


def options(parser: argparse.ArgumentParser) -> list[str]:
    return [opt for action in parser._actions for opt in action.option_strings
            if opt.startswith("--") and opt != "--help"]


def run_bash_completion(script: Path, *words: str) -> list[str]:
    """What bash offers for the last word of `words`, with the script loaded."""
    argv = " ".join(f"'{w}'" for w in words)
    probe = (f'source "{script}"; COMP_WORDS=({argv}); COMP_CWORD={len(words) - 1}; '
             f'COMP_LINE="${{COMP_WORDS[*]}}"; COMP_POINT=${{#COMP_LINE}}; '
             f'_shtab_netdecl; printf "%s\\n" "${{COMPREPLY[@]}}"')
    result = subprocess.run(["bash", "--norc", "--noprofile", "-c", probe], capture_output=True,
                            text=True, timeout=30, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if line]


@pytest.fixture(scope="module")
def bash_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("bash") is None:
        pytest.skip("needs bash")
    path = tmp_path_factory.mktemp("completion") / "netdecl.bash"
    path.write_text(netdecl_stdout("completion", "bash"))
    return path


def test_bash_completion_parses(bash_script: Path):
    result = subprocess.run(["bash", "-n", str(bash_script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    # the file completer build_parser() names without importing shtab exists in the script
    assert f"{FILE_COMPLETION['bash']}()" in bash_script.read_text()


def test_bash_completes_commands_options_and_files(bash_script: Path):
    assert run_bash_completion(bash_script, "netdecl", "pl") == ["plan"]
    assert set(run_bash_completion(bash_script, "netdecl", "")) >= {
        "validate", "plan", "apply", "destroy", "rollback", "completion"}
    assert run_bash_completion(bash_script, "netdecl", "plan", "--det") == [
        "--detailed-exitcode"]
    assert run_bash_completion(bash_script, "netdecl", "graph", "--format", "m") == ["mermaid"]
    assert run_bash_completion(bash_script, "netdecl", "validate",
                               "topologies/docker-b") == ["topologies/docker-bridge.yaml"]
    assert run_bash_completion(bash_script, "netdecl", "sandbox", "") == ["list", "rm"]


def test_bash_completion_knows_every_option(bash_script: Path):
    arrays = dict(re.findall(r"^(_shtab_netdecl\w*_option_strings)=\((.*)\)$",
                             bash_script.read_text(), re.MULTILINE))
    tree = {"": build_parser(), **{f"{name} ": p for name, p in commands(build_parser()).items()
                                   if name not in HIDDEN}}
    for name, parser in tree.items():
        array = "_shtab_netdecl_" + name.replace(" ", "_") + "option_strings"
        offered = arrays[array.replace("__", "_")].split()
        assert set(options(parser)) <= set(offered), f"netdecl {name}: {offered}"


def test_zsh_completion(tmp_path: Path):
    text = netdecl_stdout("completion", "zsh")
    assert text.startswith("#compdef netdecl")
    for name in ("validate", "plan", "apply", "--detailed-exitcode", "--confirm-timeout"):
        assert name in text
    if shutil.which("zsh") is None:
        return  # not installed by .ci/setup: the content checks above are what runs there
    path = tmp_path / "_netdecl"
    path.write_text(text)
    result = subprocess.run(["zsh", "-n", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def manpage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("man") / "netdecl.1"
    path.write_text(netdecl_stdout("manpage"))
    return path


def test_man_page_has_every_command_and_option(manpage: Path):
    roff = manpage.read_text()
    assert roff.startswith(".TH NETDECL")
    # roff escapes '-' as '\-' in option names
    plain = roff.replace("\\-", "-")
    for name, parser in commands(build_parser()).items():
        assert f"netdecl {name}" in plain, f"command {name} missing from the man page"
        for option in options(parser):
            assert option in plain, f"{name} {option} missing from the man page"
    for option in options(build_parser()):
        assert option in plain


def test_man_page_renders(manpage: Path):
    if shutil.which("groff") is None:
        pytest.skip("needs groff (man-db) to render the page")
    # -P-cbou: plain text, no overstrike or escape sequences for bold and underline
    result = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-P-cbou", str(manpage)],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "LC_ALL": "C.UTF-8"})
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr, result.stderr
    text = result.stdout
    for heading in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "ENVIRONMENT",
                    "FILES", "EXAMPLES"):
        assert f"\n{heading}\n" in text, heading
    assert "plan --detailed-exitcode" in text.replace("\u2010", "-")


def test_man_page_sections_say_what_the_code_does(manpage: Path):
    # issue 29: the exit codes were under COMMENTS, and there was no ENVIRONMENT or FILES
    from netdecl.engine.applier import FAILPOINT_ENV, ROLLBACK_FAILPOINT_ENV
    from netdecl.engine.state.statedir import DEFAULT_STATE_DIR, STATE_DIR_ENV
    from netdecl.exitcodes import ExitStatus

    roff = manpage.read_text()
    assert ".SH COMMENTS" not in roff
    sections = dict(re.findall(r"^\.SH (.+)\n((?:(?!\.SH ).*\n?)*)", roff, re.MULTILINE))
    exit_status = sections["EXIT STATUS"]
    assert re.findall(r"^\.B (\d+)$", exit_status, re.MULTILINE) == \
        [str(int(s)) for s in ExitStatus]
    environment = sections["ENVIRONMENT"]
    for name in (STATE_DIR_ENV, "NO_COLOR", FAILPOINT_ENV, ROLLBACK_FAILPOINT_ENV):
        assert f".B {name}\n" in environment, name
    assert DEFAULT_STATE_DIR in sections["FILES"] and "/run/netns/" in sections["FILES"]


def test_fish_completion(tmp_path: Path):
    text = netdecl_stdout("completion", "fish")
    for name in ("validate", "plan", "apply", "detailed-exitcode", "confirm-timeout",
                 "__fish_complete_path"):
        assert name in text, name
    if shutil.which("fish") is None:  # .ci/setup installs it
        pytest.skip("needs fish to parse the script")
    path = tmp_path / "netdecl.fish"
    path.write_text(text)
    result = subprocess.run(["fish", "--no-execute", str(path)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr


# A sample invocation of every command, with its options: parsed by the parser main() uses,
# each must come out as the whole parser reads it.
INVOCATIONS = [
    ["validate", "t.yaml"],
    ["render", "--var", "n=3", "--var-file", "v.yaml", "t.yaml"],
    ["--state-dir", "/s", "plan", "--json", "--out", "p.json", "--detailed-exitcode", "--adopt",
     "t.yaml"],
    ["--sandbox", "demo", "apply", "-q", "--lock-timeout", "2", "--confirm-timeout", "9",
     "--json", "--adopt", "t.yaml"],
    ["destroy", "-v", "--lock-timeout", "1", "t.yaml"],
    ["rollback", "--name", "x"], ["rollback", "t.yaml"], ["confirm", "--name", "x"],
    ["show", "--namespace", "a", "--namespace", "root", "--name", "n"],
    ["sandbox", "list"], ["sandbox", "rm", "demo"],
    ["verify", "--json", "--timeout", "1", "--var", "a=b", "t.yaml"],
    ["explain", "--from", "a", "10.0.0.1:80", "t.yaml", "--proto", "udp", "--json"],
    ["graph", "--format", "mermaid", "t.yaml"],
    ["agent", "--metrics-listen", "127.0.0.1:9", "--resync", "5", "--log-format", "json", "a",
     "b"],
    ["completion", "zsh"], ["completion", "fish"], ["manpage"],
    ["examples"], ["examples", "docker-bridge"], ["schema"],
    ["validate", "--json", "t.yaml"], ["destroy", "--json", "t.yaml"],
    ["apply", "--verify", "--probe-timeout", "1", "t.yaml"],
    ["agent", "--metrics-listen", ":9464", "--log-level", "debug", "a"],
    ["plan", "--var", "n=1", "--var-file", "v.yaml", "t.yaml"], ["render", "t.yaml"],
    ["boot", "--wait-for-links", "30s", "--lock-timeout", "3", "/etc/netdecl"],
    ["apply", "--wait-for-links", "2m", "t.yaml"],
]


def test_the_lazy_parser_reads_every_command_as_the_whole_parser_does():
    # main() adds a command's own arguments only when that command runs (build_parser(lazy=True))
    assert {argv[argv.index(c)] for argv in INVOCATIONS for c in argv
            if c in commands(build_parser())} == {c for c in commands(build_parser())
                                                   if " " not in c}
    for argv in INVOCATIONS:
        assert build_parser(lazy=True).parse_args(argv) == build_parser().parse_args(argv), argv
    for name, whole in commands(build_parser()).items():
        lazy = build_parser(lazy=True)
        for word in name.split():  # a command's help adds its arguments, nested commands too
            lazy.format_help()
            lazy = commands(lazy)[word]
        assert lazy.format_help() == whole.format_help(), name
    # and it does add them late: a command that did not run has none of its own yet
    untouched = commands(build_parser(lazy=True))["plan"]
    assert [a.dest for a in untouched._actions] == ["help"]
