"""topologies/wireguard-pair.yaml and wireguard-pair-node2.yaml, each applied on its own
"machine" in a kernel that has WireGuard (Debian's, under qemu: tests/qemulab.py; neither this
machine's kernel nor the user-mode Linux lab has it). One boot.

The machines are namespaces joined by a veth LAN (each one's eth0, declared kind external).
The test proves with HTTP between the inner addresses that the tunnel carries traffic, with
`wg show` (wireguard-tools, not netdecl) that the devices hold the keys, port and peers the
files and key files say, with a capture on the LAN that only UDP to the listen port crossed
it, that a new key in the same file is applied in place (the same ifindex, `wg` sees the new
public key) and traffic still flows, that no private or preshared key is in anything netdecl
printed or kept (stdout, stderr, the state dir mid-apply with its journal, a saved plan), and
that destroy leaves nothing of netdecl's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import HTTP_CLIENT, SERVER

qemulab = pytest.importorskip("qemulab", reason="tests/qemulab.py (the qemu lab) is not here")

from labcore import LabRun, Step  # noqa: E402  (after the skip: labcore comes with qemulab)

pytestmark = pytest.mark.kernel

TOPOLOGIES = Path(__file__).resolve().parent.parent / "topologies"
FILES = {"m1": "wireguard-pair.yaml", "m2": "wireguard-pair-node2.yaml"}
PORT = 51820

# `on MACHINE ARGS...`: netdecl in the machine's namespace with its own state dir and key
# directory, given the other machine's public key
ON = r"""
other() { [ "$1" = m1 ] && echo m2 || echo m1; }
on() {
    m=$1; shift
    NETDECL_STATE_DIR=/var/lib/netdecl/$m nsenter --net=/run/netns/$m netdecl "$@" \
        --var key_dir=/tmp/keys/$m --var lan=eth0 \
        --var peer_public_key="$(wg pubkey < /tmp/keys/$(other $m)/wg0.key)"
}
"""
WG_SHOW = """set -e
for m in m1 m2; do
    ip netns exec $m wg show wg0 dump > "/tmp/wg_$m.dump"
    ip -n $m -j -d link show wg0 > "$OUT/link_$m.json"
    "$PYTHON" rows.py < "/tmp/wg_$m.dump" > "$OUT/wg_$m.json"
done
"""
# lines of stdin as JSON, each split at tabs (`wg show dump`: the device's line, then a peer's)
ROWS = "import json, sys\nprint(json.dumps([l.rstrip('\\n').split('\\t') for l in sys.stdin]))\n"
SECRETS = r"""set -e
# every key file's content: what must never be printed or kept
printf '{"private": ["%s", "%s", "%s"]}' "$(cat /tmp/keys/m1/wg0.key)" \
    "$(cat /tmp/keys/m2/wg0.key)" "$(cat /tmp/keys/m1/old.key)" > "$OUT/secrets.json"
"""

STEPS = [
    Step("machines", """set -e
ip netns add m1
ip netns add m2
ip link add eth0 netns m1 type veth peer name eth0 netns m2
ip -n m1 addr add 192.168.1.11/24 dev eth0
ip -n m2 addr add 192.168.1.12/24 dev eth0
for m in m1 m2; do
    ip -n $m link set lo up
    # no IPv6 on the LAN: the capture below then holds what WireGuard sends, and ARP, only
    ip netns exec $m sysctl -qw net.ipv6.conf.eth0.disable_ipv6=1
    ip -n $m link set eth0 up
    mkdir -p /tmp/keys/$m
    (umask 077; wg genkey > /tmp/keys/$m/wg0.key)
done
cp /tmp/keys/m1/wg0.key /tmp/keys/m1/old.key
printf '{"m1": "%s", "m2": "%s"}' "$(wg pubkey < /tmp/keys/m1/wg0.key)" \
    "$(wg pubkey < /tmp/keys/m2/wg0.key)" > "$OUT/public.json"
"""),
    Step("refused", ON + """
chmod 644 /tmp/keys/m1/wg0.key
on m1 apply m1.yaml; echo "exit $?"
chmod 600 /tmp/keys/m1/wg0.key
ip -n m1 -j link show > "$OUT/links.json"
"""),
    Step("apply", ON + """set -e
on m1 plan m1.yaml
on m1 plan --out /tmp/m1.plan m1.yaml > /dev/null
cp /tmp/m1.plan saved.plan
on m1 apply /tmp/m1.plan
on m2 apply m2.yaml
"""),
    Step("applied", WG_SHOW),
    Step("traffic", r"""set -e
ip netns exec m2 "$PYTHON" server.py m2 10.99.0.2 80 tcp > /tmp/server &
for _ in $(seq 100); do grep -q ready /tmp/server && break; sleep 0.1; done
ip netns exec m1 tcpdump -i eth0 -n -w /tmp/lan.pcap -U 2> /tmp/tcpdump.err &
dump=$!
for _ in $(seq 100); do grep -q listening /tmp/tcpdump.err && break; sleep 0.1; done
ip netns exec m1 "$PYTHON" client.py 10.99.0.2 80 5 > "$OUT/http.json"
sleep 0.5
kill -INT $dump; wait $dump || true
# every packet on the LAN, one line each (no name resolution)
ip netns exec m1 tcpdump -n -r /tmp/lan.pcap 2>/dev/null | "$PYTHON" rows.py > "$OUT/lan.json"
"""),
    Step("plan", ON + "set -e\non m1 plan --detailed-exitcode m1.yaml\n"
                      "on m2 plan --detailed-exitcode m2.yaml\n"),
    Step("rekey", ON + r"""set -e
(umask 077; wg genkey > /tmp/keys/m1/wg0.key.new)
mv /tmp/keys/m1/wg0.key.new /tmp/keys/m1/wg0.key
on m1 plan m1.yaml || true
# held open by --confirm-timeout, the journal is on disk: look into every state file then
on m1 apply --confirm-timeout 600 m1.yaml > /tmp/rekey.out 2>&1 &
apply=$!
for _ in $(seq 6000); do grep -q "Waiting" /tmp/rekey.out && break; sleep 0.1; done
mkdir -p /tmp/state-copy && cp -r /var/lib/netdecl/m1 /tmp/state-copy/
NETDECL_STATE_DIR=/var/lib/netdecl/m1 netdecl confirm
wait $apply
cat /tmp/rekey.out
# m2 learns m1's new public key
on m2 apply m2.yaml
"""),
    Step("rekeyed", WG_SHOW + r"""
ip netns exec m2 "$PYTHON" server.py m2 10.99.0.2 80 tcp > /tmp/server2 &
for _ in $(seq 300); do grep -q ready /tmp/server2 && break; sleep 0.1; done
ip netns exec m1 "$PYTHON" client.py 10.99.0.2 80 5 > "$OUT/http.json"
"""),
    Step("show", """set -e
NETDECL_STATE_DIR=/var/lib/netdecl/m1 nsenter --net=/run/netns/m1 netdecl show --name shown \
    --namespace root
"""),
    Step("secrets", SECRETS),
    Step("state", """set -e
# what netdecl keeps: every state file (the copy made while the journal existed), as text
find /var/lib/netdecl /tmp/state-copy -type f | sort | while read -r f; do
    echo "== $f"; cat "$f"; echo
done
"""),
    Step("destroy", ON + "set -e\non m1 destroy m1.yaml\non m2 destroy m2.yaml\n"
         """for m in m1 m2; do ip -n $m -j link show > "$OUT/links_$m.json"; done\n"""
         """ls -A /var/lib/netdecl/m1 /var/lib/netdecl/m2 || true\n"""),
]


@pytest.fixture(scope="module")
def run() -> Iterator[LabRun]:
    reason = qemulab.unavailable(["wireguard", "veth"])
    if reason:
        pytest.skip(reason)
    files = {f"{m}.yaml": (TOPOLOGIES / name).read_text() for m, name in FILES.items()}
    # (fourteen netdecl runs on an emulated CPU: minutes, more on a loaded machine)
    yield qemulab.QemuLab(["wireguard", "veth"], timeout=1500.0).run(
        STEPS, files={**files, "server.py": SERVER, "client.py": HTTP_CLIENT,
                   "rows.py": ROWS})


def wg_device(run: LabRun, step: str, m: str) -> tuple[list[str], list[list[str]]]:
    """`wg show wg0 dump`: the device's line (private key, public key, port, fwmark) and
    one per peer (public key, preshared key, endpoint, allowed ips, ...)."""
    rows = run[step].json[f"wg_{m}"]
    return rows[0], rows[1:]


def test_a_key_file_others_can_read_is_refused_and_nothing_changes(run: LabRun) -> None:
    out = run["refused"].ok()
    err = run["refused"].stderr
    assert "exit 3" in out, (out, err)
    assert "/tmp/keys/m1/wg0.key: is accessible by group or others (mode 0644)" in err
    assert not [link for link in run["refused"].json["links"] if link["ifname"] == "wg0"]


def test_each_device_is_as_its_file_and_key_file_say(run: LabRun) -> None:
    run["apply"].ok()
    public = run["machines"].json["public"]
    for m, other, peer_ip in (("m1", "m2", "10.99.0.2/32"), ("m2", "m1", "10.99.0.1/32")):
        device, peers = wg_device(run, "applied", m)
        assert device[1] == public[m] and device[2] == str(PORT)
        [peer] = peers
        assert peer[0] == public[other] and peer[3] == peer_ip
        assert peer[2] == f"192.168.1.1{other[1]}:{PORT}" and peer[7] == "25"
        [link] = run["applied"].json[f"link_{m}"]
        assert link["linkinfo"]["info_kind"] == "wireguard" and link["mtu"] == 1420
        assert link["ifalias"].startswith("netdecl:")


def test_http_between_the_inner_addresses_crosses_the_lan_only_as_udp_to_the_port(
        run: LabRun) -> None:
    traffic = run["traffic"]
    traffic.ok()
    got = traffic.json["http"]
    assert got["ok"] and "client=10.99.0.1" in got["body"], got
    lan = [row[0] for row in traffic.json["lan"]]
    assert lan, "the capture saw nothing"
    udp = 0
    for line in lan:  # "12:00:00.000 IP 192.168.1.11.51820 > 192.168.1.12.51820: UDP, ..."
        assert "10.99.0." not in line, line  # the inner addresses never in the clear
        proto = line.split()[1]
        if proto.startswith("ARP") or (proto == "IP6" and "ICMP6" in line):
            continue  # the LAN's own chatter (ARP, IPv6 neighbour discovery and MLD), whenever
            # the kernel sends it: not what the tunnel carries
        ends = line.split(" IP ", 1)[-1].split(":", 1)[0]
        src, _, dst = ends.partition(" > ")
        udp += 1
        assert "UDP" in line and (src.endswith(f".{PORT}") or dst.endswith(f".{PORT}")), line
    assert udp >= 6, lan  # the handshake-free TCP exchange: at least SYN..FIN both ways


def test_a_second_plan_on_each_machine_has_nothing_to_do(run: LabRun) -> None:
    assert run["plan"].ok().count("No changes") == 2


def test_a_new_key_is_applied_in_place_and_traffic_still_flows(run: LabRun) -> None:
    rekey = run["rekey"].ok()
    assert "public_key" in rekey and "-/+" not in rekey, rekey
    before = run["applied"].json["link_m1"][0]["ifindex"]
    after = run["rekeyed"].json["link_m1"][0]["ifindex"]
    assert before == after
    device, _ = wg_device(run, "rekeyed", "m1")
    old, _ = wg_device(run, "applied", "m1")
    assert device[1] != old[1]
    assert device[1] in rekey  # the plan names the new key by its public key
    assert run["rekeyed"].json["http"]["ok"]


def test_no_key_is_in_anything_netdecl_printed_or_kept(run: LabRun) -> None:
    keys = [k for k in run["secrets"].json["secrets"]["private"] if k]
    assert len(set(keys)) == 3  # m1's first and second key, m2's
    state = run["state"].ok()
    assert "journal" in state, "the state copy was made without the journal"
    texts = [state] + [r.stdout + r.stderr for r in run.steps.values()]
    for text in texts:
        for key in keys:
            assert key not in text and key.rstrip("=") not in text


def test_show_names_the_key_file_not_the_key(run: LabRun) -> None:
    shown = run["show"].ok()
    assert "kind: wireguard" in shown and "private_key_file:" not in shown
    assert "netdecl never reads keys out" in shown


def test_destroy_leaves_nothing(run: LabRun) -> None:
    run["destroy"].ok()
    for m in ("m1", "m2"):
        names = {link["ifname"] for link in run["destroy"].json[f"links_{m}"]}
        assert names == {"lo", "eth0"}, names
