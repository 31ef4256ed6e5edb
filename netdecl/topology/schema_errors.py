"""Turn jsonschema's errors into one precise, friendly message per problem.

jsonschema says "'big' is not of type 'integer'"; users should read
``mtu: expected an integer 68..65535, got "big"`` at the line of the value, and
``unknown key 'knid' (did you mean 'kind'?)`` at the line of the key.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from netdecl.links import LINK_KINDS, link_kind
from netdecl.links.base import PARENT_KEY
from netdecl.topology.yamlsrc import Document, Path, Pos, quoted

if TYPE_CHECKING:
    from jsonschema import ValidationError

# Keys that exist only for some link kinds: what to say when they appear on another kind.
_PARENTED = " or ".join(k.name for k in LINK_KINDS.values() if k.parented)
KIND_ONLY = {**{k.settings_key: k.name for k in LINK_KINDS.values() if k.settings_key},
             PARENT_KEY: _PARENTED}
REQUIRED_HINTS = {
    **{k.settings_key: k.settings_hint for k in LINK_KINDS.values()
       if k.settings_key and k.settings_hint},
    PARENT_KEY: f"a {_PARENTED} link is made on a parent link: {PARENT_KEY}: eth0",
    "version": "write version: 1",
}
TYPE_WORDS = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "nothing",
}
# Validators whose failure is about the *form* of a value; a semantic check at the same place
# usually says it better, so the loader drops these there.
SOFT_VALIDATORS = {"pattern", "minLength", "maxLength", "format"}


@dataclass(frozen=True)
class SchemaProblem:
    pos: Pos
    message: str
    soft: bool = False
    # of an expanded template: the file and loop iteration (Document.origin); else (None, "")
    origin: tuple[str | None, str] = (None, "")


def problems(errors: Iterator[ValidationError], doc: Document) -> list[SchemaProblem]:
    out: list[SchemaProblem] = []
    for error in errors:
        found = convert(error, doc)
        if doc.origins:
            origin = doc.origin(tuple(error.absolute_path))
            found = [dataclasses.replace(p, origin=origin) for p in found]
        out.extend(found)
    return sorted(set(out), key=lambda p: (p.pos, p.message))


def convert(error: ValidationError, doc: Document) -> list[SchemaProblem]:
    path: Path = tuple(error.absolute_path)
    validator = error.validator
    if validator == "additionalProperties" and isinstance(error.instance, dict):
        return unknown_keys(error, path, doc)
    if validator == "required" and isinstance(error.instance, dict):
        return missing_keys(error, path, doc)
    if validator == "not" and isinstance(error.instance, dict) \
            and isinstance(error.validator_value, dict) and "required" in error.validator_value:
        # "not: {required: [peer]}": a key the schema forbids in this context (peer on a bridge)
        return [forbidden_key((*path, key), doc) for key in error.validator_value["required"]
                if key in error.instance]
    if "propertyNames" in error.relative_schema_path:
        key: Any = error.instance
        return [SchemaProblem(doc.key_pos((*path, key)),
                              f"{label(path)} key {quoted(key)}: expected {expected(error.schema)}",
                              soft=validator in SOFT_VALIDATORS)]
    if not path and validator == "type":
        got = shown(error.instance)
        return [SchemaProblem(doc.value_pos(path), "top level: expected a mapping with "
                                                   f"version: 1, name: ... and so on, got {got}")]
    message = f"{label(path)}: expected {expected(error.schema)}, got {shown(error.instance)}"
    if validator == "enum" and isinstance(error.instance, str):
        allowed: Any = error.validator_value
        message += suggestion(error.instance, [str(v) for v in allowed])
    return [SchemaProblem(doc.value_pos(path), message, soft=validator in SOFT_VALIDATORS)]


def unknown_keys(error: ValidationError, path: Path, doc: Document) -> list[SchemaProblem]:
    schema: Any = error.schema  # (the stubs allow Unset, which a raised error never has)
    instance: Any = error.instance
    known = list(schema.get("properties", {}))
    out = []
    for key in instance:
        if key in known:
            continue
        hint = suggestion(key, known) or (f" (expected one of: {', '.join(known)})" if known
                                          else "")
        out.append(SchemaProblem(doc.key_pos((*path, key)), f"unknown key {quoted(key)}{hint}"))
    return out


def missing_keys(error: ValidationError, path: Path, doc: Document) -> list[SchemaProblem]:
    required: Any = error.validator_value  # (the stubs allow Unset, as in unknown_keys)
    instance: Any = error.instance
    out = []
    for key in required:
        if key in instance:
            continue
        hint = f" ({REQUIRED_HINTS[key]})" if key in REQUIRED_HINTS else ""
        where = f"{label(path)}: " if path else ""
        out.append(SchemaProblem(doc.value_pos(path), f"{where}missing required key '{key}'{hint}"))
    return out


def forbidden_key(path: Path, doc: Document) -> SchemaProblem:
    key = path[-1] if path else "?"
    message = f"'{key}' is not allowed here"
    parent = lookup(doc.data, path[:-1])
    kind = parent.get("kind") if isinstance(parent, dict) else None
    link = link_kind(kind)
    if link is not None and link.refuses_because:
        message = f"'{key}' is not allowed on {_article(link.name)} link: " \
                  f"{link.refuses_because}"
    elif isinstance(key, str) and key in KIND_ONLY:
        message = f"'{key}' is only for kind {KIND_ONLY[key]}, not {kind}"
    return SchemaProblem(doc.key_pos(path), message)


def _article(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


def lookup(data: Any, path: Path) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def label(path: Path) -> str:
    """``links[2].peer.mtu`` reads long; the last key (and index) is enough next to a line."""
    if not path:
        return "top level"
    last = path[-1]
    if isinstance(last, int):
        parent = next((p for p in reversed(path[:-1]) if isinstance(p, str)), "item")
        return f"{plain(parent)}[{last}]"
    return plain(last)


def plain(key: str) -> str:
    """A key as a label: as is when it's printable, escaped when it isn't."""
    return key if key.isprintable() else quoted(key)


def expected(schema: Any) -> str:
    """Say in words what a (sub)schema accepts."""
    if not isinstance(schema, dict):
        return "nothing here"
    if "title" in schema:
        return schema["title"]
    if "const" in schema:
        return json.dumps(schema["const"])
    if "enum" in schema:
        return "one of " + ", ".join(str(v) for v in schema["enum"])
    for alt in ("anyOf", "oneOf"):
        if alt in schema:
            return " or ".join(expected(s) for s in schema[alt])
    types = schema.get("type")
    if types is None:
        return "something else"
    words = [type_word(t, schema) for t in ([types] if isinstance(types, str) else types)]
    return " or ".join(words)


def type_word(t: str, schema: dict[str, Any]) -> str:
    word = TYPE_WORDS.get(t, t)
    if t in ("integer", "number") and ("minimum" in schema or "maximum" in schema):
        word += f" {schema.get('minimum', '')}..{schema.get('maximum', '')}"
    return word


def shown(value: Any) -> str:
    """A value as the user wrote it, quoted when it's a string so blanks are visible."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "nothing (null)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 60 else text[:57] + '..."'
    return str(value)


def suggestion(word: str, candidates: list[str]) -> str:
    import difflib  # (here: only a file with a mistake pays for it)

    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
