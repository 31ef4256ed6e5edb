"""A netem delay distribution and verify's loss measurement, on a kernel that has netem (the
kernel lab, tests/kernellab.py). One boot for the module.

* ``spread``: 200 sequential UDP round trips through a 40 ms ± 10 ms netem with
  ``distribution: normal``, then after an in-place change to 60 ms (the table is sent again
  with the change), then with the distribution dropped (a new netem, grafted: the kernel
  keeps a table across changes). Uniform jitter has a standard deviation of jitter/√3
  (5.8 ms here), iproute2's normal table one of jitter (10 ms), and uniform jitter never
  goes below delay - jitter where the normal table's tail does: the samples must show it.
* ``loss``: `verify --measure` on a link with 3 % loss passes, and fails once the netem's loss
  is taken away by hand (a measurement that cannot fail proves nothing).

Each step leaves its figures and `tc -j`'s account in $OUT; the tests here judge them.
"""

from __future__ import annotations

import statistics

import pytest
from kernellab import KernelLab, LabRun, Step

pytestmark = pytest.mark.lab("veth", "sch_netem")

SPREAD = """\
version: 1
name: spreadlab
namespaces:
  a: {}
  b: {}
links:
  - name: va
    kind: veth
    namespace: a
    addresses: [10.65.0.1/24]
    netem: {delay: DELAY, jitter: 10ms DIST}
    peer: {name: vb, namespace: b, addresses: [10.65.0.2/24]}
"""

LOSS = """\
version: 1
name: losslab
namespaces:
  c: {}
  d: {}
links:
  - name: vc
    kind: veth
    namespace: c
    addresses: [10.66.0.1/24]
    netem: {loss: 3%}
    peer: {name: vd, namespace: d, addresses: [10.66.0.2/24]}
probes:
  - {from: c, to: 10.66.0.2}
"""


def spread() -> None:
    """Runs in the lab: round-trip samples under each of the three declarations."""
    import json
    import os
    import socket
    import subprocess
    import threading
    import time

    from netdecl.backends import namespaces

    def echo_server() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("10.65.0.2", 7001))
        return sock

    def serve(sock: socket.socket) -> None:
        while True:
            data, peer = sock.recvfrom(64)
            sock.sendto(data, peer)

    def samples() -> list[float]:
        client = namespaces.run_in("a", lambda: socket.socket(socket.AF_INET,
                                                              socket.SOCK_DGRAM))
        client.settimeout(2)
        out = []
        for number in range(200):
            started = time.monotonic()
            client.sendto(number.to_bytes(4, "big"), ("10.65.0.2", 7001))
            while int.from_bytes(client.recv(64), "big") != number:
                pass
            out.append((time.monotonic() - started) * 1000)
        client.close()
        return out

    def root_qdisc() -> dict:
        shown = subprocess.run(["ip", "netns", "exec", "a", "tc", "-j", "qdisc", "show", "dev",
                                "va"], capture_output=True, text=True, check=True)
        return next(q for q in json.loads(shown.stdout) if q.get("root"))

    def apply(name: str) -> list:
        done = subprocess.run(["netdecl", "apply", name], capture_output=True, text=True)
        plan = subprocess.run(["netdecl", "plan", "--detailed-exitcode", name])
        return [done.returncode, done.stdout + done.stderr, plan.returncode]

    result: dict = {}
    for phase, name in (("normal40", "normal40.yaml"), ("normal60", "normal60.yaml"),
                        ("uniform60", "uniform60.yaml")):
        result[phase] = {"apply": apply(name), "qdisc": root_qdisc()}
        if phase == "normal40":
            server = namespaces.run_in("b", echo_server)
            threading.Thread(target=serve, args=(server,), daemon=True).start()
        result[phase]["rtt"] = samples()
    result["destroy"] = subprocess.run(["netdecl", "destroy", "uniform60.yaml"]).returncode
    with open(os.path.join(os.environ["OUT"], "spread.json"), "w") as f:
        json.dump(result, f)


def loss() -> None:
    """Runs in the lab: verify --measure as declared, then with the loss taken away."""
    import json
    import os
    import subprocess

    def verify() -> list:
        done = subprocess.run(["netdecl", "verify", "--measure", "--json", "loss.yaml"],
                              capture_output=True, text=True)
        return [done.returncode, done.stdout, done.stderr]

    out: dict = {"apply": subprocess.run(["netdecl", "apply", "loss.yaml"]).returncode}
    out["declared"] = verify()
    shown = subprocess.run(["ip", "netns", "exec", "c", "tc", "-j", "qdisc", "show", "dev",
                            "vc"], capture_output=True, text=True, check=True)
    out["tc"] = json.loads(shown.stdout)
    handle = next(q for q in out["tc"] if q.get("root"))["handle"]
    subprocess.run(["ip", "netns", "exec", "c", "tc", "qdisc", "change", "dev", "vc", "root",
                    "handle", handle, "netem", "loss", "0%"], check=True)
    out["taken_away"] = verify()
    out["destroy"] = subprocess.run(["netdecl", "destroy", "loss.yaml"]).returncode
    with open(os.path.join(os.environ["OUT"], "loss.json"), "w") as f:
        json.dump(out, f)


@pytest.fixture(scope="module")
def run(module_lab: KernelLab) -> LabRun:
    normal = SPREAD.replace(" DIST", ", distribution: normal")
    # 600 round trips of 40-60 ms, four applies and a few seconds of datagrams: more than the
    # default two minutes for a lab under load
    module_lab.timeout = 600.0
    return module_lab.run([Step.python("spread", spread), Step.python("loss", loss)],
                          files={"normal40.yaml": normal.replace("DELAY", "40ms"),
                                 "normal60.yaml": normal.replace("DELAY", "60ms"),
                                 "uniform60.yaml": SPREAD.replace(" DIST", "")
                                 .replace("DELAY", "60ms"),
                                 "loss.yaml": LOSS})


def phases(run: LabRun) -> dict:
    step = run["spread"]
    step.ok()
    return step.json["spread"]


def test_a_normal_distribution_spreads_the_delay_as_its_table_says(run: LabRun):
    found = phases(run)
    for phase in ("normal40", "normal60", "uniform60"):
        code, text, plan = found[phase]["apply"]
        assert code == 0 and plan == 0, (phase, text)  # and read back as declared
    normal40, normal60, uniform = (found[p]["rtt"] for p in ("normal40", "normal60",
                                                             "uniform60"))
    assert 38 <= statistics.median(normal40) < 50, statistics.median(normal40)
    assert 58 <= statistics.median(normal60) < 70, statistics.median(normal60)
    # The lab's timers fire late, never early (its ticks add up to 10 ms to a delay), so the
    # spread is judged below the declared range, where only a shape with tails can put a
    # packet: uniform jitter never goes under delay - jitter; iproute2's normal table (σ =
    # jitter) puts 16 % of packets more than 1 σ under the delay, of which the lab's late
    # ticks leave about 6 % (12 of 200) under delay - jitter: 3 is 2.9 binomial σ below.
    early40, early60 = sum(r < 29.5 for r in normal40), sum(r < 49.5 for r in normal60)
    assert early40 >= 3, sorted(normal40)[:30]
    assert early60 >= 3, sorted(normal60)[:30]
    assert min(uniform) >= 49.5, sorted(uniform)[:10]
    print(f"under delay - jitter: normal40 {early40}/200, normal60 {early60}/200, uniform60 "
          f"{sum(r < 49.5 for r in uniform)}/200")
    spreads = [statistics.stdev(rtts) for rtts in (normal40, normal60, uniform)]
    print("stdev normal40 {:.1f} normal60 {:.1f} uniform60 {:.1f}".format(*spreads))


def test_the_distribution_survives_a_change_in_place_and_goes_by_a_graft(run: LabRun):
    found = phases(run)
    code, text, _ = found["normal60"]["apply"]
    assert "~ qdisc egress on a/va: qdisc netem distribution normal delay 40ms jitter 10ms " \
        "-> netem distribution normal delay 60ms jitter 10ms" in text, text
    assert found["normal60"]["qdisc"]["handle"] == found["normal40"]["qdisc"]["handle"]
    # dropping the table takes a new netem (the kernel keeps a table across changes)
    assert found["uniform60"]["qdisc"]["handle"] != found["normal60"]["qdisc"]["handle"]
    assert found["uniform60"]["qdisc"]["kind"] == "netem"
    assert found["destroy"] == 0


def test_verify_measure_holds_the_declared_loss_and_fails_without_it(run: LabRun):
    step = run["loss"]
    step.ok()
    found = step.json["loss"]
    assert found["apply"] == 0 and found["destroy"] == 0
    code, stdout, stderr = found["declared"]
    assert code == 0, stdout + stderr
    import json

    (probe,) = json.loads(stdout)["probes"]
    loss = probe["measured"]["loss"]
    # 3 %: N = 25 / p = 834 datagrams; 4 binomial σ (4.9 each) either side of 25
    assert loss["sent"] == 834 and loss["bounds"] == [6, 44], loss
    assert loss["bounds"][0] <= loss["lost"] <= loss["bounds"][1], loss
    code, stdout, stderr = found["taken_away"]
    assert code == 1, stdout + stderr
    (probe,) = json.loads(stdout)["probes"]
    assert not probe["ok"] and probe["measured"]["loss"]["lost"] < 6, probe
