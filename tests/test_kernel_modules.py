"""A topology needing a kernel module the kernel lacks is refused by plan and apply, before
anything changes: one line per kind naming its module (LinkKind.module,
backends/kindprobe.py). Here against the in-memory host (which kinds it lacks is set) and the
probe itself on this machine's kernel; tests/test_lab_modules.py proves it in the kernel lab,
where which modules are loaded is up to the test."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from fakehost import FakeHost

from netdecl.engine import service
from netdecl.errors import EnvironmentProblem
from netdecl.exitcodes import ExitStatus
from netdecl.links import LINK_KINDS
from netdecl.topology.loader import load_topology_text

TOPOLOGY = """\
version: 1
name: modules
links:
  - {name: uplink, kind: external}
  - {name: svc0, kind: dummy, addresses: [10.96.0.10/32]}
  - {name: svc1, kind: dummy}
  - {name: uplink.100, kind: vlan, link: uplink, vlan: {id: 100}}
  - {name: br0, kind: bridge}
"""


def test_every_kind_netdecl_makes_names_its_module():
    for kind in LINK_KINDS.values():
        assert (kind.module is not None) == (kind.made and not kind.takes), kind.name


def test_plan_and_apply_name_each_missing_module_once_and_change_nothing(tmp_path: Path):
    host = FakeHost()
    host.kernel_lacks = {"dummy", "vlan"}
    desired = load_topology_text(TOPOLOGY)
    for run in (lambda: service.plan(desired, tmp_path, host=host),
                lambda: service.apply(desired, tmp_path, host=host)):
        with pytest.raises(EnvironmentProblem) as raised:
            run()
        lines = str(raised.value).splitlines()
        assert lines == [
            "kind dummy (svc0, svc1) needs kernel module dummy, which this kernel does not "
            "have: load it (modprobe dummy) or use a kernel built with it",
            "kind vlan (uplink.100) needs kernel module 8021q, which this kernel does not "
            "have: load it (modprobe 8021q) or use a kernel built with it"]
        assert raised.value.status == ExitStatus.FAILURE
    assert host.changes == 0


def test_a_kernel_with_every_module_plans_as_before(tmp_path: Path):
    host = FakeHost()
    host.kernel_lacks = {"vxlan"}  # a kind the topology does not use
    plan = service.plan(load_topology_text(TOPOLOGY), tmp_path, host=host)
    assert plan.actions


def test_the_probe_knows_this_kernels_kinds_and_makes_nothing(host):
    """bridge and veth: every kernel test here uses them; a kind nobody has is missing; the
    probe leaves no link behind (`ip -j link` before and after)."""
    result = host.run([sys.executable, "-c", PROBE])
    assert result.returncode == 0, result.stderr
    found = dict(line.split() for line in result.stdout.splitlines())
    assert found == {"bridge": "True", "veth": "True", "nosuchkind": "False"}


PROBE = """
import json, socket, subprocess
from netdecl.backends.kindprobe import rtnl_has_kind
from netdecl.backends.rtnl import RtnlSocket
def links():
    return sorted(l["ifname"] for l in json.loads(subprocess.check_output(["ip", "-j", "link"])))
before = links()
sock = RtnlSocket(socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE))
for kind in ("bridge", "veth", "nosuchkind"):
    print(kind, rtnl_has_kind(sock, kind))
assert links() == before, (before, links())
"""


def test_a_device_node_kind_is_probed_by_opening_it(tmp_path: Path):
    from netdecl.backends.kindprobe import device_present

    assert not device_present(str(tmp_path / "no-such-device"))
    assert device_present("/dev/null")
