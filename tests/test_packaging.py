"""What a user installing netdecl gets (issue 29): a licence, metadata, the examples and the
schema inside the package, and install instructions that work. .ci/wheel-smoke builds the
wheel and runs these commands from outside the checkout; here, the same from the checkout."""

from __future__ import annotations

import json
import re
from pathlib import Path

import tomllib

from netdecl.cli import main
from netdecl.topology.loader import load_topology_text

REPO = Path(__file__).resolve().parent.parent
TOPOLOGIES = REPO / "topologies"


def test_the_licence_is_the_one_declared():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"  # an SPDX expression, not the deprecated table
    assert project["license-files"] == ["LICENSE"]
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    classifiers = project["classifiers"]
    assert "Operating System :: POSIX :: Linux" in classifiers
    assert not any(c.startswith("License ::") for c in classifiers)  # PEP 639: the expression


def test_examples_lists_every_shipped_topology(capsys):
    assert main(["examples"]) == 0
    assert capsys.readouterr().out.split() == sorted(p.stem for p in TOPOLOGIES.glob("*.yaml"))


def test_an_example_printed_is_the_file_and_valid(capsys):
    assert main(["examples", "docker-nat"]) == 0
    printed = capsys.readouterr().out
    original = (TOPOLOGIES / "docker-nat.yaml").read_text()
    # only the schema line differs: it names `netdecl schema`'s output beside the file
    assert printed.splitlines()[0] == "# yaml-language-server: $schema=topology.schema.json"
    assert printed.splitlines()[1:] == original.splitlines()[1:]
    assert load_topology_text(printed, "docker-nat.yaml").name == "docker-nat"


def test_an_unknown_example_is_one_line_naming_the_others(capsys):
    assert main(["examples", "nope"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "docker-bridge" in err


def test_schema_prints_the_installed_schema(capsys):
    assert main(["schema"]) == 0
    printed = capsys.readouterr().out
    assert printed == (REPO / "netdecl" / "topology" / "topology.schema.json").read_text()
    assert json.loads(printed)["$schema"].startswith("https://json-schema.org/")


def test_install_instructions_do_not_name_a_package_that_is_not_published():
    readme = (REPO / "README.md").read_text()
    inventory = (REPO / "ansible" / "examples" / "inventory.yml").read_text()
    for text in (readme, inventory):
        assert not re.search(r"pip install netdecl(?![-\w.*])", text)
    # `python -m build` needs the build package first
    first_build = readme.index("python3 -m build")
    assert "pip install build" in readme[:first_build]
    assert "pip install build" in inventory and "netdecl-*.whl" in inventory


def test_wheel_smoke_runs_the_new_commands_outside_the_checkout():
    script = (REPO / ".ci" / "wheel-smoke").read_text()
    outside = script[script.index('cd "$work/run"'):]
    for command in ('"$nd" examples', '"$nd" schema', '"$nd" validate --json'):
        assert command in outside, command


def test_the_readme_says_the_ansible_module_adopts():
    # issue 29: it said `adopt` fails ("this netdecl never adopts"); the module passes it to
    # plan and apply (tests/test_ansible_module.py adopts a hand-made pair through it)
    readme = (REPO / "README.md").read_text()
    fleets = readme.split("\n## Fleets\n", 1)[1].split("\n## ", 1)[0]
    assert "never adopts" not in fleets
    assert "`adopt` (as `apply --adopt`" in fleets
    module = (REPO / "ansible" / "plugins" / "modules" / "topology.py").read_text()
    assert 'adopt=adopt' in module
