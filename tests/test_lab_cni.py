"""The CNI ipvlan (l2, l3, l3s) and vlan plugins and netdecl build the same kernel state, in
the kernel lab (this machine's kernel has neither ipvlan nor 8021q); tests/test_cni_kernel.py
does macvlan, host-device and tuning on this machine's kernel, and says how.

One boot; every build is a step of its own, in a fresh network + mount namespace (the step
runs itself again under `unshare`, with tmpfs on /run/netns, /run/netdecl and netdecl's state
directory): the host NIC eth0, a veth whose other end `trunk` is in a namespace `sw` that
stands for the switch (the gateways: 10.61.0.1 on trunk, 10.62.0.1 on its VLAN 100). Then
either the real plugins, as a runtime calls them (tests/cniplugins.py), or `netdecl apply` of
the shipped topology; the kernel state read with `ip -j -d` and /proc/sys (COLLECTOR), HTTP
between the containers and to the gateway, and the state after the plugins' DEL (and the
runtime removing the namespaces) or `netdecl destroy`. The tests compare the steps' files.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from typing import Any

import pytest
from cniplugins import COLLECTOR, LOOPBACK, RUNTIME, differences, normalise
from harness import HTTP_CLIENT, REPO_ROOT, SERVER
from kernellab import KernelLab, LabRun, Step

pytestmark = pytest.mark.lab("ipvlan", "8021q", "veth")

NIC_MACS = {"eth0": "02:00:00:00:0a:01", "trunk": "02:00:00:00:0a:02"}
MODES = ("l2", "l3", "l3s")


def ipvlan_net(mode: str, i: int) -> dict[str, Any]:
    return {"cniVersion": "0.4.0", "name": "ipvlan", "plugins": [{
        "type": "ipvlan", "master": "eth0", "mode": mode, "mtu": 1400,
        "ipam": {"type": "static",
                 "addresses": [{"address": f"10.61.0.{11 + i}/24", "gateway": "10.61.0.1"}],
                 "routes": [{"dst": "0.0.0.0/0"},
                            {"dst": "10.99.0.0/16", "gw": "10.61.0.254"}]}}]}


VLAN_NET = {"cniVersion": "0.4.0", "name": "vlan", "plugins": [{
    "type": "vlan", "master": "eth0", "vlanId": 100, "mtu": 1400,
    "ipam": {"type": "static",
             "addresses": [{"address": "10.62.0.11/24", "gateway": "10.62.0.1"}],
             "routes": [{"dst": "0.0.0.0/0"}]}}]}

# case: (topology, its --vars, the network file of each container,
#        HTTP: (from, to ns, to address, answered))
CASES: dict[str, tuple[str, tuple[str, ...], list[str],
                       list[tuple[str, str, str, bool]]]] = {
    # the ipvlans of one NIC reach each other in every mode; the gateway outside only in l2:
    # in l3 and l3s the root namespace routes their packets, and it has no route there
    **{f"ipvlan-{mode}": ("cni-ipvlan.yaml", (f"mode={mode}",),
                          [f"ipvlan-{mode}-c1.json", f"ipvlan-{mode}-c2.json"],
                          [("c1", "c2", "10.61.0.12", True), ("c2", "c1", "10.61.0.11", True),
                           ("c1", "sw", "10.61.0.1", mode == "l2")])
       for mode in MODES},
    "vlan": ("cni-vlan.yaml", (), ["vlan-c1.json"], [("c1", "sw", "10.62.0.1", True)]),
}

# the step runs itself again in a network + mount namespace of its own: one throwaway
# namespace set per build, the NICs made the same way in each
PROLOGUE = f"""[ -n "$INSIDE" ] || INSIDE=1 exec unshare --net --mount --propagation private \
/bin/sh "$0"
set -e
for dir in /run/netns /run/netdecl /var/lib/netdecl; do
    mount -t tmpfs -o mode=0755 tmpfs "$dir"  # netdecl refuses a state dir others may write
done
mount -t sysfs sysfs /sys
ip link set lo up
ip netns add sw
ip link add eth0 address {NIC_MACS['eth0']} type veth peer name trunk \
address {NIC_MACS['trunk']} netns sw
ip link set eth0 up
ip -n sw link set lo up
ip -n sw link set trunk up
ip -n sw addr add 10.61.0.1/24 dev trunk
ip -n sw link add link trunk name trunk.100 type vlan id 100
ip -n sw addr add 10.62.0.1/24 dev trunk.100
ip -n sw link set trunk.100 up
# a router with no route out answers "unreachable" at once: the test server's look-up of its
# own name (http.server asks the DNS) from behind a default route through sw fails fast
ip netns exec sw sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward'
"$PYTHON" collector.py > "$OUT/before.json"
http() {{  # FROM TO_NS ADDRESS NAME
    ip netns exec "$2" "$PYTHON" server.py "$2" "$3" 80 tcp > "/tmp/$4.server" &
    server=$!
    for _ in $(seq 100); do grep -q ready "/tmp/$4.server" && break; sleep 0.1; done
    ip netns exec "$1" "$PYTHON" client.py "$3" 80 3 > "$OUT/$4.json"
    kill $server
    wait $server || true
}}
"""


def traffic(case: str) -> str:
    return "".join(f"http {src} {ns} {to} http-{i}\n"
                   for i, (src, ns, to, _) in enumerate(CASES[case][3]))


def cni_step(case: str) -> Step:
    _, _, nets, _ = CASES[case]
    run = '"$PYTHON" runtime.py'
    added = "".join(f"ip netns add c{i + 1}\n{run} ADD lo.json c{i + 1} lo /tmp/cni\n"
                    f"{run} ADD {net} c{i + 1} eth0 /tmp/cni > /dev/null\n"
                    for i, net in enumerate(nets))
    deleted = "".join(f"{run} DEL {net} c{i + 1} eth0 /tmp/cni\n"
                      f"{run} DEL lo.json c{i + 1} lo /tmp/cni\n"
                      f"ip -n c{i + 1} -j link show > \"$OUT/left-c{i + 1}.json\"\n"
                      f"ip netns del c{i + 1}\n"
                      for i, net in reversed(list(enumerate(nets))))
    return Step(f"cni-{case}", PROLOGUE + added + '"$PYTHON" collector.py > "$OUT/built.json"\n'
                + traffic(case) + deleted + '"$PYTHON" collector.py > "$OUT/after.json"\n')


def netdecl_step(case: str) -> Step:
    topology, variables, _, _ = CASES[case]
    args = " ".join(f"--var {shlex.quote(v)}" for v in variables)
    return Step(f"netdecl-{case}", PROLOGUE + f"netdecl apply {args} {topology}\n"
                '"$PYTHON" collector.py > "$OUT/built.json"\n' + traffic(case)
                + f"netdecl plan --detailed-exitcode {args} {topology}\n"
                f"netdecl destroy {args} {topology}\n"
                '"$PYTHON" collector.py > "$OUT/after.json"\n')


@pytest.fixture(scope="module")
def run(module_lab: KernelLab) -> LabRun:
    files = {"runtime.py": RUNTIME, "collector.py": COLLECTOR, "server.py": SERVER,
             "client.py": HTTP_CLIENT, "lo.json": json.dumps(LOOPBACK),
             "vlan-c1.json": json.dumps(VLAN_NET)}
    for mode in MODES:
        for i in range(2):
            files[f"ipvlan-{mode}-c{i + 1}.json"] = json.dumps(ipvlan_net(mode, i))
    for name in ("cni-ipvlan.yaml", "cni-vlan.yaml"):
        files[name] = (REPO_ROOT / "topologies" / name).read_text()
    steps = [step(case) for case in CASES for step in (cni_step, netdecl_step)]
    # eight builds, each with netdecl or the plugins, a dozen Python processes, in UML
    return dataclasses.replace(module_lab, timeout=900).run(steps, files=files)


def state(run: LabRun, step: str, name: str) -> dict[str, Any]:
    return normalise(run[step].json[name], macs=set(NIC_MACS.values()))


@pytest.mark.parametrize("case", sorted(CASES))
def test_netdecl_builds_what_the_cni_plugin_builds(run: LabRun, case: str) -> None:
    run[f"cni-{case}"].ok()
    run[f"netdecl-{case}"].ok()
    before = state(run, f"cni-{case}", "before")
    assert differences(state(run, f"netdecl-{case}", "before"), before) == []
    found = differences(state(run, f"netdecl-{case}", "built"),
                        state(run, f"cni-{case}", "built"))
    assert found == [], "netdecl's build (first) and the plugins' differ:\n" + "\n".join(found)


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_same_traffic_goes_through_both(run: LabRun, case: str) -> None:
    for i, (src, ns, to, answered) in enumerate(CASES[case][3]):
        for side in ("cni", "netdecl"):
            got = run[f"{side}-{case}"].json[f"http-{i}"]
            assert got["ok"] == answered, f"{side}: {src} -> {to} ({ns}): {got}"
            if answered:
                assert f"ns={ns} " in got["body"], got


@pytest.mark.parametrize("case", sorted(CASES))
def test_del_and_destroy_leave_the_nics_alone(run: LabRun, case: str) -> None:
    before = state(run, f"cni-{case}", "before")
    for side in ("cni", "netdecl"):
        assert differences(state(run, f"{side}-{case}", "after"), before) == [], side
    # DEL left each container's namespace with its lo only, for the runtime to remove
    for i in range(len(CASES[case][2])):
        left = run[f"cni-{case}"].json[f"left-c{i + 1}"]
        assert [link["ifname"] for link in left] == ["lo"]

