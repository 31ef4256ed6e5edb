"""Beside NetworkManager and systemd-networkd (issue 28), on fake /proc and /run trees: which
links they manage (backends/managers.py), and what plan and apply decide about it
(engine/coexistence.py, planner/diff.py) against the in-memory host. The real managers under
a real systemd: tests/test_systemd_lab.py."""

from __future__ import annotations

import fnmatch
import os
import signal
from pathlib import Path

import pytest
from fakehost import FakeHost

from netdecl.backends.host import TEMP_LINK_GLOB
from netdecl.backends.managers import NETWORK_MANAGER, NETWORKD, Managers, Paths
from netdecl.engine import service
from netdecl.engine.planner.plan import ADOPT
from netdecl.errors import ActionFailed, ApplyFailed
from netdecl.model import ROOT, ExternalLink, Link, Topology


class FakeRun:
    """A fake /proc and /run: this process, PID 1 and the managers, each with a network
    namespace (a file: the same file is the same namespace)."""

    def __init__(self, root: Path, *, host_netns: bool = True) -> None:
        self.root = root
        self.paths = Paths(proc=root / "proc", nm_devices=root / "run/NetworkManager/devices",
                           nm_conf=root / "run/NetworkManager/conf.d",
                           networkd_links=root / "run/systemd/netif/links",
                           networkd_conf=root / "run/systemd/network")
        (root / "netns").mkdir(parents=True)
        self.netns("host")
        self.netns("other")
        self.process("self", "pytest", "host" if host_netns else "other")
        self.process("1", "systemd", "host")
        self.killed: list[tuple[int, int]] = []
        self.ran: list[list[str]] = []

    def netns(self, name: str) -> None:
        (self.root / "netns" / name).write_text(name)

    def process(self, pid: str, comm: str, netns: str) -> None:
        where = self.paths.proc / pid
        (where / "ns").mkdir(parents=True)
        (where / "comm").write_text(comm + "\n")
        os.link(self.root / "netns" / netns, where / "ns" / "net")

    def device(self, directory: Path, ifindex: int, text: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / str(ifindex)).write_text(text)

    def managers(self) -> Managers:
        return Managers(self.paths, run=self.ran.append,
                        kill=lambda pid, sig: self.killed.append((pid, sig)))


def nm_device(managed: bool) -> str:
    return f"[device]\nmanaged={'true' if managed else 'false'}\nnm-owned=false\n"


def networkd_link(state: str) -> str:
    return f"# This is private data. Do not parse.\nADMIN_STATE={state}\nOPER_STATE=routable\n"


@pytest.fixture
def run(tmp_path) -> FakeRun:
    fake = FakeRun(tmp_path / "fake")
    fake.process("300", "NetworkManager", "host")
    fake.process("400", "systemd-network", "host")
    fake.device(fake.paths.nm_devices, 5, nm_device(True))
    fake.device(fake.paths.nm_devices, 6, nm_device(False))
    fake.device(fake.paths.networkd_links, 7, networkd_link("configured"))
    fake.device(fake.paths.networkd_links, 8, networkd_link("unmanaged"))
    fake.device(fake.paths.networkd_links, 9, networkd_link("pending"))
    return fake


def test_which_links_each_manager_manages(run):
    managers = run.managers()
    assert managers.running() == {NETWORK_MANAGER: 300, NETWORKD: 400}
    assert managers.managed() == {5: NETWORK_MANAGER, 7: NETWORKD}


def test_a_manager_of_another_network_namespace_or_a_stopped_one_manages_nothing_here(tmp_path):
    fake = FakeRun(tmp_path / "fake")
    fake.process("300", "NetworkManager", "other")  # a sandbox's, a container's
    fake.device(fake.paths.nm_devices, 5, nm_device(True))
    # networkd not running: the files it left say nothing
    fake.device(fake.paths.networkd_links, 7, networkd_link("configured"))
    assert fake.managers().running() == {}
    assert fake.managers().managed() == {}


def test_without_access_to_their_namespace_links_the_links_they_see_tell(tmp_path):
    """Under netdecl's units (no CAP_SYS_PTRACE) /proc/PID/ns/net of another process cannot be
    read; /proc/PID/net/dev can."""
    fake = FakeRun(tmp_path / "fake")
    dev = "Inter-|   Receive\n face |bytes\n    lo: 0 0\n  eth0: 1 2\n"
    for pid in ("self", "1"):
        (fake.paths.proc / pid / "net").mkdir()
        (fake.paths.proc / pid / "net" / "dev").write_text(dev)
    for pid, comm, links in (("300", "NetworkManager", dev), ("400", "systemd-network",
                                                             dev.replace("eth0", "veth9"))):
        (fake.paths.proc / pid / "net").mkdir(parents=True)
        (fake.paths.proc / pid / "net" / "dev").write_text(links)
        (fake.paths.proc / pid / "comm").write_text(comm)
    (fake.paths.proc / "1" / "ns" / "net").unlink()
    assert fake.managers().running() == {NETWORK_MANAGER: 300}
    assert fake.managers().host_network()


def test_marks_are_written_reloaded_and_removed(run):
    managers = run.managers()
    assert managers.mark("lab", ["br0", "veth1"]) == []
    nm = (run.paths.nm_conf / "90-netdecl-lab.conf").read_text()
    assert "[keyfile]\nunmanaged-devices+=interface-name:=br0;interface-name:=veth1\n" in nm
    networkd = (run.paths.networkd_conf / "00-netdecl-lab.network").read_text()
    assert "[Match]\nName=br0 veth1\n\n[Link]\nUnmanaged=yes\n" in networkd
    # networkd reads them as systemd-network, not root, whatever netdecl's umask
    for path in (run.paths.nm_conf / "90-netdecl-lab.conf", run.paths.networkd_conf,
                 run.paths.networkd_conf / "00-netdecl-lab.network"):
        assert path.stat().st_mode & 0o777 in (0o644, 0o755), path
    assert run.killed == [(300, signal.SIGHUP)] and run.ran == [["networkctl", "reload"]]
    # the same marks again: nothing written, nobody reloaded
    assert managers.mark("lab", ["veth1", "br0"]) == []
    assert len(run.killed) == 1 and len(run.ran) == 1
    assert managers.mark("lab", []) == []
    assert not (run.paths.nm_conf / "90-netdecl-lab.conf").exists()
    assert not (run.paths.networkd_conf / "00-netdecl-lab.network").exists()
    assert len(run.killed) == 2 and len(run.ran) == 2


def test_no_marks_outside_the_hosts_network_namespace(tmp_path):
    fake = FakeRun(tmp_path / "fake", host_netns=False)
    (fake.paths.nm_conf).mkdir(parents=True)
    theirs = fake.paths.nm_conf / "90-netdecl-lab.conf"
    theirs.write_text("the host's own topology lab\n")
    assert fake.managers().mark("lab", ["br0"]) == []
    assert fake.managers().mark("lab", []) == []
    assert theirs.read_text() == "the host's own topology lab\n"
    assert not fake.paths.networkd_conf.exists()


def test_a_manager_that_will_not_reload_is_a_problem_named(run):
    def refuse(argv: list[str]) -> None:
        raise OSError("networkctl: not found")

    managers = Managers(run.paths, run=refuse, kill=lambda pid, sig: None)
    problems = managers.mark("lab", ["br0"])
    assert problems == ["systemd-networkd did not reload (networkctl: not found): it applies "
                        "netdecl's marks when it restarts"]


# -- the engine's decisions, on the in-memory host ------------------------------------------

def topology(*links) -> Topology:
    topo = Topology(name="lab")
    topo.extend(links)
    return topo


def host_with(*links: Link) -> FakeHost:
    host = FakeHost()
    host.add_foreign(*links)
    return host


def managed_by(run: FakeRun, host: FakeHost, name: str, manager: str) -> None:
    link = host.objects[("link", ROOT, name)]
    assert isinstance(link, Link) and link.ifindex is not None
    if manager == NETWORK_MANAGER:
        run.device(run.paths.nm_devices, link.ifindex, nm_device(True))
    else:
        run.device(run.paths.networkd_links, link.ifindex, networkd_link("configuring"))


@pytest.mark.parametrize(("manager", "release"), [
    (NETWORK_MANAGER, "`nmcli device set eth1 managed no`"),
    (NETWORKD, "[Link] Unmanaged=yes"),
])
def test_a_declared_link_another_manager_holds_is_a_conflict_that_says_how_to_release_it(
        tmp_path, run, manager, release):
    host = host_with(Link(ROOT, "eth1", "device"))
    managed_by(run, host, "eth1", manager)
    declared = topology(ExternalLink(ROOT, "eth1", mtu=1400), Link(ROOT, "br0", "bridge"))
    result = service.plan(declared, tmp_path, host=host, managers=run.managers())
    [conflict] = result.conflicts
    assert conflict.key == ("external", ROOT, "eth1")
    assert f"link eth1 is managed by {manager}" in conflict.message
    assert release in conflict.message
    before = host.state()
    with pytest.raises(service.PlanConflicts):
        service.apply(declared, tmp_path, host=host, managers=run.managers())
    assert host.state() == before
    assert not run.paths.nm_conf.exists()  # refused: no mark either


def test_adopting_a_managed_link_is_refused_until_it_is_released(tmp_path, run):
    host = host_with(Link(ROOT, "br7", "bridge"))
    managed_by(run, host, "br7", NETWORK_MANAGER)
    declared = topology(Link(ROOT, "br7", "bridge"))
    plan = service.plan(declared, tmp_path, host=host, adopt=True, managers=run.managers())
    assert [c.key for c in plan.conflicts] == [("link", ROOT, "br7")]
    with pytest.raises(service.PlanConflicts):
        service.apply(declared, tmp_path, host=host, adopt=True, managers=run.managers())
    # released (nmcli device set br7 managed no): adopted
    (run.paths.nm_devices / str(host.objects[("link", ROOT, "br7")].ifindex)).write_text(
        nm_device(False))
    result = service.apply(declared, tmp_path, host=host, adopt=True, managers=run.managers())
    assert [a.op for a in result.executed] == [ADOPT]


def test_the_links_netdecl_makes_are_marked_and_destroy_removes_the_marks(tmp_path, run):
    declared = topology(Link(ROOT, "br0", "bridge"), Link("", "br1", "bridge"))
    host = FakeHost()
    service.apply(declared, tmp_path, host=host, managers=run.managers())
    nm = run.paths.nm_conf / "90-netdecl-lab.conf"
    assert "interface-name:=br0;interface-name:=br1" in nm.read_text()
    # a manager that takes up netdecl's own link anyway is no conflict: it is netdecl's
    managed_by(run, host, "br0", NETWORKD)
    assert service.plan(declared, tmp_path, host=host, managers=run.managers()).conflicts == []
    # one link fewer: the mark follows the file
    service.apply(topology(Link(ROOT, "br0", "bridge")), tmp_path, host=host,
                  managers=run.managers())
    assert "br1" not in nm.read_text()
    service.destroy("lab", tmp_path, host=host, managers=run.managers())
    assert not nm.exists()
    assert not (run.paths.networkd_conf / "00-netdecl-lab.network").exists()


def test_a_failed_apply_puts_the_marks_back_as_they_were(tmp_path, run):
    host = FakeHost()
    service.apply(topology(Link(ROOT, "br0", "bridge")), tmp_path, host=host,
                  managers=run.managers())
    nm = run.paths.nm_conf / "90-netdecl-lab.conf"
    before = nm.read_text()
    host.arm(1)
    with pytest.raises((ApplyFailed, ActionFailed)):
        service.apply(topology(Link(ROOT, "br0", "bridge"), Link(ROOT, "br9", "bridge")),
                      tmp_path, host=host, managers=run.managers())
    assert nm.read_text() == before


def test_while_an_apply_creates_links_the_marks_cover_their_temporary_names(tmp_path, run):
    """Links are born as nd<secret><end> and renamed: a networkd .network with Name=* (or
    NetworkManager) must not take one up in between."""
    from netdecl.backends.host import temp_link_name

    managers = run.managers()
    written: list[dict[str, str]] = []
    restore = managers.restore
    managers.restore = lambda topology, texts: (written.append(dict(texts)),
                                                restore(topology, texts))[1]
    service.apply(topology(Link(ROOT, "br0", "bridge")), tmp_path, host=FakeHost(),
                  managers=managers)
    during, after = written[0], written[-1]
    born = temp_link_name("0123456789ab", 1)
    assert fnmatch.fnmatchcase(born, TEMP_LINK_GLOB) and len(born) == len(TEMP_LINK_GLOB)
    assert f"interface-name:{TEMP_LINK_GLOB}" in during[NETWORK_MANAGER]
    assert f"Name=br0 {TEMP_LINK_GLOB}\n" in during[NETWORKD]
    # after the apply: exactly the declared links
    assert TEMP_LINK_GLOB not in after[NETWORK_MANAGER] + after[NETWORKD]
    assert (run.paths.networkd_conf / "00-netdecl-lab.network").read_text() == after[NETWORKD]
