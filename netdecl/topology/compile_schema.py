"""Writes the link kinds' part of topology.schema.json, then schema_compiled.py from it.

Each link kind owns its part of the schema (netdecl/links/<kind>.py: its settings key, the
$defs it uses, the keys it refuses); ``with_link_kinds`` writes those into the schema's
``link`` definition with the conditions between them (a kind's settings only on that kind), so
the JSON file editors read stays one file and tests/test_kinds.py fails until it is
regenerated.

schema_compiled.py is fastjsonschema's validator for topology.schema.json as Python.

Compiling the schema when a command starts took 50 ms of every `plan` (a GitOps host runs one
every few minutes); as a module, Python's bytecode cache keeps it. The loader uses the module
only when the schema it was made from is the one installed (SCHEMA_DIGEST), and compiles at
run time otherwise, so a stale module is slower, never wrong; tests/test_loader.py fails until
it is regenerated. Run after editing the schema:

    python -m netdecl.topology.compile_schema
"""

from __future__ import annotations

import ast
import copy
import json
import re
from pathlib import Path
from typing import Any

from netdecl.links import LINK_KINDS
from netdecl.links.base import FLAG_SCHEMA, PARENT_KEY, PARENT_SCHEMA, VLANS_SCHEMA
from netdecl.topology.loader import SCHEMA_PATH, schema_digest

TARGET = Path(__file__).with_name("schema_compiled.py")
ENTRY = "validate"  # the name the module gives the top-level validator


def _when(kinds: list[str], then: dict[str, Any]) -> dict[str, Any]:
    return {"if": {"required": ["kind"], "properties": {"kind": {"enum": kinds}}}, "then": then}


def with_link_kinds(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with its ``link`` definition written from the registered link kinds."""
    schema = copy.deepcopy(schema)
    defs = schema["$defs"]
    link = defs["link"]
    link["properties"].update(FLAG_SCHEMA)  # any link's, the host's NIC's too
    link["properties"]["vlans"] = VLANS_SCHEMA
    kinds = list(LINK_KINDS.values())
    made = [k.name for k in kinds if k.made]
    link["properties"]["kind"] = {
        "enum": [k.name for k in kinds],
        "description": f"{', '.join(made[:-1])} and {made[-1]} links are created by netdecl; "
                       + " ".join(k.described for k in kinds if k.described),
    }
    conditions = [_when([k.name], {"required": [k.settings_key]})
                  for k in kinds if k.settings_key and k.settings_required]
    for owner in kinds:
        if owner.settings_key:
            link["properties"][owner.settings_key] = owner.settings_schema
            defs.update(owner.schema_defs)
            others = [k.name for k in kinds if k is not owner and k.made]
            conditions.append(_when(others, {"not": {"required": [owner.settings_key]}}))
    parented = [k.name for k in kinds if k.parented]
    if parented:  # the parent (``link:``): required on the kinds made on one, refused elsewhere
        link["properties"][PARENT_KEY] = PARENT_SCHEMA
        conditions.append(_when(parented, {"required": [PARENT_KEY]}))
        others = [k.name for k in kinds if not k.parented and k.made]
        conditions.append(_when(others, {"not": {"required": [PARENT_KEY]}}))
    for kind in kinds:
        if not kind.made:  # the host's own: no kind's settings, and none of what it refuses
            keys = [k.settings_key for k in kinds if k.settings_key] + \
                ([PARENT_KEY] if parented else []) + list(kind.refuses)
            conditions.append(_when([kind.name], {"allOf": [{"not": {"required": [key]}}
                                                            for key in keys]}))
    link["allOf"] = conditions
    return schema


def schema_text() -> str:
    """topology.schema.json as it must be: its text with the link kinds written in."""
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return json.dumps(with_link_kinds(schema), indent=2, ensure_ascii=False) + "\n"


# What the lean module raises instead of fastjsonschema's exceptions (so that importing it does
# not import fastjsonschema): the loader asks only whether the data is valid.
LEAN_EXCEPTIONS = '''
class JsonSchemaValueException(ValueError):
    """The data breaks the schema; jsonschema says where and why (the loader asks it)."""


JsonSchemaValuesException = JsonSchemaValueException
'''


class _Lean(ast.NodeTransformer):
    """fastjsonschema's code without what only its messages use.

    Its ``if``/``then`` (each link kind's conditions: about twenty per link) runs the ``if``
    and catches the exception a failed one raises, and each raise built its message, the
    failing part of the schema as a dict literal (``definition=``), the value and the rule: a
    third of the check of a large file went there, and those literals were most of the
    module's 750 kB. And each call of a definition's validator (every link, route, namespace)
    formatted the value's name for messages from ``locals()``. Nobody reads them: a file the
    fast check refuses is checked again by jsonschema, which makes the messages.
    (fastjsonschema's own detailed_exceptions=False fails on a ``const``.)"""

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.func, ast.Name):
            if node.func.id.startswith("JsonSchemaValue"):
                node.args, node.keywords = [], []
            elif node.func.id.startswith("validate_") and len(node.args) == 3:
                node.args[2] = ast.Constant(None)  # name_prefix: the value's name
        return node

    def visit_ImportFrom(self, node: ast.ImportFrom) -> ast.AST | list[ast.stmt]:
        if node.module == "fastjsonschema":
            return ast.parse(LEAN_EXCEPTIONS).body
        return node


def lean(code: str) -> str:
    """``code`` (fastjsonschema's compile_to_code) through _Lean: the same checks."""
    return ast.unparse(_Lean().visit(ast.parse(code)))


def module_text() -> str:
    import fastjsonschema

    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    code = lean(fastjsonschema.compile_to_code(schema))
    first = re.search(r"^def (\w+)", code, re.M)  # the top-level validator comes first
    assert first is not None
    return ("# Generated by `python -m netdecl.topology.compile_schema` from\n"
            "# topology.schema.json: do not edit. See compile_schema.py.\n"
            "# ruff: noqa\n"
            f'SCHEMA_DIGEST = "{schema_digest()}"\n'
            f"{code}\n\n"
            f"{ENTRY} = {first.group(1)}\n")


def main() -> None:
    text = schema_text()
    source = Path(str(SCHEMA_PATH))  # run from a checkout: the package's files are files
    if text != source.read_text(encoding="utf-8"):
        source.write_text(text, encoding="utf-8")
        print(f"wrote {source}")
    TARGET.write_text(module_text(), encoding="utf-8")
    print(f"wrote {TARGET}")


if __name__ == "__main__":
    main()
