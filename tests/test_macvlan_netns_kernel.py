"""A macvlan whose parent is in another namespace, on this machine's kernel (it has macvlan),
as the CNI macvlan plugin makes one: beside the host's NIC, moved into the container's
namespace.

The root namespace holds the "NIC" `up0` (one end of a veth); its other end `sw`, in namespace
`b`, stands for the switch and the machines outside. Namespace `c` is the container: its
`eth0` is a macvlan on the root's `up0` (`link: {name: up0}`). HTTP from `b` to `eth0`'s
address is answered by a server in `c`, and `b`'s neighbour table holds eth0's own MAC: the
frames went to the macvlan. `ip -j -d link` in `c` is the independent eye on where its parent
is (link_netnsid names the root as `c` sees it, link_index is up0's ifindex there).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

TOPOLOGY = """\
version: 1
name: mvns
namespaces:
  b: {}
  c: {}
links:
  - name: up0
    kind: veth
    peer: {name: sw, namespace: b, addresses: [10.60.0.2/24]}
  - name: eth0
    kind: macvlan
    namespace: c
    link: PARENT
    macvlan: {mode: MODE}
    addresses: [10.60.0.11/24]
"""


def write(tmp_path: Path, mode: str = "bridge", parent: str = "{name: up0}") -> str:
    path = tmp_path / "mvns.yaml"
    path.write_text(TOPOLOGY.replace("MODE", mode).replace("PARENT", parent))
    return str(path)


def netdecl_ok(host, *args: str) -> str:
    result = host.netdecl(*args)
    assert result.returncode == 0, f"{args}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def link(host, name: str, ns: str | None) -> dict[str, Any]:
    (found,) = host.ip_json("-d", "link", "show", "dev", name, ns=ns)
    return found


def assert_on_root_parent(host, name: str = "eth0") -> dict[str, Any]:
    """The macvlan in `c` is on the root's up0, as the kernel says: IFLA_LINK is up0's index
    in the namespace IFLA_LINK_NETNSID names, and that id is the root's as `c` knows it."""
    found = link(host, name, "c")
    assert found["linkinfo"]["info_kind"] == "macvlan", found
    ids = {entry["nsid"]: entry.get("name") for entry in host.ip_json("netns", "list-id",
                                                                      ns="c")}
    assert "link_netnsid" in found, found
    assert found["link_netnsid"] in ids, (found, ids)
    assert found["link_index"] == link(host, "up0", None)["ifindex"], found
    # and the root's id for itself is the one `c` gave it: ask the root what `c` is to it
    assert not any(lk["ifname"] == name for lk in host.ip_json("link", "show")), \
        "the macvlan must not be left in the root"
    return found


def http_to_c(host) -> None:
    server = host.start_server("c", 80, address="10.60.0.11")
    result = host.http_get("b", "10.60.0.11", 80)
    assert result.ok, f"b -> c: {result.error}"
    assert "ns=c client=10.60.0.2" in result.body, result.body
    server.stop()


def test_a_macvlan_on_a_root_parent_is_made_beside_it_and_moved_into_its_namespace(
        host, tmp_path: Path):
    before = host.snapshot()
    path = write(tmp_path)
    netdecl_ok(host, "apply", path)
    made = assert_on_root_parent(host)
    assert made.get("ifalias") == "netdecl:mvns"
    assert made["linkinfo"]["info_data"]["mode"] == "bridge"
    assert host.netdecl("plan", "--detailed-exitcode", path).returncode == 0  # no drift

    http_to_c(host)
    neighbours = {n["dst"]: n.get("lladdr") for n in host.ip_json("neigh", "show", ns="b")}
    assert neighbours["10.60.0.11"] == made["address"]

    # show writes the mapping form back, and graph draws the edge across namespaces
    shown = yaml.safe_load(netdecl_ok(host, "show", "--namespace", "c", "--namespace", "",
                                      "--name", "mvns"))
    (entry,) = [e for e in shown["links"] if e["name"] == "eth0"]
    assert (entry["kind"], entry["link"]) == ("macvlan", {"name": "up0"}), entry
    graph = netdecl_ok(host, "graph", path)
    assert "macvlan bridge on root/up0" in graph, graph

    # a new mode makes a new device, on the same parent, in the same place
    path = write(tmp_path, "private")
    plan = host.netdecl("plan", "--detailed-exitcode", path)
    assert plan.returncode == 2 and "-/+" in plan.stdout and "c/eth0" in plan.stdout, \
        plan.stdout + plan.stderr
    netdecl_ok(host, "apply", path)
    again = assert_on_root_parent(host)
    assert again["ifindex"] != made["ifindex"] or again["address"] != made["address"]
    assert again["linkinfo"]["info_data"]["mode"] == "private"
    assert host.netdecl("plan", "--detailed-exitcode", path).returncode == 0
    http_to_c(host)

    netdecl_ok(host, "destroy", path)
    assert host.snapshot() == before


def test_a_macvlan_whose_parent_leaves_is_drift_and_apply_makes_both_again(
        host, tmp_path: Path):
    """The parent moved by hand into another namespace: the macvlan stays on it (the kernel
    keeps it), but it is no longer on the root's up0 as the file says. The plan sees that
    (a missing up0, a macvlan on another parent) without a crash, and apply makes both."""
    path = write(tmp_path)
    netdecl_ok(host, "apply", path)
    host.run(["ip", "netns", "add", "x"])
    host.run(["ip", "link", "set", "up0", "netns", "x"])
    plan = host.netdecl("plan", "--detailed-exitcode", path)
    assert plan.returncode == 2 and "Traceback" not in plan.stderr, plan.stdout + plan.stderr
    assert "c/eth0" in plan.stdout and "up0" in plan.stdout, plan.stdout
    # the parent deleted: the kernel takes the macvlan along, and the plan makes both again
    host.run(["ip", "netns", "del", "x"])
    plan = host.netdecl("plan", "--detailed-exitcode", path)
    assert plan.returncode == 2 and "Traceback" not in plan.stderr, plan.stdout + plan.stderr
    netdecl_ok(host, "apply", path)
    assert_on_root_parent(host)
    assert host.netdecl("plan", "--detailed-exitcode", path).returncode == 0
    http_to_c(host)
    netdecl_ok(host, "destroy", path)


def test_a_handmade_macvlan_on_the_hosts_nic_is_shown_and_adopted(host, tmp_path: Path):
    """As the CNI plugin leaves one: the NIC (external) in the root, the macvlan in `c`.
    `show` writes link: {name: up0}; that file adopts the very link, with no drift after."""
    host.run(["ip", "netns", "add", "b"])
    host.run(["ip", "netns", "add", "c"])
    host.run(["ip", "link", "add", "up0", "type", "veth", "peer", "name", "sw", "netns", "b"])
    host.run(["ip", "link", "set", "up0", "up"])
    host.run(["ip", "link", "add", "link", "up0", "name", "eth0", "netns", "c",
              "type", "macvlan", "mode", "vepa"])
    handmade = assert_on_root_parent(host)

    shown = yaml.safe_load(netdecl_ok(host, "show", "--namespace", "c", "--namespace", "",
                                      "--name", "mine"))
    (entry,) = [e for e in shown["links"] if e["name"] == "eth0"]
    assert (entry["link"], entry["macvlan"]) == ({"name": "up0"}, {"mode": "vepa"}), entry
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(shown))
    plan = host.netdecl("plan", "--adopt", str(path))
    assert plan.returncode == 0 and "= adopt link c/eth0" in plan.stdout, \
        plan.stdout + plan.stderr
    netdecl_ok(host, "apply", "--adopt", str(path))
    adopted = assert_on_root_parent(host)
    assert (adopted["ifindex"], adopted.get("ifalias")) == (handmade["ifindex"], "netdecl:mine")
    assert host.netdecl("plan", "--detailed-exitcode", str(path)).returncode == 0


def test_a_failure_anywhere_in_making_it_leaves_the_host_as_it_was(host, tmp_path: Path):
    from test_rollback import fail_at_every_action

    assert fail_at_every_action(host, write(tmp_path), None) >= 3


def test_a_parent_in_the_macvlans_own_namespace_may_be_written_as_a_mapping(
        host, tmp_path: Path):
    """{name: up0, namespace: c} on a macvlan in c is the plain name: no move, no drift."""
    text = Path(write(tmp_path)).read_text().replace(
        "  - name: up0\n    kind: veth\n", "  - name: up0\n    kind: veth\n    namespace: c\n")
    path = tmp_path / "same.yaml"
    path.write_text(text.replace("{name: up0}", "{name: up0, namespace: c}"))
    netdecl_ok(host, "apply", str(path))
    found = link(host, "eth0", "c")
    assert found["link"] == "up0" and "link_netnsid" not in found, found
    assert host.netdecl("plan", "--detailed-exitcode", str(path)).returncode == 0
    netdecl_ok(host, "destroy", str(path))
