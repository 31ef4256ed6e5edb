"""kind: macvlan on this machine's kernel (it has macvlan): made on its parent, seen as such by
`ip -j -d link`, carrying traffic, replaced when its mode changes, gone after destroy.

Namespace `a` holds the parent (one end of a veth) and two macvlans on it, each in a subnet of
its own; namespace `b`, the other end of the veth, stands for the switch and the machines
outside. HTTP from `b` to each macvlan's address is answered by a server in `a`, and `b`'s
neighbour table holds each macvlan's own MAC for its address: the frames went to the macvlan,
not to the parent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TOPOLOGY = """\
version: 1
name: mvlan
namespaces:
  # answer ARP only on the link that holds the address: else the parent and the other
  # macvlan, which hear the same broadcast, answer too, and b's neighbour table proves nothing
  a: {sysctls: {net.ipv4.conf.all.arp_ignore: 1}}
  b: {}
links:
  - name: va
    kind: veth
    namespace: a
    peer: {name: vb, namespace: b, addresses: [10.50.0.2/24, 10.51.0.2/24]}
  - name: m1
    kind: macvlan
    namespace: a
    link: va
    addresses: [10.50.0.11/24]
  - name: m2
    kind: macvlan
    namespace: a
    link: va
    macvlan: {mode: MODE}
    addresses: [10.51.0.12/24]
"""


def write(tmp_path: Path, mode: str) -> str:
    path = tmp_path / "mvlan.yaml"
    path.write_text(TOPOLOGY.replace("MODE", mode))
    return str(path)


def netdecl_ok(host, *args: str) -> str:
    result = host.netdecl(*args)
    assert result.returncode == 0, f"{args}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def link(host, name: str, ns: str) -> dict[str, Any]:
    (found,) = host.ip_json("-d", "link", "show", "dev", name, ns=ns)
    return found


def http_to(host, address: str) -> None:
    """HTTP from `b` to `address` in `a`; the server sees `b`'s own address."""
    server = host.start_server("a", 80, address=address)
    result = host.http_get("b", address, 80)
    assert result.ok, f"b -> {address}: {result.error}"
    assert "ns=a client=10.5" in result.body
    server.stop()


def test_macvlans_are_made_on_their_parent_carry_traffic_and_a_new_mode_replaces_one(
        host, tmp_path: Path):
    before = host.snapshot()
    path = write(tmp_path, "bridge")
    netdecl_ok(host, "apply", path)

    # the independent eye: the kernel's own account of what was made
    made = {name: link(host, name, "a") for name in ("m1", "m2")}
    for name, found in made.items():
        info = found["linkinfo"]
        assert (info["info_kind"], info["info_data"]["mode"], found["link"]) == (
            "macvlan", "bridge", "va"), name
        assert found.get("ifalias") == "netdecl:mvlan"
    assert made["m1"]["address"] != made["m2"]["address"]
    assert host.netdecl("plan", "--detailed-exitcode", path).returncode == 0  # no drift

    http_to(host, "10.50.0.11")
    http_to(host, "10.51.0.12")
    neighbours = {n["dst"]: n.get("lladdr") for n in host.ip_json("neigh", "show", ns="b")}
    assert neighbours["10.50.0.11"] == made["m1"]["address"]
    assert neighbours["10.51.0.12"] == made["m2"]["address"]
    # `explain` tells the same story: from b through the veth and its macvlan, and back
    to_m1 = host.netdecl("explain", "--from", "b", "10.50.0.11", path)
    assert to_m1.returncode == 0 and "vb -> veth peer a/va" in to_m1.stdout, to_m1.stdout
    assert "va -> macvlan m1, made on it" in to_m1.stdout and "delivered" in to_m1.stdout
    to_b = host.netdecl("explain", "--from", "a", "10.50.0.2", path)
    assert to_b.returncode == 0 and "m1 sends on the segment of va" in to_b.stdout, to_b.stdout
    assert "delivered" in to_b.stdout

    # a mode is fixed when the device is made: a new one replaces it, the other stays
    path = write(tmp_path, "private")
    plan = host.netdecl("plan", "--detailed-exitcode", path)
    assert plan.returncode == 2, plan.stdout + plan.stderr
    assert "-/+" in plan.stdout and "a/m2" in plan.stdout and "a/m1" not in plan.stdout, \
        plan.stdout
    netdecl_ok(host, "apply", path)
    m2 = link(host, "m2", "a")
    assert (m2["linkinfo"]["info_data"]["mode"], m2["link"]) == ("private", "va")
    assert m2["ifindex"] != made["m2"]["ifindex"]
    assert link(host, "m1", "a")["ifindex"] == made["m1"]["ifindex"]
    assert host.netdecl("plan", "--detailed-exitcode", path).returncode == 0
    http_to(host, "10.51.0.12")

    netdecl_ok(host, "destroy", path)
    assert host.snapshot() == before


def test_a_macvlan_is_made_again_when_its_parent_is(host, tmp_path: Path):
    """A new veth (its peer renamed) takes the macvlans on it along in the kernel: the same
    apply makes them again on the new one, with their addresses."""
    before = host.snapshot()
    path = write(tmp_path, "bridge")
    netdecl_ok(host, "apply", path)
    old = {name: link(host, name, "a")["ifindex"] for name in ("va", "m1", "m2")}
    Path(path).write_text(Path(path).read_text().replace("name: vb,", "name: vc,"))
    netdecl_ok(host, "apply", path)
    for name in ("va", "m1", "m2"):
        found = link(host, name, "a")
        assert found["ifindex"] != old[name], name
        if name != "va":
            assert (found["linkinfo"]["info_kind"], found["link"]) == ("macvlan", "va"), name
    assert host.netdecl("plan", "--detailed-exitcode", path).returncode == 0
    http_to(host, "10.50.0.11")
    http_to(host, "10.51.0.12")
    netdecl_ok(host, "destroy", path)
    assert host.snapshot() == before


def test_a_macvlan_moved_away_from_its_parent_is_drift_and_apply_puts_it_back(
        host, tmp_path: Path):
    """Moved by hand into `b`, a macvlan's parent is in another namespace (IFLA_LINK_NETNSID):
    read back without a parent here, it is drift for the plan, not a crash, and apply makes it
    again where the file says. The one moved is left where it is: its identity is not the one
    netdecl made (ownership by identity), so destroy would not delete namespace b around it."""
    path = write(tmp_path, "bridge")
    netdecl_ok(host, "apply", path)
    host.run(["ip", "-n", "a", "link", "set", "m1", "netns", "b"])
    moved = link(host, "m1", "b")
    assert moved["linkinfo"]["info_kind"] == "macvlan" and moved.get("link_netnsid") is not None
    plan = host.netdecl("plan", "--detailed-exitcode", path)
    assert plan.returncode == 2 and "Traceback" not in plan.stderr, plan.stdout + plan.stderr
    assert "+ link a/m1 (macvlan)" in plan.stdout and "b/m1" not in plan.stdout, plan.stdout
    netdecl_ok(host, "apply", path)
    assert link(host, "m1", "a")["link"] == "va"
    assert link(host, "m1", "b")["ifindex"] == moved["ifindex"]
    assert host.netdecl("plan", "--detailed-exitcode", path).returncode == 0
    host.run(["ip", "-n", "b", "link", "del", "m1"])
    netdecl_ok(host, "destroy", path)


def test_a_handmade_macvlan_is_shown_and_adopted_as_itself(host, tmp_path: Path):
    """A macvlan made by hand: `show` writes it as kind macvlan on its parent, and that file
    adopts it in place (`apply --adopt`: the very link, now netdecl's), with no drift after."""
    import yaml

    before = host.snapshot()
    host.run(["ip", "netns", "add", "a"])
    host.run(["ip", "-n", "a", "link", "add", "va", "type", "veth", "peer", "name", "vb"])
    host.run(["ip", "-n", "a", "link", "add", "link", "va", "name", "m1", "type", "macvlan",
              "mode", "vepa"])
    for name in ("va", "vb", "m1"):
        host.run(["ip", "-n", "a", "link", "set", name, "up"])
    host.run(["ip", "-n", "a", "addr", "add", "10.50.0.11/24", "dev", "m1"])
    handmade = link(host, "m1", "a")

    shown = yaml.safe_load(netdecl_ok(host, "show", "--namespace", "a", "--name", "mine"))
    (entry,) = [e for e in shown["links"] if e["name"] == "m1"]
    assert (entry["kind"], entry["link"], entry["macvlan"]) == ("macvlan", "va", {"mode": "vepa"})
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(shown))
    plan = host.netdecl("plan", "--adopt", str(path))
    assert plan.returncode == 0 and "= adopt link a/m1" in plan.stdout, plan.stdout + plan.stderr
    netdecl_ok(host, "apply", "--adopt", str(path))
    adopted = link(host, "m1", "a")
    assert (adopted["ifindex"], adopted.get("ifalias")) == (handmade["ifindex"], "netdecl:mine")
    assert host.netdecl("plan", "--detailed-exitcode", str(path)).returncode == 0
    netdecl_ok(host, "destroy", str(path))
    assert host.snapshot() == before


def test_a_failure_anywhere_in_remaking_a_parent_restores_its_macvlans(host, tmp_path: Path):
    """The rollback of an apply that made a parent again must bring back the macvlans on the
    old one too (the kernel deleted them with it): at every step a failure is injected, the
    host is the one from before, macvlans, addresses and MACs included."""
    from test_rollback import fail_at_every_action

    base = write(tmp_path, "bridge")
    renamed = tmp_path / "renamed.yaml"
    renamed.write_text(Path(base).read_text().replace("name: vb,", "name: vc,"))
    assert fail_at_every_action(host, str(renamed), base) >= 3
    http_to(host, "10.50.0.11")
    http_to(host, "10.51.0.12")
