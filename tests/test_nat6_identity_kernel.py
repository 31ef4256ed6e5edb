"""netdecl's ip6 NAT table is its own by nft handle, like the ip table beside it.

Before, the ip6 table went by name: every apply and destroy began with `add table ip6
netdecl-T; delete table ip6 netdecl-T`, which wiped a table someone else had made under that
name. Each test plants such a table and checks with the independent eye, `nft -j list
ruleset`, that it stays exactly as it was (handle, chain and rule included).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

NAME = "natsix"
TABLE = f"netdecl-{NAME}"

BOTH = f"""version: 1
name: {NAME}
links:
  - {{name: nbr0, kind: bridge, addresses: [10.63.0.1/24, "fd00:63::1/64"]}}
nat:
  masquerade:
    - {{source: 10.63.0.0/24, not_out: nbr0}}
    - {{source: "fd00:63::/64", not_out: nbr0}}
"""
IPV4_ONLY = BOTH.split('    - {source: "fd00')[0]


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / f"{NAME}.yaml"
    path.write_text(text)
    return str(path)


def table(host, family: str) -> list[dict[str, Any]] | None:
    """Everything nft lists of `FAMILY netdecl-natsix` (handles included), from the ruleset."""
    ruleset = json.loads(host.run(["nft", "-j", "list", "ruleset"]).stdout)["nftables"]
    objects = [o for o in ruleset if "metainfo" not in o
               and next(iter(o.values())).get("family") == family
               and TABLE in (next(iter(o.values())).get("table"),
                             next(iter(o.values())).get("name"))]
    return objects or None


def plant_theirs(host) -> list[dict[str, Any]]:
    host.run(["nft", "add", "table", "ip6", TABLE])
    host.run(["nft", "add", "chain", "ip6", TABLE, "theirs"])
    host.run(["nft", "add", "rule", "ip6", TABLE, "theirs", "counter"])
    theirs = table(host, "ip6")
    assert theirs is not None and len(theirs) == 3
    return theirs


def test_a_foreign_ip6_table_of_the_name_stops_the_first_apply_and_is_never_touched(
        host, tmp_path):
    path = write(tmp_path, BOTH)
    theirs = plant_theirs(host)
    result = host.netdecl("apply", path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"nftables table ip6 {TABLE}" in result.stdout + result.stderr
    assert "was not made by netdecl" in result.stdout + result.stderr
    assert table(host, "ip6") == theirs and table(host, "ip") is None
    assert host.netdecl("destroy", path).returncode == 0
    assert table(host, "ip6") == theirs


def test_an_ip6_table_made_again_by_someone_else_is_never_rewritten_nor_deleted(
        host, tmp_path):
    path = write(tmp_path, BOTH)
    assert host.netdecl("apply", path).returncode == 0
    ours = table(host, "ip6")
    assert ours is not None and any("rule" in o for o in ours)
    host.run(["nft", "delete", "table", "ip6", TABLE])
    theirs = plant_theirs(host)
    result = host.netdecl("apply", path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"nftables table ip6 {TABLE}" in result.stdout + result.stderr
    assert table(host, "ip6") == theirs
    # destroy removes netdecl's ip table, by its handle, and nothing else
    assert host.netdecl("destroy", path).returncode == 0
    assert table(host, "ip6") == theirs and table(host, "ip") is None


def test_with_ipv4_rules_only_a_foreign_ip6_table_of_the_name_is_left_alone(host, tmp_path):
    path = write(tmp_path, IPV4_ONLY)
    assert host.netdecl("apply", path).returncode == 0
    assert table(host, "ip6") is None
    theirs = plant_theirs(host)
    changed = write(tmp_path, IPV4_ONLY.replace("10.63.0.0/24", "10.63.0.0/25"))
    result = host.netdecl("apply", changed)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"nftables table ip6 {TABLE}" in result.stdout + result.stderr
    assert table(host, "ip6") == theirs
    assert host.netdecl("destroy", changed).returncode == 0
    assert table(host, "ip6") == theirs and table(host, "ip") is None


def test_our_ip6_table_deleted_by_hand_is_drift_that_apply_repairs(host, tmp_path):
    path = write(tmp_path, BOTH)
    assert host.netdecl("apply", path).returncode == 0
    host.run(["nft", "delete", "table", "ip6", TABLE])
    plan = host.netdecl("plan", "--detailed-exitcode", path)
    assert plan.returncode == 2, plan.stdout + plan.stderr
    assert host.netdecl("apply", path).returncode == 0
    again = table(host, "ip6")
    assert again is not None and any("fd00:63::" in json.dumps(o) for o in again)
    assert host.netdecl("plan", "--detailed-exitcode", path).returncode == 0
    assert host.netdecl("destroy", path).returncode == 0
    assert table(host, "ip6") is None and table(host, "ip") is None
