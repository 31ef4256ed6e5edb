"""The tunnel kinds (ipip, sit, ip6tnl, gre, gretap, geneve) on a kernel that has them: the
kernel lab (tests/kernellab.py). One boot for the module.

Two namespaces joined by a veth (the underlay, IPv4 and IPv6) get one tunnel of each kind
between them, each with an inner network of its own; traffic crosses every one. Then one file
edit changes an ipip tunnel's ttl and a GRE key in place (the same ifindex, the underlay
kept), and destroy deletes both namespaces though the kernel's fallback devices (tunl0,
gre0, sit0, ip6tnl0...) live in them. `ip -j -d link` is the independent eye.
"""

from __future__ import annotations

from typing import Any

import pytest
from harness import HTTP_CLIENT, PING, SERVER
from kernellab import KernelLab, LabRun, Step

pytestmark = pytest.mark.lab("veth", "ipip", "sit", "ip6_tunnel", "ip_gre", "geneve",
                             "nf_tables")  # nf_tables: explain reads it

# kind -> (settings on n1's end, settings on n2's end, n1's inner address, n2's)
TUNNELS = {
    "ipip": ("{local: 192.0.2.1, remote: 192.0.2.2, dev: eth0, ttl: 64}",
             "{local: 192.0.2.2, remote: 192.0.2.1, dev: eth0}", "10.1.1.1/30", "10.1.1.2/30"),
    "sit": ("{local: 192.0.2.1, remote: 192.0.2.2}", "{local: 192.0.2.2, remote: 192.0.2.1}",
            "fd01:2::1/64", "fd01:2::2/64"),
    "ip6tnl": ("{local: '2001:db8::1', remote: '2001:db8::2'}",
               "{local: '2001:db8::2', remote: '2001:db8::1'}", "10.1.3.1/30", "10.1.3.2/30"),
    "gre": ("{local: 192.0.2.1, remote: 192.0.2.2, key: 42}",
            "{local: 192.0.2.2, remote: 192.0.2.1, key: 42}", "10.1.4.1/30", "10.1.4.2/30"),
    "gretap": ("{local: 192.0.2.1, remote: 192.0.2.2, key: 43}",
               "{local: 192.0.2.2, remote: 192.0.2.1, key: 43}", "10.1.5.1/30", "10.1.5.2/30"),
    "geneve": ("{id: 7, remote: 192.0.2.2}", "{id: 7, remote: 192.0.2.1}", "10.1.6.1/30",
               "10.1.6.2/30"),
}


def topology(ipip_ttl: int = 64, gre_key: int = 42) -> str:
    lines = ["version: 1", "name: tunnels", "namespaces: {n1: {}, n2: {}}", "links:",
             "  - {name: eth0, namespace: n1, kind: veth, addresses: [192.0.2.1/24, "
             "'2001:db8::1/64'],",
             "     peer: {name: eth0, namespace: n2, addresses: [192.0.2.2/24, "
             "'2001:db8::2/64']}}"]
    for kind, (one, two, inner1, inner2) in TUNNELS.items():
        one = one.replace("ttl: 64", f"ttl: {ipip_ttl}").replace("key: 42", f"key: {gre_key}")
        two = two.replace("key: 42", f"key: {gre_key}")
        for ns, settings, inner in (("n1", one, inner1), ("n2", two, inner2)):
            lines.append(f"  - {{name: {kind}1, namespace: {ns}, kind: {kind}, "
                         f"addresses: ['{inner}'], {kind}: {settings}}}")
    return "\n".join(lines) + "\n"


LINKS = """set -e
for ns in n1 n2; do ip -n $ns -j -d link show > "$OUT/$ns.json"; done
"""
PINGS = "".join(
    f'r=$(ip netns exec n1 "$PYTHON" ping.py {inner2.split("/")[0]} 3 1 2>&1 || true)\n'
    f'printf \'"{kind}": "%s", \' "$r" >> /tmp/pings\n'
    for kind, (_, _, _, inner2) in TUNNELS.items())

STEPS = [
    Step("apply", "netdecl apply v1.yaml"),
    Step("applied", LINKS),
    Step("traffic", r"""set -e
printf '{' > /tmp/pings
""" + PINGS + r"""printf '"end": ""}' >> /tmp/pings
cp /tmp/pings "$OUT/pings.json"
ip netns exec n2 "$PYTHON" server.py n2 10.1.4.2 80 tcp > /tmp/server &
for _ in $(seq 100); do grep -q ready /tmp/server && break; sleep 0.1; done
ip netns exec n1 "$PYTHON" client.py 10.1.4.2 80 5 > "$OUT/over_gre.json"
"""),
    Step("plan", "netdecl plan --detailed-exitcode v1.yaml"),
    Step("explain", "netdecl explain --from n1 10.1.4.2:80 v1.yaml; "
                    "netdecl explain --from n1 10.1.6.2:80 v1.yaml"),
    Step("edit", "netdecl apply v2.yaml"),
    Step("edited", LINKS),
    Step("show", """set -e
netdecl show --namespace n1 --namespace n2 --name shown > shown.yaml
netdecl validate shown.yaml >&2
cat shown.yaml
"""),
    Step("destroy", "netdecl destroy v2.yaml"),
    Step("destroyed", "ip -j netns list > \"$OUT/netns.json\" || echo '[]' > \"$OUT/netns.json\""),
]


@pytest.fixture(scope="module")
def run(module_lab: KernelLab) -> LabRun:
    return module_lab.run(STEPS, files={"v1.yaml": topology(), "v2.yaml": topology(32, 99),
                                        "ping.py": PING, "server.py": SERVER,
                                        "client.py": HTTP_CLIENT})


def by_name(links: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {link["ifname"]: link for link in links}


def test_every_tunnel_kind_is_made_with_its_settings(run: LabRun) -> None:
    run["apply"].ok()
    links = by_name(run["applied"].json["n1"])
    for kind in TUNNELS:
        info = links[f"{kind}1"]["linkinfo"]
        assert info["info_kind"] == kind
        assert links[f"{kind}1"]["ifalias"] == "netdecl:tunnels"
    ipip = links["ipip1"]["linkinfo"]["info_data"]
    assert (ipip["local"], ipip["remote"], ipip["ttl"]) == ("192.0.2.1", "192.0.2.2", 64)
    assert links["ipip1"]["link"] == "eth0"  # the underlay
    gre = links["gre1"]["linkinfo"]["info_data"]
    assert (gre["ikey"], gre["okey"]) == ("0.0.0.42", "0.0.0.42")
    assert links["ip6tnl1"]["linkinfo"]["info_data"]["remote"] == "2001:db8::2"
    geneve = links["geneve1"]["linkinfo"]["info_data"]
    assert (geneve["id"], geneve["remote"]) == (7, "192.0.2.2")
    # the kernel's own fallback devices are there beside them, untouched
    assert {"tunl0", "gre0", "sit0", "ip6tnl0"} <= set(links)
    assert all(links[name].get("ifalias") is None for name in ("tunl0", "gre0"))


def test_traffic_crosses_every_tunnel(run: LabRun) -> None:
    traffic = run["traffic"]
    traffic.ok()
    pings = traffic.json["pings"]
    assert {kind: pings[kind] for kind in TUNNELS} == {kind: "ok" for kind in TUNNELS}
    over_gre = traffic.json["over_gre"]
    assert over_gre["ok"] and "ns=n2 client=10.1.4.1" in over_gre["body"], over_gre


def test_explain_crosses_the_tunnels(run: LabRun) -> None:
    out = run["explain"].ok()
    assert "gre1 -> gre tunnel (key 42) -> n2/gre1" in out, out
    assert "geneve1 -> Geneve tunnel (id 7) -> n2/geneve1" in out, out
    assert out.count("delivered: to n2") == 2, out


def test_a_second_plan_has_nothing_to_do(run: LabRun) -> None:
    assert "No changes" in run["plan"].ok()


def test_ttl_and_key_change_in_place_keeping_the_underlay(run: LabRun) -> None:
    out = run["edit"].ok()
    assert "~ link n1/ipip1" in out and "-/+" not in out, out
    before, after = by_name(run["applied"].json["n1"]), by_name(run["edited"].json["n1"])
    for name in ("ipip1", "gre1"):
        assert after[name]["ifindex"] == before[name]["ifindex"], name
    assert after["ipip1"]["linkinfo"]["info_data"]["ttl"] == 32
    assert after["ipip1"]["link"] == "eth0"
    assert after["gre1"]["linkinfo"]["info_data"]["ikey"] == "0.0.0.99"


def test_show_writes_the_tunnels_back_as_a_valid_file(run: LabRun) -> None:
    shown = run["show"].ok()
    for kind in TUNNELS:
        assert f"kind: {kind}" in shown, kind
    assert "name: tunl0" in shown and "kind: external" in shown  # the kernel's, not made


def test_destroy_deletes_the_namespaces_with_the_kernels_fallback_devices(run: LabRun) -> None:
    run["destroy"].ok()
    names = {entry["name"] for entry in run["destroyed"].json["netns"]}
    assert not names & {"n1", "n2"}
