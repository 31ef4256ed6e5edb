"""The nftables NAT backend: pure rendering and readback, then the real kernel, then real traffic.

Kernel tests never touch the machine's ruleset: each one writes a small Python script and runs
it under ``unshare --net --mount --propagation private``, in a fresh network namespace whose
ruleset starts empty and dies with the script; /run/netns is a private tmpfs there, so named
namespaces (``ip netns add``) vanish too. The script prints one ``RESULT {json}`` line, which the
test asserts on, so failures show values rather than a bare exit code.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from netdecl.backends import nftables
from netdecl.backends.nftables import NftError, NftUnavailable
from netdecl.model import COMMENT_MAX, NatRule, NatTable

MASQ = NatRule(kind="masquerade", source="172.17.0.0/16", not_out="docker0")
FORWARD = NatRule(kind="dnat", proto="tcp", port=8080, to_address="172.17.0.2", to_port=80)
DOCKER_NAT = (MASQ, FORWARD)

EVERY_SHAPE = (
    MASQ,
    NatRule(kind="masquerade", source="10.0.0.5/32", out="eth0"),
    NatRule(kind="masquerade"),
    NatRule(kind="snat", source="10.1.0.0/16", out="eth0", to_source="192.0.2.1"),
    FORWARD,
    NatRule(kind="dnat", proto="udp", port=5000, port_end=5010, to_address="172.17.0.2"),
    NatRule(kind="dnat", proto="tcp", port=9000, port_end=9010, to_address="172.17.0.2",
            to_port=90, in_="eth0", from_="10.0.0.0/8", address="10.168.0.1"),
    NatRule(kind="dnat", proto="tcp", port=7000, to_address="172.17.0.3", to_port=70,
            address="127.0.0.1"),
    FORWARD,  # a duplicate stays a separate rule
)


def rules_in(document: dict[str, Any], chain: str) -> list[dict[str, Any]]:
    return [c["add"]["rule"] for c in document["nftables"]
            if "rule" in c.get("add", {}) and c["add"]["rule"]["chain"] == chain]


def fake_listing(document: dict[str, Any]) -> dict[str, Any]:
    """What `nft -j list table` of each of our tables would print after `document`: the
    objects added and not deleted since, with handles, each table's objects together."""
    objects: list[dict[str, Any]] = []
    for handle, command in enumerate(document["nftables"]):
        (verb, body_of), = command.items()
        (kind, body), = body_of.items()
        if verb == "delete" and kind == "table":
            objects = [o for o in objects
                       if next(iter(o.values()))["family"] != body["family"]]
        elif verb == "add" and not (kind == "table" and {kind: {**body, "handle": 0}}
                                    in [{k: {**b, "handle": 0}} for o in objects
                                        for k, b in o.items()]):
            objects.append({kind: {**body, "handle": handle}})
    meta = {"metainfo": {"version": "1.0.6", "json_schema_version": 1}}
    return {"nftables": [meta, *objects]}


# --- pure: rendering ---------------------------------------------------------------------------


def test_table_name() -> None:
    assert nftables.table_name("web-1") == "netdecl-web-1"


def test_render_is_pure_and_deterministic() -> None:
    rules = EVERY_SHAPE
    before = copy.deepcopy(rules)
    first = nftables.render("t", rules)
    second = nftables.render("t", rules)
    assert first == second
    assert json.dumps(first, sort_keys=False) == json.dumps(second, sort_keys=False)
    assert rules == before
    first["nftables"].clear()  # the result is not shared state
    assert nftables.render("t", rules) == second


def test_render_replaces_the_table_in_one_document() -> None:
    doc = nftables.render("t", DOCKER_NAT)
    table = {"family": "ip", "name": "netdecl-t"}
    # add (so that delete cannot fail on an absent table), delete (drops anything in it), build
    assert doc["nftables"][:3] == [{"add": {"table": table}}, {"delete": {"table": table}},
                                   {"add": {"table": table}}]
    # IPv4 rules only: the ip6 table is removed (an IPv6 rule may have been there before)
    table6 = {"family": "ip6", "name": "netdecl-t"}
    assert doc["nftables"][-2:] == [{"add": {"table": table6}}, {"delete": {"table": table6}}]
    for command in doc["nftables"][:-2]:
        (verb, objects), = command.items()
        (kind, body), = objects.items()
        # Only ever our own table, by name and family.
        assert body["family"] == "ip"
        assert body.get("table", body.get("name")) == "netdecl-t"
    chains = {c["add"]["chain"]["name"]: c["add"]["chain"] for c in doc["nftables"]
              if "chain" in c.get("add", {})}
    assert {n: (c["type"], c["hook"], c["prio"]) for n, c in chains.items()} == {
        "prerouting": ("nat", "prerouting", -100),
        "output": ("nat", "output", -100),
        "forward": ("filter", "forward", 0),
        "postrouting": ("nat", "postrouting", 100),
    }


def test_render_empty_rules_still_builds_the_chains() -> None:
    doc = nftables.render("t", ())
    assert [next(iter(c["add"])) for c in doc["nftables"] if "add" in c] == [
        "table", "table", "chain", "chain", "chain", "chain", "table"]


def _match(left: Any, right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


SADDR = {"payload": {"protocol": "ip", "field": "saddr"}}
DADDR = {"payload": {"protocol": "ip", "field": "daddr"}}
TCP_DPORT = {"payload": {"protocol": "tcp", "field": "dport"}}
LOCAL = _match({"fib": {"result": "type", "flags": ["daddr"]}}, "local")
DNATTED = _match({"ct": {"key": "status"}}, "dnat", "in")
MARK = {"meta": {"key": "mark"}}


def test_render_docker_nat_rules() -> None:
    """The exact expressions for Docker's default NAT (also the shape nft lists them in)."""
    doc = nftables.render("t", DOCKER_NAT)
    exprs = {chain: [r["expr"] for r in rules_in(doc, chain)]
             for chain in ("prerouting", "output", "forward", "postrouting")}
    dnat = {"dnat": {"addr": "172.17.0.2", "port": 80}}
    to_target = [_match(DADDR, "172.17.0.2"), _match(TCP_DPORT, 80), DNATTED]
    assert exprs == {
        "prerouting": [[LOCAL, _match(TCP_DPORT, 8080), dnat]],
        "output": [[LOCAL, _match(TCP_DPORT, 8080), dnat]],
        "forward": [[*to_target, _match({"ct": {"key": "state"}}, "new", "in"),
                     _match({"fib": {"result": "oif", "flags": ["daddr", "iif"]}}, True),
                     {"mangle": {"key": MARK, "value": {"|": [MARK, 0x2000]}}}]],
        "postrouting": [
            [_match(SADDR, {"prefix": {"addr": "172.17.0.0", "len": 16}}),
             _match({"meta": {"key": "oifname"}}, "docker0", "!="), {"masquerade": None}],
            [*to_target, _match({"&": [MARK, 0x2000]}, 0x2000),
             {"mangle": {"key": MARK, "value": {"&": [MARK, 0xFFFFDFFF]}}},
             {"masquerade": None}],
            [_match(SADDR, {"prefix": {"addr": "127.0.0.0", "len": 8}}), *to_target,
             {"masquerade": None}],
        ],
    }
    comments = {r["comment"] for c in exprs for r in rules_in(doc, c)}
    assert comments == {"0 masquerade src=172.17.0.0/16 nout=docker0",
                        "1 dnat proto=tcp port=8080 to=172.17.0.2:80"}


def test_render_ipv6_load_balancing_and_filter_rules() -> None:
    rules = (
        NatRule(kind="masquerade", source="fd00::/64", not_destination=("fd01::/64", "fd00::/64")),
        NatRule(kind="dnat", proto="tcp", port=8080, to_address="fd00::2", to_port=80),
        NatRule(kind="dnat", proto="tcp", port=80, address="10.96.0.10",
                to_addresses=("172.18.0.3", "172.18.0.2"), to_port=8080),
        NatRule(kind="filter", in_="br1", out="br2", action="reject"),
    )
    doc = nftables.render("t", rules)
    by_family: dict[str, list[dict[str, Any]]] = {"ip": [], "ip6": []}
    for command in doc["nftables"]:
        if "rule" in command.get("add", {}):
            by_family[command["add"]["rule"]["family"]].append(command["add"]["rule"])
    ip6 = {r["comment"].split(" ")[0]: r for r in by_family["ip6"] if r["chain"] == "postrouting"}
    assert ip6["0"]["expr"] == [
        _match({"payload": {"protocol": "ip6", "field": "saddr"}},
               {"prefix": {"addr": "fd00::", "len": 64}}),
        _match({"payload": {"protocol": "ip6", "field": "daddr"}},
               {"set": [{"prefix": {"addr": "fd00::", "len": 64}},
                        {"prefix": {"addr": "fd01::", "len": 64}}]}, "!="),
        {"masquerade": None}]
    pre6 = [r["expr"] for r in by_family["ip6"] if r["chain"] == "prerouting"]
    assert pre6 == [[LOCAL, _match(TCP_DPORT, 8080), {"dnat": {"addr": "fd00::2", "port": 80}}]]
    # round robin in the order written; the daddr set in the order nft lists it
    pre4 = [r["expr"] for r in by_family["ip"] if r["chain"] == "prerouting"]
    assert pre4 == [[_match(DADDR, "10.96.0.10"), _match(TCP_DPORT, 80), {"dnat": {
        "addr": {"map": {"key": {"numgen": {"mode": "inc", "mod": 2, "offset": 0}},
                         "data": {"set": [[0, "172.18.0.3"], [1, "172.18.0.2"]]}}},
        "port": 8080}}]]
    fwd4 = [r["expr"] for r in by_family["ip"] if r["chain"] == "forward"]
    assert fwd4[0][0] == _match(DADDR, {"set": ["172.18.0.2", "172.18.0.3"]})
    # the filter rule comes after the forwards' mark rules, in both families
    for family, reject in (("ip", "icmp"), ("ip6", "icmpv6")):
        last = [r for r in by_family[family] if r["chain"] == "forward"][-1]
        assert last["expr"][-1] == {"reject": {"type": reject, "expr": "port-unreachable"}}
    assert nftables.decode("t", fake_listing(doc)) == rules


def test_render_dnat_variants() -> None:
    limited = NatRule(kind="dnat", proto="udp", port=9000, port_end=9010, to_address="172.17.0.2",
                      to_port=90, in_="eth0", from_="10.0.0.0/8", address="10.168.0.1")
    doc = nftables.render("t", (limited,))
    (pre,) = rules_in(doc, "prerouting")
    assert pre["expr"] == [
        _match({"meta": {"key": "iifname"}}, "eth0"),
        _match(SADDR, {"prefix": {"addr": "10.0.0.0", "len": 8}}),
        _match(DADDR, "10.168.0.1"),
        _match({"payload": {"protocol": "udp", "field": "dport"}}, {"range": [9000, 9010]}),
        {"dnat": {"addr": "172.17.0.2", "port": 90}},  # a range onto one port
    ]
    # Limited to an input interface: locally generated traffic never matches, so no output
    # rule and no masquerade of 127.0.0.0/8.
    assert rules_in(doc, "output") == []
    assert len(rules_in(doc, "postrouting")) == 1

    keep_port = NatRule(kind="dnat", proto="tcp", port=8080, port_end=8090, to_address="172.17.0.2")
    doc = nftables.render("t", (keep_port,))
    assert rules_in(doc, "prerouting")[0]["expr"][-1] == {"dnat": {"addr": "172.17.0.2"}}
    assert _match(TCP_DPORT, {"range": [8080, 8090]}) in rules_in(doc, "postrouting")[0]["expr"]

    on_address = NatRule(kind="dnat", proto="tcp", port=80, to_address="172.17.0.2",
                         address="10.0.0.1")
    doc = nftables.render("t", (on_address,))
    assert len(rules_in(doc, "output")) == 1
    assert len(rules_in(doc, "postrouting")) == 1  # 127.0.0.1:80 is not forwarded: no loopback

    snat = NatRule(kind="snat", source="10.1.0.7", out="eth0", to_source="192.0.2.1")
    (post,) = rules_in(nftables.render("t", (snat,)), "postrouting")
    assert post["expr"] == [_match(SADDR, "10.1.0.7"), _match({"meta": {"key": "oifname"}}, "eth0"),
                            {"snat": {"addr": "192.0.2.1"}}]


@pytest.mark.parametrize("rule", [
    NatRule(kind="redirect"),
    NatRule(kind="snat", source="10.0.0.0/8"),
    NatRule(kind="dnat", port=80, to_address="10.0.0.1"),
    NatRule(kind="dnat", proto="tcp", to_address="10.0.0.1"),
    NatRule(kind="dnat", proto="tcp", port=0, to_address="10.0.0.1"),
    NatRule(kind="dnat", proto="tcp", port=90, port_end=80, to_address="10.0.0.1"),
    NatRule(kind="dnat", proto="tcp", port=80, to_address="10.0.0.1", to_port=70000),
    NatRule(kind="masquerade", source="10.0.0.0/8", out="eth 0"),
    NatRule(kind="masquerade", source="10.0.0.0/8", destination=("2001:db8::/32",)),
    NatRule(kind="masquerade", not_destination=("10.0.0.0/8", "10.0.0.0/8")),
    NatRule(kind="dnat", proto="tcp", port=80, to_addresses=("10.0.0.1", "10.0.0.1")),
    NatRule(kind="filter", in_="eth0"),
    NatRule(kind="filter", port=80, action="drop"),
])
def test_render_refuses_what_it_cannot_express(rule: NatRule) -> None:
    with pytest.raises(ValueError):
        nftables.render("t", (rule,))


def test_comment_roundtrips_and_the_longest_rule_fits() -> None:
    longest = NatRule(kind="dnat", proto="tcp", port=65535, port_end=65535,
                      to_address="255.255.255.255", to_port=65535,
                      in_="x" * 15, from_="255.255.255.255/32", address="255.255.255.255")
    comment = nftables.encode_comment(99999, longest)
    assert len(comment.encode()) <= COMMENT_MAX
    for index, rule in enumerate(EVERY_SHAPE):
        assert nftables.decode_comment(nftables.encode_comment(index, rule)) == (index, rule)
    assert nftables.decode_comment("made by hand") is None
    assert nftables.decode_comment("0 dnat colour=blue") is None


# --- pure: readback ----------------------------------------------------------------------------


def test_decode_of_what_render_wrote() -> None:
    for rules in (EVERY_SHAPE, DOCKER_NAT, ()):
        assert nftables.decode("t", fake_listing(nftables.render("t", rules))) == rules


def test_decode_rejects_edited_contents() -> None:
    listing = fake_listing(nftables.render("t", DOCKER_NAT))
    rules = [o["rule"] for o in listing["nftables"] if "rule" in o]

    edited = copy.deepcopy(listing)
    pre = next(o["rule"] for o in edited["nftables"] if o.get("rule", {}).get("chain")
               == "prerouting")
    pre["expr"][1]["match"]["right"] = 8081  # same comment, different port
    assert nftables.decode("t", edited) is None

    uncommented = copy.deepcopy(listing)
    del next(o for o in uncommented["nftables"] if "rule" in o)["rule"]["comment"]
    assert nftables.decode("t", uncommented) is None

    extra_chain = copy.deepcopy(listing)
    extra_chain["nftables"].append({"chain": {"family": "ip", "table": "netdecl-t", "name": "x",
                                              "handle": 99}})
    assert nftables.decode("t", extra_chain) is None

    # All nft rules of the masquerade removed: the dnat alone, which the planner shows as drift.
    without_masq = {"nftables": [o for o in listing["nftables"]
                                 if o.get("rule", {}).get("comment", "").split(" ")[0] != "0"]}
    assert nftables.decode("t", without_masq) == (FORWARD,)
    # One of the dnat's nft rules removed: not something render writes.
    output_rule = next(r for r in rules if r["chain"] == "output")
    partial = {"nftables": [o for o in listing["nftables"] if o.get("rule") is not output_rule]}
    assert nftables.decode("t", partial) is None


# --- running nft: missing binary, refusals -----------------------------------------------------


def test_missing_nft_is_one_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nftables, "NFT", "nft-not-installed-here")
    monkeypatch.setenv("PATH", "/nonexistent")
    calls: list[Callable[[], object]] = [
        lambda: nftables.read("t", ""), lambda: nftables.replace("t", "", DOCKER_NAT),
        lambda: nftables.delete("t", ""), lambda: nftables.ruleset("")]
    for call in calls:
        with pytest.raises(NftUnavailable) as info:
            call()
        assert str(info.value) == ("nft not found: install the nftables package "
                                   "(apt-get install nftables)")


def fake_nft(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stderr: str, rc: int) -> None:
    """Point the backend at a stand-in nft that prints ``stderr`` and exits with ``rc``."""
    script = tmp_path / "fake-nft"
    script.write_text(f"#!{sys.executable}\nimport sys\nsys.stdin.read()\n"
                      f"sys.stderr.write({stderr!r})\nsys.exit({rc})\n")
    script.chmod(0o755)
    monkeypatch.setattr(nftables, "NFT", str(script))


def test_nft_refusal_is_one_line_with_nfts_message(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = ('internal:0:0-0: Error: Could not process rule: Operation not permitted\n\n'
              '{"nftables": [{"add": {"table": {"family": "ip", "name": "netdecl-t"}}}]}\n'
              '^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n')
    fake_nft(tmp_path, monkeypatch, stderr, 1)
    with pytest.raises(NftError) as info:
        nftables.replace("t", "", DOCKER_NAT)
    message = str(info.value)
    assert "\n" not in message
    assert message == ("nft replace table ip netdecl-t in root: "
                       "Error: Could not process rule: Operation not permitted")
    assert info.value.stderr == stderr


def test_read_of_absent_table_is_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_nft(tmp_path, monkeypatch, "Error: No such file or directory\nlist table ip "
             "netdecl-t\n              ^^^^^^^^^\n", 1)
    assert nftables.read("t", "") is None


# --- the real kernel, hermetically -------------------------------------------------------------

PRELUDE = """
import json, os, subprocess, sys
from netdecl.backends import nftables
from netdecl.model import COMMENT_MAX, NatRule, NatTable

PY = {python!r}

def sh(*argv, check=True, ns=None):
    if ns:
        argv = ("ip", "netns", "exec", ns, *argv)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    if check and proc.returncode != 0:
        raise SystemExit(f"{{argv}} failed: {{proc.stderr}}")
    return proc

def nft(*args, check=True):
    return sh("nft", *args, check=check)

def nft_json(*args):
    return json.loads(nft("-j", *args).stdout)["nftables"]

def ruleset_without(name, family="ip"):
    # Everything but our table, handles and all: foreign objects must stay byte-identical.
    def ours(obj):
        (kind, body), = obj.items()
        table = body.get("table", body.get("name")) if kind != "metainfo" else None
        return body.get("family") == family and table == name
    return json.dumps([o for o in nft_json("list", "ruleset") if not ours(o)], sort_keys=True)

def table_objects(name):
    out = []
    for obj in nft_json("list", "table", "ip", name):
        (kind, body), = obj.items()
        if kind != "metainfo":
            out.append({{kind: {{k: v for k, v in body.items() if k != "handle"}}}})
    return out

def rendered_objects(topology, rules):
    # the ip table's objects (IPv4 rules only: the ip6 table is added and deleted again)
    return [c["add"] for c in nftables.render(topology, rules)["nftables"][2:]
            if "add" in c and next(iter(c["add"].values()))["family"] == "ip"]

def read_dict(topology, namespace=""):
    table = nftables.read(topology, namespace)
    return None if table is None else table.to_dict()

def rule_handle(name, chain, index=0):
    rules = [o["rule"] for o in nft_json("list", "chain", "ip", name, chain) if "rule" in o]
    return rules[index]["handle"], rules[index].get("comment")

# A private /run/netns: `ip netns add` bind mounts land in this mount namespace only.
os.makedirs("/run/netns", exist_ok=True)
sh("mount", "-t", "tmpfs", "netdecl-test", "/run/netns")
sh("ip", "link", "set", "lo", "up")
RESULT = {{}}
"""

EPILOGUE = """
print("RESULT " + json.dumps(RESULT))
"""

_hermetic_problem: str | None = None


def _hermetic_skip_reason() -> str | None:
    global _hermetic_problem
    if os.geteuid() != 0:
        return "needs root (CAP_NET_ADMIN) for a throwaway network namespace"
    for tool in ("nft", "unshare", "ip"):
        if shutil.which(tool) is None and shutil.which(tool, path="/usr/sbin:/sbin") is None:
            return f"needs `{tool}`"
    if _hermetic_problem is None:
        probe = subprocess.run(["unshare", "--net", "--mount", "--propagation", "private", "--",
                                "true"], capture_output=True, text=True, timeout=10)
        _hermetic_problem = "" if probe.returncode == 0 else f"unshare fails: {probe.stderr}"
    return _hermetic_problem or None


Hermetic = Callable[..., dict[str, Any]]


@pytest.fixture
def hermetic(tmp_path: Path) -> Hermetic:
    """Run a script body in a throwaway net+mount namespace and return its RESULT dict."""
    reason = _hermetic_skip_reason()
    if reason:
        pytest.skip(reason)

    def run(body: str, setup: str = "", timeout: float = 60.0) -> dict[str, Any]:
        script = tmp_path / f"body-{time.monotonic_ns()}.py"
        script.write_text(PRELUDE.format(python=sys.executable)
                          + setup + textwrap.dedent(body) + EPILOGUE)
        # Own process group: on a timeout, servers the script started die with it.
        proc = subprocess.Popen(
            ["unshare", "--net", "--mount", "--propagation", "private", "--", sys.executable,
             str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True)
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            pytest.fail(f"hermetic script timed out after {timeout}s\n{stdout}\n{stderr}")
        if proc.returncode != 0 and stderr.startswith("SKIP "):
            pytest.skip(stderr[len("SKIP "):].strip())
        assert proc.returncode == 0, f"hermetic script failed\n{stdout}\n{stderr}"
        lines = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")]
        assert lines, f"no RESULT line\n{stdout}\n{stderr}"
        return json.loads(lines[-1][len("RESULT "):])

    return run


def nat_table(data: dict[str, Any] | None) -> NatTable | None:
    if data is None:
        return None
    rules = data["rules"]
    return NatTable(data["namespace"],
                    rules=None if rules is None else tuple(NatRule(**r) for r in rules))


@pytest.mark.kernel
def test_replace_then_read_back(hermetic: Hermetic) -> None:
    second = (NatRule(kind="snat", source="10.1.0.0/16", out="eth0", to_source="192.0.2.1"),
              FORWARD)
    result = hermetic(f"""
        rules, second, every = {DOCKER_NAT!r}, {second!r}, {EVERY_SHAPE!r}
        RESULT["absent"] = read_dict("t")
        nftables.replace("t", "", rules)
        tables = [o["table"]["name"] for o in nft_json("list", "ruleset") if "table" in o]
        RESULT["tables"] = tables
        RESULT["exact"] = table_objects("netdecl-t") == rendered_objects("t", rules)
        RESULT["first"] = read_dict("t")
        nftables.replace("t", "", rules)  # idempotent
        RESULT["again"] = read_dict("t")
        nftables.replace("t", "", second)
        RESULT["second"] = read_dict("t")
        nftables.replace("t", "", every)
        RESULT["every"] = read_dict("t")
        RESULT["every_exact"] = table_objects("netdecl-t") == rendered_objects("t", every)
        RESULT["other_topology"] = read_dict("u")
        # In a named namespace (nft forked from a thread inside it): the root ruleset stays.
        sh("ip", "netns", "add", "lab")
        before = nft("list", "ruleset").stdout
        nftables.replace("t", "lab", second)
        RESULT["in_lab"] = read_dict("t", "lab")
        RESULT["root_unchanged"] = nft("list", "ruleset").stdout == before
        RESULT["lab_ruleset"] = [o["table"]["name"] for o in nftables.ruleset("lab")["nftables"]
                                 if "table" in o]
    """)
    assert result["absent"] is None
    assert result["tables"] == ["netdecl-t"]
    assert result["exact"] is True
    assert nat_table(result["first"]) == NatTable("", rules=DOCKER_NAT)
    assert nat_table(result["again"]) == NatTable("", rules=DOCKER_NAT)
    assert nat_table(result["second"]) == NatTable("", rules=second)
    assert nat_table(result["every"]) == NatTable("", rules=EVERY_SHAPE)
    assert result["every_exact"] is True
    assert result["other_topology"] is None
    assert nat_table(result["in_lab"]) == NatTable("lab", rules=second)
    assert result["root_unchanged"] is True
    assert result["lab_ruleset"] == ["netdecl-t"]


@pytest.mark.kernel
def test_flushed_and_hand_edited_tables_read_as_drift(hermetic: Hermetic) -> None:
    result = hermetic(f"""
        rules = {DOCKER_NAT!r}
        nftables.replace("t", "", rules)
        nft("flush", "table", "ip", "netdecl-t")
        RESULT["flushed"] = read_dict("t")

        nftables.replace("t", "", rules)
        handle, comment = rule_handle("netdecl-t", "prerouting")
        nft("replace", "rule", "ip", "netdecl-t", "prerouting", "handle", str(handle),
            "fib", "daddr", "type", "local", "tcp", "dport", "8081", "dnat", "to",
            "172.17.0.2:80", "comment", json.dumps(comment))
        RESULT["edited"] = read_dict("t")

        nftables.replace("t", "", rules)
        RESULT["repaired"] = read_dict("t")

        handle, _ = rule_handle("netdecl-t", "output")
        nft("delete", "rule", "ip", "netdecl-t", "output", "handle", str(handle))
        RESULT["partly_deleted"] = read_dict("t")

        nftables.replace("t", "", rules)
        handle, _ = rule_handle("netdecl-t", "postrouting")  # the masquerade, whole
        nft("delete", "rule", "ip", "netdecl-t", "postrouting", "handle", str(handle))
        RESULT["rule_removed"] = read_dict("t")

        nftables.replace("t", "", rules)
        nft("add", "rule", "ip", "netdecl-t", "postrouting", "oifname", "eth9", "masquerade")
        RESULT["rule_added"] = read_dict("t")

        nftables.replace("t", "", rules)
        nft("add", "chain", "ip", "netdecl-t", "mine")
        RESULT["chain_added"] = read_dict("t")
        nftables.replace("t", "", rules)  # delete + add: the stray chain goes too
        RESULT["chain_gone"] = read_dict("t")
    """)
    assert nat_table(result["flushed"]) == NatTable("", rules=())
    assert nat_table(result["edited"]) == NatTable("", rules=None)
    assert nat_table(result["repaired"]) == NatTable("", rules=DOCKER_NAT)
    assert nat_table(result["partly_deleted"]) == NatTable("", rules=None)
    assert nat_table(result["rule_removed"]) == NatTable("", rules=(FORWARD,))
    assert nat_table(result["rule_added"]) == NatTable("", rules=None)
    assert nat_table(result["chain_added"]) == NatTable("", rules=None)
    assert nat_table(result["chain_gone"]) == NatTable("", rules=DOCKER_NAT)


@pytest.mark.kernel
def test_foreign_tables_stay_byte_identical(hermetic: Hermetic) -> None:
    result = hermetic(f"""
        rules = {DOCKER_NAT!r}
        foreign = '''
        table ip nat {{
            chain POSTROUTING {{
                type nat hook postrouting priority srcnat; policy accept;
                ip saddr 172.18.0.0/16 oifname != "br-x" counter masquerade
            }}
        }}
        table inet filter {{
            chain input {{
                type filter hook input priority filter; policy accept;
                tcp dport 22 counter accept
            }}
        }}
        table inet netdecl-t {{
            chain c {{ type filter hook forward priority 0; policy accept; }}
        }}
        '''
        subprocess.run(["nft", "-f", "-"], input=foreign, text=True, check=True, timeout=20)
        nftables.replace("other", "", ({MASQ!r},))
        snapshots = {{"before": ruleset_without("netdecl-t")}}
        text_before = nft("list", "table", "ip", "nat").stdout
        nftables.replace("t", "", rules)
        snapshots["after_replace"] = ruleset_without("netdecl-t")
        nftables.replace("t", "", rules[:1])
        snapshots["after_second_replace"] = ruleset_without("netdecl-t")
        nftables.delete("t", "")
        snapshots["after_delete"] = ruleset_without("netdecl-t")
        nftables.delete("t", "")  # absent: fine
        snapshots["after_second_delete"] = ruleset_without("netdecl-t")
        RESULT["snapshots"] = snapshots
        RESULT["text_same"] = nft("list", "table", "ip", "nat").stdout == text_before
        RESULT["tables"] = sorted((o["table"]["family"], o["table"]["name"])
                                  for o in nft_json("list", "ruleset") if "table" in o)
        RESULT["other"] = read_dict("other")
        RESULT["ours"] = read_dict("t")
    """)
    snapshots = result["snapshots"]
    for stage, snapshot in snapshots.items():
        assert snapshot == snapshots["before"], stage
    assert result["text_same"] is True
    assert result["tables"] == [["inet", "filter"], ["inet", "netdecl-t"], ["ip", "nat"],
                                ["ip", "netdecl-other"]]
    assert nat_table(result["other"]) == NatTable("", rules=(MASQ,))
    assert result["ours"] is None


@pytest.mark.kernel
def test_refused_document_changes_nothing(hermetic: Hermetic) -> None:
    result = hermetic(f"""
        rules = {DOCKER_NAT!r}
        nftables.replace("t", "", rules)
        before = nft("-j", "list", "ruleset").stdout
        document = nftables.render("t", rules[:1])
        # A valid document with one bad command at the end: nft must commit none of it.
        document["nftables"].append({{"add": {{"rule": {{"family": "ip", "table": "netdecl-t",
            "chain": "no-such-chain", "expr": [{{"masquerade": None}}]}}}}}})
        try:
            nftables.apply_document(document, "", "replace table ip netdecl-t")
        except nftables.NftError as exc:
            RESULT["error"] = str(exc)
        RESULT["unchanged"] = nft("-j", "list", "ruleset").stdout == before
        try:
            nftables.read("t", "no-such-namespace")
        except nftables.NftError as exc:
            RESULT["no_namespace"] = str(exc)
    """)
    assert result["error"] == ("nft replace table ip netdecl-t in root: "
                               "Error: Could not process rule: No such file or directory")
    assert result["unchanged"] is True
    assert "no-such-namespace" in result["no_namespace"]


# --- real traffic -----------------------------------------------------------------------------

LAB = """
SERVER = r'''
import socket, sys, threading
name, port = sys.argv[1], int(sys.argv[2])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen(64)
print("ready", flush=True)
def serve(conn, peer):
    with conn:
        conn.settimeout(5)
        try:
            conn.recv(1024)
        except OSError:
            pass
        conn.sendall(f"HTTP/1.0 200 OK\\r\\n\\r\\n{name} {peer[0]}\\n".encode())
while True:
    conn, peer = s.accept()
    threading.Thread(target=serve, args=(conn, peer), daemon=True).start()
'''

CLIENT = r'''
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
    s.settimeout(3)
    s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
    data = b""
    while chunk := s.recv(4096):
        data += chunk
    print(data.decode().split("\\r\\n\\r\\n", 1)[1].strip())
except OSError as exc:
    print(f"ERROR {exc}")
'''

def lab(bridge_netfilter):
    sh("ip", "link", "add", "docker0", "type", "bridge")
    sh("ip", "addr", "add", "172.17.0.1/16", "dev", "docker0")
    sh("ip", "link", "set", "docker0", "up")
    for ns, addr in (("c1", "172.17.0.2"), ("c2", "172.17.0.3")):
        port = "veth" + ns
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "link", "set", port, "master", "docker0", "up")
        sh("bridge", "link", "set", "dev", port, "hairpin", "on")
        sh("ip", "-n", ns, "addr", "add", addr + "/16", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "route", "add", "default", "via", "172.17.0.1")
    sh("ip", "netns", "add", "ext")
    sh("ip", "link", "add", "uplink", "type", "veth", "peer", "name", "eth0", "netns", "ext")
    sh("ip", "addr", "add", "10.168.0.1/24", "dev", "uplink")
    sh("ip", "link", "set", "uplink", "up")
    sh("ip", "-n", "ext", "addr", "add", "10.168.0.3/24", "dev", "eth0")
    sh("ip", "-n", "ext", "link", "set", "eth0", "up")
    sh("ip", "-n", "ext", "link", "set", "lo", "up")
    sh("sysctl", "-qw", "net.ipv4.ip_forward=1")
    sh("sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1")
    # Per network namespace: 1 sends bridged frames through the IP hooks (br_netfilter), as
    # Docker hosts have it; 0 is a host without br_netfilter.
    if os.path.exists("/proc/sys/net/bridge/bridge-nf-call-iptables"):
        sh("sysctl", "-qw", f"net.bridge.bridge-nf-call-iptables={bridge_netfilter}")
    elif bridge_netfilter:
        raise SystemExit("SKIP br_netfilter not available")

def start_server(ns, name, port):
    proc = subprocess.Popen(["ip", "netns", "exec", ns, PY, "-c", SERVER, name, str(port)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc

def get(ns, addr, port):
    argv = [PY, "-c", CLIENT, addr, str(port)]
    if ns:
        argv = ["ip", "netns", "exec", ns, *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=15).stdout.strip()
"""


@pytest.mark.kernel
@pytest.mark.parametrize("bridge_netfilter", [0, 1], ids=["no-br_netfilter", "br_netfilter"])
def test_docker_nat_carries_real_traffic(hermetic: Hermetic, bridge_netfilter: int) -> None:
    result = hermetic(f"""
        lab({bridge_netfilter})
        nftables.replace("lab", "", {DOCKER_NAT!r})
        servers = [start_server("c1", "c1", 80), start_server("ext", "ext", 8080)]
        try:
            RESULT["seen"] = {{
                "c1 -> ext (masquerade)": get("c1", "10.168.0.3", 8080),
                "c2 -> c1 direct": get("c2", "172.17.0.2", 80),
                "ext -> host:8080": get("ext", "10.168.0.1", 8080),
                "c2 -> host:8080": get("c2", "10.168.0.1", 8080),
                "c2 -> bridge:8080": get("c2", "172.17.0.1", 8080),
                "c1 -> host:8080 (hairpin)": get("c1", "10.168.0.1", 8080),
                "host -> host:8080": get("", "10.168.0.1", 8080),
                "host -> 127.0.0.1:8080": get("", "127.0.0.1", 8080),
            }}
            nftables.delete("lab", "")
            RESULT["after_delete"] = get("ext", "10.168.0.1", 8080)
        finally:
            for server in servers:
                server.kill()
                server.wait()
        RESULT["tables_left"] = [o for o in nft_json("list", "tables") if "table" in o]
    """, setup=LAB, timeout=120)
    assert result["seen"] == {
        "c1 -> ext (masquerade)": "ext 10.168.0.1",
        "c2 -> c1 direct": "c1 172.17.0.3",
        # The forward keeps an outside client's address ...
        "ext -> host:8080": "c1 10.168.0.3",
        # ... and masquerades clients on the target's own link, which would otherwise get the
        # reply straight over the bridge from an address they never connected to.
        "c2 -> host:8080": "c1 172.17.0.1",
        "c2 -> bridge:8080": "c1 172.17.0.1",
        "c1 -> host:8080 (hairpin)": "c1 172.17.0.1",
        "host -> host:8080": "c1 10.168.0.1",
        "host -> 127.0.0.1:8080": "c1 172.17.0.1",
    }
    assert result["after_delete"].startswith("ERROR")
    assert result["tables_left"] == []


UDP_SERVER = r'''
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[2])))
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(1024)
    s.sendto(f"{sys.argv[1]} {peer[0]}".encode(), peer)
'''

UDP_CLIENT = r'''
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
s.connect((sys.argv[1], int(sys.argv[2])))
s.send(b"ping")
try:
    print(s.recv(1024).decode())
except OSError as exc:
    print(f"ERROR {exc}")
'''


@pytest.mark.kernel
def test_forward_variants_carry_real_traffic(hermetic: Hermetic) -> None:
    """A port range that keeps its port, a forward limited to the uplink, and UDP."""
    rules = (
        MASQ,
        NatRule(kind="dnat", proto="tcp", port=9000, port_end=9001, to_address="172.17.0.2"),
        NatRule(kind="dnat", proto="tcp", port=7000, to_address="172.17.0.2", to_port=80,
                in_="uplink"),
        NatRule(kind="dnat", proto="udp", port=5353, to_address="172.17.0.2", to_port=53),
    )
    result = hermetic(f"""
        lab(0)
        nftables.replace("lab", "", {rules!r})
        servers = [start_server("c1", "c1", 80), start_server("c1", "c1:9001", 9001)]
        udp = subprocess.Popen(["ip", "netns", "exec", "c1", PY, "-c", {UDP_SERVER!r}, "c1",
                                "53"], stdout=subprocess.PIPE, text=True)
        assert udp.stdout.readline().strip() == "ready"
        servers.append(udp)
        def udp_get(ns, addr, port):
            argv = [PY, "-c", {UDP_CLIENT!r}, addr, str(port)]
            if ns:
                argv = ["ip", "netns", "exec", ns, *argv]
            return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
        try:
            RESULT["seen"] = {{
                "ext -> host:9001 (range keeps port)": get("ext", "10.168.0.1", 9001),
                "ext -> host:7000 (in uplink)": get("ext", "10.168.0.1", 7000),
                "c2 -> host:7000 (not from uplink)": get("c2", "10.168.0.1", 7000),
                "host -> 127.0.0.1:7000 (not from uplink)": get("", "127.0.0.1", 7000),
                "ext -> host:5353/udp": udp_get("ext", "10.168.0.1", 5353),
                "c2 -> host:5353/udp": udp_get("c2", "10.168.0.1", 5353),
            }}
        finally:
            for server in servers:
                server.kill()
                server.wait()
    """, setup=LAB, timeout=120)
    seen = result["seen"]
    assert seen["ext -> host:9001 (range keeps port)"] == "c1:9001 10.168.0.3"
    assert seen["ext -> host:7000 (in uplink)"] == "c1 10.168.0.3"
    assert seen["c2 -> host:7000 (not from uplink)"].startswith("ERROR")
    assert seen["host -> 127.0.0.1:7000 (not from uplink)"].startswith("ERROR")
    assert seen["ext -> host:5353/udp"] == "c1 10.168.0.3"
    assert seen["c2 -> host:5353/udp"] == "c1 172.17.0.1"
