"""Issue 28 under a real systemd: the systemd lab (tests/systemdlab.py) boots this machine's
systemd 252 with NetworkManager and systemd-networkd running, the units installed by
contrib/systemd/install as the README says, and /etc/netdecl and /var/lib/netdecl kept across
two boots like a disk.

Boot 1: /etc/netdecl holds lab.yaml (a bridge, a veth pair into a namespace) and zbad.yaml
(invalid). netdecl-boot applies lab.yaml before network-online.target and fails naming
zbad.yaml's line; NetworkManager and networkd (which has a catch-all .network for names like
netdecl's) leave netdecl's links alone; links they manage (a dummy each, from their own
configuration) are conflicts when a topology declares them; the agent, watching lab.yaml, is
ready (Type=notify), repairs a deleted veth, and `systemctl stop` leaves the host as it is.
Boot 2: lab.yaml changed and zbad.yaml gone: the boot converges to the new file; destroy
removes the links and the unmanaged marks.

Everything is judged from what the lab's own tools said (`ip -j`, `nmcli -t`, `networkctl`,
`systemctl show`, the journal), written to $OUT by the steps.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from kernellab import Step
from systemdlab import SystemdLab, SystemdRun, systemd_unavailable

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(
    systemd_unavailable() is not None, reason=f"systemd lab: {systemd_unavailable()}")]

REPO = Path(__file__).resolve().parent.parent
NETDECL = Path(sys.executable).parent / "netdecl"

LAB = """\
version: 1
name: lab
namespaces:
  ctr: {}
links:
  - {name: br-lab, kind: bridge, addresses: [10.60.0.1/24]}
  - name: veth-lab
    kind: veth
    master: br-lab
    peer: {name: eth0, namespace: ctr, addresses: [10.60.0.2/24]}
"""
LAB_CHANGED = LAB.replace("10.60.0.1/24", "10.61.0.1/24").replace("10.60.0.2/24",
                                                                 "10.61.0.2/24") + \
    "  - {name: br-lab2, kind: bridge}\n"
# line 4, column 11: the schema refuses the kind
BAD = "version: 1\nname: zbad\nlinks:\n  - {name: x0, kind: nonsense}\n"
HELD = """\
version: 1
name: held
links:
  - {name: nm-held, kind: external, mtu: 1400}
  - {name: nd-held, kind: external, mtu: 1400}
"""

AGENT = "netdecl-agent@etc-netdecl-lab.yaml.service"

# Before systemd starts: the units installed the README's way and enabled; NetworkManager
# and networkd each configured to manage a dummy of their own; networkd also given a catch-all
# .network for names like netdecl's, which netdecl's own mark must beat.
PREPARE = f"""
{REPO}/contrib/systemd/install --root "$R" {NETDECL}
W="$R/etc/systemd/system/multi-user.target.wants"
ln -s /etc/systemd/system/netdecl-boot.service "$W/"
ln -s /etc/systemd/system/netdecl-agent@.service "$W/{AGENT}"
mkdir -p "$R/etc/systemd/network" "$R/etc/NetworkManager/system-connections"
printf '[NetDev]\\nName=nd-held\\nKind=dummy\\n' > "$R/etc/systemd/network/50-nd-held.netdev"
printf '[Match]\\nName=nd-held\\n\\n[Network]\\nAddress=10.70.0.1/24\\n' \\
    > "$R/etc/systemd/network/50-nd-held.network"
printf '[Match]\\nName=br-* veth-*\\n\\n[Network]\\nAddress=10.99.0.1/24\\n' \\
    > "$R/etc/systemd/network/99-catchall.network"
nm="$R/etc/NetworkManager/system-connections/nm-held.nmconnection"
printf '[connection]\\nid=nm-held\\ntype=dummy\\ninterface-name=nm-held\\n\\n' > "$nm"
printf '[ipv4]\\nmethod=manual\\naddress1=10.71.0.1/24\\n\\n[ipv6]\\nmethod=disabled\\n' >> "$nm"
chmod 600 "$nm"
# a service that waits for the network, as a database would: what did it find?
cat > "$R/etc/systemd/system/lab-online.service" <<'UNIT'
[Unit]
Wants=network-online.target
After=network-online.target
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'ip -j addr show > /run/lab-online.json'
UNIT
ln -s /etc/systemd/system/lab-online.service "$W/"
"""

# `wait_for WHAT COMMAND...`: up to 60 s (the lab is slow under load), 0.2 s apart;
# `section NAME COMMAND...`: its output on stdout under "== NAME" (the test splits them);
# `show UNIT -p ...`: systemctl show as JSON
WAIT = r"""
wait_for() { what=$1; shift; i=0
    until "$@" > /dev/null 2>&1; do
        i=$((i+1)); [ $i -gt 300 ] && { echo "timeout: $what" >&2; return 1; }; sleep 0.2
    done; }
section() { echo "== $1"; shift; "$@" 2>&1; }
show() { systemctl show "$@" | "$PYTHON" -c 'import json, sys
print(json.dumps(dict(line.rstrip("\n").split("=", 1) for line in sys.stdin if "=" in line)))'; }
"""

BOOT_STEPS = [
    Step("units", WAIT + f"""
wait_for nm-held ip link show nm-held
wait_for nd-held-configured sh -c 'networkctl list --no-legend nd-held | grep -q configured'
show netdecl-boot.service -p ActiveState -p Result -p ExecMainStatus \\
    -p ExecMainExitTimestampMonotonic > "$OUT/boot.json"
show network-online.target -p ActiveEnterTimestampMonotonic > "$OUT/online.json"
cp /run/lab-online.json "$OUT/online_saw.json"
show {AGENT} -p ActiveState -p SubState -p StatusText -p Type -p WatchdogUSec \\
    -p NRestarts > "$OUT/agent.json"
section statedir_mode stat -c %a /var/lib/netdecl
section analyze_verify systemd-analyze verify netdecl-boot.service {AGENT}
"""),
    Step("managers", WAIT + """
ip -j addr show > "$OUT/addresses.json"
section nmcli nmcli -t -f DEVICE,STATE device
section networkctl networkctl list --no-legend --no-pager
section nm_mark cat /run/NetworkManager/conf.d/90-netdecl-lab.conf
section networkd_mark cat /run/systemd/network/00-netdecl-lab.network
section plan_held netdecl plan held.yaml
echo "== plan_held_status"; netdecl plan held.yaml > /dev/null 2>&1; echo $?
"""),
    Step("repair", WAIT + f"""
ip link del veth-lab
wait_for veth-back ip link show veth-lab || exit 1
wait_for in-bridge sh -c 'ip -d link show veth-lab | grep -q "master br-lab"' || exit 1
ip -j -d link show veth-lab > "$OUT/veth.json"
section repaired sh -c 'journalctl -u {AGENT} --no-pager -o cat | grep repaired'
"""),
    Step("stop", WAIT + f"""
ip -j link show > "$OUT/before.json"
section netns_before ls /run/netns
systemctl stop {AGENT}
show {AGENT} -p ActiveState -p Result -p ExecMainStatus > "$OUT/agent.json"
ip -j link show > "$OUT/after.json"
section netns_after ls /run/netns
"""),
]

SECOND_BOOT_STEPS = [
    Step("units", WAIT + """
show netdecl-boot.service -p ActiveState -p Result > "$OUT/boot.json"
ip -j addr show > "$OUT/addresses.json"
ip -n ctr -j addr show > "$OUT/ctr.json"
section nmcli nmcli -t -f DEVICE,STATE device
echo "== plan_status"; netdecl plan --detailed-exitcode /etc/netdecl/lab.yaml > /dev/null; echo $?
"""),
    Step("destroy", WAIT + f"""
systemctl stop {AGENT}  # or it would make the topology again: it keeps lab.yaml applied
netdecl destroy /etc/netdecl/lab.yaml || exit 1
ip -j link show > "$OUT/links.json"
section dropins ls /run/NetworkManager/conf.d /run/systemd/network
"""),
]


def sections(stdout: str) -> dict[str, str]:
    found: dict[str, list[str]] = {}
    current = None
    for line in stdout.splitlines():
        if line.startswith("== "):
            current = line[3:].strip()
            found[current] = []
        elif current is not None:
            found[current].append(line)
    return {name: "\n".join(lines) for name, lines in found.items()}


def _names(links: list[dict]) -> set[str]:
    return {link["ifname"] for link in links}


def _ipv4(addr_json: list[dict], name: str) -> list[str]:
    for link in addr_json:
        if link["ifname"] == name:
            return sorted(f"{a['local']}/{a['prefixlen']}" for a in link["addr_info"]
                          if a["family"] == "inet")
    raise AssertionError(f"no link {name}")


def _states(nmcli: str) -> dict[str, str]:
    return dict(line.split(":", 1) for line in nmcli.splitlines() if ":" in line)


@pytest.fixture(scope="module")
def boots(tmp_path_factory) -> tuple[SystemdRun, SystemdRun]:
    persist = tmp_path_factory.mktemp("disk")
    (persist / "etc").mkdir()
    (persist / "state").mkdir(mode=0o700)
    (persist / "etc" / "lab.yaml").write_text(LAB)
    (persist / "etc" / "zbad.yaml").write_text(BAD)
    lab = SystemdLab(prepare=PREPARE)
    first = lab.run(BOOT_STEPS, files={"held.yaml": HELD}, persist=persist)
    (persist / "etc" / "lab.yaml").write_text(LAB_CHANGED)
    os.unlink(persist / "etc" / "zbad.yaml")
    second = lab.run(SECOND_BOOT_STEPS, persist=persist)
    return first, second


def test_the_boot_unit_applies_before_network_online_and_names_the_bad_file(boots):
    units = boots[0].run["units"]
    units.ok()
    boot, online = units.json["boot"], units.json["online"]
    # one invalid file fails the unit (exit 3), loudly...
    assert (boot["ActiveState"], boot["Result"], boot["ExecMainStatus"]) == \
        ("failed", "exit-code", "3"), boot
    journal = boots[0].journal
    assert "/etc/netdecl/zbad.yaml:4:" in journal, journal[-3000:]
    assert "/etc/netdecl/zbad.yaml: skipped (invalid); the other files are applied" in journal
    assert "/etc/netdecl/lab.yaml: topology lab applied" in journal
    # ...after applying the rest, and before network-online.target was reached
    assert 0 < int(boot["ExecMainExitTimestampMonotonic"]) < \
        int(online["ActiveEnterTimestampMonotonic"]), (boot, online)
    # a service ordered after network-online.target found the topology there
    assert _ipv4(units.json["online_saw"], "br-lab") == ["10.60.0.1/24"]
    out = sections(units.stdout)
    assert out["statedir_mode"] == "700"  # StateDirectoryMode agrees with netdecl
    assert out["analyze_verify"] == "", out["analyze_verify"]


def test_network_manager_and_networkd_leave_netdecls_links_alone(boots):
    step = boots[0].run["managers"]
    step.ok()
    out = sections(step.stdout)
    nm = _states(out["nmcli"])
    assert nm["br-lab"] == "unmanaged" and nm["veth-lab"] == "unmanaged", out["nmcli"]
    assert nm["nm-held"].startswith("connected"), out["nmcli"]  # its own: it manages that
    networkd = {line.split()[1]: line.split()[-1] for line in out["networkctl"].splitlines()}
    assert networkd["br-lab"] == "unmanaged" and networkd["veth-lab"] == "unmanaged", networkd
    assert networkd["nd-held"] == "configured", networkd
    # the catch-all .network that matches br-* never configured netdecl's bridge
    assert _ipv4(step.json["addresses"], "br-lab") == ["10.60.0.1/24"]
    assert "unmanaged-devices+=interface-name:=br-lab;interface-name:=veth-lab" in out["nm_mark"]
    assert "Name=br-lab veth-lab" in out["networkd_mark"]


def test_a_declared_link_they_manage_is_a_conflict_naming_the_manager(boots):
    out = sections(boots[0].run["managers"].stdout)
    assert out["plan_held_status"] == "1"
    assert "link nm-held is managed by NetworkManager" in out["plan_held"], out["plan_held"]
    assert "`nmcli device set nm-held managed no`" in out["plan_held"]
    assert "link nd-held is managed by systemd-networkd" in out["plan_held"]


def test_the_agent_is_ready_under_systemd_and_repairs_a_deleted_link(boots):
    agent = boots[0].run["units"].json["agent"]
    # Type=notify: active (running) only after READY=1, with its status line
    assert (agent["Type"], agent["ActiveState"], agent["SubState"]) == \
        ("notify", "active", "running"), agent
    assert agent["StatusText"] == "first reconcile done; watching for drift"
    assert agent["WatchdogUSec"] == "1min" and agent["NRestarts"] == "0"
    repair = boots[0].run["repair"]
    repair.ok()
    [veth] = repair.json["veth"]
    assert veth["master"] == "br-lab" and veth["ifalias"] == "netdecl:lab"
    assert "lab: repaired" in sections(repair.stdout)["repaired"]


def test_systemctl_stop_leaves_the_host_as_it_is(boots):
    stop = boots[0].run["stop"]
    stop.ok()
    assert (stop.json["agent"]["ActiveState"], stop.json["agent"]["Result"]) == \
        ("inactive", "success"), stop.json["agent"]
    assert _names(stop.json["after"]) == _names(stop.json["before"]) >= {"br-lab", "veth-lab"}
    out = sections(stop.stdout)
    assert out["netns_after"] == out["netns_before"] == "ctr"


def test_a_second_boot_with_a_changed_file_converges_and_destroy_removes_the_marks(boots):
    units = boots[1].run["units"]
    units.ok()
    assert (units.json["boot"]["ActiveState"], units.json["boot"]["Result"]) == \
        ("active", "success"), units.json["boot"]
    assert _ipv4(units.json["addresses"], "br-lab") == ["10.61.0.1/24"]
    assert _ipv4(units.json["ctr"], "eth0") == ["10.61.0.2/24"]
    assert _states(sections(units.stdout)["nmcli"])["br-lab2"] == "unmanaged"
    assert sections(units.stdout)["plan_status"] == "0"
    destroy = boots[1].run["destroy"]
    destroy.ok()
    assert not _names(destroy.json["links"]) & {"br-lab", "br-lab2", "veth-lab"}
    assert "netdecl" not in sections(destroy.stdout)["dropins"]
