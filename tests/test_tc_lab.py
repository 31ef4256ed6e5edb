"""netem on a kernel that has it: the kernel lab (tests/kernellab.py; this machine's kernel
has no sch_netem). One boot for the module.

Two namespaces joined by a veth whose `a` end delays what it sends by 40 ms. A TCP connect
from `a` to `b` takes one round trip, so its time is the declared delay (and a little). An
established connection is kept open while netdecl changes the delay to 80 ms: the change is
made in place (the link's ifindex and the qdisc's handle stay), the connection carries data
afterwards (no reset), and connects now take 80 ms. The step leaves its measurements and
`tc -j`'s account in $OUT; the tests here judge them.
"""

from __future__ import annotations

import pytest
from kernellab import KernelLab, LabRun, Step

pytestmark = pytest.mark.lab("veth", "sch_netem")

TOPOLOGY = """\
version: 1
name: netemlab
namespaces:
  a: {}
  b: {}
links:
  - name: va
    kind: veth
    namespace: a
    addresses: [10.62.0.1/24]
    netem: {delay: DELAY}
    peer: {name: vb, namespace: b, addresses: [10.62.0.2/24]}
"""


def measure() -> None:
    """Runs in the lab: connect times, a connection held across the change, tc's account."""
    import json
    import os
    import socket
    import subprocess
    import threading
    import time

    from netdecl.backends import namespaces

    out = os.environ["OUT"]
    port = 7000

    def listen() -> socket.socket:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("10.62.0.2", port))
        server.listen(64)
        return server

    def echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data)

    def serve(server: socket.socket) -> None:
        while True:
            conn, _ = server.accept()
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    def connect_ms() -> float:
        def once() -> float:
            started = time.monotonic()
            with socket.create_connection(("10.62.0.2", port), timeout=5):
                return (time.monotonic() - started) * 1000
        return min(namespaces.run_in("a", once) for _ in range(5))

    def qdisc() -> dict:
        shown = subprocess.run(["ip", "netns", "exec", "a", "tc", "-j", "qdisc", "show",
                                "dev", "va"], capture_output=True, text=True, check=True)
        return next(q for q in json.loads(shown.stdout) if q.get("root"))

    def ifindex() -> int:
        shown = subprocess.run(["ip", "-n", "a", "-j", "link", "show", "dev", "va"],
                               capture_output=True, text=True, check=True)
        return json.loads(shown.stdout)[0]["ifindex"]

    result: dict = {}
    subprocess.run(["netdecl", "apply", "topo40.yaml"], check=True)
    server = namespaces.run_in("b", listen)
    threading.Thread(target=serve, args=(server,), daemon=True).start()
    result["rtt40"] = connect_ms()
    result["qdisc40"], result["ifindex40"] = qdisc(), ifindex()
    held = namespaces.run_in("a", lambda: socket.create_connection(("10.62.0.2", port), 5))
    held.sendall(b"before")
    result["echo_before"] = held.recv(64).decode()
    change = subprocess.run(["netdecl", "apply", "topo80.yaml"], capture_output=True,
                            text=True)
    result["apply80"] = [change.returncode, change.stdout, change.stderr]
    try:
        held.sendall(b"after")
        result["echo_after"] = held.recv(64).decode()
    except OSError as exc:
        result["echo_after"] = f"error: {exc}"
    held.close()
    result["rtt80"] = connect_ms()
    result["qdisc80"], result["ifindex80"] = qdisc(), ifindex()
    plan = subprocess.run(["netdecl", "plan", "--detailed-exitcode", "topo80.yaml"])
    result["plan_after"] = plan.returncode
    destroy = subprocess.run(["netdecl", "destroy", "topo80.yaml"])
    result["destroy"] = destroy.returncode
    with open(os.path.join(out, "result.json"), "w") as f:
        json.dump(result, f)


GEMODEL = """\
version: 1
name: gelab
namespaces:
  c: {}
  d: {}
links:
  - name: vc
    kind: veth
    namespace: c
    addresses: [10.64.0.1/24]
    netem: {loss_model: {gemodel: {p: 5%, r: 50%}}}
    peer: {name: vd, namespace: d, addresses: [10.64.0.2/24]}
"""


def bursty() -> None:
    """Runs in the lab: 3000 numbered datagrams through a Gilbert-Elliott loss model."""
    import json
    import os
    import socket
    import struct
    import subprocess
    import time

    from netdecl.backends import namespaces

    out: dict = {}
    subprocess.run(["netdecl", "apply", "ge.yaml"], check=True)
    shown = subprocess.run(["ip", "netns", "exec", "c", "tc", "-j", "qdisc", "show", "dev",
                            "vc"], capture_output=True, text=True, check=True)
    out["tc"] = json.loads(shown.stdout)
    out["plan"] = subprocess.run(["netdecl", "plan", "--detailed-exitcode", "ge.yaml"]
                                 ).returncode
    receiver = namespaces.run_in("d", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    receiver.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)  # SO_RCVBUFFORCE: lose nothing here
    receiver.bind(("10.64.0.2", 9000))
    sender = namespaces.run_in("c", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    for number in range(3000):
        sender.sendto(struct.pack("!I", number), ("10.64.0.2", 9000))
        if number % 100 == 99:
            time.sleep(0.01)
    receiver.settimeout(2.0)
    got = set()
    try:
        while True:
            got.add(struct.unpack("!I", receiver.recv(64))[0])
    except TimeoutError:
        pass
    out["received"] = sorted(got)
    out["destroy"] = subprocess.run(["netdecl", "destroy", "ge.yaml"]).returncode
    with open(os.path.join(os.environ["OUT"], "bursty.json"), "w") as f:
        json.dump(out, f)


CHAIN = """\
version: 1
name: chainlab
namespaces:
  e: {}
links:
  - name: ve
    kind: veth
    namespace: e
    netem: {delay: 40ms}
    shaping: {egress: {rate: 10mbit, burst: 32kb}}
    peer: {name: vf, namespace: e}
"""



def missing() -> None:
    """Runs in the lab, which has sch_netem but not sch_tbf: the plan names the one that is
    missing (netem, tried first, must not hide it) and nothing is made."""
    import json
    import os
    import subprocess

    plan = subprocess.run(["netdecl", "plan", "chain.yaml"], capture_output=True, text=True)
    apply = subprocess.run(["netdecl", "apply", "chain.yaml"], capture_output=True, text=True)
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    with open(os.path.join(os.environ["OUT"], "missing.json"), "w") as f:
        json.dump({"plan": [plan.returncode, plan.stdout + plan.stderr],
                   "apply": [apply.returncode, apply.stdout + apply.stderr],
                   "namespaces": names}, f)


@pytest.fixture(scope="module")
def run(module_lab: KernelLab) -> LabRun:
    return module_lab.run([Step.python("measure", measure), Step.python("bursty", bursty),
                           Step.python("missing", missing)],
                          files={"topo40.yaml": TOPOLOGY.replace("DELAY", "40ms"),
                                 "topo80.yaml": TOPOLOGY.replace("DELAY", "80ms"),
                                 "ge.yaml": GEMODEL,
                                 "chain.yaml": CHAIN})


def test_the_one_missing_kind_is_named_though_another_was_tried_first(run: LabRun):
    step = run["missing"]
    step.ok()
    found = step.json["missing"]
    code, text = found["plan"]
    lines = [line for line in text.splitlines() if "is not in this kernel" in line]
    assert code == 1 and lines == [
        "conflict: tbf qdisc for egress of e/ve is not in this kernel: module sch_tbf is "
        "missing (modprobe sch_tbf)"], text
    code, text = found["apply"]
    assert code == 1 and "sch_tbf" in text, text
    assert found["namespaces"] == ""  # nothing was made


def test_a_gilbert_elliott_loss_model_loses_in_bursts(run: LabRun):
    step = run["bursty"]
    step.ok()
    found = step.json["bursty"]
    (netem,) = [q for q in found["tc"] if q["kind"] == "netem"]
    model = netem["options"]["loss-gemodel"]
    assert (model["p"], model["r"], model["1-h"], model["1-k"]) == pytest.approx(
        (0.05, 0.5, 1.0, 0.0)), model
    assert found["plan"] == 0 and found["destroy"] == 0  # read back as declared
    received = set(found["received"])
    lost = [n for n in range(3000) if n not in received]
    # the bad state's share is p / (p + r) = 9.1 %; a stay in it lasts 1 / r = 2 packets
    assert 0.05 <= len(lost) / 3000 <= 0.14, len(lost)
    runs = sum(1 for n in lost if n - 1 not in lost)
    assert len(lost) / runs >= 1.5, (len(lost), runs)  # random loss at 9 % would give 1.1


def result(run: LabRun) -> dict:
    step = run["measure"]
    step.ok()
    return step.json["result"]


def test_a_declared_delay_shows_in_the_round_trip(run: LabRun):
    found = result(run)
    assert found["qdisc40"]["kind"] == "netem", found["qdisc40"]
    assert found["qdisc40"]["options"]["delay"]["delay"] == pytest.approx(0.04)
    # one round trip: the 40 ms of a's sending side, plus what the lab's timers add
    assert 40 <= found["rtt40"] < 60, found["rtt40"]


def test_a_new_delay_is_applied_in_place_and_a_connection_survives_it(run: LabRun):
    found = result(run)
    code, stdout, stderr = found["apply80"]
    assert code == 0, stdout + stderr
    assert "~ qdisc egress on a/va: qdisc netem delay 40ms -> netem delay 80ms" in stdout, stdout
    assert "1 to change" in stdout and "to add" in stdout and "0 to add" in stdout, stdout
    assert (found["echo_before"], found["echo_after"]) == ("before", "after")
    assert found["ifindex80"] == found["ifindex40"]
    assert found["qdisc80"]["handle"] == found["qdisc40"]["handle"]
    assert found["qdisc80"]["options"]["delay"]["delay"] == pytest.approx(0.08)
    assert 80 <= found["rtt80"] < 100, found["rtt80"]
    assert found["plan_after"] == 0 and found["destroy"] == 0
