"""A failed `apply --adopt` leaves the host exactly as before, down to what adoption overwrites.

Adoption writes netdecl's owner mark into an adopted link's ifalias (replacing whatever text
was there) and rewrites an adopted route with netdecl's protocol 211. A rollback reconciles
back to the pre-apply snapshot, but those are attributes the planner does not compare, so the
rollback puts them back by themselves: the original ifalias (or none) on the very link, the
original protocol on the route. Checked against `ip -j` directly, not only the harness's
snapshot.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import STATE_DIR
from test_identity_kernel import Paused
from test_realhost import hand_made_docker
from test_rollback import assert_same, records

# what the topology owns already, made by netdecl: so it has a record the failed applies must
# leave as it was (an adopted object's identity must not stay in it)
BASE = """\
version: 1
name: adopted
sysctls: {net.ipv4.ip_forward: 1}
namespaces: {nginx-0: {}}
"""

TOPOLOGY = """\
version: 1
name: adopted
sysctls: {net.ipv4.ip_forward: 1}
namespaces: {nginx-0: {}, nginx-1: {}, nginx-2: {}, nginx-3: {}}
links:
  - {name: docker0, kind: bridge, addresses: [172.17.0.1/16, 172.18.0.1/24]}
  - name: veth-n1
    kind: veth
    master: docker0
    peer: {name: eth0, namespace: nginx-1, addresses: [172.17.0.2/16]}
  - name: veth-n2
    kind: veth
    master: docker0
    peer: {name: eth0, namespace: nginx-2, addresses: [172.17.0.3/16]}
  - name: veth-n3
    kind: veth
    master: docker0
    peer: {name: eth0, namespace: nginx-3, addresses: [172.17.0.4/16]}
routes:
  - {namespace: nginx-1, to: default, via: 172.17.0.1}
  - {namespace: nginx-2, to: default, via: 172.17.0.1}
  - {namespace: nginx-3, to: default, via: 172.17.0.1}
  - {to: 10.9.0.0/24, via: 172.17.0.2}
"""

ALIASES = {"docker0": "made by hand", "veth-n1": "web one: the first container's port"}


def hand_made(host) -> None:
    """docker0 (with an alias), two veths into two namespaces (one with an alias), their
    default routes (protocol boot, as `ip route add` makes them) and a static route."""
    hand_made_docker(host)
    for link, alias in ALIASES.items():
        host.run(["ip", "link", "set", "dev", link, "alias", alias])
    host.run(["ip", "route", "add", "10.9.0.0/24", "via", "172.17.0.2", "proto", "static"])


def raw_view(host) -> dict[str, object]:
    """What the harness's snapshot might normalise away, straight from `ip -j`: each link's
    ifalias (absent: none) and ifindex, each route's protocol, in every namespace."""
    view: dict[str, object] = {"netns": host.netns_list()}
    for ns in [None, *host.netns_list()]:
        links = host.ip_json("-d", "link", "show", ns=ns)
        view[f"links {ns}"] = sorted((link["ifname"], link["ifindex"], link.get("ifalias"))
                                     for link in links)
        routes = host.ip_json("route", "show", ns=ns)
        view[f"routes {ns}"] = sorted(json.dumps(r, sort_keys=True) for r in routes)
    return view


@dataclass
class Before:
    """The host before the adopting apply, three ways."""

    path: str  # TOPOLOGY's file
    snapshot: dict[str, Any]  # the harness's
    raw: dict[str, object]  # raw_view: aliases, ifindexes, route protocols
    records: dict[str, str]  # netdecl's state files

    def check(self, host, context: str) -> None:
        assert_same(host.snapshot(), self.snapshot, context)
        assert_same(raw_view(host), self.raw, context)
        # the record is as it was (nothing adopted stays owned), no journal is left, and a
        # plain plan still refuses the hand-made objects
        assert records(host) == self.records, context
        plain = host.netdecl("plan", "--detailed-exitcode", self.path)
        assert plain.returncode == 1, f"{context}: {plain.stdout}{plain.stderr}"


def prepared(host, tmp_path: Path) -> tuple[Before, list[dict[str, Any]]]:
    """The hand-made setup with BASE applied, and TOPOLOGY's adopting plan."""
    path = tmp_path / "adopted.yaml"
    path.write_text(TOPOLOGY)
    base = tmp_path / "base.yaml"
    base.write_text(BASE)
    hand_made(host)
    made = host.netdecl("apply", str(base))
    assert made.returncode == 0, made.stdout + made.stderr
    (docker0,) = host.ip_json("-d", "link", "show", "dev", "docker0")
    assert docker0["ifalias"] == "made by hand"
    (static,) = host.ip_json("route", "show", "10.9.0.0/24")
    assert static["protocol"] == "static"
    (boot,) = host.ip_json("route", "show", "default", ns="nginx-1")
    assert "protocol" not in boot  # boot: `ip -j` leaves it out
    before = Before(str(path), host.snapshot(), raw_view(host), records(host))
    assert list(before.records) == [f"{STATE_DIR}/topologies/adopted.json"]
    before.check(host, "before")

    result = host.netdecl("plan", "--json", "--adopt", before.path)
    assert result.returncode == 0, result.stderr
    actions = json.loads(result.stdout)["actions"]
    adopted = [a["object"] for a in actions if a["op"] == "adopt"]
    assert len(adopted) == 8, actions  # 2 namespaces, docker0, 2 veths, 3 routes
    assert len(actions) > len(adopted) + 3, actions  # and it makes and changes things too
    return before, actions


def test_a_failed_adopt_apply_puts_marks_and_protocols_back_at_every_action(host, tmp_path):
    before, actions = prepared(host, tmp_path)
    (docker0,) = host.ip_json("-d", "link", "show", "dev", "docker0")
    for number, action in enumerate(actions, start=1):
        label = f"{action['op']} {action['object']}"
        failed = host.netdecl("apply", "--adopt", before.path,
                              env={"NETDECL_FAIL_AT": str(number)})
        assert failed.returncode == 1, (number, label, failed.stdout, failed.stderr)
        assert f"apply failed: {label}: injected failure" in failed.stderr, failed.stderr
        before.check(host, f"after NETDECL_FAIL_AT={number} ({label})")

    # the real thing still works: marked and 211 now, and destroy removes what was adopted
    applied = host.netdecl("apply", "--adopt", before.path)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    (marked,) = host.ip_json("-d", "link", "show", "dev", "docker0")
    assert (marked["ifindex"], marked["ifalias"]) == (docker0["ifindex"], "netdecl:adopted")
    (route,) = host.ip_json("route", "show", "10.9.0.0/24")
    assert route["protocol"] == "211"
    destroyed = host.netdecl("destroy", before.path)
    assert destroyed.returncode == 0, destroyed.stdout + destroyed.stderr
    assert host.netns_list() == []
    assert host.ip_json("link", "show", "type", "bridge") == []
    assert host.ip_json("route", "show", "10.9.0.0/24") == []
    assert host.run(["ls", f"{STATE_DIR}/topologies"]).stdout.strip() == ""
    assert host.sysctl("net.ipv4.ip_forward") == "0"


def test_an_adopt_apply_killed_after_its_adoptions_is_rolled_back_with_them(host, tmp_path):
    """SIGKILL, then `netdecl rollback`: crash recovery puts marks and protocols back too,
    from the journal's snapshot."""
    before, actions = prepared(host, tmp_path)
    paused = Paused(host, tmp_path, len(actions), "apply", "--adopt", before.path)
    # all but the last action ran: every adoption, marks and protocols written
    (docker0,) = host.ip_json("-d", "link", "show", "dev", "docker0")
    assert docker0["ifalias"] == "netdecl:adopted"
    (static,) = host.ip_json("route", "show", "10.9.0.0/24")
    assert static["protocol"] == "211"
    paused.kill()
    result = host.netdecl("rollback")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rolled back 'adopted'" in result.stderr, result.stderr
    before.check(host, "after SIGKILL and netdecl rollback")
