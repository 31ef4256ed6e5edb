"""Bad input through the real CLI, in a hermetic host: `validate` and `apply` print every
diagnostic as FILE:LINE:COL, exit 3, never show a traceback, and change nothing.

And a property: random mutations of a valid topology, applied for real, end in exit 0 (valid:
applied, then destroyed) or exit 3 (invalid: nothing changed) - never a traceback, never a
half-changed host.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import yaml
from harness import HermeticHost
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_invalid_corpus import iter_corpus
from test_loader_fuzz import BASES, INTERESTING, mutate, paths

CORPUS = iter_corpus()


def test_corpus_through_validate_and_apply_changes_nothing(host):
    before = host.snapshot()
    for path, expectations in CORPUS:
        for command in ("validate", "apply"):
            result = host.netdecl(command, str(path))
            where = f"{command} {path.name}"
            assert result.returncode == 3, f"{where}: rc {result.returncode}\n{result.stderr}"
            assert "Traceback" not in result.stderr, f"{where}:\n{result.stderr}"
            for line, col, fragment in expectations:
                prefix = f"{path}:{line}:{col}: "
                assert any(row.startswith(prefix) and fragment in row
                           for row in result.stderr.splitlines()), \
                    f"{where}: no '{prefix}...{fragment}' in\n{result.stderr}"
    assert host.snapshot() == before


# The docker-nat topology is the richest file that applies on its own; mutate it.
NAT_BASE = BASES[1]
EXAMPLES = int(os.environ.get("NETDECL_APPLY_FUZZ_EXAMPLES", "12"))


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_topologies_apply_cleanly_or_change_nothing(data, tmp_path_factory):
    doc = copy.deepcopy(NAT_BASE)
    path = data.draw(st.sampled_from(paths(doc)[1:]), label="path")
    how = data.draw(st.sampled_from(["delete", "replace", "rename"]), label="how")
    value = data.draw(INTERESTING, label="value")
    doc = mutate(doc, path, how, value)
    text = yaml.safe_dump(doc, sort_keys=False)
    file = Path(tmp_path_factory.mktemp("fuzz")) / "mutant.yaml"
    file.write_text(text)
    with HermeticHost(cwd=Path(__file__).resolve().parent.parent) as host:
        before = host.snapshot()
        result = host.netdecl("apply", str(file))
        assert "Traceback" not in result.stderr, result.stderr
        assert result.returncode in (0, 1, 3), f"rc {result.returncode}\n{text}\n{result.stderr}"
        if result.returncode == 1:
            # valid, but the kernel refused a value the format cannot judge (a sysctl's value
            # is the kernel's to check: `net.ipv4.ip_forward: default` is EINVAL): rolled back
            assert "rolled back" in result.stderr, result.stderr
        if result.returncode in (1, 3):
            assert host.snapshot() == before
            return
        destroyed = host.netdecl("destroy", str(file))
        assert destroyed.returncode == 0, destroyed.stderr
        assert host.snapshot() == before
