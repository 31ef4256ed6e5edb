"""Property: for random valid topologies A and B with the same name, on one hermetic host,
apply A -> matches; apply B failing at a random action -> exactly A again; apply B (a modify
plan: creates, deletes, replaces) -> matches; destroy ->
the host is exactly its baseline snapshot again. Each step is checked with the kernel-level
snapshot and netdecl's own `plan --detailed-exitcode`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from harness import HermeticHost
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_rollback import assert_same, state_files

NAMESPACES = ["pa", "pb", "pc", "pd"]


@st.composite
def topologies(draw) -> dict:
    """A valid topology named "prop": namespaces, bridges, veths root<->ns (maybe on a bridge)
    and ns<->ns, a /30 subnet per veth pair, routes through the far end of a veth."""
    namespaces = draw(st.lists(st.sampled_from(NAMESPACES), min_size=1, max_size=4,
                               unique=True))
    bridges = draw(st.lists(st.sampled_from(["pbr0", "pbr1"]), max_size=2, unique=True))
    links: list[dict] = [{"name": b, "kind": "bridge",
                          **({"addresses": [f"10.90.{i}.1/24"]}
                             if draw(st.booleans()) else {})}
                         for i, b in enumerate(bridges)]
    routes: list[dict] = []
    used: dict[str, set[str]] = {ns: set() for ns in ["", *namespaces]}
    pairs = draw(st.lists(st.tuples(st.sampled_from(["", *namespaces]),
                                    st.sampled_from(namespaces), st.booleans(), st.booleans()),
                          min_size=1, max_size=5))
    for number, (left, right, on_bridge, routed) in enumerate(pairs):
        if left == right:
            continue
        subnet = f"10.91.{number}"
        name = f"pv{number}"
        peer_name = f"eth{number}"
        if name in used[left] or peer_name in used[right]:
            continue
        used[left].add(name)
        used[right].add(peer_name)
        link: dict = {"name": name, "kind": "veth"}
        if left:
            link["namespace"] = left
        link["peer"] = {"name": peer_name, "namespace": right,
                        "addresses": [f"{subnet}.2/30"]}
        if on_bridge and bridges and not left:
            link["master"] = draw(st.sampled_from(bridges))
        else:
            link["addresses"] = [f"{subnet}.1/30"]
            if routed:
                route = {"namespace": right, "to": f"10.92.{number}.0/24", "via": f"{subnet}.1"}
                routes.append(route)
        if draw(st.booleans()):
            link["mtu"] = draw(st.sampled_from([1400, 1500, 9000]))
        links.append(link)
    doc: dict = {"version": 1, "name": "prop",
                 "namespaces": {ns: {} for ns in namespaces}, "links": links}
    if routes:
        doc["routes"] = routes
    return doc


def without_kernel_ipv6(snapshot: dict) -> dict:
    """The snapshot minus IPv6 state the kernel makes by itself (link-local addresses and its
    own fe80::/64, ff00::/8 routes). A bridge that rollback recreates gets its old MAC back
    (compared), but a bridge whose MAC is *set* starts without carrier while a fresh one starts
    with it, so a port-less bridge comes back without IPv6 autoconfiguration: a kernel quirk,
    not a difference in anything netdecl manages."""
    out = {}
    for ns, data in snapshot.items():
        if "routes" in data:
            data = dict(data, routes=[r for r in data["routes"] if not (
                r["family"] == "inet6" and r.get("protocol") == "kernel")])
        out[ns] = data
    return out


def write(tmp_path: Path, name: str, doc: dict) -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


def applied_and_matching(host: HermeticHost, path: str) -> None:
    result = host.netdecl("apply", path)
    assert result.returncode == 0, (Path(path).read_text(), result.stdout, result.stderr)
    plan = host.netdecl("plan", "--detailed-exitcode", path)
    assert plan.returncode == 0, (Path(path).read_text(), plan.stdout)


@pytest.fixture(scope="module")
def hermetic_ok() -> None:
    from conftest import _skip_reason

    reason = _skip_reason()
    if reason:
        pytest.skip(reason)


@pytest.mark.kernel
# NETDECL_PROP_EXAMPLES=50 for a longer hunt; 8 keeps CI near 40 s
@settings(max_examples=int(os.environ.get("NETDECL_PROP_EXAMPLES", "8")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(first=topologies(), second=topologies(), fail_at=st.integers(1, 30))
def test_apply_modify_destroy_returns_to_baseline(hermetic_ok, tmp_path_factory, first, second,
                                                  fail_at):
    # a fresh host per example (~0.1 s): a failing example must not poison the next ones,
    # or hypothesis cannot shrink it
    with HermeticHost() as host:
        check_example(host, tmp_path_factory.mktemp("prop"), first, second, fail_at)


def check_example(host: HermeticHost, tmp_path: Path, first: dict, second: dict,
                  fail_at: int) -> None:
    baseline = host.snapshot()
    a = write(tmp_path, "a", first)
    b = write(tmp_path, "b", second)
    applied_and_matching(host, a)
    # the modify, failed at a random action first: back to exactly A (if the plan is shorter
    # than fail_at it simply succeeds)
    after_a = without_kernel_ipv6(host.snapshot(link_local=False))
    result = host.netdecl("apply", b, env={"NETDECL_FAIL_AT": str(fail_at)})
    if result.returncode != 0:
        assert result.returncode == 1 and "injected failure" in result.stderr, result.stderr
        assert_same(without_kernel_ipv6(host.snapshot(link_local=False)), after_a,
                    f"after NETDECL_FAIL_AT={fail_at}")
    applied_and_matching(host, b)
    result = host.netdecl("destroy", b)
    assert result.returncode == 0, result.stderr
    assert_same(host.snapshot(), baseline, "after destroy")
    assert host.netns_list() == []
    assert state_files(host) == []
