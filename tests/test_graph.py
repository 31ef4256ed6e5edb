"""`netdecl graph`: pure output from loaded topologies, the dot text checked by Graphviz itself."""

from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from netdecl import cli
from netdecl.model import Link, ns_label
from netdecl.tools.graph import edges, to_dot, to_mermaid
from netdecl.topology.loader import load_topology

SHIPPED = ["topologies/docker-nat.yaml", "topologies/docker-bridge.yaml",
           "topologies/two-node-vxlan.yaml", "topologies/calico-node.yaml",
           "topologies/flannel-host-gw.yaml", "topologies/docker-networks.yaml"]
SVG = "{http://www.w3.org/2000/svg}"


def svg_texts(svg: str) -> set[str]:
    """Every <title> and <text> in an SVG (entities like &#45; decoded by the XML parser)."""
    root = ET.fromstring(svg)
    return {(el.text or "").strip() for el in root.iter() if el.tag in (f"{SVG}title",
                                                                       f"{SVG}text")}


def needs_dot() -> str:
    dot = shutil.which("dot")
    if dot is None:
        pytest.skip("Graphviz's dot is not installed (.ci/setup installs it)")
    return dot


@pytest.mark.parametrize("path", SHIPPED)
def test_dot_is_accepted_by_graphviz_and_shows_everything(path: str):
    topo = load_topology(path)
    proc = subprocess.run([needs_dot(), "-Tsvg"], input=to_dot(topo), capture_output=True,
                          text=True, check=False, timeout=30)
    assert proc.returncode == 0, proc.stderr
    texts = svg_texts(proc.stdout)
    for ns in topo.namespaces():
        assert f"namespace {ns}" in texts
    for link in topo.of_type(Link):
        assert f"{ns_label(link.namespace)}/{link.name}" in texts  # node title
    veths = {frozenset((lk.key[1:], lk.peer)) for lk in topo.of_type(Link) if lk.peer}
    drawn = {frozenset((e.a, e.b)) for e in edges(topo) if e.kind == "veth"}
    assert drawn == veths
    for a, b in (tuple(pair) for pair in drawn):
        names = {f"{ns_label(a[0])}/{a[1]}--{ns_label(b[0])}/{b[1]}",
                 f"{ns_label(b[0])}/{b[1]}--{ns_label(a[0])}/{a[1]}"}
        assert names & texts  # edge title


def test_the_rules_of_netdecls_table_are_drawn_with_the_files_words():
    topo = load_topology("topologies/docker-networks.yaml")
    for text in (to_dot(topo), to_mermaid(topo)):
        assert "NAT: masquerade source=fd00:18::/64 not_out=br-net1" in text
        assert "NAT: dnat proto=tcp port=8080 to=[fd00:18::2]:80" in text
        assert "NAT: dnat proto=tcp port=80 to=172.18.0.2,172.18.0.3:80 address=10.96.0.10" \
            in text
        assert "forward filter: drop out=br-net2 in=br-net1" in text
    flannel = to_dot(load_topology("topologies/flannel-host-gw.yaml"))
    assert "NAT: masquerade source=10.244.0.0/16 not_destination=10.244.0.0/16" in flannel


def test_vxlan_devices_with_matching_id_and_remote_are_joined():
    topo = load_topology("topologies/two-node-vxlan.yaml")
    tunnels = [e for e in edges(topo) if e.kind == "vxlan"]
    assert [(e.a, e.b, e.label) for e in tunnels] == \
        [(("node1", "vxlan42"), ("node2", "vxlan42"), "vxlan 42")]
    # per-host files each hold one end: no tunnel to draw
    assert not [e for e in edges(load_topology("topologies/host-a.yaml")) if e.kind == "vxlan"]


def test_mermaid_is_well_formed():
    topo = load_topology("topologies/docker-nat.yaml")
    text = to_mermaid(topo)
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    assert text.count("  subgraph ") == text.count("\n  end") == 4
    defined = set(re.findall(r"^    (\w+)\[", text, re.M))
    assert len(defined) == len(topo.of_type(Link))
    used = set(re.findall(r"^  (\w+) \S+ (\w+)$", text, re.M))
    assert used and {n for pair in used for n in pair} <= defined
    assert 'subgraph ns2["namespace nginx-1"]' in text
    assert '[["docker0<br/>bridge<br/>172.17.0.1/16"]]' in text
    assert "n_root_uplink <-->|veth| n_ext_eth0" in text


def test_cli_svg_and_missing_graphviz(tmp_path, monkeypatch, capsys):
    needs_dot()
    assert cli.main(["graph", "topologies/docker-nat.yaml", "--format", "svg"]) == 0
    assert "namespace nginx-1" in svg_texts(capsys.readouterr().out)
    monkeypatch.setenv("PATH", str(tmp_path))  # no dot on PATH
    assert cli.main(["graph", "topologies/docker-nat.yaml", "--format", "svg"]) == 1
    err = capsys.readouterr().err
    assert "needs Graphviz's dot" in err and "apt-get install graphviz" in err
    assert cli.main(["graph", "topologies/docker-nat.yaml", "--format", "mermaid"]) == 0
    assert capsys.readouterr().out.startswith("flowchart LR")


def test_vlans_and_macvlans_are_drawn_on_their_parent():
    from netdecl.topology.loader import load_topology_text

    topo = load_topology_text("""\
version: 1
name: drawn
links:
  - {name: eth0, kind: external}
  - {name: br0, kind: bridge}
  - {name: br0.100, kind: vlan, link: br0, vlan: {id: 100}}
  - {name: mv0, kind: macvlan, link: br0, macvlan: {mode: private}}
  - {name: mv1, kind: macvlan, link: eth0}
""")
    on = {(e.a[1], e.b[1]) for e in edges(topo) if e.how == "on"}
    assert on == {("br0", "br0.100"), ("br0", "mv0")}  # the host's NIC is not drawn
    dot = to_dot(topo)
    assert '"root/br0" -- "root/br0.100" [style=dotted, label="on"];' in dot
    assert "vlan 100 on br0" in dot and "macvlan private on br0" in dot
    assert "-.-|on|" in to_mermaid(topo)
