"""The command line's JSON documents (issue 29): one parseable document per run, whatever
happened, each with a `format_version`, and each field documented in docs/json.md.

`apply --json` on a host that already matched printed a text line; `destroy` and `validate`
had no `--json`. `apply --verify` gates an apply on the topology's probes, as the API's
`gate` and the Ansible module's `verify` do.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from netdecl.cli import JSON_FORMAT_VERSION, main

DOCS = Path(__file__).resolve().parent.parent / "docs" / "json.md"

TOPOLOGY = """\
version: 1
name: jsondoc
namespaces:
  app: {}
links:
  - name: veth-app
    kind: veth
    addresses: [10.81.0.1/24]
    peer: {name: eth0, namespace: app, addresses: [10.81.0.2/24]}
probes:
  - {from: app, to: 10.81.0.1, port: 8080, source: 10.81.0.2}
"""
# the veth works, so this probe (expecting it blocked) fails
FAILING_PROBE = TOPOLOGY.replace("source: 10.81.0.2}", "expect: blocked}")


def write(tmp_path: Path, text: str = TOPOLOGY, name: str = "topo.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def documented_fields(document: str) -> set[str]:
    """The top-level fields docs/json.md lists for ``document`` (its `## document` section's
    table, first column)."""
    text = DOCS.read_text()
    section = text.split(f"\n## {document}\n", 1)[1].split("\n## ", 1)[0].split("\n### ")[0]
    return set(re.findall(r"^\| `([a-z_]+)` \|", section, re.MULTILINE))


def assert_documented(document: str, data: dict) -> None:
    assert data["format_version"] == JSON_FORMAT_VERSION
    assert set(data) == documented_fields(document), document


# -- validate (no kernel) ------------------------------------------------------------------------

def test_validate_json_of_a_valid_file_with_a_warning(tmp_path, capsys):
    # NAT without forwarding: valid, with a warning at the NAT rule's line
    path = write(tmp_path, TOPOLOGY.split("probes:")[0] +
                 "nat:\n  masquerade:\n    - {source: 10.81.0.0/24}\n")
    assert main(["validate", "--json", path]) == 0
    data = json.loads(capsys.readouterr().out)
    assert_documented("validate", data)
    assert data["valid"] is True and data["topology"] == "jsondoc"
    assert data["error_count"] == 0 and data["warning_count"] == 1
    (warning,) = data["diagnostics"]
    assert warning["severity"] == "warning" and warning["file"] == path
    assert warning["line"] > 0 and "forward" in warning["message"]
    assert not warning["message"].startswith("warning:")


def test_validate_json_of_an_invalid_file_exits_3_with_every_problem(tmp_path, capsys):
    path = write(tmp_path, TOPOLOGY.replace("namespace: app", "namespace: nowhere")
                 .replace("version: 1", "version: 7"))
    assert main(["validate", "--json", path]) == 3
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert_documented("validate", data)
    assert data["valid"] is False and data["topology"] is None
    assert data["error_count"] == len(data["diagnostics"]) >= 2
    assert {(d["severity"], d["file"]) for d in data["diagnostics"]} == {("error", path)}
    assert all(d["line"] > 0 and d["col"] > 0 for d in data["diagnostics"])


@pytest.mark.parametrize("command", ["apply", "destroy"])
def test_apply_and_destroy_json_of_an_invalid_file(tmp_path, capsys, command):
    # nothing reaches the host (no root needed to get here), and still one document
    path = write(tmp_path, TOPOLOGY.replace("version: 1", "version: 7"))
    assert main([command, "--json", path]) == 3
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert_documented(command, data)
    assert (data["outcome"], data["topology"], data["plan"]) == ("failed", None, None)
    assert data["error"]["exit_status"] == 3 and f"{path}:1:" in data["error"]["message"]
    assert f"{path}:1:" in captured.err  # people still read it on stderr


def test_every_json_option_names_the_docs(capsys):
    for command in ("validate", "plan", "apply", "destroy", "verify", "explain"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "docs/json.md" in " ".join(capsys.readouterr().out.split()), command


def test_readme_links_the_json_docs():
    readme = (DOCS.parent.parent / "README.md").read_text()
    assert "(docs/json.md)" in readme


# -- apply, destroy, plan (kernel) ---------------------------------------------------------------

def run_json(host, *args: str) -> tuple[int, dict]:
    result = host.netdecl(*args)
    try:
        return result.returncode, json.loads(result.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"not one JSON document:\n{result.stdout}\n{result.stderr}") \
            from None


def test_apply_and_destroy_json_whether_or_not_anything_changes(host, tmp_path):
    path = write(tmp_path)
    code, data = run_json(host, "apply", "--json", path)
    assert code == 0, data
    assert_documented("apply", data)
    assert (data["command"], data["outcome"], data["error"]) == ("apply", "changed", None)
    # the namespace, the veth pair (one action), an address on each end
    assert data["summary"] == {"add": 4, "change": 0, "destroy": 0, "adopt": 0}
    assert data["plan"]["summary"] == {"add": 4, "change": 0, "destroy": 0}
    assert sorted(a["type"] for a in data["plan"]["actions"]) == \
        ["address", "address", "link", "namespace"]
    assert_documented("plan", {"format_version": JSON_FORMAT_VERSION, **data["plan"]})
    assert host.ip_json("addr", "show", "dev", "eth0", ns="app")[0]["addr_info"][0][
        "local"] == "10.81.0.2"

    # the host already matches: still one JSON document (it was a text line)
    code, data = run_json(host, "apply", "--json", path)
    assert code == 0
    assert (data["outcome"], data["plan"]["actions"]) == ("unchanged", [])

    code, data = run_json(host, "plan", "--json", path)
    assert_documented("plan", data)
    assert data["actions"] == []

    code, data = run_json(host, "destroy", "--json", path)
    assert code == 0, data
    assert_documented("destroy", data)
    assert (data["command"], data["outcome"]) == ("destroy", "changed")
    # the addresses go with their links
    assert sorted(a["type"] for a in data["plan"]["actions"]) == ["link", "namespace"]
    assert data["summary"]["destroy"] == 2 and host.netns_list() == []
    code, data = run_json(host, "destroy", "--json", path)
    assert (code, data["outcome"], data["summary"]["destroy"]) == (0, "unchanged", 0)


def test_apply_json_of_a_refused_plan(host, tmp_path):
    host.run(["ip", "netns", "add", "app"])  # someone else's namespace at the declared name
    code, data = run_json(host, "apply", "--json", write(tmp_path))
    assert code == 1
    assert_documented("apply", data)
    assert data["outcome"] == "refused" and data["plan"]["conflicts"]
    assert data["error"]["exit_status"] == 1


# -- apply --verify (kernel) ---------------------------------------------------------------------

def test_apply_verify_keeps_an_apply_whose_probes_pass(host, tmp_path):
    result = host.netdecl("apply", "--verify", write(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "1 probe: 1 passed, 0 failed" in result.stdout
    assert result.stdout.rstrip().endswith("Verified and probed.")
    assert host.netns_list() == ["app"]


def test_apply_verify_rolls_back_when_a_probe_fails(host, tmp_path):
    before = host.snapshot()
    code, data = run_json(host, "apply", "--json", "--verify", write(tmp_path, FAILING_PROBE))
    assert code == 1
    assert data["outcome"] == "failed" and "verify: 1 of 1 probes failed" in \
        data["error"]["message"]
    assert [(p["ok"], p["result"]) for p in data["probes"]["probes"]] == [(False, "reachable")]
    # an independent look: nothing of it is left
    assert host.snapshot() == before and host.netns_list() == []
    # without --verify the same file applies
    assert host.netdecl("apply", write(tmp_path, FAILING_PROBE)).returncode == 0


def test_apply_verify_on_a_matching_host_still_runs_the_probes(host, tmp_path):
    assert host.netdecl("apply", write(tmp_path, FAILING_PROBE)).returncode == 0
    result = host.netdecl("apply", "--verify", write(tmp_path, FAILING_PROBE))
    assert result.returncode == 1 and "verify: 1 of 1 probes failed" in result.stderr
    assert host.netns_list() == ["app"]  # nothing was applied, so nothing was rolled back


def test_apply_verify_without_probes_changes_nothing(host, tmp_path):
    result = host.netdecl("apply", "--verify", write(tmp_path, TOPOLOGY.split("probes:")[0]))
    assert result.returncode == 1 and "has no probes" in result.stderr
    assert host.netns_list() == []


def test_every_agent_log_event_is_documented():
    import netdecl.agent.runner as runner

    source = Path(runner.__file__).read_text()
    logged = set(re.findall(r'self\.log\(\s*"([a-z-]+)"', source))
    logged |= set(re.findall(r'"([a-z-]+)", f"an earlier apply', source))  # recovering
    # _failed logs its result's name: every result but the successful ones and "invalid"
    logged |= {r.replace("_", "-") for r in ("failed", "conflict", "rollback_failed", "error")}
    assert "applied" in logged and "repaired" in logged
    section = DOCS.read_text().split("\n## agent log lines\n", 1)[1]
    rows = re.findall(r"^\| ((?:`[a-z-]+`(?:, )?)+) \|", section, re.MULTILINE)
    documented = {name for row in rows for name in re.findall(r"`([a-z-]+)`", row)}
    assert logged <= documented, logged - documented
