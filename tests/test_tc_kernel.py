"""Traffic control on this machine's kernel (it has tbf but not netem): a declared egress rate
measured with a bulk TCP transfer, changed in place (same link, same qdisc handle), a
hand-set qdisc on an external link recorded and put back by destroy and by a failed apply's
rollback, and a plan needing netem refused naming the module, with nothing changed.

The independent eye is `tc -j qdisc show`; the rate is what a receiver counts.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_rollback import state_files

BULK = str(Path(__file__).with_name("tcbulk.py"))
# TCP's payload per 1514-byte frame a tbf counts on a veth (1448 with timestamps)
GOODPUT = 1448 / 1514
TOLERANCE = 0.15

TOPOLOGY = """\
version: 1
name: tcrate
namespaces:
  a: {}
  b: {}
links:
  - name: va
    kind: veth
    namespace: a
    addresses: [10.61.0.1/24]
    shaping:
      egress: {rate: RATE, burst: 32kb}
    peer: {name: vb, namespace: b, addresses: [10.61.0.2/24]}
"""


def write(tmp_path: Path, text: str, name: str = "tc.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def netdecl_ok(host, *args: str, **kwargs: Any) -> str:
    result = host.netdecl(*args, **kwargs)
    assert result.returncode == 0, f"{args}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def qdiscs(host, dev: str, ns: str | None = None) -> list[dict[str, Any]]:
    return json.loads(host.run(["tc", "-j", "qdisc", "show", "dev", dev], ns=ns).stdout)


def root(host, dev: str, ns: str | None = None) -> dict[str, Any]:
    (found,) = [q for q in qdiscs(host, dev, ns) if q.get("root")]
    return found


def goodput(host, src: str, dst: str, address: str, size: int) -> float:
    """Bytes per second a receiver in ``dst`` counts from a bulk sender in ``src``."""
    out = host.run([sys.executable, BULK, src, dst, address, str(size)], timeout=90).stdout
    result = json.loads(out)
    assert result["bytes"] == size, result
    return result["bytes"] / result["seconds"]


def ifindex(host, dev: str, ns: str) -> int:
    (link,) = host.ip_json("link", "show", "dev", dev, ns=ns)
    return link["ifindex"]


def test_an_egress_rate_is_measured_and_changed_in_place(host, tmp_path: Path):
    netdecl_ok(host, "apply", write(tmp_path, TOPOLOGY.replace("RATE", "20mbit")))
    found = root(host, "va", "a")
    assert (found["kind"], found["options"]["rate"]) == ("tbf", 2_500_000), found
    handle, index = found["handle"], ifindex(host, "va", "a")
    measured = goodput(host, "a", "b", "10.61.0.2", 3_000_000)
    assert abs(measured / (2_500_000 * GOODPUT) - 1) < TOLERANCE, measured
    # the other way is not shaped: far faster than the cap
    assert goodput(host, "b", "a", "10.61.0.1", 3_000_000) > 3 * 2_500_000

    path = write(tmp_path, TOPOLOGY.replace("RATE", "40000000"))  # bits/s, as CNI gives it
    plan = netdecl_ok(host, "plan", path)
    assert "~ qdisc egress on a/va: qdisc tbf rate 20mbit" in plan, plan
    assert "-> tbf rate 40mbit" in plan and "1 to change" in plan, plan
    netdecl_ok(host, "apply", path)
    found = root(host, "va", "a")
    # changed in place: the same qdisc (handle) on the same link (ifindex)
    assert (found["handle"], found["options"]["rate"]) == (handle, 5_000_000), found
    assert ifindex(host, "va", "a") == index
    measured = goodput(host, "a", "b", "10.61.0.2", 6_000_000)
    assert abs(measured / (5_000_000 * GOODPUT) - 1) < TOLERANCE, measured
    assert "No changes" in netdecl_ok(host, "plan", path)
    shown = yaml.safe_load(netdecl_ok(host, "show", "--namespace", "a"))
    (entry,) = [e for e in shown["links"] if e["name"] == "va"]
    assert entry["shaping"]["egress"]["rate"] == "40mbit", entry

    # no longer declared: the kernel's default comes back, on the same link
    plain = TOPOLOGY.replace("    shaping:\n      egress: {rate: RATE, burst: 32kb}\n", "")
    plain_path = write(tmp_path, plain)
    netdecl_ok(host, "apply", plain_path)
    assert root(host, "va", "a")["kind"] == "noqueue"
    assert ifindex(host, "va", "a") == index
    netdecl_ok(host, "destroy", plain_path)


EXTERNAL = """\
version: 1
name: tcext
sysctls: {net.ipv4.conf.all.forwarding: 1}
links:
  - name: ext0
    kind: external
    shaping:
      egress: {rate: 8mbit, burst: 64kb, latency: 40ms}
"""


def hand_set(host) -> dict[str, Any]:
    host.run(["ip", "link", "add", "ext0", "type", "veth", "peer", "name", "ext1"])
    host.run(["tc", "qdisc", "add", "dev", "ext0", "root", "handle", "1:", "pfifo",
              "limit", "77"])
    before = root(host, "ext0")
    assert (before["kind"], before["handle"], before["options"]["limit"]) == ("pfifo", "1:", 77)
    return before


def test_a_hand_set_qdisc_is_recorded_and_put_back_by_destroy(host, tmp_path: Path):
    before = hand_set(host)
    path = write(tmp_path, EXTERNAL)
    netdecl_ok(host, "apply", path)
    found = root(host, "ext0")
    assert found["kind"] == "tbf" and found["options"]["rate"] == 1_000_000, found
    # latency 40ms at 1 MB/s plus the 64 KiB bucket: the queue tc would have computed
    (fifo,) = [q for q in qdiscs(host, "ext0") if q["kind"] == "bfifo"]
    assert fifo["options"]["limit"] == 40_000 + 65_536
    netdecl_ok(host, "destroy", path)
    assert root(host, "ext0") == before
    assert state_files(host) == []


def test_a_failed_apply_puts_the_hand_set_qdisc_back(host, tmp_path: Path):
    before = hand_set(host)
    # a route through ext0: an action the plan orders after the qdisc, made to fail
    path = write(tmp_path, EXTERNAL.replace("    kind: external\n",
                                            "    kind: external\n"
                                            "    addresses: [10.99.0.1/24]\n")
                 + "routes:\n  - {to: 10.98.0.0/24, via: 10.99.0.9, dev: ext0}\n")
    plan = netdecl_ok(host, "plan", path)
    actions = [line.strip() for line in plan.splitlines() if line.startswith("    ")]
    qdisc = actions.index("~ qdisc egress on ext0: qdisc pfifo -> tbf rate 8mbit burst 64kb "
                          "limit 105536") + 1
    assert actions[qdisc:] and actions[qdisc].startswith("+ route"), plan
    failed = host.netdecl("apply", path, env={"NETDECL_FAIL_AT": str(qdisc + 1)})
    text = failed.stdout + failed.stderr
    assert failed.returncode != 0 and f"the {qdisc} action(s) done before the failure were " \
        "undone" in text and "create route" in text, text
    assert root(host, "ext0") == before
    assert host.sysctl("net.ipv4.conf.all.forwarding") == "0"
    assert host.ip_json("addr", "show", "dev", "ext0")[0]["addr_info"] == []


def test_a_qdisc_kind_the_kernel_lacks_is_refused_at_plan_naming_its_module(
        host, tmp_path: Path):
    netem = TOPOLOGY.replace("    shaping:\n      egress: {rate: RATE, burst: 32kb}\n",
                             "    netem: {delay: 40ms}\n")
    before = host.snapshot()
    result = host.netdecl("plan", write(tmp_path, netem))
    assert result.returncode == 1, result
    lines = [line for line in result.stdout.splitlines() if "sch_netem" in line]
    assert len(lines) == 1 and "netem qdisc for egress of a/va" in lines[0], result.stdout
    failed = host.netdecl("apply", write(tmp_path, netem))
    assert failed.returncode == 1 and "sch_netem" in failed.stdout + failed.stderr
    assert host.snapshot() == before


INGRESS = """\
version: 1
name: tcin
namespaces:
  a: {}
  b: {}
links:
  - name: va
    kind: veth
    namespace: a
    addresses: [10.63.0.1/24]
    shaping:
      ingress: {rate: 16000000, burst: 262144}   # bits/s and bits, as CNI takes them
    peer: {name: vb, namespace: b, addresses: [10.63.0.2/24]}
"""


def test_an_ingress_rate_is_shaped_on_an_ifb_as_the_cni_plugin_does(host, tmp_path: Path):
    path = write(tmp_path, INGRESS)
    plan = netdecl_ok(host, "plan", path)
    (ifb,) = [line.split("a/")[1].split(" ")[0] for line in plan.splitlines()
              if "(ifb)" in line]
    assert f"+ qdisc ingress on a/va (redirect to {ifb})" in plan, plan
    netdecl_ok(host, "apply", path)
    # the independent eye: ingress qdisc + match-all u32 filter redirecting to the ifb, whose
    # root is the tbf (2 MB/s, a 32 KiB bucket)
    on_link = qdiscs(host, "va", "a")
    assert [q["kind"] for q in on_link if q.get("parent") == "ffff:fff1"] == ["ingress"]
    filters = json.loads(host.run(["tc", "-j", "filter", "show", "dev", "va", "ingress"],
                                  ns="a").stdout)
    actions = [a for f in filters for a in f.get("options", {}).get("actions", [])]
    assert [(a["kind"], a["to_dev"], a["mirred_action"]) for a in actions] == [
        ("mirred", ifb, "redirect")], filters
    shaper = root(host, ifb, "a")
    assert (shaper["kind"], shaper["options"]["rate"], shaper["options"]["burst"]) == (
        "tbf", 2_000_000, 32_768), shaper
    # what va receives (b sends) is capped; what it sends is not
    measured = goodput(host, "b", "a", "10.63.0.1", 3_000_000)
    assert abs(measured / (2_000_000 * GOODPUT) - 1) < TOLERANCE, measured
    assert goodput(host, "a", "b", "10.63.0.2", 3_000_000) > 3 * 2_000_000

    # show writes it back as the file says it, without the ifb the loader derives
    shown = yaml.safe_load(netdecl_ok(host, "show", "--namespace", "a"))
    (entry,) = [e for e in shown["links"] if e["name"] == "va"]
    assert entry["shaping"] == {"ingress": {"rate": "16mbit", "burst": "32768b"}}, entry
    assert [e["name"] for e in shown["links"]] == ["va"]

    # explain names what shapes the packet where it crosses
    explained = host.netdecl("explain", "--from", "b", "10.63.0.1:80", path)
    assert f"[a] va ingress: redirect to {ifb}, shaped there by tbf rate 16mbit burst 32kb" \
        in explained.stdout, explained.stdout

    netdecl_ok(host, "destroy", path)
    assert host.netns_list() == []
    assert state_files(host) == []  # nothing left to put back: no record at all


def test_a_foreign_ingress_qdisc_is_a_conflict_at_plan(host, tmp_path: Path):
    host.run(["ip", "link", "add", "up0", "type", "veth", "peer", "name", "up1"])
    host.run(["tc", "qdisc", "add", "dev", "up0", "ingress"])
    theirs = qdiscs(host, "up0")
    assert "ingress" in [q["kind"] for q in theirs]
    text = "version: 1\nname: tcfor\nlinks:\n  - name: up0\n    kind: external\n" \
           "    shaping: {ingress: {rate: 10mbit, burst: 64kb}}\n"
    before = host.snapshot()
    result = host.netdecl("plan", write(tmp_path, text))
    assert result.returncode == 1, result
    assert "up0 already has an ingress qdisc (ingress) that topology tcfor did not make" \
        in result.stdout, result.stdout
    assert host.netdecl("apply", write(tmp_path, text)).returncode == 1
    assert host.snapshot() == before
    assert qdiscs(host, "up0") == theirs


def test_the_agent_puts_back_a_qdisc_changed_or_deleted_by_hand(host, tmp_path: Path):
    from agentproc import AgentProcess, wait_until

    path = write(tmp_path, TOPOLOGY.replace("RATE", "20mbit"))
    with AgentProcess(host, path) as agent:
        agent.wait_for("started")
        agent.wait_for("applied", lambda e: e["reason"] == "start")
        handle = root(host, "va", "a")["handle"]
        for rate in ("1mbit", "2mbit"):
            # a rate changed in place by hand: only a qdisc event says so (no link changes);
            # the first may be caught by the agent's look when it starts watching the new
            # namespaces, the second only by the event
            host.run(["tc", "qdisc", "change", "dev", "va", "root", "handle", handle, "tbf",
                      "rate", rate, "burst", "32kb", "latency", "25ms"], ns="a")
            repaired = agent.wait_for("repaired", lambda e, rate=rate: f"tbf rate {rate}"
                                      in " ".join(e["actions"]))
            assert root(host, "va", "a")["options"]["rate"] == 2_500_000
        assert repaired["trigger"] == "RTM_NEWQDISC in a", repaired
        host.run(["tc", "qdisc", "del", "dev", "va", "root"], ns="a")
        wait_until(lambda: root(host, "va", "a")["kind"] == "tbf", 10.0, "the tbf back")
        assert agent.stop() == 0


CNI_BANDWIDTH = "/usr/lib/cni/bandwidth"
# what the CNI bandwidth plugin calls ingress is what the container receives: the host end's
# egress; its egress is what the container sends: the host end's ingress, through an ifb
CNI_RATES = {"ingressRate": 16_000_000, "ingressBurst": 262_144,
             "egressRate": 8_000_000, "egressBurst": 131_072}
NETDECL_LIKE_CNI = """\
version: 1
name: likecni
namespaces:
  c2: {}
links:
  - name: vhost2
    kind: veth
    shaping:
      egress: {rate: 16000000, burst: 262144}
      ingress: {rate: 8000000, burst: 131072}
    peer: {name: eth0, namespace: c2}
"""


def _tc_state(host, dev: str) -> dict[str, Any]:
    """What the shaping of a host-side veth is, in tc's own words, without the names and
    handles that differ by who made it."""
    on_link = qdiscs(host, dev)
    (shaper,) = [q for q in on_link if q.get("root")]
    assert [q["kind"] for q in on_link if q.get("parent") == "ffff:fff1"] == ["ingress"]
    filters = json.loads(host.run(["tc", "-j", "filter", "show", "dev", dev, "ingress"]).stdout)
    (match,) = [f for f in filters if "actions" in f.get("options", {})]
    first = match["options"]["actions"][0]
    ifb = first["to_dev"]
    return {
        "egress": (shaper["kind"], shaper["options"]["rate"], shaper["options"]["lat"]),
        "egress burst": shaper["options"]["burst"],
        "filter": (match["kind"], match["protocol"], match["pref"],
                   match["options"]["match"], first["kind"], first["mirred_action"],
                   first["direction"], first["control_action"]),
        "ifb": (root(host, ifb)["kind"], root(host, ifb)["options"]["rate"],
                root(host, ifb)["options"]["lat"]),
        "ifb burst": root(host, ifb)["options"]["burst"],
    }


def test_shaping_is_what_the_cni_bandwidth_plugin_builds(host, tmp_path: Path):
    if not Path(CNI_BANDWIDTH).exists():
        pytest.skip(f"{CNI_BANDWIDTH} is missing (apt-get install containernetworking-plugins)")
    host.run(["ip", "netns", "add", "c1"])
    host.run(["ip", "link", "add", "vhost1", "type", "veth", "peer", "name", "eth0", "netns",
              "c1"])
    host.run(["ip", "link", "set", "vhost1", "up"])
    host.run(["ip", "-n", "c1", "link", "set", "eth0", "up"])
    config = {"cniVersion": "0.4.0", "name": "bw", "type": "bandwidth", **CNI_RATES,
              "prevResult": {"cniVersion": "0.4.0", "ips": [], "interfaces": [
                  {"name": "vhost1"}, {"name": "eth0", "sandbox": "/run/netns/c1"}]}}
    host.run([CNI_BANDWIDTH], input=json.dumps(config), env={
        "CNI_COMMAND": "ADD", "CNI_CONTAINERID": "netdecl-test", "CNI_NETNS": "/run/netns/c1",
        "CNI_IFNAME": "eth0", "CNI_PATH": "/usr/lib/cni"})
    netdecl_ok(host, "apply", write(tmp_path, NETDECL_LIKE_CNI))
    cni, ours = _tc_state(host, "vhost1"), _tc_state(host, "vhost2")
    # the bucket: CNI hands the kernel the time to send it, netdecl the bytes (TCA_TBF_BURST);
    # tc prints each back from the kernel's ticks, a byte apart at most
    for burst in ("egress burst", "ifb burst"):
        assert abs(cni.pop(burst) - ours.pop(burst)) <= 1, burst
    assert ours == cni


HTB = TOPOLOGY.replace("{rate: RATE, burst: 32kb}",
                       "{kind: htb, rate: RATE, ceil: CEIL, burst: 32kb}")


def htb_class(host, dev: str, ns: str | None = None) -> list[str]:
    """tc's own words for the link's classes (tc has no JSON for htb classes)."""
    out = host.run(["tc", "class", "show", "dev", dev], ns=ns).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def test_an_htb_is_one_class_measured_changed_in_place_and_rolled_back(host, tmp_path: Path):
    netdecl_ok(host, "apply", write(tmp_path, HTB.replace("RATE", "20mbit")
                                    .replace("CEIL", "30mbit")))
    found = root(host, "va", "a")
    assert (found["kind"], found["options"]["default"]) == ("htb", "0x1"), found
    handle, index = found["handle"], ifindex(host, "va", "a")
    (cls,) = htb_class(host, "va", "a")
    assert cls.startswith(f"class htb {handle}1 root") and "rate 20Mbit ceil 30Mbit burst 32Kb" \
        in cls, cls
    # one class has no parent to borrow from: the link sends at its rate, not its ceil
    measured = goodput(host, "a", "b", "10.61.0.2", 3_000_000)
    assert abs(measured / (2_500_000 * GOODPUT) - 1) < TOLERANCE, measured

    path = write(tmp_path, HTB.replace("RATE", "40mbit").replace("CEIL", "40mbit"), "40.yaml")
    plan = netdecl_ok(host, "plan", path)
    assert "~ qdisc egress on a/va: qdisc htb rate 20mbit ceil 30mbit" in plan, plan
    assert "-> htb rate 40mbit ceil 40mbit" in plan and "1 to change" in plan, plan
    netdecl_ok(host, "apply", path)
    # in place: the same root qdisc (handle) on the same link, its class changed
    assert root(host, "va", "a")["handle"] == handle and ifindex(host, "va", "a") == index
    (cls,) = htb_class(host, "va", "a")
    assert "rate 40Mbit ceil 40Mbit" in cls, cls
    measured = goodput(host, "a", "b", "10.61.0.2", 6_000_000)
    assert abs(measured / (5_000_000 * GOODPUT) - 1) < TOLERANCE, measured
    assert "No changes" in netdecl_ok(host, "plan", path)
    shown = yaml.safe_load(netdecl_ok(host, "show", "--namespace", "a"))
    (entry,) = [e for e in shown["links"] if e["name"] == "va"]
    assert entry["shaping"]["egress"] == {"kind": "htb", "rate": "40mbit", "ceil": "40mbit",
                                          "burst": "32768b", "cburst": "1600b"}, entry

    # drift: the class changed by hand is seen, and put back in place
    host.run(["tc", "class", "change", "dev", "va", "parent", handle, "classid", f"{handle}1",
              "htb", "rate", "1mbit"], ns="a")
    plan = netdecl_ok(host, "plan", path)
    assert "~ qdisc egress on a/va: qdisc htb rate 1mbit" in plan, plan
    netdecl_ok(host, "apply", path)
    assert "rate 40Mbit ceil 40Mbit" in htb_class(host, "va", "a")[0]
    assert root(host, "va", "a")["handle"] == handle

    # a failed apply puts the class back exactly as it was (its rate and buckets)
    before = htb_class(host, "va", "a")
    failing = write(tmp_path, HTB.replace("RATE", "10mbit").replace("CEIL", "10mbit")
                    + "routes:\n  - {namespace: a, to: 10.98.0.0/24, via: 10.61.0.2}\n",
                    "failing.yaml")
    plan = netdecl_ok(host, "plan", failing)
    actions = [line.strip() for line in plan.splitlines() if line.startswith("    ")]
    assert actions[0].startswith("~ qdisc egress on a/va: qdisc htb rate 40mbit") \
        and actions[1].startswith("+ route"), plan
    failed = host.netdecl("apply", failing, env={"NETDECL_FAIL_AT": "2"})
    assert failed.returncode != 0 and "the 1 action(s) done before the failure were undone" \
        in failed.stdout + failed.stderr, failed.stdout + failed.stderr
    assert htb_class(host, "va", "a") == before
    assert root(host, "va", "a")["handle"] == handle

    # from htb to tbf and back: grafted in one step, the link the same
    netdecl_ok(host, "apply", write(tmp_path, TOPOLOGY.replace("RATE", "20mbit"), "tbf.yaml"))
    assert root(host, "va", "a")["kind"] == "tbf"
    assert not any(c.startswith("class htb") for c in htb_class(host, "va", "a"))
    netdecl_ok(host, "apply", path)
    assert root(host, "va", "a")["kind"] == "htb" and ifindex(host, "va", "a") == index
    netdecl_ok(host, "destroy", path)


def test_show_writes_an_htb_it_can_say_and_names_one_it_cannot(host, tmp_path: Path):
    host.run(["ip", "link", "add", "h1", "type", "veth", "peer", "name", "h2"])
    host.run(["ip", "link", "add", "h3", "type", "veth", "peer", "name", "h4"])
    for dev in ("h1", "h3"):
        host.run(["tc", "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default",
                  "1"])
        host.run(["tc", "class", "add", "dev", dev, "parent", "1:", "classid", "1:1", "htb",
                  "rate", "5mbit", "ceil", "8mbit", "burst", "8kb"])
    # a second class: more than the file can say
    host.run(["tc", "class", "add", "dev", "h3", "parent", "1:1", "classid", "1:10", "htb",
              "rate", "1mbit"])
    out = netdecl_ok(host, "show")
    assert "qdisc htb 1: (root) on link h3: the file cannot say it" in out, out
    assert "on link h1" not in out, out
    shown = yaml.safe_load(out)
    (entry,) = [e for e in shown["links"] if e["name"] == "h1"]
    egress = entry["shaping"]["egress"]
    assert (egress["kind"], egress["rate"], egress["ceil"], egress["burst"]) == \
        ("htb", "5mbit", "8mbit", "8192b"), entry
    (other,) = [e for e in shown["links"] if e["name"] == "h3"]
    assert "shaping" not in other, other


MEASURED = TOPOLOGY.replace("{rate: RATE, burst: 32kb}", "SHAPER") + \
    "probes:\n  - {from: a, to: 10.61.0.2}\n"


@pytest.mark.parametrize("shaper", ["{rate: 20mbit, burst: 32kb}",
                                    "{kind: htb, rate: 20mbit, ceil: 30mbit}"])
def test_verify_measure_holds_the_declared_rate_to_a_bulk_transfer(host, tmp_path: Path,
                                                                   shaper: str):
    path = write(tmp_path, MEASURED.replace("SHAPER", shaper))
    netdecl_ok(host, "apply", path)
    plain = json.loads(netdecl_ok(host, "verify", "--json", path))
    assert "measured" not in plain["probes"][0], plain  # opt-in: costs seconds
    result = json.loads(netdecl_ok(host, "verify", "--measure", "--json", path))
    (probe,) = result["probes"]
    rate = probe["measured"]["rate"]
    assert probe["ok"] and rate["at"] == "a/va egress", probe
    assert abs(rate["measured_payload_bits"] / rate["expected_payload_bits"] - 1) < 0.15, rate
    assert "loss" not in probe["measured"], probe  # none declared: none measured

    # the kernel made slower by hand than the file says: the measurement fails the probe
    if "htb" in shaper:
        handle = root(host, "va", "a")["handle"]
        host.run(["tc", "class", "change", "dev", "va", "parent", handle, "classid",
                  f"{handle}1", "htb", "rate", "5mbit"], ns="a")
    else:
        host.run(["tc", "qdisc", "change", "dev", "va", "root", "handle",
                  root(host, "va", "a")["handle"], "tbf", "rate", "5mbit", "burst", "32kb",
                  "latency", "25ms"], ns="a")
    failed = host.netdecl("verify", "--measure", path)
    assert failed.returncode == 1 and "FAIL" in failed.stdout and "rate " in failed.stdout, \
        failed.stdout + failed.stderr
    netdecl_ok(host, "destroy", path)
