"""Property: whatever links a file declares, of every kind netdecl makes, `show`'s export of
them loads back as the same objects, and says nothing it could not write. Pure (no kernel):
the kernel half of the round trip is tests/test_show_roundtrip_kernel.py and
tests/test_show_lab.py."""

from __future__ import annotations

import os
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netdecl.topology.export import export
from netdecl.topology.loader import load_topology_text

SETTINGS = settings(max_examples=int(os.environ.get("NETDECL_FUZZ_EXAMPLES", "150")),
                    deadline=None, suppress_health_check=[HealthCheck.too_slow])
NAMESPACES = ["", "a"]


def common(draw: st.DrawFn, index: int, mtu: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if mtu and draw(st.booleans()):  # (a VLAN's or a macvlan's at most its parent's: none)
        out["mtu"] = draw(st.sampled_from([1280, 1400, 1500, 9000, 65535]))
    if draw(st.booleans()):
        out["mac"] = f"02:00:00:00:{index // 256:02x}:{index % 256:02x}"
    if draw(st.booleans()):
        out["up"] = False
    if draw(st.booleans()):
        out["addresses"] = [f"10.{index}.0.1/24"] + (
            [f"fd00:{index:x}::1/64"] if draw(st.booleans()) else [])
    return out


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    links: list[dict[str, Any]] = []
    index = 0

    def new(kind: str, ns: str, **extra: Any) -> dict[str, Any]:
        nonlocal index
        index += 1
        entry = {"name": f"{kind[:4]}{index}", "kind": kind,
                 **common(draw, index, mtu="link" not in extra), **extra}
        if ns:
            entry["namespace"] = ns
        links.append(entry)
        return entry

    for ns in NAMESPACES:
        bridge = new("bridge", ns, bridge={"stp": draw(st.booleans())}) \
            if draw(st.booleans()) else None
        for _ in range(draw(st.integers(0, 2))):
            index += 1
            other = draw(st.sampled_from(NAMESPACES))
            peer = {"name": f"p{index}", **common(draw, index + 100)}
            if other:
                peer["namespace"] = other
            extra: dict[str, Any] = {"peer": peer}
            if bridge is not None and draw(st.booleans()):
                extra["master"] = bridge["name"]
                if draw(st.booleans()):
                    extra["hairpin"] = True
            parent = new("veth", ns, **extra)
            if "master" in extra:
                continue  # a VLAN or macvlan is made on a bridge, not on its port
            if draw(st.booleans()):
                new("vlan", ns, link=parent["name"],
                    vlan={"id": draw(st.integers(1, 4094)),
                          "protocol": draw(st.sampled_from(["802.1Q", "802.1ad"]))})
            if draw(st.booleans()):
                new("macvlan", ns, link=parent["name"],
                    macvlan={"mode": draw(st.sampled_from(["bridge", "private", "vepa",
                                                           "passthru"]))})
        if draw(st.booleans()):
            new("dummy", ns)
        if draw(st.booleans()):
            vxlan = {"id": draw(st.integers(1, 16777215)), "port": draw(st.sampled_from(
                [4789, 8472])), "learning": draw(st.booleans())}
            if draw(st.booleans()):
                vxlan["remotes"] = ["192.0.2.7", "192.0.2.8"]
            new("vxlan", ns, vxlan=vxlan)
    return {"version": 1, "name": "prop", "namespaces": {"a": {}}, "links": links}


def comparable(text: str) -> dict[Any, Any]:
    topo = load_topology_text(text, "f.yaml")
    return {key: obj for key, obj in topo.objects.items()}


@SETTINGS
@given(documents())
def test_export_of_what_a_file_declares_loads_back_the_same(doc: dict[str, Any]) -> None:
    text = yaml.safe_dump(doc, sort_keys=False)
    declared = load_topology_text(text, "f.yaml")
    result = export(declared, "prop")
    assert result.notes == ()
    again = comparable(result.text())
    assert again == declared.objects
