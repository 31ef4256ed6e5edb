"""Templated topologies on a real kernel: the shipped star.yaml and routers-lab.yaml (a file
with includes) applied with --var, proven with traffic and read back with ip -j and /proc;
`render` gives a plain file apply takes as it is; a bad value made by a loop changes nothing.
(flannel-fleet.yaml, one file for every machine from host facts: tests/test_dataplanes.py.)"""

from __future__ import annotations

import json

STAR = "topologies/star.yaml"
LAB = "topologies/routers-lab.yaml"


def ok(result) -> str:
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    return result.stdout


def served_by(host, client: str, address: str, server) -> str:
    result = host.http_get(client, address, 80)
    assert result.ok, f"{client} -> {address}: {result.error}"
    return server.seen_sources()[-1]


def test_star_template_with_a_var_builds_n_containers_that_talk(host, tmp_path):
    before = host.snapshot()
    ok(host.netdecl("apply", "--var", "n=3", STAR))
    assert host.netns_list() == ["c0", "c1", "c2"]
    # an independent eye: the veths on br0, the addresses the loop computed, the defaults
    ports = json.loads(host.run(["ip", "-j", "link", "show", "master", "br0"]).stdout)
    assert sorted(p["ifname"] for p in ports) == ["veth-c0", "veth-c1", "veth-c2"]
    addr = json.loads(host.run(["ip", "-j", "addr", "show", "eth0"], ns="c2").stdout)[0]
    assert [(a["local"], a["prefixlen"]) for a in addr["addr_info"] if a["family"] == "inet"] \
        == [("10.200.0.4", 16)]
    rp_filter = host.run(["cat", "/proc/sys/net/ipv4/conf/all/rp_filter"], ns="c1").stdout
    assert rp_filter.strip() == "0"  # from defaults: namespaces
    server = host.start_server("c2", 80)
    assert served_by(host, "c0", "10.200.0.4", server) == "10.200.0.2"
    # the same vars plan no change; render's plain file is the same topology
    assert host.netdecl("plan", "--detailed-exitcode", "--var", "n=3", STAR).returncode == 0
    rendered = tmp_path / "star-3.yaml"
    rendered.write_text(ok(host.netdecl("render", "--var", "n=3", STAR)))
    ok(host.netdecl("validate", str(rendered)))
    assert host.netdecl("plan", "--detailed-exitcode", str(rendered)).returncode == 0
    # growing the star by a var adds exactly one container
    plan = ok(host.netdecl("plan", "--var", "n=4", STAR))
    assert "+ namespace c3" in plan and "- " not in plan.replace("-/+", "")
    ok(host.netdecl("destroy", "--var", "n=3", STAR))
    assert host.snapshot() == before


def test_a_bad_value_made_by_a_loop_names_the_template_and_changes_nothing(host, tmp_path):
    path = tmp_path / "lab.yaml"
    path.write_text(
        "version: 1\nname: lab\nvars: {n: 20}\n"
        "namespaces:\n  c${i}: {for: i in range(n)}\n"
        "links:\n"
        "  - for: i in range(n)\n"
        "    name: v${i}\n"
        "    kind: veth\n"
        "    peer: {name: eth0, namespace: 'c${i}', addresses: ['10.0.1.${i * 20}/24']}\n")
    before = host.snapshot()
    result = host.netdecl("apply", str(path))
    assert result.returncode == 3
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"{path}:10:56 (i=13): '10.0.1.260/24' is not an address"), first
    assert host.snapshot() == before


def test_routers_lab_from_included_files_routes_between_every_lan(host):
    before = host.snapshot()
    ok(host.netdecl("apply", LAB))
    assert len([ns for ns in host.netns_list() if ns.startswith("h")]) == 12
    routes = json.loads(host.run(["ip", "-j", "route", "show", "10.1.3.0/24"], ns="r1").stdout)
    assert [(r["gateway"], r["dev"]) for r in routes] == [("10.0.0.3", "eth0")]
    server = host.start_server("h3-4", 80)
    # host 1 of router 1 to host 4 of router 3: across the backbone, not NATed
    assert served_by(host, "h1-1", "10.1.3.5", server) == "10.1.1.2"
    assert host.netdecl("plan", "--detailed-exitcode", LAB).returncode == 0
    ok(host.netdecl("destroy", LAB))
    assert host.snapshot() == before


def test_the_agent_applies_an_edit_to_an_included_file(host, tmp_path):
    from agentproc import AgentProcess, wait_until

    main, part = tmp_path / "main.yaml", tmp_path / "parts" / "ns.yaml"
    part.parent.mkdir()
    main.write_text("version: 1\nname: inc\nvars: {n: 2}\ninclude: parts/ns.yaml\n")
    part.write_text("namespaces:\n  c${i}: {for: i in range(n)}\n")
    with AgentProcess(host, str(main), "--var", "n=1") as agent:
        agent.wait_for("started")
        agent.wait_for("applied", lambda e: e["reason"] == "start")
        assert host.netns_list() == ["c0"]  # n from --var
        # an edit of the included file only (written the way editors do: rename over)
        tmp = part.with_name("ns.yaml.tmp")
        tmp.write_text("namespaces:\n  c${i}: {for: i in range(n + 1)}\n")
        tmp.replace(part)
        wait_until(lambda: host.netns_list() == ["c0", "c1"], 10, "the edit applied")
        agent.wait_for("applied", lambda e: e["reason"] == "file")
        assert agent.stop() == 0
    ok(host.netdecl("destroy", str(main)))
    assert host.netns_list() == []


def test_a_saved_plan_of_a_template_carries_its_expansion(host, tmp_path):
    saved = tmp_path / "plan.json"
    ok(host.netdecl("plan", "--var", "n=2", "--out", str(saved), STAR))
    text = json.loads(saved.read_text())["source_text"]
    assert "${" not in text and "vars:" not in text  # the plain expansion, not the template
    ok(host.netdecl("apply", str(saved)))  # no --var: the plan needs none
    assert host.netns_list() == ["c0", "c1"]
    ok(host.netdecl("destroy", "--var", "n=2", STAR))
    assert host.netns_list() == []


def test_host_facts_are_what_ip_and_the_system_say(host, tmp_path):
    host.run(["ip", "link", "add", "eth7", "type", "veth", "peer", "name", "eth8"])
    host.run(["ip", "addr", "add", "192.0.2.7/24", "dev", "eth7"])
    host.run(["ip", "link", "set", "eth7", "up"])
    host.run(["ip", "route", "add", "default", "via", "192.0.2.1", "dev", "eth7"])
    path = tmp_path / "facts.yaml"
    path.write_text(
        "version: 1\nname: facts\n"
        "vars:\n  up: '${facts.default_route}'\n"
        "namespaces:\n"
        "  h-${facts.hostname}: {}\n"
        "  m-${facts.machine_id}: {}\n"
        "links:\n"
        "  - {name: '${up.dev}', kind: external}\n"
        "  - {name: d0, kind: dummy, mac: '${facts.links.eth7.mac}',\n"
        "     addresses: ['${up.address}']}\n"
        "routes:\n"
        "  - {to: 198.51.100.0/24, via: '${up.gateway}', dev: '${up.dev}'}\n")
    plain = yaml_of(ok(host.netdecl("render", str(path))))
    # the independent eye: ip -j, hostname(1), /etc/machine-id
    mac = json.loads(host.run(["ip", "-j", "link", "show", "eth7"]).stdout)[0]["address"]
    hostname = host.run(["hostname"]).stdout.strip()
    machine_id = host.run(["cat", "/etc/machine-id"]).stdout.strip()
    assert set(plain["namespaces"]) == {f"h-{hostname}", f"m-{machine_id}"}
    assert plain["links"] == [{"name": "eth7", "kind": "external"},
                              {"name": "d0", "kind": "dummy", "mac": mac,
                               "addresses": ["192.0.2.7/24"]}]
    assert plain["routes"] == [{"to": "198.51.100.0/24", "via": "192.0.2.1", "dev": "eth7"}]


def yaml_of(text: str):
    import yaml

    return yaml.safe_load(text)
