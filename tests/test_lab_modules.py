"""A kernel without a module a topology needs, in the kernel lab: there only the modules a
test loads exist (nothing autoloads: the lab's modules are not under /lib/modules), so which
one is missing is the test's choice. Booted with 8021q and veth, not dummy: plan and apply
say in one line that kind dummy needs module dummy (and nothing about the vlan, whose module
is there), exit 1, and the links are as before; once `modprobe dummy` has run, the same file
applies.
"""

from __future__ import annotations

import pytest
from kernellab import KernelLab, LabRun, Step

pytestmark = pytest.mark.lab("8021q", "veth")

TOPOLOGY = """\
version: 1
name: modlab
links:
  - {name: uplink, kind: external}
  - {name: uplink.100, kind: vlan, link: uplink, vlan: {id: 100}, addresses: [10.100.0.1/24]}
  - {name: svc0, kind: dummy, addresses: [10.96.0.10/32]}
"""

LINKS = 'ip -j -d link show > "$OUT/links.json"\n'
STEPS = [
    Step("before", "set -e\nip link add uplink type veth peer name trunk\n" + LINKS),
    Step("plan", "netdecl plan topo.yaml"),
    Step("apply", "netdecl apply topo.yaml"),
    Step("refused", LINKS),
    Step("load", "modprobe -d /run/lab dummy"),
    Step("apply-loaded", "netdecl apply topo.yaml"),
    Step("applied", LINKS),
]


@pytest.fixture(scope="module")
def run(module_lab: KernelLab) -> LabRun:
    return module_lab.run(STEPS, files={"topo.yaml": TOPOLOGY})


def test_plan_and_apply_name_the_missing_module_and_exit_1(run: LabRun) -> None:
    run["before"].ok()
    for step in ("plan", "apply"):
        result = run[step]
        assert result.returncode == 1, (step, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert lines == ["netdecl: kind dummy (svc0) needs kernel module dummy, which this "
                         "kernel does not have: load it (modprobe dummy) or use a kernel built "
                         "with it"], (step, result.stderr)
        assert "Traceback" not in result.stderr and "EOPNOTSUPP" not in result.stderr


def test_nothing_changed_while_the_module_was_missing(run: LabRun) -> None:
    names = sorted(link["ifname"] for link in run["refused"].json["links"])
    assert names == sorted(link["ifname"] for link in run["before"].json["links"])
    assert "uplink.100" not in names  # not even the link whose module is there


def test_with_the_module_loaded_the_same_file_applies(run: LabRun) -> None:
    run["load"].ok()
    run["apply-loaded"].ok()
    links = {link["ifname"]: link for link in run["applied"].json["links"]}
    assert links["svc0"]["linkinfo"]["info_kind"] == "dummy"
    assert links["uplink.100"]["linkinfo"]["info_data"]["id"] == 100
