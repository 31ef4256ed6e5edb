"""`verify host-a.yaml` runs its own cross-host probe (it refused it: "not an address of
this topology").

The two halves of the overlay, each applied on its own "machine" (tests/test_overlay.py's
make_machines: namespaces joined by a veth LAN). pod-a1's probe goes to pod-b1, which only
host-b.yaml declares: verify on machine A sends real traffic across the overlay, and the
server in pod-b1 (the independent eye) sees pod-a1's own address. Without a program
listening on the other machine, the probe fails: it proves the answer, not the file.
"""

from __future__ import annotations

import json
from pathlib import Path

from test_overlay import HOST_A, HOST_B, make_machines, on_machine


def verify_json(host, machine: str, path: str) -> tuple[int, dict]:
    result = on_machine(host, machine, "verify", "--json", "--timeout", "3", path)
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)


def test_a_host_file_verifies_its_probe_to_the_other_hosts_pod(host, tmp_path: Path):
    make_machines(host)
    try:
        for machine, path in (("hosta", HOST_A), ("hostb", HOST_B)):
            result = on_machine(host, machine, "apply", path)
            assert result.returncode == 0, f"{machine}:\n{result.stdout}\n{result.stderr}"

        server = host.start_server("pod-b1", 80)
        code, data = verify_json(host, "hosta", HOST_A)
        assert code == 0, data
        (probe,) = data["probes"]
        assert (probe["ok"], probe["result"], probe["outside"]) == (
            True, "reachable", "10.244.0.0/16"), probe
        assert probe["delivered_to"] is None and "left from 10.244.1.2" in probe["detail"]
        server.stop()

        # the same probe over UDP, whose echo server notes every datagram's source
        udp = tmp_path / "host-a-udp.yaml"
        udp.write_text(Path(HOST_A).read_text().replace("port: 80,", "port: 53, proto: udp,"))
        echo = host.start_server("pod-b1", 53, proto="udp")
        code, data = verify_json(host, "hosta", str(udp))
        assert code == 0, data
        assert echo.seen_sources() == ["10.244.1.2"]
        # a `source` the probe did not leave from fails, saying where it was checked
        udp.write_text(udp.read_text().replace("source: 10.244.1.2", "source: 10.244.1.9"))
        code, data = verify_json(host, "hosta", str(udp))
        assert code == 1, data
        assert "expected source 10.244.1.9 (checked at the sending end" in \
            data["probes"][0]["detail"]
        echo.stop()

        # nothing listens in pod-a1: B's probe to it reaches the machine but is refused
        code, data = verify_json(host, "hostb", HOST_B)
        assert code == 1, data
        (probe,) = data["probes"]
        assert (probe["ok"], probe["result"]) == (False, "blocked")
        assert "refused" in probe["detail"]
    finally:
        for machine, path in (("hosta", HOST_A), ("hostb", HOST_B)):
            on_machine(host, machine, "destroy", path)
