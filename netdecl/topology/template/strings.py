"""``${...}`` in string values: split once into literal text and compiled expressions.

Why ``${...}``: it is Terraform's and the shell's spelling, so readers know it; ``$`` appears
in no value the format takes (names, addresses, sysctls), so plain files never change meaning;
and unlike ``{{ }}`` a value may *start* with it without YAML reading a flow mapping. ``$${``
writes a literal ``${``. A string that is exactly one ``${expr}`` takes the expression's own
type (``mtu: ${mtu}`` is a number); anywhere else the value is written into the text.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from netdecl.topology.template.expr import (
    MAX_TEXT,
    Env,
    ExprError,
    bounded_str,
    compile_expr,
    str_,
)

Template = Callable[[Env], Any]


def _closing(text: str, start: int) -> int:
    """Index of the ``}`` ending the expression that starts at ``start`` (quotes skipped)."""
    quote = ""
    i = start
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
        elif c in "\"'":
            quote = c
        elif c == "}":
            return i
        i += 1
    raise ExprError("'${' without its closing '}'")


@lru_cache(maxsize=8192)
def compile_string(text: str) -> Template | None:
    """The string as a function of the environment, or None when it holds no ``${``."""
    if "${" not in text:
        return None
    parts: list[str | Callable[[Env], Any]] = []
    literal: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("$${", i):
            literal.append("${")
            i += 3
        elif text.startswith("${", i):
            end = _closing(text, i + 2)
            if end - i - 2 > MAX_TEXT:
                raise ExprError(f"expression is longer than {MAX_TEXT} characters")
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(compile_expr(text[i + 2:end]))
            i = end + 1
        else:
            j = text.find("$", i + 1)
            j = len(text) if j < 0 else j
            literal.append(text[i:j])
            i = j
    if literal:
        parts.append("".join(literal))
    if len(parts) == 1:
        only = parts[0]
        if isinstance(only, str):  # only escapes: the text with them undone
            return lambda env: only
        return only  # exactly one expression: its value, typed
    fixed = tuple(parts)

    def render(env: Env) -> str:
        return bounded_str("".join(p if isinstance(p, str) else str_(p(env)) for p in fixed))
    return render
