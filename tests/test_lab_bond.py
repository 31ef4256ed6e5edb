"""kind: bond in the kernel lab (this machine's kernel has no bonding): two of the host's NICs
(`kind: external`, veths here) in an 802.3ad bond, facing a "switch" namespace with its own
802.3ad bond made by hand. One boot for the module; the tests judge what the steps left.

What it proves: LACP comes up with the switch (its partner MAC in /proc/net/bonding/bond0,
the independent eye with `ip -j -d link`); HTTP crosses the bond both ways, and still does with
one member down; lacp_rate changes in place (same ifindex; the plan says the bond goes down
for it); a new mode makes a new bond, the plan says so and the NICs join it again; destroy gives
the NICs back their master (none), state (eth2 was down) and MTU (eth1 had 1400).
"""

from __future__ import annotations

from typing import Any

import pytest
from harness import HTTP_CLIENT, SERVER
from kernellab import KernelLab, LabRun, Step

pytestmark = pytest.mark.lab("bonding", "veth")

TOPOLOGY = """\
version: 1
name: bondlab
links:
  - {name: eth1, kind: external, master: bond0}
  - {name: eth2, kind: external, master: bond0}
  - name: bond0
    kind: bond
    bond: BOND
    addresses: [10.70.0.1/24]
"""
LACP = "{mode: 802.3ad, miimon: 100, lacp_rate: RATE, xmit_hash_policy: layer3+4}"
BACKUP = "{mode: active-backup, miimon: 100, primary: eth2}"


def topology(bond: str) -> str:
    return TOPOLOGY.replace("BOND", bond)


# `state NAME`: the links and /proc/net/bonding/bond0 (when there is one) into $OUT/NAME.json
STATE = r"""
state() {
    "$PYTHON" - "$1" <<'PY'
import json, os, subprocess, sys
links = json.loads(subprocess.check_output(["ip", "-j", "-d", "link", "show"]))
try:
    bonding = open("/proc/net/bonding/bond0").read()
except OSError:
    bonding = None
with open(os.path.join(os.environ["OUT"], sys.argv[1] + ".json"), "w") as out:
    json.dump({"links": links, "bonding": bonding}, out)
PY
}
# `lacp_up`: until LACP has both members collecting and distributing at both ends (every
# actor and partner port state in /proc/net/bonding/bond0 has bits 0x10 and 0x20): 30 s at most
lacp_up() {
    "$PYTHON" - <<'PY'
import re, sys, time
for _ in range(300):
    try:
        text = open("/proc/net/bonding/bond0").read()
    except OSError:
        text = ""
    states = [int(s) for s in re.findall(r"port state: (\d+)", text)]
    if len(states) >= 4 and all(s & 0x30 == 0x30 for s in states):
        sys.exit(0)
    time.sleep(0.1)
sys.exit(1)
PY
}
# `http NS ADDRESS CLIENT_NS NAME`: an HTTP server on ADDRESS in NS ("" is the lab's root),
# one GET from CLIENT_NS, its outcome in $OUT/NAME.json
within() { ns=$1; shift; if [ -n "$ns" ]; then ip netns exec "$ns" "$@"; else "$@"; fi; }
http() {
    within "$1" "$PYTHON" server.py "$1" "$2" 80 tcp > "/tmp/$4.server" &
    server=$!
    for _ in $(seq 100); do grep -q ready "/tmp/$4.server" && break; sleep 0.1; done
    within "$3" "$PYTHON" client.py "$2" 80 5 > "$OUT/$4.json"
    kill $server
}
"""

STEPS = [
    Step("switch", STATE + """set -e
ip netns add sw
ip link add eth1 type veth peer name swp1 netns sw
ip link add eth2 type veth peer name swp2 netns sw
ip link set eth1 mtu 1400
ip link set eth1 up
ip -n sw link add swbond type bond mode 802.3ad miimon 100 lacp_rate fast
ip -n sw link set swp1 master swbond
ip -n sw link set swp2 master swbond
ip -n sw link set swbond up
ip -n sw addr add 10.70.0.2/24 dev swbond
state before
"""),
    Step("apply", "netdecl apply lacp.yaml"),
    Step("applied", STATE + "lacp_up; echo lacp=$?; state applied\n"),
    Step("traffic", STATE + """set -e
http "" 10.70.0.1 sw to_host
http sw 10.70.0.2 "" to_switch
"""),
    Step("member-down", STATE + """set -e
ip link set eth1 down
for _ in $(seq 100); do
    grep -A1 "Slave Interface: eth1" /proc/net/bonding/bond0 | grep -q "MII Status: down" && break
    sleep 0.1
done
state one_down
http sw 10.70.0.2 "" http_one_down
ip link set eth1 up
"""),
    Step("plan-same", "netdecl plan --detailed-exitcode lacp.yaml"),
    Step("plan-rate", "netdecl plan lacp-slow.yaml"),
    Step("rate", "netdecl apply lacp-slow.yaml"),
    Step("rated", STATE + "state rated\n"),
    # the new mode's apply fails at its last action (the test hook), after the NICs joined
    # the new bond: the rollback makes the 802.3ad bond again and the NICs join it
    Step("mode-fails", "NETDECL_FAIL_AT=4 netdecl apply backup.yaml"),
    Step("failed", STATE + "ip -j addr show bond0 > $OUT/addresses.json\nstate failed\n"),
    Step("plan-failed", "netdecl plan --detailed-exitcode lacp-slow.yaml"),
    Step("plan-mode", "netdecl plan backup.yaml"),
    Step("mode", "netdecl apply backup.yaml"),
    Step("moded", STATE + "state moded\n"),
    Step("plan-moded", "netdecl plan --detailed-exitcode backup.yaml"),
    Step("destroy", "netdecl destroy backup.yaml"),
    Step("destroyed", STATE + "state destroyed\n"),
]


@pytest.fixture(scope="module")
def run(module_lab: KernelLab) -> LabRun:
    return module_lab.run(STEPS, files={
        "lacp.yaml": topology(LACP.replace("RATE", "fast")),
        "lacp-slow.yaml": topology(LACP.replace("RATE", "slow")),
        "backup.yaml": topology(BACKUP),
        "server.py": SERVER, "client.py": HTTP_CLIENT})


def links(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {link["ifname"]: link for link in state["links"]}


def bond_data(state: dict[str, Any]) -> dict[str, Any]:
    info = links(state)["bond0"]["linkinfo"]
    assert info["info_kind"] == "bond"
    return info["info_data"]


def test_the_nics_are_in_an_lacp_bond_with_the_switch(run: LabRun) -> None:
    run["switch"].ok()
    run["apply"].ok()
    applied = run["applied"]
    assert "lacp=0" in applied.ok(), run["applied"].json["applied"]["bonding"]
    state = applied.json["applied"]
    data = bond_data(state)
    assert (data["mode"], data["miimon"], data["ad_lacp_rate"], data["xmit_hash_policy"]) == (
        "802.3ad", 100, "fast", "layer3+4")
    found = links(state)
    for nic in ("eth1", "eth2"):
        assert found[nic]["master"] == "bond0" and "UP" in found[nic]["flags"], found[nic]
        assert "ifalias" not in found[nic]  # the host's NICs carry no mark of netdecl's
    bonding = state["bonding"]
    assert "Bonding Mode: IEEE 802.3ad Dynamic link aggregation" in bonding
    assert "Slave Interface: eth1" in bonding and "Slave Interface: eth2" in bonding
    assert "LACP rate: fast" in bonding


def test_http_crosses_the_bond_both_ways_and_with_one_member_down(run: LabRun) -> None:
    traffic = run["traffic"]
    traffic.ok()
    assert traffic.json["to_host"]["ok"], traffic.json["to_host"]
    assert "client=10.70.0.2" in traffic.json["to_host"]["body"]
    assert traffic.json["to_switch"]["ok"], traffic.json["to_switch"]
    down = run["member-down"]
    down.ok()
    bonding = down.json["one_down"]["bonding"]
    eth1 = bonding.split("Slave Interface: eth1", 1)[1]
    assert eth1.split("\n")[1].strip() == "MII Status: down", bonding
    assert down.json["http_one_down"]["ok"], down.json["http_one_down"]  # over eth2 alone


def test_nothing_to_do_after_apply(run: LabRun) -> None:
    plan = run["plan-same"]
    assert plan.returncode == 0, plan.stdout + plan.stderr


def test_lacp_rate_changes_in_place_with_the_bond_down_for_it(run: LabRun) -> None:
    plan = run["plan-rate"].ok()
    assert "~ link bond0" in plan and "lacp_rate fast -> slow" in plan, plan
    assert "only while the bond is down" in plan and "-/+" not in plan, plan
    run["rate"].ok()
    rated = run["rated"].json["rated"]
    assert bond_data(rated)["ad_lacp_rate"] == "slow"
    assert links(rated)["bond0"]["ifindex"] == links(run["applied"].json["applied"])[
        "bond0"]["ifindex"]
    assert "UP" in links(rated)["bond0"]["flags"]


def test_a_failed_mode_change_rolls_back_to_the_old_bond_with_its_members(run: LabRun) -> None:
    failed = run["mode-fails"]
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "rolled back" in failed.stderr, failed.stderr
    state = run["failed"].json["failed"]
    data = bond_data(state)
    assert (data["mode"], data["ad_lacp_rate"]) == ("802.3ad", "slow")
    found = links(state)
    for nic in ("eth1", "eth2"):
        assert found[nic]["master"] == "bond0" and "UP" in found[nic]["flags"], found[nic]
    (entry,) = run["failed"].json["addresses"]
    assert [a["local"] for a in entry["addr_info"] if a["family"] == "inet"] == ["10.70.0.1"]
    plan = run["plan-failed"]
    assert plan.returncode == 0, plan.stdout + plan.stderr


def test_a_new_mode_makes_a_new_bond_and_the_nics_join_it_again(run: LabRun) -> None:
    plan = run["plan-mode"].ok()
    assert "-/+ link bond0" in plan and "no members and down" in plan, plan
    assert "~ external link eth1" in plan and "joins bond0 again" in plan, plan
    assert "~ external link eth2" in plan, plan
    run["mode"].ok()
    moded = run["moded"].json["moded"]
    data = bond_data(moded)
    assert (data["mode"], data["primary"]) == ("active-backup", "eth2")
    found = links(moded)
    assert found["eth1"]["master"] == "bond0" and found["eth2"]["master"] == "bond0"
    assert "Currently Active Slave: eth2" in moded["bonding"], moded["bonding"]
    assert found["bond0"]["ifindex"] != links(run["failed"].json["failed"])["bond0"]["ifindex"]
    assert run["plan-moded"].returncode == 0, run["plan-moded"].stdout


def test_destroy_gives_the_nics_back_as_they_were(run: LabRun) -> None:
    run["destroy"].ok()
    before = links(run["switch"].json["before"])
    after = links(run["destroyed"].json["destroyed"])
    assert "bond0" not in after and run["destroyed"].json["destroyed"]["bonding"] is None
    for nic in ("eth1", "eth2"):
        assert after[nic].get("master") is None, after[nic]
        assert after[nic]["mtu"] == before[nic]["mtu"], nic
        assert ("UP" in after[nic]["flags"]) == ("UP" in before[nic]["flags"]), nic
        assert after[nic]["address"] == before[nic]["address"], nic
    assert before["eth1"]["mtu"] == 1400 and "UP" not in before["eth2"]["flags"]
