"""Template files -> one plain topology Document, keeping where every value was written.

A template is a topology file that may also hold:

* ``vars:`` typed variables with defaults, overridden by ``--var``/``--var-file``/the API;
* ``${expr}`` in any string (keys too), see strings.py and expr.py;
* ``for: "i in range(1, n + 1)"`` (or ``"k, host in hosts"``: index and item; over a
  mapping ``"key, value in m"``) and ``if: expr`` in any list item that is a mapping, and in
  any mapping-valued entry of a mapping (a namespace), which repeat or drop that item; a
  scalar item (an address) is written ``{for: ..., value: "10.0.${i}.1/24"}``;
* ``defaults:`` per section (``links``, ``namespaces``, ``routes``...) merged into every entry
  that does not say otherwise;
* ``include:`` other files or directories, relative to the including file.

The result is a Document as yamlsrc makes: every value of the expanded data keeps the line
and column of the template text it came from, and ``origins`` records for each repeated or
included part the file and the loop iteration (``i=17``), so the schema and the semantic
checks that run afterwards report ``lab.yaml:12:7 (i=17): ...`` with no change of their own.

Expansion is bounded: it makes at most yamlsrc.MAX_NODES values (a nested loop that would
make more stops there, at once), strings and lists are bounded by expr.py, and includes by
MAX_INCLUDE_DEPTH and MAX_FILES.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from netdecl.topology.template.expr import ExprError, as_sequence, compile_expr, type_name
from netdecl.topology.template.strings import compile_string
from netdecl.topology.yamlsrc import MAX_BYTES, MAX_NODES, Document, Path, Pos, quoted

TEMPLATE_KEYS = ("vars", "defaults", "include")
LOOP_KEYS = ("for", "if")
MAX_INCLUDE_DEPTH = 8
MAX_FILES = 256
VAR_TYPES = ("int", "string", "bool", "ip", "cidr", "list", "mapping", "any")
_FOR = re.compile(r"\s*([A-Za-z_]\w*)\s*(?:,\s*([A-Za-z_]\w*)\s*)?\s+in\s+(.+)", re.DOTALL)
_NAME = re.compile(r"[A-Za-z_]\w*")
# the sections whose entries `defaults:` fills: list sections and the namespaces mapping
EXTERNAL = "external"  # the link kind of the host's own NICs
DEFAULTABLE = ("namespaces", "links", "routes", "rules", "fdb", "neighbors", "probes")


class TemplateProblem(Exception):
    """A template cannot be expanded: where (file, line, col, iteration) and why."""

    def __init__(self, file: str, pos: Pos, note: str, message: str):
        super().__init__(message)
        self.file, self.pos, self.note, self.message = file, pos, note, message


@dataclass
class Source:
    """One parsed file of the template and the name its diagnostics use."""

    file: str
    doc: Document


@dataclass
class Frame:
    """Where expansion is: the file, the loop iterations around it, the names in scope."""

    source: Source
    note: str
    env: dict[str, Any]

    def inner(self, bindings: dict[str, Any]) -> Frame:
        shown = ", ".join(f"{k}={_brief(v)}" for k, v in bindings.items())
        env = dict(self.env)
        env.update(bindings)
        return Frame(self.source, f"{self.note}, {shown}" if self.note else shown, env)


def _brief(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 24 else text[:21] + "..."


def is_template(text: str, data: Any) -> bool:
    """Whether a parsed file needs expanding at all (plain files skip it: no cost)."""
    if isinstance(data, dict) and any(k in data for k in TEMPLATE_KEYS):
        return True
    return "${" in text or "for:" in text or "if:" in text


@dataclass
class Expander:
    """Expands the sources into ``out`` (a Document) in order: the root first, then each
    include where it is named, depth first."""

    sources: list[Source]
    overrides: Mapping[str, Any]
    facts: Mapping[str, Any] | None
    root: str
    out: Document = field(default_factory=lambda: Document(data={}))
    count: int = 0  # values made (the bound: MAX_NODES)
    chars: int = 0  # characters of the strings expressions made (the bound: MAX_BYTES)
    # top-level key -> where it was first written (file, path in that file) for "twice" errors
    first: dict[Path, tuple[Source, Path]] = field(default_factory=dict)

    # -- errors -----------------------------------------------------------------------------

    def fail(self, frame: Frame, path: Path, message: str, at_key: bool = False) -> TemplateProblem:
        doc = frame.source.doc
        pos = doc.key_pos(path) if at_key else doc.value_pos(path)
        return TemplateProblem(frame.source.file, pos, frame.note, message)

    def where(self, source: Source, path: Path, at_key: bool = True) -> str:
        line, col = source.doc.key_pos(path) if at_key else source.doc.value_pos(path)
        return f"{source.file}:{line}:{col}"

    # -- the whole -----------------------------------------------------------------------------

    def run(self) -> Document:
        env = self.variables()
        out: dict[str, Any] = self.out.data
        for source in self.sources:
            data = source.doc.data if isinstance(source.doc.data, dict) else {}
            frame = Frame(source, "", env)
            for key, value in data.items():
                if key in TEMPLATE_KEYS:
                    continue
                self.top_level(frame, key, value, out)
        self.apply_defaults(env)
        self.out.values.setdefault((), (1, 1))
        self.out.files = tuple(source.file for source in self.sources)
        return self.out

    def top_level(self, frame: Frame, key: str, value: Any, out: dict[str, Any]) -> None:
        """Merge one top-level section of one file into the output: lists are joined,
        mappings (namespaces, sysctls, nat...) joined entry by entry; a name or a scalar
        given twice is an error naming both places."""
        path: Path = (key,)
        if key not in out:
            self.mark(frame, path)
            self.first[path] = (frame.source, path)
            out[key] = self.value(frame, path, value, path)
            self.out.keys[path] = frame.source.doc.key_pos(path)
            return
        existing = out[key]
        if isinstance(existing, list) and isinstance(value, list):
            self.items(frame, path, value, path, existing)
            return
        if isinstance(existing, dict) and isinstance(value, dict):
            for sub, subvalue in value.items():
                if key in ("nat", "filter") and isinstance(existing.get(sub), list) \
                        and isinstance(subvalue, list):
                    self.items(frame, (key, sub), subvalue, (key, sub), existing[sub])
                    continue
                self.entry(frame, path, sub, subvalue, path, existing)
            return
        if existing == value and not isinstance(value, (dict, list)):
            return  # the same version: written in two files, meant the same
        source, first = self.first[path]
        raise self.fail(frame, path, f"{quoted(key)} is also set at "
                                     f"{self.where(source, first)}", at_key=True)

    def mark(self, frame: Frame, out_path: Path) -> None:
        """Record which file and iteration the output at ``out_path`` comes from."""
        if frame.note or frame.source.file != self.root:
            self.out.origins[out_path] = (frame.source.file, frame.note)

    def grow(self, frame: Frame, path: Path) -> None:
        self.count += 1
        if self.count > MAX_NODES:
            raise self.fail(frame, path, f"the expansion makes more than {MAX_NODES} values; "
                                         "the limit stops it here")

    # -- values ------------------------------------------------------------------------------

    def value(self, frame: Frame, tpath: Path, node: Any, opath: Path) -> Any:
        self.grow(frame, tpath)
        self.out.values[opath] = frame.source.doc.value_pos(tpath)
        if isinstance(node, str):
            return self.string(frame, tpath, node)
        if isinstance(node, list):
            return self.items(frame, tpath, node, opath, [])
        if isinstance(node, dict):
            out: dict[str, Any] = {}
            for key, value in node.items():
                self.entry(frame, tpath, key, value, opath, out)
            return out
        return node

    def string(self, frame: Frame, tpath: Path, text: str) -> Any:
        try:
            template = compile_string(text)
            if template is None:
                return text
            result = template(frame.env)
        except ExprError as e:
            raise self.fail(frame, tpath, str(e)) from None
        if isinstance(result, str):
            self.chars += len(result)
            if self.chars > MAX_BYTES:
                raise self.fail(frame, tpath, f"the expansion makes more than {MAX_BYTES} "
                                              "characters of text; the limit stops it here")
            return result
        if isinstance(result, (list, tuple, range, Mapping)):
            # a list from a var, written into every iteration: its items count too
            self.count += _size(result)
            self.grow(frame, tpath)
            return _plain(result)
        return result

    def entry(self, frame: Frame, tpath: Path, key: str, value: Any, opath: Path,
              out: dict[str, Any]) -> None:
        """One mapping entry; a mapping value with ``for``/``if`` repeats or drops it."""
        kpath = (*tpath, key)
        body = _body(value)
        for inner in self.repeat(frame, kpath, value):
            name = self.key(inner, kpath, key)
            if name in out:
                first = self.out.key_pos((*opath, name))
                origin, note = self.out.origin((*opath, name))
                shown = f"{origin or self.root}:{first[0]}:{first[1]}" + \
                    (f" ({note})" if note else "")
                raise self.fail(inner, kpath, f"{quoted(name)} is also defined at {shown}",
                                at_key=True)
            where: Path = (*opath, name)
            self.out.keys[where] = inner.source.doc.key_pos(kpath)
            self.mark(inner, where)
            out[name] = self.value(inner, kpath, body, where)

    def key(self, frame: Frame, kpath: Path, key: str) -> str:
        try:
            template = compile_string(key)
            if template is None:
                return key
            name = template(frame.env)
        except ExprError as e:
            raise self.fail(frame, kpath, str(e), at_key=True) from None
        if not isinstance(name, (str, int)) or isinstance(name, bool):
            raise self.fail(frame, kpath, f"a name must be text, not a {type_name(name)}",
                            at_key=True)
        return str(name)

    def items(self, frame: Frame, tpath: Path, node: list[Any], opath: Path,
              out: list[Any]) -> list[Any]:
        """List items into ``out``; an item with ``for``/``if`` is repeated or dropped."""
        for i, item in enumerate(node):
            ipath = (*tpath, i)
            body, bpath = _body(item), ipath
            if body is not item and set(body) == {"value"}:  # {for: ..., value: SCALAR}
                body, bpath = body["value"], (*ipath, "value")
            for inner in self.repeat(frame, ipath, item):
                where = (*opath, len(out))
                self.mark(inner, where)
                out.append(self.value(inner, bpath, body, where))
        return out

    def repeat(self, frame: Frame, path: Path, node: Any) -> list[Frame]:
        """The frames an item expands in: itself once, or once per loop value kept by if."""
        if not isinstance(node, dict) or not ("for" in node or "if" in node):
            return [frame]
        frames = [frame]
        if "for" in node:
            frames = self.loop(frame, path, node["for"])
        if "if" in node:
            frames = [f for f in frames if self.condition(f, (*path, "if"), node["if"])]
        return frames

    def loop(self, frame: Frame, path: Path, spec: Any) -> list[Frame]:
        fpath = (*path, "for")
        m = _FOR.fullmatch(spec) if isinstance(spec, str) else None
        if m is None:
            raise self.fail(frame, fpath, "a loop reads 'NAME in EXPR' or 'INDEX, NAME in "
                                          "EXPR' (e.g. 'i in range(1, 11)')")
        index, item, expr = (m.group(1), m.group(2), m.group(3)) if m.group(2) \
            else (None, m.group(1), m.group(3))
        expr = expr.strip()
        if expr.startswith("${") and expr.endswith("}"):
            expr = expr[2:-1]
        try:
            found = compile_expr(expr)(frame.env)
            pairs = index is not None and isinstance(found, Mapping)  # "key, value in m"
            values = list(found.items()) if pairs else as_sequence(found)
        except ExprError as e:
            hint = ""
            if expr.count("(") > expr.count(")") or expr.count("[") > expr.count("]"):
                hint = (" (in a flow mapping {...} YAML ends a value at ','; quote the loop: "
                        f"for: \"{spec.strip()}, ...\")")
            raise self.fail(frame, fpath, f"for: {str(e)}{hint}") from None
        frames = []
        for k, value in enumerate(values):
            self.grow(frame, fpath)  # a loop of empty items still counts
            bindings: dict[str, Any] = {item: value}
            if index is not None:
                bindings = {index: value[0], item: value[1]} if pairs else {index: k, item: value}
            frames.append(frame.inner(bindings))
        return frames

    def condition(self, frame: Frame, path: Path, spec: Any) -> bool:
        if isinstance(spec, bool):
            return spec
        if not isinstance(spec, str):
            raise self.fail(frame, path, "'if' takes an expression (e.g. 'i % 2 == 0')")
        text = spec.strip()
        if text.startswith("${") and text.endswith("}"):
            text = text[2:-1]
        try:
            result = compile_expr(text)(frame.env)
        except ExprError as e:
            raise self.fail(frame, path, str(e)) from None
        if not isinstance(result, bool):
            raise self.fail(frame, path, f"'if' must be true or false, not {result!r}")
        return result

    # -- variables ---------------------------------------------------------------------------

    def variables(self) -> dict[str, Any]:
        """vars of every file, in order, each able to use the ones before it and ``facts``."""
        env: dict[str, Any] = {}
        if self.facts is not None:
            env["facts"] = self.facts
        declared: dict[str, tuple[Source, Path]] = {}
        for source in self.sources:
            data = source.doc.data if isinstance(source.doc.data, dict) else {}
            table = data.get("vars")
            frame = Frame(source, "", env)
            if table is None:
                continue
            if not isinstance(table, dict):
                raise self.fail(frame, ("vars",), "vars: expected a mapping of names")
            for name, spec in table.items():
                path = ("vars", name)
                if not _NAME.fullmatch(name) or name == "facts":
                    raise self.fail(frame, path, f"variable name {quoted(name)}: letters, "
                                                 "digits and '_' (and not 'facts')", at_key=True)
                if name in declared:
                    other, where = declared[name]
                    raise self.fail(frame, path, f"variable {quoted(name)} is also declared "
                                                 f"at {self.where(other, where)}", at_key=True)
                declared[name] = (source, path)
                env[name] = self.variable(frame, path, name, spec)
        unknown = sorted(set(self.overrides) - set(declared))
        if unknown:
            known = ", ".join(sorted(declared)) or "none"
            raise TemplateProblem(self.root, (1, 1), "", f"--var {unknown[0]}: the topology "
                                  f"declares no such variable (declared: {known})")
        return env

    def variable(self, frame: Frame, path: Path, name: str, spec: Any) -> Any:
        kind, default, has_default = "any", spec, True
        if isinstance(spec, dict) and spec and set(spec) <= {"type", "default", "description"}:
            kind = spec.get("type", "any")
            has_default = "default" in spec
            default = spec.get("default")
            if kind not in VAR_TYPES:
                raise self.fail(frame, (*path, "type"), f"variable type {quoted(str(kind))}: "
                                                        f"one of {', '.join(VAR_TYPES)}")
        if name in self.overrides:
            given, from_text = self.overrides[name], True
        elif has_default:
            tpath = (*path, "default") if isinstance(spec, dict) and "default" in spec else path
            given, from_text = self.value(frame, tpath, default, ("vars", name)), False
        else:
            raise self.fail(frame, path, f"variable {quoted(name)} has no default: give it with "
                                         f"--var {name}=VALUE", at_key=True)
        try:
            return coerce(kind, given, from_text and isinstance(given, str))
        except ValueError as e:
            origin = " (from --var)" if from_text else ""
            raise self.fail(frame, path, f"variable {quoted(name)}{origin}: {e}",
                            at_key=True) from None

    # -- defaults ------------------------------------------------------------------------------

    def apply_defaults(self, env: dict[str, Any]) -> None:
        for source in self.sources:
            data = source.doc.data if isinstance(source.doc.data, dict) else {}
            table = data.get("defaults")
            if table is None:
                continue
            frame = Frame(source, "", env)
            if not isinstance(table, dict):
                raise self.fail(frame, ("defaults",), "defaults: expected a mapping of sections")
            for section, spec in table.items():
                path = ("defaults", section)
                if section not in DEFAULTABLE:
                    raise self.fail(frame, path, f"defaults for {quoted(section)}: one of "
                                                 f"{', '.join(DEFAULTABLE)}", at_key=True)
                if not isinstance(spec, dict):
                    raise self.fail(frame, path, "defaults: expected a mapping of keys")
                self.fill(frame, path, section, spec)

    def fill(self, frame: Frame, tpath: Path, section: str, spec: dict[str, Any]) -> None:
        found = self.out.data.get(section)
        if isinstance(found, dict):
            for name in found:
                if found[name] is None:
                    found[name] = {}
                if isinstance(found[name], dict):
                    self.merge(frame, tpath, spec, (section, name), found[name])
        elif isinstance(found, list):
            for i, entry in enumerate(found):
                # the host's own NICs take no defaults: `mtu: 9000` for every link netdecl
                # makes must not quietly change the uplink's (write it on the link)
                if isinstance(entry, dict) and not (section == "links" and
                                                    entry.get("kind") == EXTERNAL):
                    self.merge(frame, tpath, spec, (section, i), entry)

    def merge(self, frame: Frame, tpath: Path, spec: dict[str, Any], opath: Path,
              entry: dict[str, Any]) -> None:
        """Keys of ``spec`` the entry lacks, and inside mappings both have, recursively."""
        for key, value in spec.items():
            where: Path = (*opath, key)
            if key not in entry:  # its origin said even in the root file: the entry's may not be
                self.out.origins[where] = (frame.source.file, frame.note)
                self.out.keys[where] = frame.source.doc.key_pos((*tpath, key))
                entry[key] = self.value(frame, (*tpath, key), value, where)
            elif isinstance(value, dict) and isinstance(entry[key], dict):
                self.merge(frame, (*tpath, key), value, (*opath, key), entry[key])


def _body(node: Any) -> Any:
    """What an item with ``for``/``if`` repeats: itself without those keys."""
    if isinstance(node, dict) and ("for" in node or "if" in node):
        return {k: v for k, v in node.items() if k not in LOOP_KEYS}
    return node


def _size(value: Any) -> int:
    """How many values a list or mapping holds, nested ones included (cut off past the limit)."""
    count = 0
    stack = [value]
    while stack and count <= MAX_NODES:
        node = stack.pop()
        count += 1
        if isinstance(node, Mapping):
            stack.extend(node.values())
        elif isinstance(node, (list, tuple)):
            stack.extend(node)
        elif isinstance(node, range):
            count += len(node)
    return count


def _plain(value: Any) -> Any:
    """An expression's value as the plain data the file format holds."""
    if isinstance(value, range):
        return list(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def coerce(kind: str, value: Any, from_text: bool) -> Any:
    """A variable's value checked against its type; text (from --var) converted first."""
    if kind == "int":
        if from_text:
            try:
                return int(value.strip(), 10)
            except ValueError:
                raise ValueError(f"{value!r} is not a number") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected a number, got {value!r}")
        return value
    if kind == "bool":
        if from_text and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        return value
    if kind in ("string", "ip", "cidr"):
        if not isinstance(value, str):
            if isinstance(value, int) and not isinstance(value, bool):
                value = str(value)
            else:
                raise ValueError(f"expected a string, got {value!r}")
        if kind == "ip":
            try:
                ipaddress.ip_address(value)
            except ValueError:
                raise ValueError(f"{value!r} is not an address") from None
        if kind == "cidr":
            try:
                ipaddress.ip_interface(value)
                if "/" not in value:
                    raise ValueError
            except ValueError:
                raise ValueError(f"{value!r} is not ADDRESS/PREFIX") from None
        return value
    if from_text:
        from netdecl.topology.yamlsrc import YamlProblem, parse

        try:
            value = parse(value).data
        except YamlProblem as e:
            raise ValueError(f"cannot read {value!r}: {e.message}") from None
    if kind == "list" and not isinstance(value, list):
        raise ValueError(f"expected a list, got {value!r}")
    if kind == "mapping" and not isinstance(value, dict):
        raise ValueError(f"expected a mapping, got {value!r}")
    return value



class LazyFacts(Mapping[str, Any]):
    """Facts read the first time a template looks into them (``read``: the host's, given by
    the API from backends/facts.py; this layer never reads the host itself)."""

    def __init__(self, read: Callable[[], dict[str, Any]]):
        self._read = read
        self._data: dict[str, Any] | None = None

    def _facts(self) -> dict[str, Any]:
        if self._data is None:
            self._data = self._read()
        return self._data

    def __getitem__(self, key: str) -> Any:
        return self._facts()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._facts())

    def __len__(self) -> int:
        return len(self._facts())
