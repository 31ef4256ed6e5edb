"""`netdecl explain` on topologies/docker-nat.yaml: the path it prints, checked against the
kernel's state and against real traffic along the same path."""

from __future__ import annotations

import json

import pytest

from netdecl.model import NatRule
from netdecl.tools.explain import (
    dnat_target,
    match_dnat,
    match_filter,
    match_snat,
    parse_destination,
)

NAT = "topologies/docker-nat.yaml"


def apply_ok(host) -> None:
    result = host.netdecl("apply", NAT)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"


def explain(host, *args: str) -> tuple[int, str, dict]:
    text = host.netdecl("explain", *args)
    data = host.netdecl("explain", "--json", *args)
    assert data.stdout, data.stderr
    return text.returncode, text.stdout + text.stderr, json.loads(data.stdout)


def in_order(text: str, *needles: str) -> None:
    at = 0
    for needle in needles:
        found = text.find(needle, at)
        assert found >= 0, f"{needle!r} missing (or out of order) after offset {at}:\n{text}"
        at = found + len(needle)


def test_seed_path_container_to_lan_is_masqueraded(host):
    apply_ok(host)
    code, text, data = explain(host, "--from", "nginx-1", "10.168.0.3")
    assert code == 0, text
    in_order(text, "[nginx-1]", "via 172.17.0.1 dev eth0", "eth0 -> veth peer root/veth-n1",
             "veth-n1 is a port of bridge docker0", "docker0 owns next hop 172.17.0.1",
             "route 10.168.0.3 dev uplink", "masquerade", "source 172.17.0.2 -> 10.168.0.1",
             "uplink -> veth peer ext/eth0", "[ext]", "delivered")
    assert (data["outcome"], data["final_namespace"], data["final_source"]) == \
        ("delivered", "ext", "10.168.0.1")
    # the kernel agrees: a real ping from nginx-1 reaches ext
    assert host.ping("nginx-1", "10.168.0.3")


def test_port_forward_and_hairpin_match_real_traffic(host):
    apply_ok(host)
    code, text, data = explain(host, "--from", "ext", "10.168.0.1:8080", NAT)
    assert code == 0, text
    in_order(text, "[ext]", "eth0 -> veth peer root/uplink", "DNAT (prerouting",
             "10.168.0.1:8080 -> 172.17.0.2:80", "route 172.17.0.2 dev docker0",
             "bridge docker0", "veth-n1", "[nginx-1]", "delivered")
    assert (data["final_namespace"], data["final_destination"], data["final_source"]) == \
        ("nginx-1", "172.17.0.2:80", "10.168.0.3")
    _, text, hairpin = explain(host, "--from", "nginx-1", "10.168.0.1:8080", NAT)
    assert "leaves the way it came" in text
    assert hairpin["final_source"] == "172.17.0.1"
    # real traffic along both paths: the server sees exactly the sources explain predicted
    server = host.start_server("nginx-1", 80)
    assert host.http_get("ext", "10.168.0.1", 8080).ok
    assert host.http_get("nginx-1", "10.168.0.1", 8080).ok
    assert server.seen_sources() == [data["final_source"], hairpin["final_source"]]


def test_drops_name_their_reason(host):
    apply_ok(host)
    host.run(["ip", "-n", "nginx-1", "route", "del", "default"])
    code, text, data = explain(host, "--from", "nginx-1", "10.168.0.3")
    assert code == 1 and data["outcome"] == "dropped"
    assert "no route to 10.168.0.3 in nginx-1" in text
    refused = host.http_get("nginx-1", "10.168.0.3", 80, timeout=1)
    assert not refused.ok and "unreachable" in refused.error

    host.run(["ip", "link", "set", "veth-n1", "down"])
    code, text, data = explain(host, "--from", "nginx-2", "172.17.0.2")
    assert code == 1 and "link veth-n1 is down" in data["reason"]

    host.write_sysctl("net.ipv4.ip_forward", 0)
    code, text, data = explain(host, "--from", "nginx-2", "10.168.0.3")
    assert code == 1 and "forwarding is off in root" in data["reason"], text


def test_unknown_namespace_is_an_error(host):
    apply_ok(host)
    result = host.netdecl("explain", "--from", "nope", "10.168.0.3")
    assert result.returncode == 1 and "namespace nope does not exist" in result.stderr


def test_nat_matching_is_netdecls_rendering():
    fwd = NatRule(kind="dnat", proto="tcp", port=8080, port_end=8090, to_address="172.17.0.2",
                  to_port=80)
    assert match_dnat((fwd,), "tcp", "10.0.0.1", 8085, local=True, iif="eth0", src=None) == fwd
    assert match_dnat((fwd,), "tcp", "10.0.0.1", 8085, local=False, iif="eth0", src=None) is None
    assert match_dnat((fwd,), "udp", "10.0.0.1", 8085, local=True, iif=None, src=None) is None
    only_in = NatRule(kind="dnat", proto="tcp", port=80, to_address="1.2.3.4", in_="uplink")
    assert match_dnat((only_in,), "tcp", "10.0.0.1", 80, local=True, iif=None, src=None) is None
    masq = NatRule(kind="masquerade", source="172.17.0.0/16", not_out="docker0")
    assert match_snat((masq,), "172.17.0.2", "uplink") == masq
    assert match_snat((masq,), "172.17.0.2", "docker0") is None
    assert match_snat((masq,), "10.0.0.9", "uplink") is None
    assert parse_destination("10.0.0.1:80") == ("10.0.0.1", 80)
    assert parse_destination("[fd00::1]:443") == ("fd00::1", 443)
    assert parse_destination("fd00::1") == ("fd00::1", None)
    with pytest.raises(ValueError):
        parse_destination("nginx-1")


def test_new_rule_words_match_like_the_rendered_nft_rules():
    flannel = (NatRule("masquerade", source="10.244.0.0/16", not_destination=("10.244.0.0/16",)),)
    assert match_snat(flannel, "10.244.1.2", "eth0", "10.244.2.2") is None  # pod to pod
    assert match_snat(flannel, "10.244.1.2", "eth0", "8.8.8.8") == flannel[0]
    # an IPv4 rule (a masquerade without addresses is IPv4) never catches IPv6 packets
    assert match_snat((NatRule("masquerade", out="eth0"),), "fd00::2", "eth0", "fd01::1") is None
    v6 = (NatRule("masquerade", source="fd00::/64"),)
    assert match_snat(v6, "fd00::2", "eth0", "fd01::1") == v6[0]

    vip = (NatRule("dnat", proto="tcp", port=80, address="10.96.0.10",
                   to_addresses=("172.18.0.2", "172.18.0.3"), to_port=8080),)
    rule = match_dnat(vip, "tcp", "10.96.0.10", 80, local=False, iif="br0", src="172.18.0.3")
    assert rule == vip[0] and dnat_target(rule, 80) == ("172.18.0.2", 8080)

    rules = (NatRule("filter", in_="br1", out="br2", action="drop"),
             NatRule("filter", destination=("10.0.0.0/8",), proto="tcp", port=22,
                     action="reject"),
             NatRule("filter", source="fd00::/64", action="accept"))
    assert match_filter(rules, iif="br1", out="br2", src="1.2.3.4", dst="5.6.7.8",
                        proto="icmp", port=None) == rules[0]
    assert match_filter(rules, iif="br2", out="br1", src="fd00::1", dst="fd01::1",
                        proto="tcp", port=22) == rules[2]  # a filter without addresses: both
    assert match_filter(rules, iif="x", out="y", src="1.2.3.4", dst="10.1.1.1",
                        proto="tcp", port=22) == rules[1]
    assert match_filter(rules, iif="x", out="y", src="1.2.3.4", dst="10.1.1.1",
                        proto="tcp", port=23) is None


class _Kernel:
    """What World reads, from model objects: links and addresses per namespace."""

    def __init__(self, links, addresses):
        self.links, self.addresses = links, addresses

    def read_links(self, ns, namespaces):
        return [lk for lk in self.links if lk.namespace == ns]

    def read_addresses(self, ns):
        return [a for a in self.addresses if a.namespace == ns]


def _macvlan_world(m2_mode: str):
    from netdecl.links.macvlan import MacvlanSpec
    from netdecl.links.veth import VethSpec
    from netdecl.model import Address, Link
    from netdecl.tools.explain import World

    links = [Link("a", "va", "veth", spec=VethSpec(peer=("b", "vb"))),
             Link("b", "vb", "veth", spec=VethSpec(peer=("a", "va"))),
             Link("a", "m1", "macvlan", spec=MacvlanSpec(mode="bridge", link="va")),
             Link("a", "m2", "macvlan", spec=MacvlanSpec(mode=m2_mode, link="va"))]
    addresses = [Address("a", "va", "10.9.0.1/24"), Address("b", "vb", "10.9.0.2/24"),
                 Address("a", "m1", "10.9.0.11/24"), Address("a", "m2", "10.9.0.12/24")]
    return World(_Kernel(links, addresses), ["a", "b"], lambda ns: ())


def test_a_macvlan_is_on_its_parents_segment_but_not_its_parents_stack():
    """Frames from the segment reach a macvlan through its parent; the parent's own stack and
    the macvlan never reach each other (the kernel's macvlan does not loop them back); two
    macvlans of one parent talk directly only both in bridge mode."""
    from netdecl.tools.explain import _l2_path

    world = _macvlan_world("bridge")
    assert [(node[1], how) for node, how in _l2_path(world, ("b", "vb"), "10.9.0.11")] == [
        ("vb", "pair"), ("va", "from-parent"), ("m1", "")]
    assert [node[1] for node, _ in _l2_path(world, ("a", "m1"), "10.9.0.2")] == [
        "m1", "va", "vb"]
    assert _l2_path(world, ("a", "va"), "10.9.0.11") is None
    assert _l2_path(world, ("a", "m1"), "10.9.0.1") is None
    assert [node[1] for node, _ in _l2_path(world, ("a", "m1"), "10.9.0.12")] == [
        "m1", "va", "m2"]
    assert _l2_path(_macvlan_world("private"), ("a", "m1"), "10.9.0.12") is None
