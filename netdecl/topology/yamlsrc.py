"""Safe YAML loading that remembers where every key and value came from.

We never let PyYAML construct objects. Instead we read its *event* stream (libyaml's C parser
when available: fast and non-recursive) and build plain dicts, lists and scalars ourselves. That
gives us, in one place, every defence a file from an untrusted user needs:

* no tags beyond the plain YAML types (``!!python/object`` and friends are errors);
* no aliases at all, so "billion laughs" expansion bombs cannot exist;
* a nesting limit, checked while parsing, before any recursion can get deep;
* duplicate mapping keys reported at the second key;
* a size limit and strict UTF-8 decoding before the parser sees a byte.

Positions are 1-based (line, col) and stored per *path* (("links", 0, "name")), which is also
what jsonschema reports, so schema errors and semantic checks point at the same place.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import yaml
from yaml.constructor import SafeConstructor
from yaml.error import Mark
from yaml.events import (
    AliasEvent,
    DocumentEndEvent,
    DocumentStartEvent,
    Event,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
    StreamStartEvent,
)
from yaml.nodes import ScalarNode
from yaml.resolver import Resolver

MAX_BYTES = 10 * 1024 * 1024  # topology files are small; anything this big is a mistake or hostile
MAX_DEPTH = 64  # the format nests 4 deep; 64 leaves room for mistakes and none for abuse
# A 10 MB list of 1-character items would be 5M values and take the pure-Python stages tens of
# seconds; 100k values is a 7,000-namespace star (benchmarks/bench_star.py: ~14 per namespace).
MAX_NODES = 100_000

Path = tuple[str | int, ...]
Pos = tuple[int, int]

_TAG = "tag:yaml.org,2002:"
# Tags a user may write explicitly (``!!str 123``); every other explicit tag is refused.
_ALLOWED_TAGS = {_TAG + t for t in ("str", "int", "float", "bool", "null", "map", "seq")}

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def quoted(text: str) -> str:
    """'name' for messages; JSON-escaped when it holds a newline, quote or control character,
    so a diagnostic is always one readable line whatever the file contains."""
    return f"'{text}'" if text.isprintable() and "'" not in text else json.dumps(text)


class YamlProblem(Exception):
    """The file cannot be read as the YAML we accept. Carries a 1-based position."""

    def __init__(self, line: int, col: int, message: str):
        super().__init__(message)
        self.line = line
        self.col = col
        self.message = message


@dataclass
class Document:
    """A parsed file: plain data plus where each part of it was written."""

    data: Any
    values: dict[Path, Pos] = field(default_factory=dict)  # path -> position of the value
    keys: dict[Path, Pos] = field(default_factory=dict)  # path -> position of its mapping key
    # Set by template expansion (template/expand.py) where a part of the data comes from
    # another file or a loop iteration: path -> (file, "i=17"); other paths: the loaded file.
    origins: dict[Path, tuple[str, str]] = field(default_factory=dict)
    files: tuple[str, ...] = ()  # of an expanded template: every file it was read from

    def value_pos(self, path: Path) -> Pos:
        """Position of the value at ``path``, or of the nearest enclosing value we know."""
        for i in range(len(path), -1, -1):
            pos = self.values.get(tuple(path[:i]))
            if pos is not None:
                return pos
        return (1, 1)

    def origin(self, path: Path) -> tuple[str | None, str]:
        """The file (None: the loaded one) and loop iteration the value at ``path`` comes from."""
        if self.origins:
            for i in range(len(path), -1, -1):
                found = self.origins.get(tuple(path[:i]))
                if found is not None:
                    return found
        return None, ""

    def where(self, path: Path, file: str) -> str:
        """'line 12' of the loaded ``file``, or 'other.yaml:12' (with its iteration), for
        messages that name a second place; of a template with includes always FILE:LINE."""
        line = self.value_pos(path)[0]
        origin, note = self.origin(path)
        if len(self.files) > 1:  # a template with includes: always say which file
            place = f"{origin or file}:{line}"
        else:
            place = f"line {line}" if origin in (None, file) else f"{origin}:{line}"
        return f"{place} ({note})" if note else place

    def key_pos(self, path: Path) -> Pos:
        """Position of the key naming ``path`` (list items have none: their value instead)."""
        return self.keys.get(tuple(path)) or self.value_pos(path)


def decode(raw: bytes) -> str:
    """Strict UTF-8 (a BOM is tolerated), with the position of the first bad byte."""
    if len(raw) > MAX_BYTES:
        raise YamlProblem(0, 0, f"file is {len(raw)} bytes; the limit is {MAX_BYTES} bytes")
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line, col = offset_to_pos(raw[: e.start].decode("utf-8", "replace"), None)
        raise YamlProblem(
            line, col, f"file is not valid UTF-8 (byte 0x{raw[e.start]:02x}); save it as UTF-8"
        ) from None


def offset_to_pos(text: str, offset: int | None) -> Pos:
    """1-based (line, col) of a character offset (default: just after the end of ``text``)."""
    before = text if offset is None else text[:offset]
    line = before.count("\n") + 1
    return line, len(before) - (before.rfind("\n") + 1) + 1


def parse(text: str) -> Document:
    """Parse one YAML document into a Document, or raise YamlProblem."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise YamlProblem(0, 0, f"file is larger than the limit of {MAX_BYTES} bytes")
    builder = _Builder(text)
    try:
        return builder.build()
    except yaml.MarkedYAMLError as e:
        raise _from_marked(e, text) from None
    except yaml.reader.ReaderError as e:
        line, col = offset_to_pos(text, e.position)
        char = e.character if isinstance(e.character, int) else ord(e.character)
        raise YamlProblem(
            line, col, f"control character U+{char:04X} is not allowed in a YAML file"
        ) from None
    except yaml.YAMLError as e:  # any other parser complaint: still an InvalidTopology
        raise YamlProblem(1, 1, f"not valid YAML: {e}") from None


def _at_end(mark: yaml.Mark, text: str) -> bool:
    """Nothing but blanks follows ``mark``: the parser ran out of file."""
    lines = text.split("\n")
    if mark.line >= len(lines):
        return True
    rest = [lines[mark.line][mark.column:], *lines[mark.line + 1:]]
    return not "".join(rest).strip()


def _unclosed(text: str) -> tuple[int, int, str] | None:
    """The innermost `[`, `{` or quote still open at the end of ``text``: (line, col) from 1,
    and the character. For a message only: flow brackets and quotes, comments skipped."""
    stack: list[tuple[int, int, str]] = []
    quote: tuple[int, int, str] | None = None
    for number, line in enumerate(text.split("\n"), 1):
        col = 0
        while col < len(line):
            char = line[col]
            if quote is not None:
                if char == "\\" and quote[2] == '"':
                    col += 1
                elif char == quote[2]:
                    if quote[2] == "'" and line[col + 1:col + 2] == "'":
                        col += 1  # '' is a quote inside a single-quoted string
                    else:
                        quote = None
            elif char == "#" and (col == 0 or line[col - 1] in " \t"):
                break
            elif char in "'\"" and (col == 0 or line[col - 1] in " \t[{,:-"):
                quote = (number, col + 1, char)
            elif char in "[{" and (stack or col == 0 or line[col - 1] in " \t[{,:-"):
                stack.append((number, col + 1, char))
            elif char in "]}" and stack:
                stack.pop()
            col += 1
    return quote or (stack[-1] if stack else None)


def _from_marked(e: yaml.MarkedYAMLError, text: str) -> YamlProblem:
    mark = e.problem_mark or e.context_mark
    if mark is not None and _at_end(mark, text):
        # The file ended inside something never closed (a `[`, a `{`, a quote): where the
        # file ends (a line past the last one) helps nobody; where that thing opens is the
        # mistake. libyaml's context mark says where, unless it is at the end as well.
        opened = _unclosed(text)
        start = e.context_mark
        if start is not None and not _at_end(start, text):
            lines = text.split("\n")
            char = lines[start.line][start.column:start.column + 1]
            opened = (start.line + 1, start.column + 1, char)
        if opened is not None:
            line, col, char = opened
            what = (f"this {char!r}" if char in ("[", "{", "'", '"') else
                    "this " + (e.context or "value").removeprefix("while parsing a ")
                    .removeprefix("while scanning a "))
            return YamlProblem(line, col, f"YAML syntax error: {what} is never closed: the "
                                          f"file ends first ({e.problem or 'not valid YAML'})")
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    problem = e.problem or "not valid YAML"
    # libyaml doesn't name the character; a tab where indentation goes is the classic mistake
    at = text[mark.index] if mark and 0 <= mark.index < len(text) else ""
    if at == "\t" or "'\\t'" in problem:
        return YamlProblem(line, col, "tab character: YAML indentation must use spaces")
    if "maximum nesting depth" in problem:
        # PyYAML >= 6.0.4 has a depth limit of its own (deeper than ours); say it our way
        return YamlProblem(line, col, f"nesting is deeper than {MAX_DEPTH} levels")
    context = f" ({e.context})" if e.context else ""
    return YamlProblem(line, col, f"YAML syntax error: {problem}{context}")


def _pos(event: Event) -> Pos:
    mark = event.start_mark
    assert mark is not None  # the parser marks every event it makes
    return mark.line + 1, mark.column + 1


class _Builder:
    """Turns the parser's event stream into plain data while recording positions."""

    _resolver = Resolver()
    _constructor = SafeConstructor()

    def __init__(self, text: str):
        # The parser's own get_event, not yaml.parse()'s generator around it: one call less
        # per value, which is a third of the time on big files.
        self.next: Callable[[], Event] = _Loader(text).get_event
        self.doc = Document(data=None)
        self.count = 0
        self.tags: dict[tuple[str, Any], str] = {}  # (text, implicit) -> resolved tag

    def build(self) -> Document:
        ev = self.next()
        assert isinstance(ev, StreamStartEvent)
        ev = self.next()
        if isinstance(ev, StreamEndEvent):
            return self.doc  # empty file: data None, the schema says what was expected
        assert isinstance(ev, DocumentStartEvent)
        self.doc.data = self.node(self.next(), (), 1)
        ev = self.next()
        assert isinstance(ev, DocumentEndEvent)
        ev = self.next()
        if not isinstance(ev, StreamEndEvent):
            line, col = _pos(ev)
            raise YamlProblem(line, col, "expected a single YAML document, found a second one")
        return self.doc

    def node(self, ev: Event, path: Path, depth: int) -> Any:
        pos = _pos(ev)
        if depth > MAX_DEPTH:
            raise YamlProblem(*pos, f"nesting is deeper than {MAX_DEPTH} levels")
        self.count += 1
        if self.count > MAX_NODES:
            raise YamlProblem(*pos, f"more than {MAX_NODES} values; the file is too large")
        if isinstance(ev, AliasEvent):
            raise YamlProblem(*pos, f"YAML aliases (*{ev.anchor}) are not supported; "
                                    "write the value out")
        self.check_tag(ev, pos)
        self.doc.values[path] = pos
        if isinstance(ev, ScalarEvent):
            return self.scalar(ev)
        if isinstance(ev, SequenceStartEvent):
            return self.sequence(path, depth)
        if isinstance(ev, MappingStartEvent):
            return self.mapping(path, depth)
        raise YamlProblem(*pos, f"unexpected YAML event {type(ev).__name__}")

    @staticmethod
    def check_tag(ev: Event, pos: Pos) -> None:
        tag = getattr(ev, "tag", None)
        if tag is not None and tag != "!" and tag not in _ALLOWED_TAGS:
            shown = "!!" + tag[len(_TAG):] if tag.startswith(_TAG) else tag
            raise YamlProblem(*pos, f"YAML tag {shown} is not allowed (only plain values)")

    def sequence(self, path: Path, depth: int) -> list[Any]:
        items: list[Any] = []
        while not isinstance(ev := self.next(), SequenceEndEvent):
            items.append(self.node(ev, (*path, len(items)), depth + 1))
        return items

    def mapping(self, path: Path, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        while not isinstance(ev := self.next(), MappingEndEvent):
            key_pos = _pos(ev)
            key = self.key(ev, key_pos)
            if key in out:
                first = self.doc.keys[path + (key,)]
                raise YamlProblem(*key_pos,
                                  f"duplicate key {quoted(key)} (first at line {first[0]})")
            self.doc.keys[path + (key,)] = key_pos
            out[key] = self.node(self.next(), (*path, key), depth + 1)
        return out

    def key(self, ev: Event, pos: Pos) -> str:
        """Mapping keys are names: keep the text as written (``1:`` is the name "1")."""
        if isinstance(ev, AliasEvent):
            raise YamlProblem(*pos, f"YAML aliases (*{ev.anchor}) are not supported")
        if not isinstance(ev, ScalarEvent):
            raise YamlProblem(*pos, "mapping keys must be plain names, not lists or mappings")
        self.check_tag(ev, pos)
        return ev.value

    def resolve(self, ev: ScalarEvent) -> str:
        """The implicit tag of a plain scalar (int, bool, ...); memoised, the regexes are slow."""
        key = (ev.value, ev.implicit)
        tag = self.tags.get(key)
        if tag is None:
            tag = self.tags[key] = self._resolver.resolve(ScalarNode, ev.value, ev.implicit)
        return tag

    def scalar(self, ev: ScalarEvent) -> Any:
        tag = ev.tag if ev.tag not in (None, "!") else self.resolve(ev)
        if ev.tag == "!":  # the non-specific tag: "this is a string"
            tag = _TAG + "str"
        # YAML 1.1 reads 11:22:33 as a base-60 number; nobody writing a MAC or ADDR:PORT
        # means that, so plain scalars with a colon stay strings.
        if tag in (_TAG + "int", _TAG + "float") and ":" in ev.value:
            return ev.value
        if tag in (_TAG + "str", _TAG + "timestamp"):  # dates are just text to us
            return ev.value
        # (libyaml's parser makes its own Mark class, which the stubs do not count as one)
        node = ScalarNode(tag, ev.value, cast(Mark, ev.start_mark), cast(Mark, ev.end_mark))
        try:
            if tag == _TAG + "int":
                return self._constructor.construct_yaml_int(node)
            if tag == _TAG + "float":
                return self._constructor.construct_yaml_float(node)
            if tag == _TAG + "bool":
                return self._constructor.construct_yaml_bool(node)
            if tag == _TAG + "null":
                return None
        except (ValueError, yaml.constructor.ConstructorError):
            raise YamlProblem(*_pos(ev), f"cannot read {ev.value!r} as {tag[len(_TAG):]}") \
                from None
        return ev.value
