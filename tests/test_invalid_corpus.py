"""The invalid-topology corpus: every file in tests/invalid/ must be refused with exactly the
diagnostics its header announces, quickly.

A corpus file starts with one comment line per expected diagnostic::

    # expect: LINE:COL: fragment of the message

and nothing else may be reported (one precise message per problem). ``iter_corpus()`` is the
one parser of those headers, so the CLI tests can run the same corpus through ``netdecl
validate``.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from netdecl.errors import InvalidTopology
from netdecl.topology.loader import load_topology, load_topology_text
from netdecl.topology.yamlsrc import MAX_BYTES

CORPUS = Path(__file__).resolve().parent / "invalid"
EXPECT = re.compile(rb"^# expect: (\d+):(\d+): (.+)$")
# Not a performance target (benchmarks/ measures speed): a bound an order of magnitude above the
# ~0.1 s these take, so only a blow-up (parsing all of a 10 MB file, exponential aliases) fails,
# never a busy machine.
HOSTILE_SECONDS = 10.0

Expectation = tuple[int, int, str]  # line, col, fragment of the message


def iter_corpus() -> list[tuple[Path, list[Expectation]]]:
    """(path, expectations) for every corpus file, sorted by name.

    Headers are read as bytes: some files are deliberately not UTF-8 after the header.
    """
    out = []
    for path in sorted(CORPUS.glob("*.yaml")):
        expectations = []
        for line in path.read_bytes().splitlines():
            m = EXPECT.match(line)
            if not m:
                break
            expectations.append((int(m[1]), int(m[2]), m[3].decode()))
        out.append((path, expectations))
    return out


def check_diagnostics(got: list[tuple[int, int, str]], expected: list[Expectation]) -> None:
    """Each expectation matches one diagnostic at its position, and nothing else is reported."""
    missing = [e for e in expected
               if not any((line, col) == e[:2] and e[2] in msg for line, col, msg in got)]
    assert not missing, f"expected {missing}, got {got}"
    assert len(got) == len(expected), f"unexpected extra diagnostics: {got}"


CASES = iter_corpus()


def test_corpus_is_big_enough_and_every_file_has_an_expectation():
    assert len(CASES) >= 40
    assert [p.name for p, e in CASES if not e] == []


@pytest.mark.parametrize(("path", "expected"), CASES, ids=[p.stem for p, _ in CASES])
def test_corpus_file_is_refused_as_announced(path, expected):
    start = time.perf_counter()
    with pytest.raises(InvalidTopology) as info:
        load_topology(str(path))
    elapsed = time.perf_counter() - start
    diagnostics = info.value.diagnostics
    assert all(d.file == str(path) for d in diagnostics)
    check_diagnostics([(d.line, d.col, d.message) for d in diagnostics], expected)
    assert elapsed < HOSTILE_SECONDS, f"{path.name} took {elapsed:.2f}s"


# ---------------------------------------------------------------------------- hostile input
# Each must be refused with a clear message, without parsing its whole bulk.


def refused_quickly(text: str | bytes) -> list[str]:
    start = time.perf_counter()
    with pytest.raises(InvalidTopology) as info:
        load_topology_text(text, "hostile.yaml")
    assert time.perf_counter() - start < HOSTILE_SECONDS
    return [f"{d.line}:{d.col}: {d.message}" for d in info.value.diagnostics]


def test_file_over_10_mb_is_refused_before_parsing(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_bytes(b"version: 1\nname: t\n" + b"#" * MAX_BYTES)
    start = time.perf_counter()
    with pytest.raises(InvalidTopology) as info:
        load_topology(str(path))
    assert time.perf_counter() - start < HOSTILE_SECONDS
    (diag,) = info.value.diagnostics
    assert "limit is 10485760 bytes" in diag.message


def test_text_over_10_mb_is_refused_before_parsing():
    (message,) = refused_quickly("a: [" + "1," * (MAX_BYTES // 2) + "1]")
    assert "larger than the limit" in message
    (message,) = refused_quickly(b"x" * (MAX_BYTES + 1))
    assert "limit is 10485760 bytes" in message


def test_many_small_values_are_refused_quickly():
    (message,) = refused_quickly("version: 1\nname: t\nlinks: [" + "1," * 1_000_000 + "1]\n")
    assert "more than 100000 values" in message


def test_billion_laughs_generated_deeper():
    lines = ["version: 1", "name: t", 'l0: &l0 ["lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 30)]
    (message,) = refused_quickly("\n".join(lines) + "\n")
    assert message == "4:10: YAML aliases (*l0) are not supported; write the value out"


@pytest.mark.parametrize("opener,closer", [("[", "]"), ("{a: ", "}"), ("- ", "")])
def test_very_deep_nesting_does_not_recurse(opener, closer):
    depth = 100_000
    text = "version: 1\nname: t\nlinks:\n  " + opener * depth + "x" + closer * depth + "\n"
    (message,) = refused_quickly(text)
    assert "nesting is deeper than 64 levels" in message


def test_python_tags_never_construct_anything(tmp_path):
    marker = tmp_path / "pwned"
    for tag in ("!!python/object/apply:os.system", "!!python/object/new:os.system",
                "!!python/name:os.system", "!!python/module:os"):
        (message,) = refused_quickly(f"version: 1\nname: t\nx: {tag} ['touch {marker}']\n")
        assert "is not allowed" in message
    assert not marker.exists()


def test_non_utf8_reports_the_byte_position():
    (message,) = refused_quickly(b"version: 1\nname: t\nlinks:\n  - name: \xff\xfe\n")
    assert message.startswith("4:11: file is not valid UTF-8 (byte 0xff)")


def test_utf16_is_refused_clearly():
    (message,) = refused_quickly("version: 1\nname: t\n".encode("utf-16"))
    assert "not valid UTF-8" in message
