"""Property: whatever a user writes, the loader either returns a Topology or raises InvalidTopology.

Mutations start from the shipped (valid) topologies so they reach deep into the checks: a
removed key, a value of the wrong type, a renamed key, random text in place of a name, and raw
byte edits that break the YAML itself.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_loader import EVERYTHING  # every section: vxlan, fdb, rules, snat, probes

from netdecl.errors import InvalidTopology
from netdecl.model import Topology
from netdecl.topology.loader import load_topology_text
from netdecl.topology.yamlsrc import parse

TOPOLOGIES = Path(__file__).resolve().parent.parent / "topologies"
SOURCES = [(TOPOLOGIES / name).read_text() for name in ("docker-bridge.yaml", "docker-nat.yaml")]
SOURCES.append(EVERYTHING)
BASES = [parse(text).data for text in SOURCES]
# 2 x 100 examples keeps CI fast; NETDECL_FUZZ_EXAMPLES=5000 for a deeper local run.
FUZZ = settings(max_examples=int(os.environ.get("NETDECL_FUZZ_EXAMPLES", "100")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Values that look plausible to some field somewhere: names, addresses, ports, junk.
INTERESTING = st.sampled_from([
    "default", "docker0", "eth0", "nginx-1", "root", "lo", "10.0.0.0/8", "10.0.0.1/8",
    "172.17.0.1", "fd00::1/64", "fe80::1%eth0", "::/0", "02:42:ac:11:00:02", "8080-8090",
    "172.17.0.2:80", "[fd00::2]:80", "veth", "bridge", "vxlan", "../x", "a b", "x" * 70, "",
    "a;b", "\u00e9th0", 0, -1, 1, 65536, 2**64, 1.5, float("nan"), True, None,
])
SCALARS = st.one_of(INTERESTING, st.none(), st.booleans(), st.integers(), st.floats(),
                    st.text(max_size=20))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=6)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``node`` (the root included)."""
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += paths(value, (*prefix, i))
    return out


def mutate(data: Any, path: tuple[Any, ...], how: str, value: Any) -> Any:
    """Apply one mutation at ``path``: delete it, replace it, or rename its key."""
    if not path:
        return value if how == "replace" else data
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if how == "delete":
        del parent[last]
    elif how == "rename" and isinstance(parent, dict):
        parent[str(value)] = parent.pop(last)
    else:
        parent[last] = value
    return data


def assert_only_invalid_topology(text: str | bytes) -> None:
    try:
        topology = load_topology_text(text, "fuzz.yaml")
    except InvalidTopology as e:
        assert e.diagnostics, "InvalidTopology without a diagnostic"
        for d in e.diagnostics:
            assert d.line >= 0 and d.col >= 0 and d.message and "\n" not in d.message
    else:
        assert isinstance(topology, Topology)


@FUZZ
@given(st.data())
def test_structural_mutations_only_raise_invalid_topology(data):
    base = copy.deepcopy(data.draw(st.sampled_from(BASES)))
    for _ in range(data.draw(st.integers(1, 3))):
        candidates = paths(base)
        path = data.draw(st.sampled_from(candidates))
        how = data.draw(st.sampled_from(["delete", "replace", "rename"]))
        base = mutate(base, path, how, data.draw(VALUES))
    assert_only_invalid_topology(yaml.safe_dump(base, allow_unicode=True))


@FUZZ
@given(st.data())
def test_text_edits_only_raise_invalid_topology(data):
    text = data.draw(st.sampled_from(SOURCES)).encode()
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(text)))
        cut = data.draw(st.integers(0, 8))
        insert = data.draw(st.one_of(
            st.binary(max_size=4),
            st.sampled_from([b"\t", b":", b"- ", b"{", b"[", b"&a ", b"*a", b"!!python/name:os",
                             b"\n  ", b"'", b'"', b"\xff", b"---\n", b"? "])))
        text = text[:at] + insert + text[at + cut:]
    assert_only_invalid_topology(text)


@FUZZ
@given(st.data())
def test_fast_schema_check_never_accepts_what_jsonschema_refuses(data):
    # loader.fast_check skips jsonschema when it says "valid": it must never be more lenient
    from netdecl.topology.loader import fast_valid, validator

    base = copy.deepcopy(data.draw(st.sampled_from(BASES)))
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths(base)))
        how = data.draw(st.sampled_from(["delete", "replace", "rename"]))
        base = mutate(base, path, how, data.draw(VALUES))
    if fast_valid(base):
        assert list(validator().iter_errors(base)) == [], base


def test_fast_schema_check_agrees_on_the_corpus_and_the_shipped_files():
    from test_invalid_corpus import iter_corpus

    from netdecl.topology.loader import fast_valid, validator

    for base in BASES:
        assert fast_valid(base)
    for path, _ in iter_corpus():
        try:
            data = parse(path.read_bytes()).data
        except Exception:
            continue  # refused before the schema: nothing to compare
        if fast_valid(data):
            assert list(validator().iter_errors(data)) == [], path


def schema_patterns() -> list[str]:
    import json

    from netdecl.topology.loader import SCHEMA_PATH

    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "pattern":
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))
    return found


@FUZZ
@given(st.data())
def test_every_schema_pattern_is_whole_string_in_both_validators(data):
    # jsonschema runs Python's re.search, where '$' also matches before a trailing newline
    # (so `name: "nl\n"` once validated); fastjsonschema rewrites '$' to '\Z'. A value that
    # matches a pattern must stop matching with a newline after it, in both.
    import fastjsonschema
    from jsonschema import Draft202012Validator

    patterns = schema_patterns()
    assert len(patterns) >= 6
    pattern = data.draw(st.sampled_from(patterns))
    value = data.draw(st.from_regex(pattern, fullmatch=True))
    schema = {"type": "string", "pattern": pattern}
    fast = fastjsonschema.compile(schema)
    reference = Draft202012Validator(schema)
    assert reference.is_valid(value)
    fast(value)
    for suffix in ("\n", "\r\n", " "):
        assert not reference.is_valid(value + suffix), (pattern, value + suffix)
        try:
            fast(value + suffix)
        except fastjsonschema.JsonSchemaException:
            continue
        raise AssertionError(f"fastjsonschema accepts {value + suffix!r} for {pattern}")


def test_a_trailing_newline_is_refused_in_names_the_checks_do_not_reread():
    # the topology name and sysctl names reach the nft table name, the links' ownership mark
    # and /proc/sys paths with no semantic check after the schema's
    for text in ('version: 1\nname: "nl\\n"\n',
                 'version: 1\nname: t\nsysctls: {"net.ipv4.ip_forward\\n": 1}\n'):
        try:
            load_topology_text(text, "nl.yaml")
        except InvalidTopology as e:
            assert e.diagnostics[0].line >= 2
        else:
            raise AssertionError(f"accepted {text!r}")
