"""Topology file -> model.Topology, or InvalidTopology carrying every problem in the file.

Three stages, each reporting with file positions:
1. yamlsrc: safe YAML with positions (syntax errors stop here: nothing after them is reliable);
2. the JSON Schema (topology.schema.json beside this module, the one definition of the format)
   and the semantic checks in checks.py, both run so one pass shows all problems;
3. conversion of the now known-good data into model objects.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import stat
import zlib
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from netdecl.errors import Diagnostic, InvalidTopology
from netdecl.links import LINK_KINDS
from netdecl.model import (
    MAIN_TABLE,
    ROOT,
    Address,
    ExternalLink,
    FdbEntry,
    Link,
    Namespace,
    NatRule,
    NatTable,
    Neighbor,
    NetObject,
    Probe,
    Route,
    Rule,
    Sysctl,
    Topology,
)
from netdecl.topology import sbr, schema_errors
from netdecl.topology.checks import run_checks
from netdecl.topology.format import (
    FILTER_SECTIONS,
    NAT_SECTIONS,
    UNICAST,
    NamedTables,
    family_of,
    filter_rule,
    nat_rule,
    normal_ip,
    normal_net,
    parse_interface,
    route_family,
    route_metric,
    route_scope,
    route_to,
    routing_table,
    sysctl_value,
)
from netdecl.topology.template.expand import Expander, TemplateProblem, is_template
from netdecl.topology.template.include import collect
from netdecl.topology.trafficcontrol import build_qdiscs
from netdecl.topology.yamlsrc import MAX_BYTES, Document, YamlProblem, decode, parse

if TYPE_CHECKING:
    from importlib.abc import Traversable

    from jsonschema import Draft202012Validator

    # (made on first use by __getattr__ below)
    SCHEMA_PATH: Traversable

MAX_DIAGNOSTICS = 500  # past this nobody reads on, and a hostile file could make millions

SCHEMA_FILE = "topology.schema.json"


def __getattr__(name: str) -> Any:
    """``SCHEMA_PATH``: the schema as package data, found through importlib.resources wherever
    and however the package is installed (a wheel in site-packages, a zip, an editable
    checkout). A Traversable: use .read_text(). Made on first use: importlib.resources (and
    the zipfile machinery under it) costs every command ~10 ms, and a valid file needs only
    schema_bytes()."""
    if name == "SCHEMA_PATH":
        from importlib import resources

        return resources.files(__package__).joinpath(SCHEMA_FILE)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def schema_bytes() -> bytes:
    """The schema file's bytes, through the loader that imported this package (a file, a zip
    member: what importlib.resources would find, without importing it)."""
    from netdecl import topology

    assert topology.__spec__ is not None and topology.__spec__.loader is not None
    return topology.__spec__.loader.get_data(  # type: ignore[attr-defined]
        os.path.join(os.path.dirname(topology.__file__), SCHEMA_FILE))

__all__ = ["SCHEMA_PATH", "load_document", "load_topology", "load_topology_text"]


# ---------------------------------------------------------------------------- entry points


def load_topology(path: str | os.PathLike[str], *, variables: Mapping[str, Any] | None = None,
                  facts: Mapping[str, Any] | None = None) -> Topology:
    """Load and validate a topology file, or a directory of them read as one topology.
    ``variables`` override the template's vars (values: text, as from --var, or typed);
    ``facts`` is what ``${facts...}`` reads (read lazily: only a file that uses it pays).
    Raises InvalidTopology listing every problem."""
    filename = os.fspath(path)
    if os.path.isdir(filename):
        doc = expand(filename, None, variables, facts)
        return _validated(doc, filename)
    return load_topology_text(read_file(filename), filename, variables=variables, facts=facts)


def load_topology_text(text: str | bytes, filename: str = "<string>", *,
                       variables: Mapping[str, Any] | None = None,
                       facts: Mapping[str, Any] | None = None) -> Topology:
    """Load and validate topology text; ``filename`` is used in diagnostics and is where
    relative includes start from."""
    return _validated(load_document(text, filename, variables, facts), filename)


def load_document(text: str | bytes, filename: str, variables: Mapping[str, Any] | None = None,
                  facts: Mapping[str, Any] | None = None) -> Document:
    """The file as plain data with positions: parsed, and expanded when it is a template."""
    try:
        source = decode(text) if isinstance(text, bytes) else text
        doc = parse(source)
    except YamlProblem as e:
        raise InvalidTopology([Diagnostic(filename, e.line, e.col, e.message)]) from None
    if doc.data is not None and (variables or is_template(source, doc.data)):
        return expand(filename, source, variables, facts)
    return doc


def expand(filename: str, text: str | None, variables: Mapping[str, Any] | None,
           facts: Mapping[str, Any] | None) -> Document:
    """A template (a file with its includes, or a directory) expanded into one Document."""
    try:
        sources = collect(filename, read_file, text)
        return Expander(sources, dict(variables or {}), facts, filename).run()
    except TemplateProblem as e:
        raise InvalidTopology([Diagnostic(e.file, e.pos[0], e.pos[1], e.message,
                                          note=e.note)]) from None


def _validated(doc: Document, filename: str) -> Topology:
    if doc.data is None:
        raise InvalidTopology([Diagnostic(filename, 1, 1, "the file is empty; a topology needs "
                                                          "at least 'version: 1' and 'name:'")])
    ctx = run_checks(doc, filename)
    errors = merge(schema_problems(doc, filename), ctx.errors)
    if errors:
        raise InvalidTopology(errors)
    topology = build(doc)
    topology.warnings = [str(w) for w in sorted(set(ctx.warnings))]
    topology.sources = doc.files or (filename,)
    if doc.files:
        topology.expanded = doc.data
    return topology


def load_var_file(filename: str) -> dict[str, Any]:
    """A --var-file: a YAML mapping of variable names to values."""
    try:
        doc = parse(decode(read_file(filename)))
    except YamlProblem as e:
        raise InvalidTopology([Diagnostic(filename, e.line, e.col, e.message)]) from None
    if not isinstance(doc.data, dict):
        raise InvalidTopology([Diagnostic(filename, 1, 1, "a var file is a mapping of "
                                                          "NAME: VALUE")])
    return dict(doc.data)


def read_file(filename: str) -> bytes:
    """The file's bytes, refusing what isn't a small regular file (a FIFO would block us)."""
    def fail(message: str) -> InvalidTopology:
        return InvalidTopology([Diagnostic(filename, 0, 0, message)])

    try:
        info = os.stat(filename)
        if stat.S_ISDIR(info.st_mode):
            raise fail("is a directory, not a topology file")
        if not stat.S_ISREG(info.st_mode):
            raise fail("is not a regular file")
        if info.st_size > MAX_BYTES:
            raise fail(f"file is {info.st_size} bytes; the limit is {MAX_BYTES} bytes")
        with open(filename, "rb") as f:
            return f.read(MAX_BYTES + 1)  # decode() refuses if it grew meanwhile
    except FileNotFoundError:
        raise fail("no such file") from None
    except OSError as e:
        raise fail(f"cannot read the file: {e.strerror or e}") from None


# ---------------------------------------------------------------------------- validation


@lru_cache(maxsize=1)
def validator() -> Draft202012Validator:
    # Imported here: jsonschema costs ~50 ms of start-up that `netdecl --help` needn't pay.
    from jsonschema import Draft202012Validator

    schema = json.loads(schema_bytes())
    return Draft202012Validator(inline_refs(schema, schema.get("$defs", {})))


def inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    """Replace local "$ref": "#/$defs/x" by the definition itself (the format has no cycles).

    Same meaning, but jsonschema no longer resolves a reference per value: about a third faster
    on large topologies. The file keeps its $refs for people and editors.
    """
    if isinstance(node, list):
        return [inline_refs(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: inline_refs(v, defs) for k, v in node.items() if k != "$ref"}
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return {**inline_refs(defs[ref[len("#/$defs/"):]], defs), **out}
    if ref is not None:
        out["$ref"] = ref
    return out


def schema_digest() -> str:
    """Which schema schema_compiled.py was made from: CRC-32 and size, enough to tell an edited
    schema (whoever can write the package's files runs code anyway), and zlib loads in well
    under a millisecond where hashlib (OpenSSL) took ~10."""
    data = schema_bytes()
    return f"crc32:{zlib.crc32(data):08x}:{len(data)}"


@lru_cache(maxsize=1)
def fast_check() -> Callable[[Any], Any]:
    """The same schema compiled to Python by fastjsonschema: ~10x faster than jsonschema and
    no 80 ms import, but it stops at the first error and its messages are poor. So it only
    answers "valid?" for the common case (a GitOps drift check on a file that is fine);
    jsonschema remains the reference and produces every diagnostic. tests/test_loader_fuzz.py
    checks that the fast path never accepts what jsonschema refuses.

    Compiled ahead (schema_compiled.py, see compile_schema.py) when that was made from this
    very schema; compiled here otherwise."""
    from netdecl.topology import schema_compiled

    if schema_compiled.SCHEMA_DIGEST == schema_digest():
        return schema_compiled.validate
    import fastjsonschema

    # with its $refs kept: fastjsonschema turns each definition into one function, which is
    # smaller to compile and faster to run than the inlined copy jsonschema prefers
    return fastjsonschema.compile(json.loads(schema_bytes()))


def fast_valid(data: Any) -> bool:
    try:
        fast_check()(data)
    except Exception:  # JsonSchemaException, or anything the generated code trips on
        return False
    return True


def schema_problems(doc: Document, filename: str) -> list[tuple[Diagnostic, bool]]:
    if fast_valid(doc.data):
        return []
    found = schema_errors.problems(validator().iter_errors(doc.data), doc)
    return [(Diagnostic(p.origin[0] or filename, p.pos[0], p.pos[1], p.message,
                        note=p.origin[1]), p.soft) for p in found]


def merge(schema: list[tuple[Diagnostic, bool]], semantic: list[Diagnostic]) -> list[Diagnostic]:
    """One message per problem: a semantic message beats a schema pattern error at one spot."""
    semantic_at = {(d.file, d.line, d.col, d.note) for d in semantic}
    kept = [d for d, soft in schema
            if not (soft and (d.file, d.line, d.col, d.note) in semantic_at)]
    found = sorted(set(kept) | set(semantic))
    if len(found) > MAX_DIAGNOSTICS:
        rest = found[MAX_DIAGNOSTICS]
        found = found[:MAX_DIAGNOSTICS] + [Diagnostic(
            rest.file, rest.line, rest.col,
            f"... and {len(found) - MAX_DIAGNOSTICS} more problems from here on")]
    return found


# ---------------------------------------------------------------------------- conversion


Builder = Callable[[Topology, dict[str, Any], Document], None]


def build(doc: Document) -> Topology:
    data: dict[str, Any] = doc.data
    topology = Topology(name=data["name"])
    for builder in (*BUILDERS.values(), *DERIVED):
        builder(topology, data, doc)
    build_probes(topology, data, doc)  # probes are for `verify`, not a reconciled kind
    return topology


def place(topology: Topology, obj: Any, pos: tuple[int, int]) -> None:
    topology.add(obj)
    topology.positions[obj.key] = pos


ip, net = normal_ip, normal_net


def build_sysctls(topology: Topology, data: dict[str, Any], doc: Document) -> None:
    tables: list[tuple[str, tuple[str, ...], dict[str, Any]]] = [
        (ROOT, ("sysctls",), data.get("sysctls") or {})]
    for name, spec in (data.get("namespaces") or {}).items():
        tables.append((name, ("namespaces", name, "sysctls"), (spec or {}).get("sysctls") or {}))
    for namespace, path, table in tables:
        for key, value in table.items():
            place(topology, Sysctl(namespace, key, sysctl_value(value)),
                  doc.key_pos((*path, key)))


def build_namespaces(topology: Topology, data: dict[str, Any], doc: Document) -> None:
    for name in data.get("namespaces") or {}:
        place(topology, Namespace(name), doc.key_pos(("namespaces", name)))


def build_links(topology: Topology, data: dict[str, Any], doc: Document) -> None:
    for i, entry in enumerate(data.get("links") or []):
        path = ("links", i)
        kind = LINK_KINDS[entry["kind"]]
        ends = kind.ends(entry, entry.get("namespace", ROOT), path)
        built = kind.build(ends)
        for end, obj in zip(ends, built, strict=True):
            place(topology, obj, doc.value_pos(end.path))
            add_addresses(topology, obj, end.entry, end.path, doc)
        for obj, where in kind.derived(built[0], entry, path):
            place(topology, obj, doc.value_pos(where))


def add_addresses(topology: Topology, link: NetObject, spec: Mapping[str, Any],
                  path: tuple[Any, ...], doc: Document) -> None:
    for k, text in enumerate(spec.get("addresses") or []):
        iface, _ = parse_interface(text)  # valid: the checks said so (and parsed it once)
        assert iface is not None
        cidr = iface.with_prefixlen
        assert isinstance(link, (Link, ExternalLink))
        place(topology, Address(link.namespace, link.name, cidr),
              doc.value_pos((*path, "addresses", k)))


def named_tables(data: dict[str, Any]) -> NamedTables:
    """The routing tables links of the file own (a VRF's), by (namespace, link name)."""
    named: NamedTables = {}
    for entry in data.get("links") or []:
        table = LINK_KINDS[entry["kind"]].routing_table(entry)
        if table is not None:
            named[(entry.get("namespace", ROOT), entry["name"])] = table
    return named


def build_routes(topology: Topology, data: dict[str, Any], doc: Document) -> None:
    named = named_tables(data)
    # a route naming no table, through a link with a table of its own, goes in that table
    own_tables = sbr.tables_of(data)
    for i, spec in enumerate(data.get("routes") or []):
        family = route_family(spec)
        namespace = spec.get("namespace", ROOT)
        route = Route(
            namespace=namespace,
            to=route_to(spec["to"], family),
            table=routing_table(spec["table"], namespace, named) if "table" in spec
            else own_tables.get((namespace, spec.get("dev")), MAIN_TABLE),
            metric=int(route_metric(spec, family)),
            via=ip(spec.get("via")),
            dev=spec.get("dev"),
            src=ip(spec.get("src")),
            type=spec.get("type", UNICAST),
            onlink=spec.get("onlink"),
            scope=route_scope(spec, family),
        )
        place(topology, route, doc.value_pos(("routes", i)))


def build_nat(topology: Topology, data: dict[str, Any], doc: Document) -> None:
    """One table per namespace; rules in file order by section: masquerade, snat, dnat, then
    the forward filter (its rules follow the port forwards' own forward-hook rules)."""
    rules: dict[str, list[NatRule]] = {}
    first_pos: dict[str, tuple[int, int]] = {}
    sections: list[tuple[str, str, Callable[[dict[str, Any]], NatRule]]] = [
        ("nat", section, functools.partial(nat_rule, section)) for section in NAT_SECTIONS]
    sections += [("filter", section, filter_rule) for section in FILTER_SECTIONS]
    for top, section, make in sections:
        for i, spec in enumerate((data.get(top) or {}).get(section) or []):
            namespace = spec.get("namespace", ROOT)
            rules.setdefault(namespace, []).append(make(spec))
            first_pos.setdefault(namespace, doc.value_pos((top, section, i)))
    for namespace, items in rules.items():
        place(topology, NatTable(namespace, rules=tuple(items)), first_pos[namespace])


def hairpin_by_default(topology: Topology, data: dict[str, Any], doc: Document) -> None:
    """A port forward whose target sits behind a bridge port of the forward's namespace needs
    hairpin on that port (the target reaching its own published port, or a virtual IP that
    picks it): turn it on where the file says nothing, as Docker and kubelet do."""
    if not any(rule.kind == "dnat" for table in topology.of_type(NatTable)
               for rule in table.rules or ()):
        return
    # (an Address's cidr is normalised: its address part is the compressed form)
    holders = {a.cidr.rsplit("/", 1)[0]: (a.namespace, a.link)
               for a in topology.of_type(Address)}
    for table in topology.of_type(NatTable):
        for rule in table.rules or ():
            for target in rule.targets if rule.kind == "dnat" else ():
                holder = topology.get(("link", *holders.get(target, ("", ""))))
                if not isinstance(holder, Link) or holder.peer is None:
                    continue
                port = topology.get(("link", *holder.peer))
                if isinstance(port, Link) and port.namespace == table.namespace and \
                        port.master and port.hairpin is None:
                    topology.add(dataclasses.replace(port, hairpin=True))


def build_fdb(topology: Topology, data: dict[str, Any], doc: Document) -> None:
    for i, spec in enumerate(data.get("fdb") or []):
        entry = FdbEntry(spec.get("namespace", ROOT), spec["link"], spec["mac"].lower(),
                         dst=ip(spec.get("dst")))
        place(topology, entry, doc.value_pos(("fdb", i)))


def build_neighbors(topology: Topology, data: dict[str, Any], doc: Document) -> None:
    for i, spec in enumerate(data.get("neighbors") or []):
        entry = Neighbor(spec.get("namespace", ROOT), spec["link"], ip(spec["address"]) or "",
                         spec["mac"].lower())
        place(topology, entry, doc.value_pos(("neighbors", i)))


def build_rules(topology: Topology, data: dict[str, Any], doc: Document) -> None:
    named = named_tables(data)
    for i, spec in enumerate(data.get("rules") or []):
        family = family_of(spec.get("from")) or family_of(spec.get("to")) or 4
        namespace = spec.get("namespace", ROOT)
        rule = Rule(namespace, priority=int(spec["priority"]), family=family,
                    src=net(spec.get("from")), dst=net(spec.get("to")),
                    table=routing_table(spec.get("table"), namespace, named),
                    iif=spec.get("iif"),
                    oif=spec.get("oif"))
        place(topology, rule, doc.value_pos(("rules", i)))


# The file side of the kind registry (netdecl/kinds.py): kind name -> the function that builds
# that kind's objects from the file, in build order. tests/test_kinds.py checks every kind is here
# or in BUILT_WITH.
BUILDERS: dict[str, Builder] = {
    "sysctl": build_sysctls,
    "namespace": build_namespaces,
    "link": build_links,
    "route": build_routes,
    "nat": build_nat,
    "fdb": build_fdb,
    "neighbor": build_neighbors,
    "rule": build_rules,
    "qdisc": build_qdiscs,
}
# What the file implies rather than says, run after every builder.
DERIVED: tuple[Builder, ...] = (hairpin_by_default, sbr.derive)
# Kinds the file writes inside another kind's entry: a link's `addresses`; an external link is
# a `links` entry of kind external.
BUILT_WITH: dict[str, str] = {"address": "link", "external": "link"}


def build_probes(topology: Topology, data: dict[str, Any], doc: Document) -> None:
    for spec in data.get("probes") or []:
        port = spec.get("port")
        topology.probes.append(Probe(source=spec["from"], to=spec["to"],
                                     port=int(port) if port is not None else None,
                                     expect_source=ip(spec.get("source")),
                                     expect=spec.get("expect", "reachable"),
                                     proto=spec.get("proto", "tcp"), vrf=spec.get("in_vrf")))
