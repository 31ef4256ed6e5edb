"""The Host seam, tested as a seam: every case here runs on the in-memory FakeHost and on the
real KernelHost, and both must give the same answers.

The unit tests of the engine run on tests/fakehost.py; they prove something about the kernel
only as far as the fake behaves as the kernel does. This suite holds it to that: the same
sequence of Host calls on both, the same objects expected back, the same refusals (by errno).

How the kernel side runs: KernelHost must live inside a throwaway network + mount namespace
(harness.HermeticHost), and the pytest process never enters one, so it runs in a worker process
started inside the hermetic host and driven over a pipe (tests/remotehost.py). A case cannot
tell the two apart. "Someone else" acting on the machine (not through the Host) is a World:
`ip` commands on the kernel, FakeHost's test helpers on the fake.

What is compared, and what is not:

- Identities (``Link.ident``/``ifindex``, ``Namespace.ident``, ``NatTable.ident``) are each
  host's own spelling (nsfs inodes and ifindexes; counters): compared for what the engine
  relies on instead: present, distinct, the one a create reported, unchanged by a modify,
  different for an object someone made again.
- A MAC netdecl did not ask for is the kernel's random choice: checked to be a unicast,
  locally administered address; one that was asked for is compared.
- The kernel's own FDB entries (its multicast addresses and each link's own MAC, listed as
  permanent on every bridge and port) are left out of the comparison: the fake does not make
  them, and the engine never takes them for netdecl's (FDB entries are owned by record).
- Sysctl defaults are not compared: a new namespace takes its IPv4 values from the machine's
  first namespace (net.core.devconf_inherit_init_net), so they are the machine's, not the
  kernel's; values written and read back are. Only sysctls the fake knows are tried (the
  three of fakehost.SYSCTL_DEFAULTS; it refuses any other, as the kernel refuses a name it
  does not have).
- Two rules at one priority (the kernel allows it) are not tried: the fake keeps one object per
  key, netdecl never makes two, and rules netdecl did not make are not even seen by the engine.
- A veth's surviving end goes a moment after its peer's namespace is deleted on the kernel,
  at once on the fake; cases look only after KernelHost's delete of the pair, which waits.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import inspect
import os
import shutil
import subprocess
import sys
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest
from fakehost import FakeHost
from harness import HermeticHost
from remotehost import RemoteHost

from netdecl.backends.host import Birth, Host, Scope, owner_mark, temp_link_name
from netdecl.backends.sysctl import SysctlError
from netdecl.errors import NetdeclError
from netdecl.links.bridge import BridgeSpec
from netdecl.links.veth import VethSpec
from netdecl.links.vxlan import Vxlan
from netdecl.model import (
    ROOT,
    RTPROT_NETDECL,
    Address,
    ExternalLink,
    FdbEntry,
    Key,
    Link,
    Namespace,
    NatRule,
    NatTable,
    Neighbor,
    NetObject,
    Route,
    Rule,
    Sysctl,
)

TOPO = "conf"
MARK = owner_mark(TOPO)
RTPROT_KERNEL, RTPROT_STATIC = 2, 4
# the kernel's own policy rules, in every namespace
DEFAULT_RULES = [(4, 0, 255), (4, 32766, 254), (4, 32767, 253), (6, 0, 255), (6, 32766, 254)]
FORWARD = "net.ipv4.ip_forward"

# `_: Host = FakeHost()` for a type checker: FakeHost must satisfy the protocol structurally
# (the same methods, with compatible signatures). test_the_fake_has_every_method_of_the_protocol
# checks the same at run time for when no type checker runs.
_STATIC_CHECK: Host = FakeHost()


# -- the two hosts -------------------------------------------------------------------------------

class World(Protocol):
    """Someone else acting on the machine, not through the Host."""

    def make_bridge(self, ns: str, name: str) -> None: ...

    def make_veth(self, ns: str, name: str, peer: str) -> None: ...

    def remove_link(self, ns: str, name: str) -> None: ...

    def make_namespace(self, name: str) -> None: ...

    def remove_namespace(self, name: str) -> None: ...


class FakeWorld:
    def __init__(self, fake: FakeHost) -> None:
        self.fake = fake

    def make_bridge(self, ns: str, name: str) -> None:
        # as `ip link add NAME type bridge` leaves it: down, no alias, STP off
        self.fake.add_foreign(Link(ns, name, "bridge", up=False))

    def make_veth(self, ns: str, name: str, peer: str) -> None:
        self.fake.add_foreign(Link(ns, name, "veth", up=False, spec=VethSpec(peer=(ns, peer))),
                              Link(ns, peer, "veth", up=False, spec=VethSpec(peer=(ns, name))))

    def remove_link(self, ns: str, name: str) -> None:
        self.fake.remove(("link", ns, name))

    def make_namespace(self, name: str) -> None:
        self.fake.add_foreign(Namespace(name))

    def remove_namespace(self, name: str) -> None:
        self.fake.remove(("namespace", name))


class KernelWorld:
    def __init__(self, hermetic: HermeticHost) -> None:
        self.hermetic = hermetic

    def make_bridge(self, ns: str, name: str) -> None:
        self.hermetic.run(["ip", "link", "add", name, "type", "bridge"], ns=ns or None)

    def make_veth(self, ns: str, name: str, peer: str) -> None:
        self.hermetic.run(["ip", "link", "add", name, "type", "veth", "peer", "name", peer],
                          ns=ns or None)

    def remove_link(self, ns: str, name: str) -> None:
        self.hermetic.run(["ip", "link", "del", name], ns=ns or None)

    def make_namespace(self, name: str) -> None:
        self.hermetic.run(["ip", "netns", "add", name])

    def remove_namespace(self, name: str) -> None:
        self.hermetic.run(["ip", "netns", "del", name])


@dataclass
class Subject:
    """One host under test: the Host, and the World around it."""

    name: str
    host: Host
    world: World


@contextlib.contextmanager
def hosted(which: str, request: pytest.FixtureRequest) -> Iterator[Subject]:
    """The fake, or a KernelHost in a hermetic host of its own."""
    if which == "fake":
        fake = FakeHost()
        yield Subject("fake", fake, FakeWorld(fake))
        return
    # the `host` fixture (conftest): a hermetic host, or a skip where none can be made; torn
    # down after the test, so the worker goes first and nothing outlives it
    hermetic: HermeticHost = request.getfixturevalue("host")
    remote = RemoteHost(hermetic)
    try:
        yield Subject("kernel", remote, KernelWorld(hermetic))
    finally:
        remote.shutdown()


@pytest.fixture(params=["fake", pytest.param("kernel", marks=pytest.mark.kernel)])
def subject(request: pytest.FixtureRequest) -> Iterator[Subject]:
    with hosted(request.param, request) as made:
        yield made


# -- helpers -------------------------------------------------------------------------------------

@dataclass
class Births:
    """Births for creates, and every identity they reported, in order."""

    reports: list[tuple[Key, str]] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)

    def __call__(self) -> Birth:
        secret = f"{len(self.secrets) + 1:012x}"  # (only an apply's own secret is random)
        self.secrets.append(secret)
        return Birth(secret, lambda key, ident: self.reports.append((key, ident)))

    def last(self, key: Key) -> str | None:
        found = [ident for k, ident in self.reports if k == key]
        return found[-1] if found else None


def scope(*namespaces: str, sysctls: dict[str, set[str]] | None = None, rules: bool = False,
          fdb: bool = False, nat: bool = False) -> Scope:
    return Scope(list(namespaces), sysctls or {}, nat=nat, rules=rules, fdb=fdb)


def observe(subject: Subject, *namespaces: str, **kinds: Any) -> dict[Key, NetObject]:
    seen = subject.host.observe(TOPO, scope(*namespaces, **kinds))
    keys = [o.key for o in seen if not isinstance(o, Rule)]  # (rules may share a priority)
    assert len(keys) == len(set(keys)), f"an object observed twice: {sorted(map(str, keys))}"
    return {o.key: o for o in seen}


def _kernel_made(obj: NetObject, macs: set[tuple[str, str]]) -> bool:
    """An FDB entry the kernel lists by itself: a multicast address the link listens to, or a
    link's own MAC (see the module's docstring)."""
    return isinstance(obj, FdbEntry) and obj.dst is None and (
        int(obj.mac[:2], 16) & 1 == 1 or (obj.namespace, obj.mac) in macs)


def comparable(objects: Iterable[NetObject], links: bool = True) -> list[NetObject]:
    """``objects`` without what is each host's own (identities, MACs netdecl did not choose,
    the kernel's own FDB entries), sorted; without links and namespaces unless ``links``."""
    objects = list(objects)
    macs = {(o.namespace, o.mac) for o in objects if isinstance(o, Link) and o.mac}
    out: list[NetObject] = []
    for o in objects:
        if _kernel_made(o, macs) or (not links and isinstance(o, (Link, Namespace))):
            continue
        if isinstance(o, Link):
            o = dataclasses.replace(o, ifindex=None, ident=None, mac=None)
        elif isinstance(o, (Namespace, NatTable)):
            o = dataclasses.replace(o, ident=None)
        out.append(o)
    return sorted(out, key=repr)


def mine(ns: str, name: str, kind: str, **attrs: Any) -> Link:
    """A link as observed after netdecl made it (its mark as its alias), identities aside."""
    return Link(ns, name, kind, owner=TOPO, alias=MARK, **attrs)


def refusal(call: Callable[[], object]) -> int | None:
    """The errno of the kernel's (or the fake's) refusal of ``call``; None when refused
    without one (a SysctlError, nft's message). Fails when ``call`` is not refused, or raises
    something other than a refusal (a bug, not an answer)."""
    try:
        call()
    except (NetdeclError, OSError) as exc:
        return getattr(exc, "errno", None)
    raise AssertionError("not refused")


def is_random_mac(mac: str | None) -> bool:
    """Unicast and locally administered: what the kernel (eth_hw_addr_random) and the fake
    give a link whose MAC nobody chose."""
    return mac is not None and len(mac.split(":")) == 6 and int(mac[:2], 16) & 0b11 == 0b10


def make_pair(subject: Subject, births: Births) -> None:
    """Namespace a, bridge br0, and veth v0 (a port of br0, MTU 1400) to a/eth0."""
    host = subject.host
    host.create(Namespace("a"), TOPO, birth=births())
    host.create(Link(ROOT, "br0", "bridge"), TOPO, birth=births())
    host.create(Link(ROOT, "v0", "veth", master="br0", mtu=1400,
                     spec=VethSpec(peer=("a", "eth0"))), TOPO,
                peer=Link("a", "eth0", "veth", spec=VethSpec(peer=(ROOT, "v0"))), birth=births())


# -- the protocol --------------------------------------------------------------------------------

def test_the_fake_has_every_method_of_the_protocol() -> None:
    """What a type checker says of _STATIC_CHECK, at run time: every method of Host exists on
    FakeHost (and RemoteHost) with the same parameters, defaults and annotations."""
    methods = [name for name, member in vars(Host).items()
               if callable(member) and not name.startswith("_")]
    assert methods == ["observe", "named_namespaces", "unmodelled", "missing_kinds", "create",
                       "delete", "modify", "missing_qdisc_kinds",
                       "set_alias", "restore_route", "remove_placeholders", "refresh",
                       "reconnect", "close"]
    for cls in (FakeHost, RemoteHost):
        for name in methods:
            want = inspect.signature(getattr(Host, name))
            have = inspect.signature(getattr(cls, name))
            assert have == want, f"{cls.__name__}.{name}{have} is not Host.{name}{want}"
            assert typing.get_type_hints(getattr(cls, name)) == \
                typing.get_type_hints(getattr(Host, name)), f"{cls.__name__}.{name}"


# -- making and observing ------------------------------------------------------------------------

def test_a_namespace_is_reported_in_three_steps_and_observed_as_the_last(subject: Subject) -> None:
    births = Births()
    subject.host.create(Namespace("a"), TOPO, birth=births())
    assert subject.host.named_namespaces() == ["a"]
    (seen,) = observe(subject, "a").values()
    assert isinstance(seen, Namespace) and seen.ident
    # the placeholder file, either of the two (a crash between them), the namespace
    file, either, ident = (ident for _, ident in births.reports)
    assert [key for key, _ in births.reports] == [("namespace", "a")] * 3
    assert ident == seen.ident and either == f"{file}|{ident}" and file != ident


def test_links_netdecl_makes_carry_nothing_it_has_no_model_for(subject: Subject) -> None:
    """`show` names what a host holds beyond the model (a qdisc someone added); links made
    as netdecl makes them carry only the kernel's default qdiscs, which are not named."""
    make_pair(subject, Births())
    subject.host.create(Link(ROOT, "br1", "bridge", spec=BridgeSpec()), TOPO)
    assert subject.host.unmodelled([ROOT, "a"]) == []


def test_links_are_observed_as_made(subject: Subject) -> None:
    births = Births()
    make_pair(subject, births)
    host = subject.host
    host.create(Link(ROOT, "br1", "bridge", spec=BridgeSpec(stp=True), mac="02:11:22:33:44:55",
                     mtu=9000), TOPO,
                birth=births())
    host.create(Link(ROOT, "v1", "veth", master="br1", hairpin=True,
                     spec=VethSpec(peer=("a", "eth1"))),
                TOPO, peer=Link("a", "eth1", "veth", up=False, spec=VethSpec(peer=(ROOT, "v1"))),
                birth=births())
    host.create(Link(ROOT, "vx0", "vxlan", spec=Vxlan(id=42, dev="br0", port=4790,
                                                       learning=False)), TOPO, birth=births())
    host.create(Link(ROOT, "vx1", "vxlan", spec=Vxlan(id=43, local="10.0.0.1")), TOPO,
                birth=births())
    host.create(Link(ROOT, "quiet", "bridge", up=None), TOPO, birth=births())

    seen = observe(subject, ROOT, "a")
    assert comparable(seen.values()) == comparable([
        Namespace("a"),
        # a bridge whose MTU nobody set follows its smallest port; one set stays
        mine(ROOT, "br0", "bridge", mtu=1400, spec=BridgeSpec(stp=False)),
        mine(ROOT, "br1", "bridge", mtu=9000, spec=BridgeSpec(stp=True)),
        mine(ROOT, "v0", "veth", mtu=1400, master="br0", hairpin=False,
             spec=VethSpec(peer=("a", "eth0"))),
        mine("a", "eth0", "veth", mtu=1500, spec=VethSpec(peer=(ROOT, "v0"))),
        mine(ROOT, "v1", "veth", mtu=1500, master="br1", hairpin=True,
             spec=VethSpec(peer=("a", "eth1"))),
        mine("a", "eth1", "veth", up=False, mtu=1500, spec=VethSpec(peer=(ROOT, "v1"))),
        # over a device: its MTU less the 50 bytes of VXLAN headers; over none: 1500
        mine(ROOT, "vx0", "vxlan", mtu=1350,
             spec=Vxlan(id=42, dev="br0", port=4790, learning=False)),
        mine(ROOT, "vx1", "vxlan", mtu=1500, spec=Vxlan(id=43, local="10.0.0.1")),
        # up not specified: left as the kernel makes a link, down
        mine(ROOT, "quiet", "bridge", up=False, mtu=1500, spec=BridgeSpec(stp=False)),
    ])
    links = [o for o in seen.values() if isinstance(o, Link)]
    assert seen[("link", ROOT, "br1")].mac == "02:11:22:33:44:55"  # type: ignore[attr-defined]
    assert all(is_random_mac(o.mac) for o in links if o.name != "br1"), links
    idents = [o.ident for o in links]
    assert all(idents) and len(set(idents)) == len(idents)
    # each link's identity is the last one its create reported for its key
    assert all(births.last(o.key) == o.ident for o in links)


def test_addresses_routes_rules_and_neighbours_are_observed_as_the_kernel_keeps_them(
        subject: Subject) -> None:
    births = Births()
    make_pair(subject, births)
    host = subject.host
    host.create(Link(ROOT, "vx0", "vxlan", spec=Vxlan(id=42)), TOPO, birth=births())
    made = [
        Address(ROOT, "br0", "10.0.0.1/24"), Address("a", "eth0", "10.0.0.2/24"),
        Address("a", "eth0", "fd00::2/64"), Address("a", "eth0", "10.1.0.2/24"),
        # completed by the kernel: the device of the gateway, the scope, onlink
        Route("a", "0.0.0.0/0", via="10.0.0.1"),
        Route("a", "10.9.0.0/16", dev="eth0", src="10.1.0.2", table=100, metric=7),
        Route("a", "10.8.0.0/16", via="10.9.0.1", table=100),  # on the route just above
        Route("a", "10.7.0.0/16", dev="eth0", scope="host"),
        # an IPv6 route's metric 0 is the kernel's 1024; its scope is always global
        Route("a", "fd01::/64", via="fd00::1", metric=0, scope="link"),
        Route(ROOT, "192.0.2.0/24", type="blackhole"),
        Rule("a", priority=100, src="10.1.0.0/16", table=100),
        Rule("a", priority=101, family=6, dst="fd02::/64", table=100, iif="eth0"),
        Neighbor("a", "eth0", "10.0.0.9", "02:00:00:00:00:09"),
        FdbEntry(ROOT, "vx0", "00:00:00:00:00:00", dst="192.0.2.7"),
        FdbEntry(ROOT, "vx0", "02:00:00:00:00:07", dst="192.0.2.8"),
    ]
    for obj in made:
        host.create(obj, TOPO)
    # the same again: an address, a neighbour, an FDB entry or a route already there is no
    # error (a rule is, below)
    for obj in (made[0], made[4], made[12], made[13]):
        host.create(obj, TOPO)

    seen = observe(subject, ROOT, "a", rules=True, fdb=True)
    expected = made[:4] + [
        Route("a", "0.0.0.0/0", via="10.0.0.1", dev="eth0", onlink=False, scope="global",
              proto=RTPROT_NETDECL),
        Route("a", "10.9.0.0/16", dev="eth0", src="10.1.0.2", table=100, metric=7,
              onlink=False, scope="link", proto=RTPROT_NETDECL),
        Route("a", "10.8.0.0/16", via="10.9.0.1", dev="eth0", table=100, onlink=False,
              scope="global", proto=RTPROT_NETDECL),
        Route("a", "10.7.0.0/16", dev="eth0", onlink=False, scope="host",
              proto=RTPROT_NETDECL),
        Route("a", "fd01::/64", via="fd00::1", dev="eth0", metric=1024, onlink=False,
              scope="global", proto=RTPROT_NETDECL),
        Route(ROOT, "192.0.2.0/24", type="blackhole", onlink=False, scope="global",
              proto=RTPROT_NETDECL),
        Rule("a", priority=100, src="10.1.0.0/16", table=100, proto=RTPROT_NETDECL),
        Rule("a", priority=101, family=6, dst="fd02::/64", table=100, iif="eth0",
             proto=RTPROT_NETDECL),
        *[Rule(ns, priority=priority, family=family, table=table, proto=RTPROT_KERNEL)
          for ns in (ROOT, "a") for family, priority, table in DEFAULT_RULES],
        *made[12:],
    ]
    assert comparable(seen.values(), links=False) == comparable(expected)
    assert refusal(lambda: host.create(made[10], TOPO)) == errno.EEXIST


def test_sysctls_are_written_and_read_back(subject: Subject) -> None:
    host = subject.host
    host.create(Namespace("a"), TOPO)
    host.create(Sysctl("a", FORWARD, "1"), TOPO)
    host.modify(None, Sysctl(ROOT, FORWARD, "1"), {"value": ("0", "1")}, TOPO)
    host.modify(None, Sysctl(ROOT, FORWARD, "0"), {"value": ("1", "0")}, TOPO)
    seen = observe(subject, ROOT, "a", sysctls={ROOT: {FORWARD}, "a": {FORWARD}})
    assert sorted((o.namespace, o.value) for o in seen.values() if isinstance(o, Sysctl)) == \
        [(ROOT, "0"), ("a", "1")]
    with pytest.raises(SysctlError):
        host.create(Sysctl(ROOT, "net.ipv4.no_such_key", "1"), TOPO)
    # the namespace is entered by its file under /run/netns
    assert refusal(lambda: host.create(Sysctl("gone", FORWARD, "1"), TOPO)) == errno.ENOENT
    # a sysctl is never deleted: its value from before is written back instead
    assert refusal(lambda: host.delete(Sysctl(ROOT, FORWARD, "0"), TOPO)) == errno.EOPNOTSUPP


# -- changing ------------------------------------------------------------------------------------

def link_now(subject: Subject, ns: str, name: str) -> Link:
    link = observe(subject, ns)[("link", ns, name)]
    assert isinstance(link, Link)
    return link


def test_a_link_is_modified_in_place_keeping_its_identity(subject: Subject) -> None:
    births = Births()
    make_pair(subject, births)
    host = subject.host
    host.create(Link(ROOT, "br1", "bridge"), TOPO, birth=births())
    v0 = link_now(subject, ROOT, "v0")

    def change(link: Link, **attrs: Any) -> Link:
        after = dataclasses.replace(link, **attrs)
        changes = {k: (getattr(link, k), v) for k, v in attrs.items() if k != "spec"}
        changes.update({k: (link.settings().get(k), v) for k, v in after.settings().items()
                        if "spec" in attrs})  # a kind's settings change by their own names
        host.modify(link, after, changes, TOPO)
        now = link_now(subject, link.namespace, link.name)
        assert now.ident == link.ident and now.ifindex == link.ifindex
        return now

    v0 = change(v0, mtu=1300)
    assert (v0.mtu, link_now(subject, ROOT, "br0").mtu) == (1300, 1300)  # the bridge follows
    v0 = change(v0, hairpin=True)
    assert v0.hairpin is True
    v0 = change(v0, master="br1")  # to another bridge: a new port there, hairpin off
    assert (v0.master, v0.hairpin) == ("br1", False)
    assert (link_now(subject, ROOT, "br0").mtu, link_now(subject, ROOT, "br1").mtu) == \
        (1500, 1300)
    v0 = change(v0, master=None)
    assert (v0.master, v0.hairpin, link_now(subject, ROOT, "br1").mtu) == (None, None, 1500)
    v0 = change(v0, up=False, mac="02:00:00:00:aa:01")
    assert (v0.up, v0.mac) == (False, "02:00:00:00:aa:01")
    assert link_now(subject, "a", "eth0").up is True  # the other end is its own
    br1 = change(link_now(subject, ROOT, "br1"), spec=BridgeSpec(stp=True), mtu=9000)
    assert (br1.spec, br1.mtu) == (BridgeSpec(stp=True), 9000)
    v0 = change(v0, master="br1", up=True)
    assert link_now(subject, ROOT, "br1").mtu == 9000  # set by hand: it no longer follows
    assert comparable([v0]) == comparable([mine(ROOT, "v0", "veth", mtu=1300, master="br1",
                                                hairpin=False, spec=VethSpec(peer=("a", "eth0")))])


def test_the_attributes_a_host_owns_are_modified_on_an_external_link(subject: Subject) -> None:
    subject.world.make_veth(ROOT, "eth9", "eth9p")  # (a bridge cannot be a bridge's port)
    subject.world.make_bridge(ROOT, "br9")
    host = subject.host
    before = link_now(subject, ROOT, "eth9")
    after = ExternalLink(ROOT, "eth9", up=True, mtu=1400, master="br9")
    host.modify(ExternalLink(ROOT, "eth9", up=False, mtu=1500), after,
                {"up": (False, True), "mtu": (1500, 1400), "master": (None, "br9")}, TOPO)
    now = link_now(subject, ROOT, "eth9")
    assert (now.up, now.mtu, now.master, now.alias, now.ident) == \
        (True, 1400, "br9", None, before.ident)
    # netdecl never makes nor deletes a link the host owns
    assert refusal(lambda: host.create(after, TOPO)) == errno.EOPNOTSUPP
    assert refusal(lambda: host.delete(after, TOPO)) == errno.EOPNOTSUPP


def test_a_link_going_down_takes_its_routes_ipv6_addresses_and_neighbours(subject: Subject) -> None:
    make_pair(subject, Births())
    host = subject.host
    for obj in (Address("a", "eth0", "10.0.0.2/24"), Address("a", "eth0", "fd00::2/64"),
                Route("a", "10.9.0.0/16", via="10.0.0.1"), Route("a", "10.8.0.0/16",
                                                                  dev="eth0"),
                Route("a", "10.7.0.0/16", dev="eth0", scope="host"),
                Route("a", "fd01::/64", dev="eth0"),
                Neighbor("a", "eth0", "10.0.0.9", "02:00:00:00:00:09")):
        host.create(obj, TOPO)
    eth0 = link_now(subject, "a", "eth0")
    host.modify(eth0, dataclasses.replace(eth0, up=False), {"up": (True, False)}, TOPO)
    seen = comparable(observe(subject, "a", fdb=True).values(), links=False)
    # (an IPv4 host-scope route stays; IPv6 addresses go, keep_addr_on_down being off)
    assert seen == [
        Address("a", "eth0", "10.0.0.2/24"),
        Route("a", "10.7.0.0/16", dev="eth0", onlink=False, scope="host",
              proto=RTPROT_NETDECL)]
    # and nothing comes back when it is up again
    eth0 = link_now(subject, "a", "eth0")
    host.modify(eth0, dataclasses.replace(eth0, up=True), {"up": (False, True)}, TOPO)
    assert comparable(observe(subject, "a", fdb=True).values(), links=False) == seen


def test_an_address_takes_the_routes_that_depend_on_it(subject: Subject) -> None:
    make_pair(subject, Births())
    host = subject.host
    for obj in (Address("a", "eth0", "10.0.0.2/24"), Address("a", "eth0", "10.1.0.2/24"),
                Address("a", "eth0", "fd00::2/64"),
                Route("a", "10.9.0.0/16", dev="eth0", src="10.1.0.2"),
                Route("a", "10.8.0.0/16", via="10.1.0.1"),
                Route("a", "10.7.0.0/16", dev="eth0", scope="host"),
                Route("a", "fd01::/64", dev="eth0", src="fd00::2", metric=1024)):
        host.create(obj, TOPO)
    seen = observe(subject, "a")
    host.delete(seen[("address", "a", "eth0", "10.1.0.2/24")], TOPO)
    host.delete(seen[("address", "a", "eth0", "fd00::2/64")], TOPO)
    # the route preferring the IPv4 address went; the one through its network stays while
    # the link has another IPv4 address; the IPv6 route only loses its preferred source
    assert comparable(o for o in observe(subject, "a").values() if isinstance(o, Route)) == [
        Route("a", "10.7.0.0/16", dev="eth0", onlink=False, scope="host",
              proto=RTPROT_NETDECL),
        Route("a", "10.8.0.0/16", via="10.1.0.1", dev="eth0", onlink=False, scope="global",
              proto=RTPROT_NETDECL),
        Route("a", "fd01::/64", dev="eth0", metric=1024, onlink=False, scope="global",
              proto=RTPROT_NETDECL)]
    # the link's last IPv4 address takes every IPv4 route through it
    host.delete(seen[("address", "a", "eth0", "10.0.0.2/24")], TOPO)
    assert [o.to for o in observe(subject, "a").values() if isinstance(o, Route)] == \
        ["fd01::/64"]


def test_a_route_is_replaced_and_restored_with_its_own_protocol(subject: Subject) -> None:
    make_pair(subject, Births())
    host = subject.host
    host.create(Address("a", "eth0", "10.0.0.2/24"), TOPO)
    host.create(Route("a", "10.9.0.0/16", via="10.0.0.1"), TOPO)
    before = observe(subject, "a")[("route", "a", 254, "10.9.0.0/16", 0)]
    assert isinstance(before, Route)
    host.modify(before, Route("a", "10.9.0.0/16", via="10.0.0.3"), {"via": None}, TOPO)
    replaced = observe(subject, "a")[before.key]
    assert isinstance(replaced, Route) and (replaced.via, replaced.proto) == \
        ("10.0.0.3", RTPROT_NETDECL)
    host.restore_route(dataclasses.replace(before, proto=RTPROT_STATIC))
    assert observe(subject, "a")[before.key] == dataclasses.replace(before,
                                                                    proto=RTPROT_STATIC)
    # a replace the kernel refuses leaves the route as it was
    assert refusal(lambda: host.modify(before, Route("a", "10.9.0.0/16", via="10.5.0.1"),
                                       {"via": None}, TOPO)) == errno.ENETUNREACH
    assert observe(subject, "a")[before.key] == dataclasses.replace(before,
                                                                    proto=RTPROT_STATIC)


def test_set_alias_writes_the_alias_of_that_very_link(subject: Subject) -> None:
    make_pair(subject, Births())
    host = subject.host
    br0 = link_now(subject, ROOT, "br0")
    host.set_alias(br0, "made by hand")
    now = link_now(subject, ROOT, "br0")
    assert (now.alias, now.owner, now.ident) == ("made by hand", None, br0.ident)
    host.set_alias(br0, owner_mark("other"))
    assert (link_now(subject, ROOT, "br0").owner) == "other"
    host.set_alias(br0, None)
    assert (link_now(subject, ROOT, "br0").alias, link_now(subject, ROOT, "br0").owner) == \
        (None, None)
    # someone else's link at the name since: refused, and theirs keeps no alias
    subject.world.remove_link(ROOT, "br0")
    subject.world.make_bridge(ROOT, "br0")
    assert refusal(lambda: host.set_alias(br0, MARK)) == errno.ENODEV
    theirs = link_now(subject, ROOT, "br0")
    assert theirs.alias is None and theirs.ident != br0.ident


# -- deleting ------------------------------------------------------------------------------------

def test_a_delete_takes_the_observed_object_only(subject: Subject) -> None:
    make_pair(subject, Births())
    host = subject.host
    seen = observe(subject, ROOT, "a")
    br0 = seen[("link", ROOT, "br0")]
    subject.world.remove_link(ROOT, "br0")
    subject.world.make_bridge(ROOT, "br0")
    host.delete(br0, TOPO)  # not the one observed any more: left alone
    theirs = link_now(subject, ROOT, "br0")
    assert theirs.ident != br0.ident and theirs.owner is None  # type: ignore[attr-defined]
    # a veth goes with both ends; what the kernel drops along goes too (a master's port)
    host.delete(seen[("link", ROOT, "v0")], TOPO, peer=seen[("link", "a", "eth0")])
    assert [k for k in observe(subject, ROOT, "a") if k[0] == "link"] == [("link", ROOT, "br0")]


def test_a_namespace_made_again_by_someone_else_is_refused_not_deleted(subject: Subject) -> None:
    host = subject.host
    host.create(Namespace("a"), TOPO)
    before = observe(subject, "a")[("namespace", "a")]
    subject.world.remove_namespace("a")
    subject.world.make_namespace("a")
    # KernelHost says so (namespaces.delete): EEXIST, and theirs stays
    assert refusal(lambda: host.delete(before, TOPO)) == errno.EEXIST
    now = observe(subject, "a")[("namespace", "a")]
    assert host.named_namespaces() == ["a"] and now.ident != before.ident  # type: ignore


def test_a_namespace_goes_with_what_is_in_it_and_its_veths_other_end(subject: Subject) -> None:
    make_pair(subject, Births())
    host = subject.host
    host.create(Address("a", "eth0", "10.0.0.2/24"), TOPO)
    seen = observe(subject, ROOT, "a")
    # the engine's order: the namespace, then the pair (KernelHost waits for the kernel to
    # take the surviving end)
    host.delete(seen[("namespace", "a")], TOPO)
    host.delete(seen[("link", ROOT, "v0")], TOPO, peer=seen[("link", "a", "eth0")])
    assert host.named_namespaces() == []
    assert list(observe(subject, ROOT, "a")) == [("link", ROOT, "br0")]
    assert link_now(subject, ROOT, "br0").mtu == 1500  # its port gone, it follows no one


def test_a_delete_of_what_is_gone_already_is_no_error(subject: Subject) -> None:
    births = Births()
    make_pair(subject, births)
    host = subject.host
    host.create(Link(ROOT, "vx0", "vxlan", spec=Vxlan(id=42)), TOPO, birth=births())
    for obj in (Address("a", "eth0", "10.0.0.2/24"), Route("a", "10.9.0.0/16", via="10.0.0.1"),
                Rule("a", priority=100, table=100, src="10.1.0.0/16"),
                Neighbor("a", "eth0", "10.0.0.9", "02:00:00:00:00:09"),
                FdbEntry(ROOT, "vx0", "00:00:00:00:00:00", dst="192.0.2.7")):
        host.create(obj, TOPO)
    seen = observe(subject, ROOT, "a", rules=True, fdb=True)
    order = [("fdb", ROOT, "vx0", "00:00:00:00:00:00", "192.0.2.7"),
             ("neighbor", "a", "eth0", "10.0.0.9"), ("rule", "a", 4, 100),
             ("route", "a", 254, "10.9.0.0/16", 0), ("address", "a", "eth0", "10.0.0.2/24"),
             ("link", ROOT, "vx0"), ("link", ROOT, "v0"), ("link", ROOT, "br0"),
             ("namespace", "a")]
    for key in order:  # each twice: the second finds it gone
        peer = seen[("link", "a", "eth0")] if key == ("link", ROOT, "v0") else None
        host.delete(seen[key], TOPO, peer=peer)
        host.delete(seen[key], TOPO, peer=peer)
    assert observe(subject, ROOT, "a", rules=True) == {
        ("rule", ROOT, family, priority): Rule(ROOT, priority=priority, family=family,
                                               table=table, proto=RTPROT_KERNEL)
        for family, priority, table in DEFAULT_RULES}
    assert host.named_namespaces() == []


@pytest.mark.parametrize("which", ["fake", pytest.param("kernel", marks=pytest.mark.kernel)])
def test_a_delete_of_what_went_with_its_namespace_is_no_error(
        which: str, request: pytest.FixtureRequest) -> None:
    """Host.delete: "Gone already is not an error", whatever took it, its namespace too."""
    with hosted(which, request) as subject:
        make_pair(subject, Births())
        host = subject.host
        host.create(Address("a", "eth0", "10.0.0.2/24"), TOPO)
        host.create(Route("a", "10.9.0.0/16", via="10.0.0.1"), TOPO)
        seen = observe(subject, ROOT, "a")
        host.delete(seen[("namespace", "a")], TOPO)
        host.delete(seen[("link", "a", "eth0")], TOPO)
        host.delete(seen[("address", "a", "eth0", "10.0.0.2/24")], TOPO)
        host.delete(seen[("route", "a", 254, "10.9.0.0/16", 0)], TOPO)


# -- refusals: what is refused, and what a refused create leaves ---------------------------------

def test_a_create_at_a_taken_name_leaves_the_new_link_under_its_temporary_name(
        subject: Subject) -> None:
    """KernelHost makes a link under a name only its apply knows, reports it, then renames it:
    a taken name fails the rename (EEXIST) and the link stays where it was made, for the
    engine's rollback to delete as provably its own."""
    subject.world.make_bridge(ROOT, "br0")
    theirs = link_now(subject, ROOT, "br0")
    births = Births()
    assert refusal(lambda: subject.host.create(Link(ROOT, "br0", "bridge", mtu=1400), TOPO,
                                               birth=births())) == errno.EEXIST
    temp = temp_link_name(births.secrets[0], 0)
    seen = observe(subject, ROOT)
    assert seen[theirs.key] == theirs
    left = seen[("link", ROOT, temp)]
    # made, reported under the key it was for, its MTU given, not yet named, marked nor up
    assert births.reports == [(("link", ROOT, "br0"), left.ident)]  # type: ignore[attr-defined]
    assert comparable([left]) == [Link(ROOT, temp, "bridge", up=False, mtu=1400,
                                       spec=BridgeSpec(stp=False))]


def test_a_veth_with_a_missing_master_is_left_as_made(subject: Subject) -> None:
    births = Births()
    subject.host.create(Namespace("a"), TOPO)
    assert refusal(lambda: subject.host.create(
        Link(ROOT, "v0", "veth", master="br9", spec=VethSpec(peer=("a", "eth0"))), TOPO,
        peer=Link("a", "eth0", "veth", spec=VethSpec(peer=(ROOT, "v0"))),
        birth=births())) == errno.ENODEV
    ends = (temp_link_name(births.secrets[0], 0), temp_link_name(births.secrets[0], 1))
    seen = observe(subject, ROOT, "a")
    assert comparable(o for o in seen.values() if isinstance(o, Link)) == comparable([
        Link(ROOT, ends[0], "veth", up=False, mtu=1500, spec=VethSpec(peer=("a", ends[1]))),
        Link("a", ends[1], "veth", up=False, mtu=1500, spec=VethSpec(peer=(ROOT, ends[0])))])
    assert [key for key, _ in births.reports] == [("link", ROOT, "v0"), ("link", "a", "eth0")]


def test_what_the_kernel_refuses_the_fake_refuses_with_the_same_errno(subject: Subject) -> None:
    births = Births()
    make_pair(subject, births)
    host = subject.host
    host.create(Address("a", "eth0", "10.0.0.2/24"), TOPO)
    host.create(Address("a", "eth0", "fd00::2/64"), TOPO)
    host.create(Link(ROOT, "down0", "bridge", up=False), TOPO, birth=births())
    host.create(Address(ROOT, "down0", "10.3.0.1/24"), TOPO)
    host.create(Rule("a", priority=100, table=100), TOPO)
    refused: list[tuple[Callable[[], object], int]] = [
        (lambda: host.create(Namespace("a"), TOPO, birth=births()), errno.EEXIST),
        (lambda: host.create(Link("gone", "x", "bridge"), TOPO, birth=births()), errno.ENOENT),
        (lambda: host.create(Link(ROOT, "vx0", "vxlan", spec=Vxlan(id=1, dev="nope")), TOPO,
                             birth=births()), errno.ENODEV),
        (lambda: host.create(Address("a", "nope", "10.0.0.3/24"), TOPO), errno.ENODEV),
        (lambda: host.create(Route("a", "10.9.0.0/16", via="10.5.0.1"), TOPO),
         errno.ENETUNREACH),
        (lambda: host.create(Route("a", "fd09::/64", via="fd05::1"), TOPO),
         errno.EHOSTUNREACH),
        (lambda: host.create(Route(ROOT, "10.9.0.0/16", dev="down0"), TOPO), errno.ENETDOWN),
        # a gateway on the network of a link that is down is on no connected network
        (lambda: host.create(Route(ROOT, "10.9.0.0/16", via="10.3.0.9"), TOPO),
         errno.ENETUNREACH),
        (lambda: host.create(Route("a", "10.9.0.0/16", dev="eth0", src="10.0.0.99"), TOPO),
         errno.EINVAL),
        (lambda: host.create(Route("a", "10.9.0.0/16", via="10.7.0.1", onlink=True), TOPO),
         errno.ENODEV),
        (lambda: host.create(Route("a", "10.9.0.0/16", dev="nope"), TOPO), errno.ENODEV),
        (lambda: host.create(Neighbor("a", "nope", "10.0.0.9", "02:00:00:00:00:09"), TOPO),
         errno.ENODEV),
        (lambda: host.create(Rule("a", priority=100, table=100), TOPO), errno.EEXIST),
        (lambda: host.modify(None, mine("a", "nope", "veth", mtu=1400), {"mtu": None}, TOPO),
         errno.ENODEV),
        (lambda: host.modify(None, mine(ROOT, "v0", "veth", master="nope"), {"master": None},
                             TOPO), errno.ENODEV),
        (lambda: host.modify(None, Address("a", "eth0", "10.0.0.2/24"), {}, TOPO),
         errno.EOPNOTSUPP),
        (lambda: host.modify(None, Namespace("a"), {}, TOPO), errno.EOPNOTSUPP),
    ]
    before = observe(subject, ROOT, "a", rules=True)
    assert [refusal(call) for call, _ in refused] == [code for _, code in refused]
    # none of it changed anything (creates that fail before anything is made)
    assert observe(subject, ROOT, "a", rules=True) == before


def test_a_vxlan_mtu_beyond_its_device_is_refused(subject: Subject) -> None:
    births = Births()
    make_pair(subject, births)
    assert refusal(lambda: subject.host.create(
        Link(ROOT, "vx0", "vxlan", mtu=1400, spec=Vxlan(id=42, dev="br0")), TOPO,
        birth=births())) == errno.EINVAL  # br0 carries 1400: 1350 at most
    left = observe(subject, ROOT)[("link", ROOT, temp_link_name(births.secrets[-1], 0))]
    assert isinstance(left, Link) and (left.mtu, left.owner) == (1350, None)


# -- NAT tables ----------------------------------------------------------------------------------

@pytest.fixture
def nft(subject: Subject) -> Subject:
    if subject.name == "kernel" and shutil.which("nft") is None:
        pytest.skip("needs the nft command for NAT tables")
    return subject


def test_a_nat_table_is_made_replaced_and_deleted_by_identity(nft: Subject) -> None:
    host, births = nft.host, Births()
    rules = (NatRule("masquerade", source="10.0.0.0/24"),)
    host.create(NatTable(ROOT, rules=rules), TOPO, birth=births())
    (first,) = observe(nft, ROOT, nat=True).values()
    assert isinstance(first, NatTable) and first.rules == rules
    assert births.reports == [(first.key, first.ident)]
    refusal(lambda: host.create(NatTable(ROOT, rules=rules), TOPO))  # (nft says no errno)
    other = (NatRule("masquerade", source="10.5.0.0/24", out="eth0"),)
    host.modify(first, NatTable(ROOT, rules=other), {"rules": None}, TOPO, birth=births())
    (second,) = observe(nft, ROOT, nat=True).values()
    assert isinstance(second, NatTable) and second.rules == other
    # replaced whole: a new table, reported
    assert second.ident not in (None, first.ident) and births.last(second.key) == second.ident
    host.delete(first, TOPO)  # not the table observed any more: left alone
    assert observe(nft, ROOT, nat=True)[second.key] == second
    host.delete(second, TOPO)
    host.delete(second, TOPO)  # gone already: no error
    assert observe(nft, ROOT, nat=True) == {}
    refusal(lambda: host.modify(second, NatTable(ROOT, rules=rules), {"rules": None}, TOPO))


# -- connections ---------------------------------------------------------------------------------

def test_after_refresh_a_write_finds_the_link_now_at_the_name(subject: Subject) -> None:
    """KernelHost remembers ifindexes by name while it reads and writes; someone else's new
    link at the name is found only after refresh (the engine calls it before a verification
    and a rollback)."""
    make_pair(subject, Births())
    host = subject.host
    host.create(Address(ROOT, "br0", "10.0.0.1/24"), TOPO)  # br0's ifindex now remembered
    subject.world.remove_link(ROOT, "br0")
    subject.world.make_bridge(ROOT, "br0")
    host.refresh([ROOT])
    host.create(Address(ROOT, "br0", "10.0.0.1/24"), TOPO)
    host.refresh()
    assert ("address", ROOT, "br0", "10.0.0.1/24") in observe(subject, ROOT)


def test_a_host_reconnected_or_closed_reads_on(subject: Subject) -> None:
    make_pair(subject, Births())
    host = subject.host
    seen = observe(subject, ROOT, "a")
    host.reconnect()
    assert observe(subject, ROOT, "a") == seen
    host.close()  # the sockets go; the next call opens new ones
    assert observe(subject, ROOT, "a") == seen
    assert host.remove_placeholders({"nothing-here": "file:1:2"}) == []


# -- the two side by side ------------------------------------------------------------------------

def build_everything(host: Host) -> list[NetObject]:
    """Every kind of object, made through ``host``; what it observes then."""
    births = Births()
    host.create(Namespace("a"), TOPO, birth=births())
    host.create(Link(ROOT, "br0", "bridge", spec=BridgeSpec(stp=True)), TOPO, birth=births())
    host.create(Link(ROOT, "v0", "veth", master="br0", hairpin=True, mtu=1450,
                     spec=VethSpec(peer=("a", "eth0"))), TOPO,
                peer=Link("a", "eth0", "veth", spec=VethSpec(peer=(ROOT, "v0"))), birth=births())
    host.create(Link(ROOT, "vx0", "vxlan", spec=Vxlan(id=42, dev="br0", local="10.0.0.1")),
                TOPO, birth=births())
    for obj in (Address(ROOT, "br0", "10.0.0.1/24"), Address("a", "eth0", "10.0.0.2/24"),
                Address("a", "eth0", "fd00::2/64"),
                Route("a", "0.0.0.0/0", via="10.0.0.1"), Route("a", "fd01::/64",
                                                               via="fd00::1", metric=5),
                Route(ROOT, "10.9.0.0/16", dev="br0", table=100),
                Rule("a", priority=10, src="10.0.0.0/24", table=100),
                Neighbor("a", "eth0", "10.0.0.9", "02:00:00:00:00:09"),
                FdbEntry(ROOT, "vx0", "00:00:00:00:00:00", dst="192.0.2.1"),
                Sysctl("a", FORWARD, "1")):
        host.create(obj, TOPO, birth=births())
    return host.observe(TOPO, scope(ROOT, "a", sysctls={"a": {FORWARD}}, rules=True,
                                    fdb=True))


@pytest.mark.kernel
def test_the_fake_observes_what_the_kernel_observes(host: HermeticHost) -> None:
    """The cases above each expect what both hosts must show; this asks the question
    directly, on everything at once: one build, observed on both, identical but for each
    host's own identities and MACs."""
    remote = RemoteHost(host)
    try:
        kernel = build_everything(remote)
    finally:
        remote.shutdown()
    fake = build_everything(FakeHost())
    assert comparable(fake) == comparable(kernel)
    assert len(comparable(kernel)) == 25  # (that nothing was lost on both sides alike)


def test_a_type_checker_finds_the_fake_conforming(tmp_path: Path) -> None:
    """Run mypy over _STATIC_CHECK (and the rest of this file): FakeHost and RemoteHost must
    satisfy Host as a type checker sees it, not only by name. Skipped where mypy is not
    installed (it is not among the test extras)."""
    pytest.importorskip("mypy")
    tests = Path(__file__).resolve().parent
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--follow-imports=silent", "--check-untyped-defs",
         "--cache-dir", str(tmp_path), str(Path(__file__).resolve()),
         str(tests / "fakehost.py"), str(tests / "remotehost.py")],
        env={**os.environ, "MYPYPATH": str(tests)}, capture_output=True, text=True,
        cwd=tests.parent, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("which", ["fake", pytest.param("kernel", marks=pytest.mark.kernel)])
def test_a_vxlan_with_an_ipv6_local_address(which: str, request: pytest.FixtureRequest) -> None:
    """A topology may say so (checks.check_vxlan accepts either family); the kernel carries
    it."""
    with hosted(which, request) as subject:
        subject.host.create(Link(ROOT, "vx6", "vxlan", spec=Vxlan(id=6, local="fd00::1")),
                            TOPO, birth=Births()())
        (link,) = observe(subject, ROOT).values()
        assert isinstance(link, Link) and link.spec == Vxlan(id=6, local="fd00::1")
