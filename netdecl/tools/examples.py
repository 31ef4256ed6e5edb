"""The example topologies shipped with netdecl (`netdecl examples [NAME]`) and the schema
(`netdecl schema`), so that both are at hand wherever netdecl is installed.

The examples live in the checkout's topologies/ (the README, the tests and editors use them
there) and travel in the wheel as netdecl/examples/ (pyproject.toml maps the one onto the
other). An editable install has no netdecl/examples/: it reads topologies/ of its checkout.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from netdecl.errors import NetdeclError
from netdecl.topology.loader import SCHEMA_PATH

if TYPE_CHECKING:
    from importlib.abc import Traversable  # importlib.resources.abc from Python 3.11 on

# the first line of every example: where the YAML language server finds the schema, relative
# to topologies/ in the checkout. Printed, it names `netdecl schema`'s output beside the file.
_SCHEMA_LINE = re.compile(r"^# yaml-language-server: \$schema=\S+$", re.MULTILINE)
PRINTED_SCHEMA_LINE = "# yaml-language-server: $schema=topology.schema.json"


def _directory() -> Traversable:
    shipped = resources.files("netdecl").joinpath("examples")
    if shipped.is_dir():
        return shipped
    return Path(__file__).resolve().parents[2] / "topologies"  # an editable checkout


def names() -> list[str]:
    """The examples' names (their file names without .yaml), sorted."""
    return sorted(entry.name.removesuffix(".yaml") for entry in _directory().iterdir()
                  if entry.name.endswith(".yaml"))


def text(name: str) -> str:
    """The example ``name`` (with or without .yaml), its schema line naming
    topology.schema.json in the same directory (`netdecl schema > topology.schema.json`)."""
    name = name.removesuffix(".yaml")
    if name not in names():
        raise NetdeclError(f"no example named {name!r}; the examples: {', '.join(names())}")
    return _SCHEMA_LINE.sub(PRINTED_SCHEMA_LINE,
                            _directory().joinpath(f"{name}.yaml").read_text(), count=1)


def schema() -> str:
    """The topology file's JSON Schema, as the installed netdecl validates with it."""
    return SCHEMA_PATH.read_text()
