"""`netdecl graph`: a picture of a loaded topology (Graphviz dot, Mermaid, or SVG via dot).

A pure function of the Topology (no kernel): namespaces are clusters, links are nodes labelled
with their kind and addresses, veth pairs are edges between their two ends, bridge ports hang
off their bridge, and VXLAN devices are joined when they carry the same id and one's static FDB
entries point at the other's local address.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

from netdecl.errors import EnvironmentProblem, NetdeclError
from netdecl.links import link_kind
from netdecl.model import FILTER, Address, Link, NatTable, Qdisc, Topology, ns_label
from netdecl.tc.qdiscs import describe_qdisc

DOT_TIMEOUT = 30.0


@dataclass(frozen=True)
class Edge:
    a: tuple[str, str]
    b: tuple[str, str]
    kind: str  # what joins them: the kind of a pair or a tunnel (veth, vxlan), "port" or "on"
    how: str  # pair | port | tunnel | on (a link made on another: a VLAN on its parent)
    label: str = ""


def _hub(link: Link) -> bool:
    """Drawn as a switch: a link that others join as ports (a bridge)."""
    kind = link_kind(link.kind)
    return kind is not None and kind.ports


def _namespaces(topo: Topology) -> list[str]:
    """Root first if anything lives there, then every declared namespace."""
    used = {link.namespace for link in topo.of_type(Link)}
    names = sorted(set(topo.namespaces()) | used)
    return names


def _label(topo: Topology, link: Link) -> list[str]:
    kind = link_kind(link.kind)
    lines = [link.name, kind.label(link) if kind is not None else link.kind]
    lines += [a.cidr for a in topo.of_type(Address)
              if a.namespace == link.namespace and a.link == link.name]
    # its traffic control, as the plan writes it: what a lab user reads the graph for
    lines += [f"{q.direction}: {describe_qdisc(q)}" for q in topo.of_type(Qdisc)
              if q.namespace == link.namespace and q.link == link.name]
    return lines


def edges(topo: Topology) -> list[Edge]:
    """veth pairs (once each), bridge ports, links made on a parent (VLANs, macvlans), and
    VXLAN tunnels between matching devices."""
    links = {(lk.namespace, lk.name): lk for lk in topo.of_type(Link)}
    out: list[Edge] = []
    seen: set[frozenset[tuple[str, str]]] = set()
    for key, link in links.items():
        if link.peer and link.peer in links:
            pair = frozenset((key, link.peer))
            if pair not in seen:
                seen.add(pair)
                out.append(Edge(key, link.peer, link.kind, "pair"))
        if link.master and (link.namespace, link.master) in links:
            out.append(Edge((link.namespace, link.master), key, "port", "port"))
        kind = link_kind(link.kind)
        if kind is not None and kind.parented and link.spec is not None:
            out.extend(Edge((link.namespace, parent), key, "on", "on")
                       for parent in link.spec.uses() if (link.namespace, parent) in links)
            out.extend(Edge(parent, key, "on", "on")
                       for parent in link.spec.uses_elsewhere() if parent in links)
    for key, link in links.items():
        kind = link_kind(link.kind)
        for other_key, label in kind.tunnels(key, link, links, topo) if kind else ():
            pair = frozenset((key, other_key))
            if pair not in seen:
                seen.add(pair)
                out.append(Edge(key, other_key, link.kind, "tunnel", label))
    return out


def _nat_lines(topo: Topology, ns: str) -> list[str]:
    table = topo.get(("nat", ns))
    if not isinstance(table, NatTable) or not table.rules:
        return []
    return [f"forward filter: {rule.describe().split(' ', 1)[1]}" if rule.kind == FILTER
            else f"NAT: {rule.describe()}" for rule in table.rules]


# -- dot ----------------------------------------------------------------------------------------

def _dq(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dot_id(key: tuple[str, str]) -> str:
    return _dq(f"{ns_label(key[0])}/{key[1]}")


def to_dot(topo: Topology) -> str:
    lines = [f"graph {_dq(topo.name)} {{", "  rankdir=LR;", "  compound=true;",
             '  node [shape=box, style="rounded", fontname="Helvetica"];',
             '  graph [fontname="Helvetica"];', '  edge [fontname="Helvetica", fontsize=10];']
    for index, ns in enumerate(_namespaces(topo)):
        label = "\\n".join(_dq(x)[1:-1] for x in [f"namespace {ns_label(ns)}",
                                                   *_nat_lines(topo, ns)])
        lines.append(f"  subgraph cluster_{index} {{")
        lines.append(f'    label="{label}";')
        members = [lk for lk in topo.of_type(Link) if lk.namespace == ns]
        if not members:  # dot does not draw an empty cluster
            lines.append(f"    {_dq(f'{ns_label(ns)}/(no links)')} [label=\"(no links)\", "
                         "shape=plaintext];")
        for link in members:
            label = "\\n".join(_dq(x)[1:-1] for x in _label(topo, link))
            shape = ', shape=box3d' if _hub(link) else ""
            lines.append(f"    {_dot_id((ns, link.name))} [label=\"{label}\"{shape}];")
        lines.append("  }")
    styles = {"pair": 'label="{kind}", penwidth=2', "port": 'style=dashed, label="port"',
              "tunnel": 'style=bold, color=blue', "on": 'style=dotted, label="on"'}
    for edge in edges(topo):
        extra = f', label={_dq(edge.label)}' if edge.label else ""
        style = styles[edge.how].format(kind=edge.kind)
        lines.append(f"  {_dot_id(edge.a)} -- {_dot_id(edge.b)} [{style}{extra}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


# -- mermaid ------------------------------------------------------------------------------------

def _mermaid_id(key: tuple[str, str]) -> str:
    raw = f"{ns_label(key[0])}_{key[1]}"
    return "n_" + re.sub(r"[^A-Za-z0-9_]", "_", raw)


def _mq(text: str) -> str:
    return text.replace('"', "#quot;")


def to_mermaid(topo: Topology) -> str:
    lines = ["flowchart LR"]
    ids: dict[tuple[str, str], str] = {}
    for link in topo.of_type(Link):
        key = (link.namespace, link.name)
        base = candidate = _mermaid_id(key)
        n = 2
        while candidate in ids.values():  # "a-b" and "a_b" would collide
            candidate, n = f"{base}_{n}", n + 1
        ids[key] = candidate
    for index, ns in enumerate(_namespaces(topo)):
        title = "<br/>".join(_mq(x) for x in [f"namespace {ns_label(ns)}",
                                              *_nat_lines(topo, ns)])
        lines.append(f'  subgraph ns{index}["{title}"]')
        members = [lk for lk in topo.of_type(Link) if lk.namespace == ns]
        if not members:
            lines.append(f'    ns{index}_empty["(no links)"]')
        for link in members:
            label = "<br/>".join(_mq(x) for x in _label(topo, link))
            shape = ('[["', '"]]') if _hub(link) else ('["', '"]')
            lines.append(f"    {ids[(ns, link.name)]}{shape[0]}{label}{shape[1]}")
        lines.append("  end")
    arrows = {"pair": "<-->|{kind}|", "port": "-.-|port|", "tunnel": "<==>", "on": "-.-|on|"}
    for edge in edges(topo):
        arrow = arrows[edge.how].format(kind=edge.kind)
        if edge.label:
            arrow += f"|{_mq(edge.label)}|"
        lines.append(f"  {ids[edge.a]} {arrow} {ids[edge.b]}")
    return "\n".join(lines) + "\n"


# -- svg ----------------------------------------------------------------------------------------

def to_svg(topo: Topology) -> str:
    dot = shutil.which("dot")
    if dot is None:
        raise EnvironmentProblem("--format svg needs Graphviz's dot, which is not installed "
                                 "(apt-get install graphviz); --format dot or mermaid work "
                                 "without it")
    try:
        proc = subprocess.run([dot, "-Tsvg"], input=to_dot(topo), capture_output=True,
                              text=True, timeout=DOT_TIMEOUT, check=False)
    except subprocess.TimeoutExpired as exc:
        raise NetdeclError(f"dot -Tsvg gave no answer after {DOT_TIMEOUT:g}s") from exc
    if proc.returncode != 0:
        raise NetdeclError(f"dot -Tsvg failed: {proc.stderr.strip()}")
    return proc.stdout


def render(topo: Topology, fmt: str) -> str:
    renderers = {"dot": to_dot, "mermaid": to_mermaid, "svg": to_svg}
    if fmt not in renderers:
        raise NetdeclError(f"unknown graph format {fmt!r}: choose dot, mermaid or svg")
    return renderers[fmt](topo)
