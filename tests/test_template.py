"""Templates without a kernel: the expression language, vars, loops, defaults, includes,
facts, the positions errors carry, and the bounds that stop a hostile file."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from netdecl.errors import InvalidTopology
from netdecl.model import Address, Link, Namespace, Route
from netdecl.topology.loader import load_topology, load_topology_text
from netdecl.topology.template.expand import LazyFacts
from netdecl.topology.template.expr import ExprError, evaluate

REPO = Path(__file__).resolve().parent.parent
HEAD = "version: 1\nname: t\n"


def problems(text: str, **kwargs) -> list[str]:
    with pytest.raises(InvalidTopology) as info:
        load_topology_text(HEAD + text, "lab.yaml", **kwargs)
    return [str(d) for d in info.value.diagnostics]


# -- the expression language ---------------------------------------------------------------


@pytest.mark.parametrize(("expr", "value"), [
    ("cidrhost('10.200.0.0/16', 300)", "10.200.1.44"),
    ("ifaddr('10.200.0.0/16', 258)", "10.200.1.2/16"),
    ("cidrhost('10.0.0.0/24', -2)", "10.0.0.254"),
    ("cidrsubnet('10.1.0.0/16', 8, 3)", "10.1.3.0/24"),
    ("cidrsubnet('fd00::/48', 16, 5)", "fd00:0:0:5::/64"),
    ("ipadd('10.0.0.250/24', 10)", "10.0.1.4/24"),
    ("format('c%03d', 7)", "c007"),
    ("7 / 2 + 7 % 2 * 10", 13),
    ("'a' if 1 < 2 and not false else 'b'", "a"),
    ("m.k[1]", 20),
    ("len(range(3, 10, 2))", 4),
    ("join([1, 2, 3], ',')", "1,2,3"),
])
def test_expressions(expr, value):
    assert evaluate(expr, {"m": {"k": [10, 20]}}) == value


@pytest.mark.parametrize(("expr", "fragment"), [
    ("__import__('os')", "unknown function '__import__'"),
    ("m.__class__", "no key '__class__'"),
    ("open('/etc/passwd')", "unknown function 'open'"),
    ("eval('1')", "unknown function 'eval'"),
    ("'x' * 3", "must be a number"),
    ("cidrhost('10.0.0.0/24', 256)", "outside 10.0.0.0/24"),
    ("cidrsubnet('10.0.0.0/24', 9, 0)", "cannot be split"),
    ("1 / 0", "division by zero"),
    ("range(10 ** 9)", "unexpected"),
    ("range(1000000000)", "the limit is"),
    ("format('%999d', 1)", "only %d"),
    ("join(range(100000), 'xxxxxxxx')", "the limit is 4096"),
    ("(" * 40 + "1" + ")" * 40, "nested deeper"),
    ("lambda: 1", "unexpected"),
    ("range(-99999999999999999999, 99999999999999999999)", "the limit is"),
    ("ipadd('10.0.0.1', 99999999999999999999)", "past the end"),
    ("cidrhost('10.0.0.0/8', -99999999999999999999)", "outside 10.0.0.0/8"),
    ("m < 3", "must be a number"),
    ("format('%s', m)", "cannot put a mapping"),
])
def test_what_expressions_refuse(expr, fragment):
    with pytest.raises(ExprError) as info:
        evaluate(expr, {"m": {"k": 1}})
    assert fragment in str(info.value)


# -- vars, loops, defaults -----------------------------------------------------------------


STAR = """\
vars:
  n: {type: int, default: 3}
defaults:
  links: {mtu: 9000}
namespaces:
  c${i}: {for: i in range(n)}
links:
  - {name: br0, kind: bridge, mtu: 1500}
  - for: i in range(n)
    name: v${i}
    kind: veth
    master: br0
    peer: {name: eth0, namespace: "c${i}", addresses: ["${ifaddr('10.200.0.0/16', i + 254)}"]}
routes:
  - {for: i in range(n), if: i % 2 == 0, namespace: "c${i}", to: default, via: 10.200.0.1,
     onlink: true}
"""


def test_loops_vars_and_defaults_expand_into_plain_objects():
    topo = load_topology_text(HEAD + STAR, "lab.yaml", variables={"n": "4"})
    assert topo.namespaces() == ["c0", "c1", "c2", "c3"]
    assert {a.cidr for a in topo.of_type(Address)} == {
        "10.200.0.254/16", "10.200.0.255/16", "10.200.1.0/16", "10.200.1.1/16"}
    links = {link.name: link for link in topo.of_type(Link) if link.namespace == ""}
    assert links["br0"].mtu == 1500 and links["v3"].mtu == 9000  # the entry beats the default
    assert sorted(r.namespace for r in topo.of_type(Route)) == ["c0", "c2"]  # if: i % 2 == 0


def test_a_loops_error_names_the_template_line_and_the_iteration():
    found = problems(STAR.replace("i + 254", "i * 100").replace("'10.200.0.0/16'",
                                                                "'10.0.1.0/24'"),
                     variables={"n": 4})
    assert found == ["lab.yaml:15:56 (i=3): host 300 is outside 10.0.1.0/24 (256 addresses)"]
    found = problems(STAR.replace('"${ifaddr(\'10.200.0.0/16\', i + 254)}"',
                                  "'10.0.1.${i * 100}/24'"), variables={"n": 4})
    assert found == ["lab.yaml:15:56 (i=3): '10.0.1.300/24' is not an address with prefix "
                     "length like 172.17.0.1/16"]


def test_names_made_twice_by_a_loop_say_where_the_first_one_came_from():
    found = problems("namespaces:\n  c${i % 2}: {for: i in range(3)}\n")
    assert found == ["lab.yaml:4:3 (i=2): 'c0' is also defined at lab.yaml:4:3 (i=0)"]
    found = problems("links:\n  - {for: i in range(2), name: d, kind: dummy}\n")
    assert found == ["lab.yaml:4:32 (i=1): link 'd' is declared twice in namespace root "
                     "(first at line 4 (i=0))"]


@pytest.mark.parametrize(("variables", "message"), [
    ({"n": "x"}, "lab.yaml:4:3: variable 'n' (from --var): 'x' is not a number"),
    ({"m": "1"}, "lab.yaml:1:1: --var m: the topology declares no such variable (declared: n)"),
])
def test_bad_vars_are_invalid_topologies(variables, message):
    assert problems(STAR, variables=variables) == [message]


def test_a_var_without_default_must_be_given():
    text = "vars:\n  pods: {type: cidr}\nnamespaces: {a: {}}\n"
    assert problems(text) == ["lab.yaml:4:3: variable 'pods' has no default: give it with "
                              "--var pods=VALUE"]
    assert problems(text, variables={"pods": "10.0.0.1"}) == [
        "lab.yaml:4:3: variable 'pods' (from --var): '10.0.0.1' is not ADDRESS/PREFIX"]


def test_var_file_and_var_on_the_command_line(tmp_path):
    topo = tmp_path / "star.yaml"
    topo.write_text(HEAD + STAR)
    values = tmp_path / "vars.yaml"
    values.write_text("n: 5\n")
    cli = [sys.executable, "-m", "netdecl", "validate", "--var-file", str(values), str(topo)]
    out = subprocess.run(cli, capture_output=True, text=True, check=False)
    assert out.returncode == 0 and "5 namespaces" in out.stdout, out.stderr
    out = subprocess.run([*cli, "--var", "n=2"], capture_output=True, text=True, check=False)
    assert out.returncode == 0 and "2 namespaces" in out.stdout, out.stderr
    out = subprocess.run([*cli, "--var", "n=300000"], capture_output=True, text=True,
                         check=False)
    assert out.returncode == 3 and "range of 300000 items; the limit is 100000" in out.stderr


# -- bounds ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    # nested loops: 10^5 x 10^5 addresses
    "links:\n  - for: i in range(100000)\n    name: d${i}\n    kind: dummy\n"
    "    addresses:\n      - {for: j in range(100000), if: false}\n",
    # a loop of a million empty mappings
    "namespaces:\n  c${i}: {for: i in range(100000)}\n"
    "links:\n  - {for: i in range(100000), name: 'd${i}', kind: dummy}\n",
    # a big list from a var written into every item of a loop
    "vars:\n  big: '${range(90000)}'\n"
    "links:\n  - {for: i in range(1000), name: 'd${i}', kind: dummy, x: '${big}'}\n",
    # strings near the bound each, a thousand times over
    "vars:\n  s: '${join(range(1000), \"\")}'\n"
    "links:\n  - {for: i in range(5000), name: 'd${i}', kind: dummy, alias: '${s}'}\n",
    # a string doubled by vars until it is huge
    "vars:\n  a: xxxxxxxxxxxxxxxx\n" + "".join(
        f"  {chr(98 + k)}: '${{{chr(97 + k)} + {chr(97 + k)}}}'\n" for k in range(20)),
])
def test_a_blow_up_is_an_error_fast_not_a_hang(text):
    start = time.monotonic()
    found = problems(text)
    assert time.monotonic() - start < 10
    assert len(found) == 1 and ("the limit" in found[0]), found


# -- includes and directories -----------------------------------------------------------------


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(text.encode("utf-8", "surrogateescape"))


def test_includes_join_sections_and_name_both_places_of_a_duplicate(tmp_path):
    write(tmp_path, {
        "main.yaml": HEAD + "vars: {n: 2}\ninclude: [parts/ns.yaml, parts]\n"
                     "namespaces: {a: {}}\n",
        "parts/ns.yaml": "namespaces:\n  c${i}: {for: i in range(n)}\n",
        "parts/links.yaml": "links:\n  - {name: d0, kind: dummy}\n",
    })
    with pytest.raises(InvalidTopology) as info:  # parts/ns.yaml: by name and in parts/
        load_topology(tmp_path / "main.yaml")
    assert "is included twice" in str(info.value)
    write(tmp_path, {"main.yaml": HEAD + "vars: {n: 2}\ninclude: [parts]\n"
                                         "namespaces: {a: {}}\n"})
    topo = load_topology(tmp_path / "main.yaml")
    assert topo.namespaces() == ["a", "c0", "c1"]
    assert Namespace("c1").key in topo.objects and len(topo.of_type(Link)) == 1
    assert set(topo.sources) == {str(tmp_path / n) for n in
                                 ("main.yaml", "parts/links.yaml", "parts/ns.yaml")}
    write(tmp_path, {"parts/links.yaml": "namespaces: {c1: {}}\n"})
    with pytest.raises(InvalidTopology) as info:
        load_topology(tmp_path / "main.yaml")
    # parts/links.yaml is read first (name order): the loop's c1 is the second
    assert str(info.value) == f"{tmp_path}/parts/ns.yaml:2:3 (i=1): 'c1' is also defined " \
                              f"at {tmp_path}/parts/links.yaml:1:14"


def test_a_link_twice_in_two_files_names_the_other_file(tmp_path):
    write(tmp_path, {"main.yaml": HEAD + "include: b.yaml\nlinks: [{name: d0, kind: dummy}]\n",
                     "b.yaml": "links:\n  - {name: d0, kind: dummy}\n"})
    with pytest.raises(InvalidTopology) as info:
        load_topology(tmp_path / "main.yaml")
    assert str(info.value) == (f"{tmp_path}/b.yaml:2:12: link 'd0' is declared twice in "
                               f"namespace root (first at {tmp_path}/main.yaml:4)")


@pytest.mark.parametrize(("files", "fragment"), [
    ({"main.yaml": HEAD + "include: main.yaml\n"}, "include cycle"),
    ({"main.yaml": HEAD + "include: bad.yaml\n", "bad.yaml": "a: \udcff\n"},
     "bad.yaml:1:4: file is not valid UTF-8"),
    ({"main.yaml": HEAD + "include: a.yaml\n", "a.yaml": "include: main.yaml\n"},
     "include cycle"),
    ({"main.yaml": HEAD + "include: ../outside.yaml\n"}, "outside the topology's directory"),
    ({"main.yaml": HEAD + "include: /etc/passwd\n"}, "not an absolute one"),
    ({"main.yaml": HEAD + "include: link.yaml\n"}, "outside the topology's directory"),
    ({"main.yaml": HEAD + "include: parts\n", "parts/a.yaml": "{}\n"},
     "parts/evil.yaml is outside the topology's directory"),
    ({"main.yaml": HEAD + "include: d1.yaml\n",
      **{f"d{k}.yaml": f"include: d{k + 1}.yaml\n" for k in range(1, 12)},
      "d12.yaml": "{}\n"}, "nest deeper than 8"),
])
def test_includes_that_are_refused(tmp_path, files, fragment):
    lab = tmp_path / "lab"
    lab.mkdir()
    (tmp_path / "outside.yaml").write_text("links: []\n")
    os.symlink(tmp_path / "outside.yaml", lab / "link.yaml")  # a symlink escaping the tree
    write(lab, files)
    if (lab / "parts").is_dir():  # ...and one in a directory that is included whole
        os.symlink(tmp_path / "outside.yaml", lab / "parts" / "evil.yaml")
    with pytest.raises(InvalidTopology) as info:
        load_topology(lab / "main.yaml")
    assert fragment in str(info.value)


def test_a_directory_is_one_topology(tmp_path):
    lab = tmp_path / "lab"
    write(lab, {"a.yaml": HEAD + "namespaces: {x: {}}\n",
                "b.yaml": "namespaces: {y: {}}\n", "notes.txt": "ignored"})
    assert load_topology(lab).namespaces() == ["x", "y"]
    (tmp_path / "outside.yaml").write_text("namespaces: {z: {}}\n")
    os.symlink(tmp_path / "outside.yaml", lab / "c.yaml")
    with pytest.raises(InvalidTopology) as info:
        load_topology(lab)
    assert "c.yaml is outside the topology's directory" in str(info.value)


def test_shipped_routers_lab_has_3_routers_and_12_hosts():
    topo = load_topology(REPO / "topologies" / "routers-lab.yaml")
    assert len([n for n in topo.namespaces() if n.startswith("h")]) == 12
    assert len(topo.sources) == 4


# -- facts ------------------------------------------------------------------------------------


def test_facts_are_read_only_when_a_file_uses_them():
    def never() -> dict:
        raise AssertionError("facts read for a file that does not use them")

    load_topology_text(HEAD + STAR, "lab.yaml", facts=LazyFacts(never))
    facts = LazyFacts(lambda: {"hostname": "node-7", "links": {"eth0": {
        "addresses": ["192.168.117.208/24"], "mac": "02:00:00:00:00:07"}}})
    topo = load_topology_text(
        HEAD + "namespaces:\n  ${facts.hostname}: {}\nlinks:\n"
               "  - {name: d0, kind: dummy, mac: '${facts.links.eth0.mac}'}\n",
        "lab.yaml", facts=facts)
    assert topo.namespaces() == ["node-7"]
    assert topo.of_type(Link)[0].mac == "02:00:00:00:00:07"


def test_fleet_file_picks_its_node_from_facts_or_a_var():
    path = REPO / "topologies" / "flannel-fleet.yaml"
    facts = LazyFacts(lambda: {"links": {"eth0": {"addresses": ["192.168.117.208/24"]}}})
    two = load_topology(path, facts=facts)
    assert two.namespaces() == ["pod-n2"]
    one = load_topology(path, facts=facts, variables={"node_ip": "192.168.117.207"})
    assert [(r.to, r.via) for r in one.of_type(Route) if r.namespace == ""] == [
        ("10.244.2.0/24", "192.168.117.208")]


# -- render -----------------------------------------------------------------------------------


def test_render_prints_a_plain_file_that_loads_to_the_same_topology(tmp_path):
    path = REPO / "topologies" / "star.yaml"
    out = subprocess.run([sys.executable, "-m", "netdecl", "render", "--var", "n=5", str(path)],
                         capture_output=True, text=True, check=True).stdout
    plain = yaml.safe_load(out)
    assert "vars" not in plain and len(plain["namespaces"]) == 5
    rendered = tmp_path / "star.yaml"
    rendered.write_text(out)
    again = load_topology(rendered)
    assert again.expanded is None  # plain: no template left
    assert again.objects == load_topology(path, variables={"n": 5}).objects


def test_bench_template_smoke():
    """The benchmark runs and prints its rows (timing is never asserted)."""
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_template.py"),
                          "--runs", "1", "--sizes", "10"], capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert "| 10 | star.yaml --var n=10 |" in out.stdout


def test_the_template_package_reaches_no_eval_shell_or_file():
    """No expression can run code: the package that evaluates them calls no eval, exec,
    compile, __import__, getattr or open, and imports no subprocess, os or importlib (files
    are read by the loader's read_file, given to include.py as a function)."""
    import ast

    package = REPO / "netdecl" / "topology" / "template"
    for path in [package / "expr.py", package / "strings.py", package / "expand.py"]:
        tree = ast.parse(path.read_text())
        called = {node.func.id for node in ast.walk(tree)
                  if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
        assert not called & {"eval", "exec", "compile", "__import__", "getattr", "setattr",
                             "open"}, path
        imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                    if isinstance(node, ast.Import) for alias in node.names}
        imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom)}
        assert not imported & {"subprocess", "os", "importlib", "pickle", "shutil"}, path


def test_a_loop_cut_short_by_a_flow_mapping_says_to_quote_it():
    (found,) = problems("namespaces:\n  r${k}: {for: k in range(1, 3)}\n")
    assert found.startswith("lab.yaml:4:16: for: expected ',', found the end")
    assert "quote the loop" in found
    assert load_topology_text(HEAD + 'namespaces:\n  r${k}: {for: "k in range(1, 3)"}\n',
                              "lab.yaml").namespaces() == ["r1", "r2"]


def test_a_loop_over_a_mapping_gives_its_keys_or_its_pairs():
    text = ("vars:\n  pods: {a: 10.1.0.0/24, b: 10.2.0.0/24}\n"
            "namespaces:\n  ${k}: {for: k in pods}\n"
            "links:\n  - for: name, net in pods\n    name: d-${name}\n    kind: dummy\n"
            "    addresses: ['${ifaddr(net, 1)}']\n")
    topo = load_topology_text(HEAD + text, "lab.yaml")
    assert topo.namespaces() == ["a", "b"]
    assert sorted((a.link, a.cidr) for a in topo.of_type(Address)) == [
        ("d-a", "10.1.0.1/24"), ("d-b", "10.2.0.1/24")]


def test_if_alone_keeps_or_drops_an_item_and_value_repeats_a_scalar():
    text = ("vars: {extra: false}\n"
            "links:\n"
            "  - {if: 'not extra', name: d0, kind: dummy,\n"
            "     addresses: [{for: 'k in range(1, 4)', value: '10.0.${k}.1/24'}, 10.9.0.1/24]}\n"
            "  - {if: extra, name: d1, kind: dummy}\n")
    topo = load_topology_text(HEAD + text, "lab.yaml")
    assert [link.name for link in topo.of_type(Link)] == ["d0"]
    assert sorted(a.cidr for a in topo.of_type(Address)) == [
        "10.0.1.1/24", "10.0.2.1/24", "10.0.3.1/24", "10.9.0.1/24"]
    topo = load_topology_text(HEAD + text, "lab.yaml", variables={"extra": "true"})
    assert [link.name for link in topo.of_type(Link)] == ["d1"]


def test_link_defaults_leave_the_hosts_own_nics_alone():
    text = ("defaults: {links: {mtu: 9000}}\n"
            "links:\n  - {name: eth0, kind: external}\n  - {name: br0, kind: bridge}\n")
    topo = load_topology_text(HEAD + text, "lab.yaml")
    assert {link.name: link.mtu for link in topo.objects.values()
            if hasattr(link, "mtu")} == {"eth0": None, "br0": 9000}


_PIECES = ["1", "0", "-", "+", "*", "/", "%", "(", ")", "[", "]", ",", ".", "'a'", "\"10.0.0.0/8\"",
           "m", "k", "i", "x", "if", "else", "and", "or", "not", "==", "<", "range", "len",
           "cidrhost", "cidrsubnet", "ipadd", "format", "join", "min", "int", "str", "true",
           "null", "99999999999999999999", "'%05d'", "lower", "address", " "]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=14))
def test_any_expression_either_evaluates_or_says_why(pieces):
    """Whatever the text, evaluation ends in a value or an ExprError: never a Python
    exception, which the loader would turn into a traceback."""
    try:
        evaluate(" ".join(pieces), {"m": {"k": [1, 2]}, "i": 3, "x": "10.1.0.0/16"})
    except ExprError:
        pass
