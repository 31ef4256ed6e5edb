"""topologies/wan-lab.yaml in the kernel lab (this machine's kernel has no sch_netem): every
figure of the file proven with traffic, and the delay changed under an open connection.

One boot. The step applies the shipped file and measures: TCP connect times across the WAN
(a round trip: the 40 ms +- 5 ms of each end), the loss of 4000 datagrams sent one way
(0.5 %), the rate of a UDP stream sent at half again the cap (20 Mbit/s), the rate a bulk TCP
transfer into the branch gets (its 8 Mbit/s ingress cap). Then the file's delay becomes 80 ms
and is applied while a TCP connection across the WAN is held open: it carries data afterwards,
the link keeps its ifindex, and connects take twice as long. The tests judge what it wrote.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kernellab import KernelLab, LabRun, Step

pytestmark = pytest.mark.lab("veth", "sch_netem", "sch_tbf", "sch_ingress", "ifb", "cls_u32",
                             "act_mirred")

WAN_LAB = (Path(__file__).parent.parent / "topologies" / "wan-lab.yaml").read_text()
GOODPUT = 1448 / 1514  # TCP's payload per frame the tbf counts
UDP_SHARE = 1400 / 1442  # a 1400-byte datagram's share of the frame


def measure() -> None:
    """Runs in the lab."""
    import json
    import os
    import socket
    import statistics
    import struct
    import subprocess
    import threading
    import time

    from netdecl.backends import namespaces

    out = os.environ["OUT"]
    result: dict = {}

    def tcp_server(ns: str, address: str, port: int) -> None:
        def listen() -> socket.socket:
            server = socket.socket()
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind((address, port))
            server.listen(64)
            return server

        def echo(conn: socket.socket) -> None:
            with conn:
                while data := conn.recv(1 << 16):
                    if data.startswith(b"echo"):
                        conn.sendall(data)

        server = namespaces.run_in(ns, listen)

        def serve() -> None:
            while True:
                conn, _ = server.accept()
                threading.Thread(target=echo, args=(conn,), daemon=True).start()

        threading.Thread(target=serve, daemon=True).start()

    def connect_times(ns: str, address: str, port: int, n: int = 10) -> list[float]:
        def once() -> float:
            started = time.monotonic()
            with socket.create_connection((address, port), timeout=10):
                return (time.monotonic() - started) * 1000
        return [namespaces.run_in(ns, once) for _ in range(n)]

    def udp_stream(src: str, dst: str, address: str, count: int, size: int,
                   per_batch: int, every: float) -> dict:
        """``count`` datagrams of ``size`` bytes, ``per_batch`` every ``every`` seconds."""
        receiver = namespaces.run_in(dst, lambda: socket.socket(socket.AF_INET,
                                                                socket.SOCK_DGRAM))
        receiver.bind((address, 9000))
        receiver.settimeout(2.0)
        # the lab is slow and shared: a queue deep enough that a late reader loses nothing,
        # and the kernel's arrival times, not the reader's
        receiver.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE
        receiver.setsockopt(socket.SOL_SOCKET, 35, 1)  # SO_TIMESTAMPNS
        seen: dict = {"got": 0, "bytes": 0, "first": None, "last": None}

        def receive() -> None:
            while True:
                try:
                    data, ancillary, _flags, _peer = receiver.recvmsg(65536, 64)
                except TimeoutError:
                    return
                now = time.monotonic()
                for level, kind, raw in ancillary:
                    if (level, kind) == (socket.SOL_SOCKET, 35) and len(raw) >= 16:
                        sec, nsec = struct.unpack("qq", raw[:16])
                        now = sec + nsec / 1e9
                seen["first"] = seen["first"] or now
                seen["last"] = now
                seen["got"] += 1
                seen["bytes"] += len(data)

        thread = threading.Thread(target=receive)
        thread.start()
        sender = namespaces.run_in(src, lambda: socket.socket(socket.AF_INET,
                                                              socket.SOCK_DGRAM))
        payload = b"x" * size
        started = time.monotonic()
        for i in range(count):
            sender.sendto(payload, (address, 9000))
            if i % per_batch == per_batch - 1:
                time.sleep(max(0.0, started + (i + 1) / per_batch * every - time.monotonic()))
        thread.join()
        receiver.close()
        sender.close()
        span = (seen["last"] or 0) - (seen["first"] or 0)
        return {"sent": count, "got": seen["got"], "bytes": seen["bytes"], "seconds": span}

    def bulk(src: str, dst: str, address: str, size: int) -> float:
        def listen() -> socket.socket:
            server = socket.socket()
            server.bind((address, 9100))
            server.listen(1)
            return server

        server = namespaces.run_in(dst, listen)
        got: dict = {}

        def receive() -> None:
            conn, _ = server.accept()
            total, first = 0, None
            while data := conn.recv(1 << 16):
                first = first or time.monotonic()
                total += len(data)
            got["rate"] = total / (time.monotonic() - first)

        thread = threading.Thread(target=receive)
        thread.start()

        def send() -> None:
            with socket.create_connection((address, 9100), timeout=30) as conn:
                conn.sendall(b"x" * size)

        namespaces.run_in(src, send)
        thread.join(120)
        server.close()
        return got["rate"]

    def wan_ifindex() -> int:
        shown = subprocess.run(["ip", "-n", "site-a", "-j", "link", "show", "dev", "wan0"],
                               capture_output=True, text=True, check=True)
        return json.loads(shown.stdout)[0]["ifindex"]

    def tc_show(ns: str, dev: str) -> list:
        shown = subprocess.run(["ip", "netns", "exec", ns, "tc", "-j", "qdisc", "show", "dev",
                                dev], capture_output=True, text=True, check=True)
        return json.loads(shown.stdout)

    applied = subprocess.run(["netdecl", "apply", "wan-lab.yaml"], capture_output=True,
                             text=True)
    result["apply"] = [applied.returncode, applied.stdout, applied.stderr]
    result["tc_wan"] = tc_show("site-a", "wan0")
    tcp_server("site-b", "10.70.0.2", 7000)
    times = connect_times("site-a", "10.70.0.2", 7000)
    result["rtt40"] = {"min": min(times), "median": statistics.median(times)}
    result["loss"] = udp_stream("site-a", "site-b", "10.70.0.2", 4000, 64, 100, 0.05)
    result["rate"] = udp_stream("site-a", "site-b", "10.70.0.2", 6000, 1400, 26, 0.01)
    result["branch"] = bulk("site-b", "branch", "10.72.0.2", 2_000_000)
    verify = subprocess.run(["netdecl", "verify", "--json", "wan-lab.yaml"],
                            capture_output=True, text=True)
    result["verify"] = [verify.returncode, verify.stdout, verify.stderr]

    index = wan_ifindex()
    held = namespaces.run_in("site-a", lambda: socket.create_connection(("10.70.0.2", 7000),
                                                                          10))
    held.sendall(b"echo-before")
    result["echo_before"] = held.recv(64).decode()
    with open("wan-lab.yaml") as f:
        slower = f.read().replace("delay: 40ms", "delay: 80ms")
    with open("wan-lab-80.yaml", "w") as f:
        f.write(slower)
    change = subprocess.run(["netdecl", "apply", "wan-lab-80.yaml"], capture_output=True,
                            text=True)
    result["apply80"] = [change.returncode, change.stdout, change.stderr]
    try:
        held.sendall(b"echo-after")
        result["echo_after"] = held.recv(64).decode()
    except OSError as exc:
        result["echo_after"] = f"error: {exc}"
    held.close()
    result["same_link"] = wan_ifindex() == index
    times = connect_times("site-a", "10.70.0.2", 7000)
    result["rtt80"] = {"min": min(times), "median": statistics.median(times)}
    result["destroy"] = subprocess.run(["netdecl", "destroy", "wan-lab-80.yaml"]).returncode
    with open(os.path.join(out, "result.json"), "w") as f:
        json.dump(result, f)


# a failed apply that changed the WAN's netem (under its tbf): the rollback puts back every
# stage of the chain, not only the root
ROLLBACK = """set -e
netdecl apply wan-lab.yaml > /dev/null
ip netns exec site-a tc -j qdisc show dev wan0 > "$OUT/before.json"
sed 's/delay: 40ms/delay: 80ms/; s/^routes:/sysctls: {net.ipv4.ip_forward: 1}\\nroutes:/' \\
    wan-lab.yaml > wan-lab-broken.yaml
last=$(netdecl plan --json wan-lab-broken.yaml | "$PYTHON" -c \\
    'import json, sys; print(len(json.load(sys.stdin)["actions"]))')
if NETDECL_FAIL_AT=$last netdecl apply wan-lab-broken.yaml > "$OUT/failed.txt" 2>&1; then
    exit 9
fi
ip netns exec site-a tc -j qdisc show dev wan0 > "$OUT/after.json"
netdecl destroy wan-lab.yaml > /dev/null
"""


@pytest.fixture(scope="module")
def run(module_lab: KernelLab) -> LabRun:
    return module_lab.run([Step.python("measure", measure), Step("rollback", ROLLBACK)],
                          files={"wan-lab.yaml": WAN_LAB})


def test_a_failed_apply_puts_back_the_netem_under_the_tbf(run: LabRun):
    step = run["rollback"]
    step.ok()
    before, after = step.json["before"], step.json["after"]
    netem = [q for q in after if q["kind"] == "netem"]
    assert netem and netem[0]["options"]["delay"]["delay"] == pytest.approx(0.04), after
    assert [{k: v for k, v in q.items() if k != "refcnt"} for q in after] == \
        [{k: v for k, v in q.items() if k != "refcnt"} for q in before]


@pytest.fixture(scope="module")
def found(run: LabRun) -> dict:
    step = run["measure"]
    step.ok()
    result = step.json["result"]
    code, stdout, stderr = result["apply"]
    assert code == 0, stdout + stderr
    return result


def test_the_wan_is_a_shaper_over_netem_as_declared(found: dict):
    by_kind = {q["kind"]: q for q in found["tc_wan"]}
    assert by_kind["tbf"]["root"] and by_kind["tbf"]["options"]["rate"] == 2_500_000
    netem = by_kind["netem"]["options"]
    assert netem["delay"]["delay"] == pytest.approx(0.04)
    assert netem["delay"]["jitter"] == pytest.approx(0.005)
    assert netem["loss-random"]["loss"] == pytest.approx(0.005, rel=1e-3)
    assert by_kind["netem"]["parent"] == by_kind["tbf"]["handle"] + "1"


def test_the_round_trip_holds_both_ends_delays(found: dict):
    # 40 ms +- 5 ms each way: a round trip of at least 2 x 35 ms, typically 80 ms
    assert found["rtt40"]["min"] >= 70, found["rtt40"]
    assert found["rtt40"]["median"] < 110, found["rtt40"]


def test_the_loss_is_half_a_percent(found: dict):
    loss = 1 - found["loss"]["got"] / found["loss"]["sent"]
    # 4000 datagrams at 0.5 %: 20 expected lost, 4.5 the standard deviation
    assert 0.001 <= loss <= 0.015, found["loss"]


def test_the_wan_rate_is_capped_at_20_mbit(found: dict):
    rate = found["rate"]
    assert rate["got"] < 0.9 * rate["sent"], rate  # sent at half again the cap: some dropped
    measured = rate["bytes"] / rate["seconds"]
    assert abs(measured / (2_500_000 * UDP_SHARE) - 1) < 0.15, rate


def test_the_branch_receives_at_8_mbit(found: dict):
    assert abs(found["branch"] / (1_000_000 * GOODPUT) - 1) < 0.15, found["branch"]


def test_verify_passes_and_holds_the_probes_to_the_declared_delays(found: dict):
    code, stdout, stderr = found["verify"]
    assert code == 0, stdout + stderr
    probes = json.loads(stdout)["probes"]
    # site-a -> site-b and branch -> site-a both cross the WAN: (40 - 5) ms each way
    assert [p["declared_rtt"] for p in probes] == [0.07, 0.07], probes
    assert all(p["ok"] and p["seconds"] >= 0.07 for p in probes), probes


def test_the_delay_becomes_80_ms_in_place_under_an_open_connection(found: dict):
    code, stdout, stderr = found["apply80"]
    assert code == 0, stdout + stderr
    assert "0 to add, 2 to change, 0 to destroy" in stdout, stdout
    assert (found["echo_before"], found["echo_after"]) == ("echo-before", "echo-after")
    assert found["same_link"]
    assert found["rtt80"]["min"] >= 150, found["rtt80"]
    assert found["destroy"] == 0
